"""`manage.py import_winlab`: servers with encrypted credentials, CA bundle and mail ports; idempotent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import call_command

from servers.choices import TLSVerify, WinRMScheme
from servers.models import AuditEvent, Credential, Server
from tests.integration.winlab_agent.conftest import SPECS, start_lab
from winlab.lab import Lab
from winlab.persist import write_private_json

pytestmark = [pytest.mark.django_db, pytest.mark.winlab]


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, Path]]:
    tmp = tmp_path_factory.mktemp("winlab-import")
    lab = start_lab(tmp, [SPECS["r2"], SPECS["plesk"], SPECS["spare"]])
    path = tmp / "inventory.json"
    write_private_json(path, lab.inventory())
    try:
        yield lab, path
    finally:
        lab.stop()


def test_import_creates_servers_with_encrypted_credentials_and_is_idempotent(inventory: tuple[Lab, Path]) -> None:
    lab, path = inventory
    call_command("import_winlab", str(path), "--customer", "Acme", "--slice", ":2")
    call_command("import_winlab", str(path), "--customer", "Other", "--slice", "2:")
    servers = {s.name: s for s in Server.objects.select_related("credential", "customer")}
    assert set(servers) == {"R2WMF", "S22PLESK", "S22SPARE"}
    assert servers["S22SPARE"].customer.name == "Other"
    entry = next(e for e in lab.inventory()["hosts"] if e["name"] == "R2WMF")
    server = servers["R2WMF"]
    assert server.address == entry["address"]
    assert server.winrm_scheme == WinRMScheme.HTTPS
    assert server.winrm_port == entry["winrm"]["https_port"]
    assert server.tls_verify == TLSVerify.CA_BUNDLE
    assert server.tls_ca_bundle.startswith("-----BEGIN CERTIFICATE-----")
    assert (server.smtp_port, server.pop_port, server.imap_port) == (
        entry["mail_ports"]["smtp"], entry["mail_ports"]["pop"], entry["mail_ports"]["imap"]
    )  # fmt: skip
    assert server.credential is not None
    assert server.credential.username == "Administrator"
    assert entry["password"] not in server.credential.secret_encrypted
    assert server.credential.reveal_secret() == entry["password"]
    events = AuditEvent.objects.filter(actor_name="import_winlab")
    assert events.filter(action="server.create").count() == 3
    assert not any(entry["password"] in str(e.changes) for e in events)

    count = AuditEvent.objects.count()
    call_command("import_winlab", str(path), "--customer", "Acme", "--slice", ":2")
    assert Server.objects.count() == 3
    assert Credential.objects.count() == 3
    assert AuditEvent.objects.count() == count  # nothing changed, nothing audited


def test_http_import_uses_ntlm_without_a_ca_bundle(inventory: tuple[Lab, Path]) -> None:
    _lab, path = inventory
    call_command("import_winlab", str(path), "--customer", "Plain", "--scheme", "http")
    server = Server.objects.get(customer__name="Plain", name="S22PLESK")
    assert server.winrm_scheme == WinRMScheme.HTTP
    assert server.tls_ca_bundle == ""
