"""Adding and editing servers: bad input gives clear errors, nothing half-saved, no 500."""

from __future__ import annotations

import pytest
from django.urls import reverse

from servers.models import AuditEvent, Server
from tests.factories import CredentialFactory, ServerFactory

pytestmark = pytest.mark.django_db


def _form(customer, credential=None, **overrides):
    data = {
        "customer": customer.pk,
        "name": "mx-new",
        "address": "mx-new.example.net",
        "winrm_scheme": "https",
        "winrm_port": 5986,
        "tls_verify": "system",
        "smtp_port": 25,
        "pop_port": 110,
        "imap_port": 143,
        "sql_integrated": "unknown",
        "integrated_auth": "unknown",
        "credential": credential.pk if credential else "",
        "tags_text": "plesk, EU-west",
    }
    data.update(overrides)
    return data


def test_operator_adds_a_server_and_it_is_audited(client, carol, tenant_a):
    client.force_login(carol)
    response = client.post(reverse("server_create"), _form(tenant_a.customer, tenant_a.credential))
    assert response.status_code == 302
    server = Server.objects.get(name="mx-new")
    assert sorted(server.tags.values_list("name", flat=True)) == ["eu-west", "plesk"]
    event = AuditEvent.objects.get(action="server.create")
    assert event.actor_name == "carol"
    assert event.changes["address"] == [None, "mx-new.example.net"]
    assert event.customer_id == tenant_a.customer.pk


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("address", "http://mx.example.net/", "not a valid host name"),
        ("address", "mx example.net", "not a valid host name"),
        ("address", "-bad.example.net", "not a valid host name"),
        ("address", "a" * 300, "at most 253"),
        ("winrm_port", 70000, "65535"),
        ("smtp_port", 0, "1"),
        ("name", "bad\x07name", "Control characters"),
        ("tags_text", "ok, Bad Tag!", "Tags are lowercase"),
        ("tls_verify", "pinned", "fingerprint"),
        ("tls_fingerprint", "zz:11", "64 hexadecimal"),
        ("tls_verify", "ca_bundle", "PEM"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(client, carol, tenant_a, field, value, message):
    client.force_login(carol)
    events_before = AuditEvent.objects.count()
    response = client.post(reverse("server_create"), _form(tenant_a.customer, **{field: value}))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Server.objects.filter(name="mx-new").exists()
    assert AuditEvent.objects.count() == events_before


def test_duplicate_name_within_a_customer_is_refused(client, carol, tenant_a):
    client.force_login(carol)
    response = client.post(reverse("server_create"), _form(tenant_a.customer, name=tenant_a.server.name.upper()))
    assert "already has a server called" in response.content.decode()


def test_same_name_in_another_customer_is_allowed(client, alice, tenant_a, tenant_b):
    client.force_login(alice)
    response = client.post(reverse("server_create"), _form(tenant_b.customer, name=tenant_a.server.name))
    assert response.status_code == 302


def test_credential_of_another_customer_cannot_be_used(client, alice, tenant_a, tenant_b):
    client.force_login(alice)
    response = client.post(reverse("server_create"), _form(tenant_a.customer, tenant_b.credential))
    assert "same customer" in response.content.decode()


def test_customer_operator_cannot_pick_another_customers_credential_or_customer(client, carol, tenant_a, tenant_b):
    client.force_login(carol)
    response = client.post(reverse("server_create"), _form(tenant_b.customer, tenant_b.credential))
    assert response.status_code == 200
    assert not Server.objects.filter(name="mx-new").exists()
    body = response.content.decode()
    assert tenant_b.customer.name not in body
    assert tenant_b.credential.name not in body


@pytest.mark.parametrize(("scheme", "verify"), [("http", "system"), ("https", "off")])
def test_basic_auth_needs_https_with_verification(client, alice, tenant_a, scheme, verify):
    basic = CredentialFactory(customer=tenant_a.customer, auth="basic", name="basic-cred")
    client.force_login(alice)
    response = client.post(
        reverse("server_create"), _form(tenant_a.customer, basic, winrm_scheme=scheme, tls_verify=verify)
    )
    assert "Basic authentication is allowed only over HTTPS" in response.content.decode()


def test_tls_verification_off_is_shown_as_a_warning(client, alice, tenant_a):
    server = ServerFactory(customer=tenant_a.customer, tls_verify="off", name="insecure-mx")
    client.force_login(alice)
    assert (
        "TLS certificate verification is off" in client.get(reverse("server_detail", args=[server.pk])).content.decode()
    )
    assert "TLS unverified" in client.get(reverse("server_list")).content.decode()


def test_edit_records_a_field_diff(client, alice, tenant_a):
    client.force_login(alice)
    data = _form(tenant_a.customer, tenant_a.credential, name=tenant_a.server.name, address="new.example.org")
    assert client.post(reverse("server_edit", args=[tenant_a.server.pk]), data).status_code == 302
    event = AuditEvent.objects.get(action="server.update")
    assert event.changes["address"] == ["mx.a.example", "new.example.org"]
    assert "name" not in event.changes


def test_server_list_query_count_does_not_grow_with_servers(client, alice, tenant_a, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(alice)
    client.get(reverse("server_list"))  # warm-up: per-session one-offs (preferences, caches)
    for i in range(2):
        ServerFactory(customer=tenant_a.customer, name=f"few-{i}")
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("server_list"))
    for i in range(27):
        ServerFactory(customer=tenant_a.customer, name=f"many-{i}")
    with CaptureQueriesContext(connection) as many:
        client.get(reverse("server_list"))
    assert len(many.captured_queries) == len(few.captured_queries)


def test_the_server_form_names_its_fields_as_windows_admins_write_them(client, alice, tenant_a):
    client.force_login(alice)
    page = client.get(reverse("server_create")).content.decode()
    for label in ("WinRM scheme", "WinRM port", "TLS verification", "SMTP port", "POP3 port", "Webmail URL"):
        assert f">{label}" in page, label
    for wrong in ("Winrm scheme", "Tls verify", "Smtp port"):
        assert wrong not in page, wrong
