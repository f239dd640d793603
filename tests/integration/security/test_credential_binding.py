"""Credential capture (security-audit-2026-12, high): whoever may edit a server must not be able to send
its credential to a host of their choosing.

The attack: an operator points a server's address / port / scheme / TLS trust at a listener of their
own, keeps the customer's credential, and presses "Test connection". Each test runs it (or a variant:
form tampering, CSV import, an edit that bypasses the services) against a real socket listener and
shows that the listener never receives a single byte, while an MSP admin's binding still works.
"""

from __future__ import annotations

import io

import pytest
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from jobs import runner
from jobs.choices import HostRunState
from jobs.models import HostRun
from servers.audit import Actor
from servers.binding import is_bound
from servers.csv_import import import_servers_text
from servers.models import AuditEvent, Server
from servers.services import server_create, server_update
from servers.tenancy import Scope
from tests.factories import CredentialFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def oscar(make_role_user):
    return make_role_user("msp_operator")


def _repoint(server: Server, port: int) -> dict[str, object]:
    """The edit form's fields as the attacker submits them: the server aimed at their listener."""
    return {
        "customer": server.customer_id,
        "name": server.name,
        "address": "127.0.0.1",
        "winrm_scheme": "http",
        "winrm_port": port,
        "tls_verify": "off",
        "tls_ca_bundle": "",
        "tls_fingerprint": "",
        "credential": server.credential_id or "",
        "smtp_port": 25,
        "pop_port": 110,
        "imap_port": 143,
        "webmail_url": "",
        "admin_url": "",
        "sql_integrated": "unknown",
        "integrated_auth": "unknown",
        "notes": "",
        "tags_text": "",
    }


def _test_connection(client, server: Server) -> HostRun:
    """Press "Test connection" and run the queued discover here, as a worker would."""
    assert client.post(reverse("server_discover", args=[server.pk])).status_code == 302
    run = HostRun.objects.filter(server=server).latest("pk")
    runner.run_host(run.pk)
    run.refresh_from_db()
    return run


@pytest.mark.parametrize("who", ["oscar", "carol"])  # an MSP operator, a customer's own operator
def test_an_operator_repointing_a_server_unbinds_its_credential_and_it_is_never_sent(
    who, request, client, tenant_a, listener
):
    user = request.getfixturevalue(who)
    server = tenant_a.server
    assert is_bound(server)
    client.force_login(user)
    response = client.post(reverse("server_edit", args=[server.pk]), _repoint(server, listener.port))
    assert response.status_code == 302
    server.refresh_from_db()
    assert server.address == "127.0.0.1"  # the edit itself is kept ...
    assert server.credential is None  # ... without the credential
    assert server.credential_binding == ""
    event = AuditEvent.objects.filter(action="server.credential_unbind", object_id=str(server.pk)).get()
    assert event.changes["credential"][0] == str(tenant_a.credential)
    run = _test_connection(client, server)
    assert run.state == HostRunState.FAILED
    assert run.error_kind == "no_credential"
    assert listener.connections == 0
    assert listener.received == []


def test_the_credential_field_is_not_offered_to_an_operator_and_a_forged_value_is_ignored(
    client, oscar, tenant_a, listener
):
    server = tenant_a.server
    client.force_login(oscar)
    page = client.get(reverse("server_edit", args=[server.pk])).content.decode()
    assert 'name="credential"' in page
    assert "disabled" in page.split('name="credential"')[1].split(">")[0]
    # unbound by a first edit; the second submits the credential's id again, as a forged form would
    client.post(reverse("server_edit", args=[server.pk]), _repoint(server, listener.port))
    forged = {**_repoint(server, listener.port), "credential": tenant_a.credential.pk}
    assert client.post(reverse("server_edit", args=[server.pk]), forged).status_code == 302
    server.refresh_from_db()
    assert server.credential is None
    assert _test_connection(client, server).error_kind == "no_credential"
    assert listener.received == []


def test_the_services_refuse_an_operator_choosing_a_credential(oscar, tenant_a):
    scope = Scope(user_id=oscar.pk, msp_role="operator")
    server = tenant_a.server
    other = CredentialFactory(customer=tenant_a.customer, name="other")
    server.credential = other
    with pytest.raises(PermissionDenied):
        server_update(scope=scope, actor=Actor.system("t"), server=server, data={}, tags=[])
    data = {"customer": tenant_a.customer, "name": "new", "address": "evil.example", "credential": other}
    with pytest.raises(PermissionDenied):
        server_create(scope=scope, actor=Actor.system("t"), data=data, tags=[])
    assert not Server.objects.filter(name="new").exists()


def test_an_operator_edit_that_leaves_the_connection_alone_keeps_the_credential(client, oscar, tenant_a):
    server = tenant_a.server
    client.force_login(oscar)
    form = {**_repoint(server, server.winrm_port), "address": server.address, "winrm_scheme": server.winrm_scheme,
            "tls_verify": server.tls_verify, "notes": "new rack"}  # fmt: skip
    assert client.post(reverse("server_edit", args=[server.pk]), form).status_code == 302
    server.refresh_from_db()
    assert server.notes == "new rack"
    assert server.credential == tenant_a.credential
    assert is_bound(server)


def test_a_csv_import_by_an_operator_may_not_name_a_credential(oscar, tenant_a):
    scope = Scope(user_id=oscar.pk, msp_role="operator")
    text = (
        "customer,name,address,winrm_scheme,winrm_port,tls_verify,credential\n"
        f"{tenant_a.customer.name},captured,127.0.0.1,http,5985,off,{tenant_a.credential.name}\n"
    )
    result = import_servers_text(scope=scope, actor=Actor.system("t"), text=text)
    assert not result.created
    assert any("only an MSP admin may bind a credential" in error for error in result.errors)
    assert not Server.objects.filter(name="captured").exists()


def test_settings_changed_behind_the_services_back_are_refused_before_any_connection(client, alice, tenant_a, listener):
    # e.g. the Django admin, or a bulk update: the credential is still attached, but no longer bound
    server = tenant_a.server
    Server.objects.filter(pk=server.pk).update(address="127.0.0.1", winrm_scheme="http", winrm_port=listener.port)
    server.refresh_from_db()
    assert server.credential == tenant_a.credential
    assert not is_bound(server)
    client.force_login(alice)
    run = _test_connection(client, server)
    assert run.state == HostRunState.FAILED
    assert run.error_kind == "credential_unbound"
    assert "must bind it again" in run.error_message
    assert listener.connections == 0


def test_an_msp_admin_binds_and_the_credential_then_goes_where_the_admin_said(client, alice, tenant_a, listener):
    server = tenant_a.server
    client.force_login(alice)
    form = _repoint(server, listener.port)
    assert client.post(reverse("server_edit", args=[server.pk]), form).status_code == 302
    server.refresh_from_db()
    assert server.credential == tenant_a.credential
    assert is_bound(server)
    assert AuditEvent.objects.filter(action="server.credential_bind", object_id=str(server.pk)).exists()
    connection = runner.connection_for(server)
    assert (connection.address, connection.effective_port) == ("127.0.0.1", listener.port)


def test_binding_audit_names_no_secret(client, alice, tenant_a, listener):
    client.force_login(alice)
    client.post(reverse("server_edit", args=[tenant_a.server.pk]), _repoint(tenant_a.server, listener.port))
    event = AuditEvent.objects.get(action="server.credential_bind")
    assert tenant_a.credential.reveal_secret() not in io.StringIO(str(event.changes)).getvalue()
