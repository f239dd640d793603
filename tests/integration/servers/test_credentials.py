"""Credentials: secrets are write-only, encrypted at rest, never rendered, audited without values."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import connection
from django.urls import reverse

from servers.crypto import decrypt_secret
from servers.models import AuditEvent, Credential

pytestmark = pytest.mark.django_db
CANARY = "Canary-Adm1n-Pw-5d2e!"


def _create(client, customer):
    return client.post(
        reverse("credential_create"),
        {
            "customer": customer.pk,
            "name": "fleet-admin",
            "username": "HOST\\fleetadmin",
            "auth": "ntlm",
            "secret": CANARY,
        },
    )


def test_secret_is_encrypted_at_rest_and_never_rendered(client, alice, tenant_a):
    client.force_login(alice)
    assert _create(client, tenant_a.customer).status_code == 302
    credential = Credential.objects.get(name="fleet-admin")
    assert CANARY not in credential.secret_encrypted
    assert decrypt_secret(credential.secret_encrypted) == CANARY
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret_encrypted FROM servers_credential WHERE id = %s", [credential.pk])
        (stored,) = cursor.fetchone()
    assert CANARY not in stored
    for url in (reverse("credential_list"), reverse("credential_edit", args=[credential.pk])):
        page = client.get(url).content.decode()
        assert CANARY not in page
        assert credential.secret_encrypted not in page
    events = list(AuditEvent.objects.values_list("changes", flat=True))
    assert events
    assert all(CANARY not in str(changes) for changes in events)


def test_edit_without_a_secret_keeps_the_stored_one(client, alice, tenant_a):
    client.force_login(alice)
    _create(client, tenant_a.customer)
    credential = Credential.objects.get(name="fleet-admin")
    response = client.post(
        reverse("credential_edit", args=[credential.pk]),
        {"name": "fleet-admin", "username": "HOST\\other", "auth": "ntlm", "secret": ""},
    )
    assert response.status_code == 302
    credential.refresh_from_db()
    assert credential.reveal_secret() == CANARY
    assert credential.username == "HOST\\other"


def test_invalid_password_form_does_not_echo_the_secret(client, alice, tenant_a):
    client.force_login(alice)
    response = client.post(
        reverse("credential_create"),
        {"customer": tenant_a.customer.pk, "name": "", "username": 'bad"name', "auth": "ntlm", "secret": CANARY},
    )
    assert response.status_code == 200
    assert CANARY not in response.content.decode()


def test_operators_cannot_manage_credentials(client, make_role_user, tenant_a):
    client.force_login(make_role_user("msp_operator"))
    assert _create(client, tenant_a.customer).status_code == 403


def test_rotate_encryption_keys_re_encrypts_everything(client, alice, tenant_a, settings):
    from cryptography.fernet import Fernet

    client.force_login(alice)
    _create(client, tenant_a.customer)
    old = list(settings.FLEET_ENCRYPTION_KEYS)
    new = Fernet.generate_key().decode()
    settings.FLEET_ENCRYPTION_KEYS = [new, *old]
    call_command("rotate_encryption_keys", stdout=io.StringIO())
    settings.FLEET_ENCRYPTION_KEYS = [new]
    for credential in Credential.objects.all():
        assert credential.reveal_secret()
    assert Credential.objects.get(name="fleet-admin").reveal_secret() == CANARY
    assert AuditEvent.objects.filter(action="secrets.rotate").exists()


def test_audit_events_are_append_only(alice, tenant_a):
    from servers.audit import Actor, audit_record

    event = audit_record(actor=Actor.system("test"), action="x.y", obj=tenant_a.server)
    with pytest.raises(PermissionError):
        event.save()
    with pytest.raises(PermissionError):
        event.delete()
    with pytest.raises(PermissionError):
        AuditEvent.objects.all().delete()
    with pytest.raises(PermissionError):
        AuditEvent.objects.filter(pk=event.pk).update(action="tampered")


def test_audit_page_filters_by_action(client, alice, tenant_a):
    from servers.audit import Actor, audit_record

    audit_record(actor=Actor.system("job"), action="server.update", obj=tenant_a.server)
    audit_record(actor=Actor.system("job"), action="credential.create", obj=tenant_a.credential)
    client.force_login(alice)
    page = client.get(reverse("audit_list"), {"action": "server."}).content.decode()
    rows = page.split("<tbody>")[1]  # the action drop-down above lists every action
    assert "server.update" in rows
    assert "credential.create" not in rows
