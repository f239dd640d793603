"""The registry of encrypted fields: rotation, the deploy check and the registry's own guard.

Audit finding (security-audit-2026-12, "key rotation loses data"): rotation re-encrypted only the
credentials, so after new-key-first, rotate, drop-old-key the service-account passwords, webhook
secrets and the signing key no longer decrypted. Every test here stores one secret of every kind.
"""

from __future__ import annotations

import io

import pytest
from cryptography.fernet import Fernet
from django.apps import apps
from django.core import checks
from django.core.management import call_command
from django.core.management.base import CommandError, SystemCheckError
from django.urls import reverse

from jobs.models import AlertSettings, ServiceAccountSecret
from reports.models import SigningKey
from reports.signing import installation_key
from servers.crypto import decrypt_secret, encrypt_secret
from servers.models import Credential
from servers.secret_fields import FERNET_PREFIX, EncryptedTextField, encrypted_fields

pytestmark = pytest.mark.django_db

REGISTRY = {
    "servers.Credential.secret_encrypted",
    "jobs.ServiceAccountSecret.password_encrypted",
    "jobs.ServiceAccountSecret.pending_password_encrypted",
    "jobs.AlertSettings.webhook_secret_encrypted",
    "reports.SigningKey.private_key_encrypted",
}


@pytest.fixture
def every_secret(tenant_a):
    """One stored secret of every kind, with its plaintext."""
    ServiceAccountSecret.objects.create(
        server=tenant_a.server,
        password_encrypted=encrypt_secret("Svc-Pw-1-aaaa"),
        pending_password_encrypted=encrypt_secret("Svc-Pw-2-bbbb"),
    )
    AlertSettings.objects.create(customer=tenant_a.customer, webhook_secret_encrypted=encrypt_secret("hook-key-cccc"))
    installation_key()
    return tenant_a


def _plaintexts() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for field in encrypted_fields():
        values = field.model._default_manager.exclude(**{field.name: ""}).values_list(field.name, flat=True)
        out[field.label] = [decrypt_secret(v) for v in values]
    return out


def test_the_registry_is_every_encrypted_field_and_no_other():
    assert {f.label for f in encrypted_fields()} == REGISTRY
    # a field named like a token that is a plain TextField would be left out of rotation
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if field.name.endswith("_encrypted"):
                assert isinstance(field, EncryptedTextField), f"{model._meta.label}.{field.name}"


def test_no_fernet_token_is_stored_outside_the_registry(every_secret, client, alice):
    # the database after every kind of secret was stored (and a report signed): a Fernet token in any
    # other text column would be a secret that rotation and the deploy check do not know
    client.force_login(alice)
    every_secret.credential.set_secret("Adm1n-Pw-dddd")
    every_secret.credential.save()
    registered = {f.label for f in encrypted_fields()}
    found: set[str] = set()
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if field.get_internal_type() not in ("TextField", "CharField"):
                continue
            label = f"{model._meta.label}.{field.name}"
            if model._default_manager.filter(**{f"{field.name}__startswith": FERNET_PREFIX}).exists():
                found.add(label)
    assert found, "the fixture stored no token: the scan would prove nothing"
    assert found <= registered
    assert found == REGISTRY


def test_rotate_then_drop_the_old_key_every_secret_decrypts_and_a_report_is_signed(
    every_secret, client, alice, settings
):
    before = _plaintexts()
    assert all(before.values())
    old = list(settings.FLEET_ENCRYPTION_KEYS)
    new = Fernet.generate_key().decode()
    settings.FLEET_ENCRYPTION_KEYS = [new, *old]
    out = io.StringIO()
    call_command("rotate_encryption_keys", stdout=out)
    for label in REGISTRY:
        assert f"{label}: 1 re-encrypted" in out.getvalue()
    settings.FLEET_ENCRYPTION_KEYS = [new]
    assert _plaintexts() == before
    client.force_login(alice)
    today = "2026-12-02"
    response = client.post(
        reverse("report_create"),
        {"customer": every_secret.customer.pk, "format": "csv", "start": today, "end": today},
    )
    assert response.status_code == 302
    assert SigningKey.objects.count() == 1


def _stored() -> dict[str, list[str]]:
    return {f.label: sorted(f.model._default_manager.values_list(f.name, flat=True)) for f in encrypted_fields()}


def test_a_token_no_key_decrypts_stops_the_rotation_before_anything_is_written(every_secret, settings):
    stranger = Fernet(Fernet.generate_key()).encrypt(b"x").decode()
    Credential.objects.filter(pk=every_secret.credential.pk).update(secret_encrypted=stranger)
    stored = _stored()
    settings.FLEET_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), *settings.FLEET_ENCRYPTION_KEYS]
    with pytest.raises(CommandError, match=r"servers\.Credential\.secret_encrypted"):
        call_command("rotate_encryption_keys", stdout=io.StringIO())
    assert _stored() == stored


def _deploy_messages() -> dict[str, list[str]]:
    found = checks.run_checks(include_deployment_checks=True, tags=[checks.Tags.security])
    out: dict[str, list[str]] = {}
    for message in found:
        if message.id and message.id.startswith("fleet."):
            out.setdefault(message.id, []).append(message.msg)
    return out


def test_check_deploy_reports_unrotated_and_undecryptable_tokens(every_secret, settings):
    settings.FLEET_MANAGEMENT_NETWORKS = ["10.20.0.0/16"]  # fleet.W004 is another check's
    assert _deploy_messages() == {}
    old = list(settings.FLEET_ENCRYPTION_KEYS)
    new = Fernet.generate_key().decode()
    settings.FLEET_ENCRYPTION_KEYS = [new, *old]
    unrotated = _deploy_messages()
    assert set(unrotated) == {"fleet.W002"}
    assert len(unrotated["fleet.W002"]) == len(REGISTRY)
    assert "jobs.AlertSettings.webhook_secret_encrypted: 1 of 1" in " ".join(unrotated["fleet.W002"])
    settings.FLEET_ENCRYPTION_KEYS = [new]  # the old key dropped without rotating first
    lost = _deploy_messages()
    assert set(lost) == {"fleet.E001"}
    assert len(lost["fleet.E001"]) == len(REGISTRY)
    with pytest.raises(SystemCheckError):  # check --deploy fails, not only warns
        call_command("check", "--deploy", stdout=io.StringIO(), stderr=io.StringIO())
    settings.FLEET_ENCRYPTION_KEYS = [new, *old]
    call_command("rotate_encryption_keys", stdout=io.StringIO())
    assert _deploy_messages() == {}
