"""Declaring integrated_auth=yes needs an explicit, recorded acknowledgement; the CSV import refuses it."""

from __future__ import annotations

import pytest
from django.urls import reverse

from servers.choices import Declared
from servers.forms import INTEGRATED_AUTH_ACK_LABEL, ServerForm
from servers.models import AuditEvent, Server
from servers.tenancy import scope_for_user
from tests.factories import import_csv

pytestmark = pytest.mark.django_db


def _edit_data(server: Server, **changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "customer": server.customer_id,
        "name": server.name,
        "address": server.address,
        "winrm_scheme": server.winrm_scheme,
        "winrm_port": server.winrm_port,
        "tls_verify": server.tls_verify,
        "credential": server.credential_id,
        "smtp_port": 25,
        "pop_port": 110,
        "imap_port": 143,
        "sql_integrated": Declared.UNKNOWN,
        "integrated_auth": Declared.UNKNOWN,
    }
    data.update(changes)
    return data


def test_the_checkbox_says_what_it_grants(carol, tenant_a) -> None:
    form = ServerForm(instance=tenant_a.server, scope=scope_for_user(carol))
    assert "SeTcbPrivilege and SeCreateTokenPrivilege (SYSTEM-equivalent)" in str(
        form.fields["acknowledge_integrated_auth"].label
    )
    assert INTEGRATED_AUTH_ACK_LABEL.startswith("I understand this grants IME_SYSTEM")
    names = list(form.fields)
    assert names.index("acknowledge_integrated_auth") == names.index("integrated_auth") + 1


def test_yes_without_the_acknowledgement_is_refused(client, carol, tenant_a) -> None:
    client.force_login(carol)
    url = reverse("server_edit", kwargs={"server_id": tenant_a.server.pk})
    response = client.post(url, _edit_data(tenant_a.server, integrated_auth=Declared.YES))
    assert response.status_code == 200
    assert "tick the acknowledgement" in response.context["form"].errors["acknowledge_integrated_auth"][0]
    tenant_a.server.refresh_from_db()
    assert tenant_a.server.integrated_auth == Declared.UNKNOWN
    assert tenant_a.server.integrated_auth_acknowledged_at is None


def test_yes_with_the_acknowledgement_records_who_and_when_and_is_audited(client, carol, tenant_a) -> None:
    client.force_login(carol)
    url = reverse("server_edit", kwargs={"server_id": tenant_a.server.pk})
    data = _edit_data(tenant_a.server, integrated_auth=Declared.YES, acknowledge_integrated_auth="on")
    assert client.post(url, data).status_code == 302
    server = Server.objects.get(pk=tenant_a.server.pk)
    assert server.integrated_auth == Declared.YES
    assert server.integrated_auth_acknowledged_by == carol
    assert server.integrated_auth_acknowledged_at is not None
    event = AuditEvent.objects.get(action="server.update", actor=carol)
    assert event.changes["integrated_auth"] == [Declared.UNKNOWN, Declared.YES]
    page = client.get(reverse("server_detail", kwargs={"server_id": server.pk})).content.decode()
    assert "SYSTEM-equivalent rights acknowledged" in page

    # Later edits keep it without asking again; turning it off clears it.
    assert client.post(url, _edit_data(server, integrated_auth=Declared.YES, notes="x")).status_code == 302
    server.refresh_from_db()
    assert server.integrated_auth_acknowledged_by == carol
    assert client.post(url, _edit_data(server, integrated_auth=Declared.NO)).status_code == 302
    server.refresh_from_db()
    assert server.integrated_auth_acknowledged_at is None
    response = client.post(url, _edit_data(server, integrated_auth=Declared.YES))
    assert "acknowledge_integrated_auth" in response.context["form"].errors


def test_a_new_server_declared_yes_keeps_the_acknowledgement(client, carol, tenant_a) -> None:
    client.force_login(carol)
    data = _edit_data(tenant_a.server, name="mx-a-02", integrated_auth=Declared.YES, acknowledge_integrated_auth="on")
    assert client.post(reverse("server_create"), data).status_code == 302
    server = Server.objects.get(name="mx-a-02")
    assert server.integrated_auth_acknowledged_by == carol
    event = AuditEvent.objects.get(action="server.create", object_id=str(server.pk))
    assert "integrated_auth_acknowledged_by" in event.changes


def test_csv_import_refuses_integrated_auth_yes_rows(client, carol, tenant_a) -> None:
    client.force_login(carol)
    csv = "name,customer,address,integrated_auth\nmx-a-09,Tenant A Ltd,mx9.a.example,yes\n"
    response = import_csv(client, csv)
    errors = response.context["errors"]
    assert any(e.startswith("Row 2: integrated_auth: 'yes' cannot be imported") and "edit page" in e for e in errors)
    assert not any("acknowledge_integrated_auth" in e for e in errors)
    assert not Server.objects.filter(name="mx-a-09").exists()
    ok = "name,customer,address,integrated_auth\nmx-a-09,Tenant A Ltd,mx9.a.example,no\n"
    assert "Imported 1 server" in import_csv(client, ok).content.decode()
