"""/api/v1/credentials/ and PUT /api/v1/servers/{id}/credential/: MSP admins only, the password write-only.

Alice (MSP admin) stores, lists, replaces and deletes credentials; the password is stored encrypted and
no answer holds it nor its ciphertext. Every other role, a read-only token and a token narrowed to one
customer are refused, and nothing is written (not even an audit row).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from rest_framework import serializers

from api.tokens import token_issue
from servers.audit import REDACTED, Actor
from servers.binding import is_bound
from servers.choices import AuthMethod, WinRMScheme
from servers.crypto import decrypt_secret
from servers.models import AuditEvent, Credential, Server
from servers.tenancy import scope_for_user
from tests.factories import CredentialFactory, ServerFactory

pytestmark = pytest.mark.django_db

SECRET = "Api-Stored-Pa55word-4711!"
NEW_SECRET = "  Replaced-Pa55word-0815  "


def _token(user, **kwargs: Any) -> tuple[Client, str]:
    options = {"name": "psa", "days": 30, "read_only": False, "customer": None, **kwargs}
    issued = token_issue(scope=scope_for_user(user), actor=Actor(user=user), **options)
    return Client(HTTP_AUTHORIZATION=f"Bearer {issued.secret}"), issued.token.prefix


def _put(api: Client, url: str, body: dict[str, Any]):
    return api.put(url, json.dumps(body), content_type="application/json")


def _post(api: Client, url: str, body: dict[str, Any]):
    return api.post(url, json.dumps(body), content_type="application/json")


def _stored_ciphertext(credential_id: int) -> str:
    """The column as the database holds it (not through the model)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret_encrypted FROM servers_credential WHERE id = %s", [credential_id])
        return str(cursor.fetchone()[0])


def _keys(data: Any) -> set[str]:
    """Every key of a JSON document, at any depth."""
    if isinstance(data, dict):
        return set(data) | {key for value in data.values() for key in _keys(value)}
    if isinstance(data, list):
        return {key for item in data for key in _keys(item)}
    return set()


def _when(value: Any) -> Any:
    return serializers.DateTimeField().to_representation(value) if value else None


def _shown(credential: Credential) -> dict[str, Any]:
    """What the API must answer for `credential`: exactly these keys and values."""
    credential.refresh_from_db()
    return {
        "id": credential.pk,
        "customer": credential.customer_id,
        "customer_name": credential.customer.name,
        "name": credential.name,
        "username": credential.username,
        "auth": credential.auth,
        "servers": [{"id": s.pk, "name": s.name} for s in credential.servers.order_by("id")],
        "created_at": _when(credential.created_at),
        "secret_changed_at": _when(credential.secret_changed_at),
    }


def test_an_msp_admin_stores_a_credential_encrypted_and_no_answer_holds_it(alice, tenant_a) -> None:
    api, _ = _token(alice)
    body = {
        "customer": tenant_a.customer.pk,
        "name": "psa-winrm",
        "username": "CONTOSO\\svc-fleet",
        "auth": "ntlm",
        "secret": SECRET,
    }
    answers = [_post(api, "/api/v1/credentials/", body)]
    assert answers[0].status_code == 201, answers[0].content
    credential = Credential.objects.get(name="psa-winrm")
    ciphertexts = [_stored_ciphertext(credential.pk)]
    assert SECRET not in ciphertexts[0]
    assert ciphertexts[0].startswith("gAAAAA")
    assert decrypt_secret(ciphertexts[0]) == SECRET
    assert answers[0].json() == _shown(credential)
    assert answers[0].json()["servers"] == []

    answers.append(api.get("/api/v1/credentials/"))
    assert answers[-1].status_code == 200
    assert answers[-1].json()["results"] == [_shown(c) for c in Credential.objects.order_by("id")]
    answers.append(api.get(f"/api/v1/credentials/{tenant_a.credential.pk}/"))
    assert answers[-1].json() == _shown(tenant_a.credential)
    assert answers[-1].json()["servers"] == [{"id": tenant_a.server.pk, "name": "mx-a-01"}]

    # a new name only: the stored password stays, byte for byte
    rename = {"name": "psa-winrm-2", "username": "CONTOSO\\svc-fleet", "auth": "ntlm"}
    answers.append(_put(api, f"/api/v1/credentials/{credential.pk}/", rename))
    assert answers[-1].status_code == 200, answers[-1].content
    assert _stored_ciphertext(credential.pk) == ciphertexts[0]
    assert answers[-1].json() == {**_shown(credential), "name": "psa-winrm-2"}

    # a new password: replaced, encrypted, its spaces kept
    answers.append(_put(api, f"/api/v1/credentials/{credential.pk}/", {**rename, "secret": NEW_SECRET}))
    assert answers[-1].status_code == 200, answers[-1].content
    ciphertexts.append(_stored_ciphertext(credential.pk))
    assert ciphertexts[1] != ciphertexts[0]
    assert decrypt_secret(ciphertexts[1]) == NEW_SECRET
    assert answers[-1].json() == _shown(credential)
    answers.append(api.get(f"/api/v1/credentials/{credential.pk}/"))

    for answer in answers:
        text = answer.content.decode()
        for secret in (SECRET, NEW_SECRET.strip(), *ciphertexts):
            assert secret not in text
        assert not _keys(answer.json()) & {"secret", "secret_encrypted", "password"}


def test_the_audit_trail_records_each_api_action_and_never_the_password(alice, tenant_a) -> None:
    api, prefix = _token(alice)
    created = _post(
        api,
        "/api/v1/credentials/",
        {"customer": tenant_a.customer.pk, "name": "psa-winrm", "username": "svc-fleet", "secret": SECRET},
    ).json()
    _put(
        api,
        f"/api/v1/credentials/{created['id']}/",
        {"name": "psa-winrm", "username": "svc-fleet2", "auth": "ntlm", "secret": NEW_SECRET},
    )
    assert api.delete(f"/api/v1/credentials/{created['id']}/").status_code == 204
    assert not Credential.objects.filter(pk=created["id"]).exists()
    events = AuditEvent.objects.filter(action__startswith="credential.").order_by("id")
    rows = [(e.action, e.actor_name, e.object_id, e.object_repr, e.customer_name, e.changes) for e in events]
    actor = f"alice (API token 'psa', {prefix})"
    assert rows == [
        (
            "credential.create",
            actor,
            str(created["id"]),
            "psa-winrm (svc-fleet)",
            "Tenant A Ltd",
            {
                "auth": [None, "ntlm"],
                "customer": [None, "Tenant A Ltd"],
                "name": [None, "psa-winrm"],
                "username": [None, "svc-fleet"],
                "secret": REDACTED,
            },
        ),
        (
            "credential.update",
            actor,
            str(created["id"]),
            "psa-winrm (svc-fleet2)",
            "Tenant A Ltd",
            {"secret": REDACTED, "username": ["svc-fleet", "svc-fleet2"]},
        ),
        (
            "credential.delete",
            actor,
            str(created["id"]),
            "psa-winrm (svc-fleet2)",
            "Tenant A Ltd",
            {
                "auth": ["ntlm", None],
                "customer": ["Tenant A Ltd", None],
                "name": ["psa-winrm", None],
                "username": ["svc-fleet2", None],
            },
        ),
    ]
    assert all(event.source_ip == "127.0.0.1" for event in events)
    everything = json.dumps([list(AuditEvent.objects.values())], default=str)
    assert SECRET not in everything
    assert NEW_SECRET.strip() not in everything


REFUSED_TOKENS = [
    ("msp_operator", {}),
    ("msp_viewer", {}),
    ("customer_operator", {}),
    ("customer_viewer", {}),
    ("msp_admin", {"read_only": True}),
    ("msp_admin", {"customer": "A"}),
]


def _credential_state() -> list[tuple[Any, ...]]:
    return list(Credential.objects.order_by("id").values_list("id", "name", "username", "auth", "secret_encrypted"))


def _server_state() -> list[tuple[Any, ...]]:
    return list(Server.objects.order_by("id").values_list("id", "credential_id", "credential_binding"))


@pytest.mark.parametrize(("role", "narrowing"), REFUSED_TOKENS, ids=[f"{r}-{sorted(n)}" for r, n in REFUSED_TOKENS])
def test_every_other_role_and_token_is_refused_and_nothing_is_written(
    make_role_user, tenant_a, tenant_b, role: str, narrowing: dict[str, Any]
) -> None:
    user = make_role_user(role)
    options = {**narrowing, **({"customer": tenant_a.customer} if "customer" in narrowing else {})}
    api, _ = _token(user, **options)
    spare = CredentialFactory(customer=tenant_a.customer, name="spare-a")
    credentials, servers, audited = _credential_state(), _server_state(), AuditEvent.objects.count()
    sees_b = scope_for_user(user).is_msp and "customer" not in narrowing
    a, b = tenant_a.credential.pk, tenant_b.credential.pk
    update = {"name": "taken-over", "username": "attacker", "auth": "ntlm", "secret": "attacker-Pa55!"}
    create = {**update, "customer": tenant_a.customer.pk}
    answers = {
        "list": api.get("/api/v1/credentials/"),
        "create": _post(api, "/api/v1/credentials/", create),
        "create for B": _post(api, "/api/v1/credentials/", {**create, "customer": tenant_b.customer.pk}),
        "get A": api.get(f"/api/v1/credentials/{a}/"),
        "put A": _put(api, f"/api/v1/credentials/{a}/", update),
        "delete spare A": api.delete(f"/api/v1/credentials/{spare.pk}/"),
        "bind A": _put(api, f"/api/v1/servers/{tenant_a.server.pk}/credential/", {"credential": spare.pk}),
        "unbind A": _put(api, f"/api/v1/servers/{tenant_a.server.pk}/credential/", {"credential": None}),
        "get B": api.get(f"/api/v1/credentials/{b}/"),
        "put B": _put(api, f"/api/v1/credentials/{b}/", update),
        "delete B": api.delete(f"/api/v1/credentials/{b}/"),
    }
    statuses = {what: answer.status_code for what, answer in answers.items()}
    b_status = 403 if sees_b else 404  # another customer's credential does not exist for a customer's token
    assert statuses == {
        **dict.fromkeys(list(answers)[:8], 403),
        "get B": b_status,
        "put B": b_status,
        "delete B": b_status,
    }
    assert answers["list"].json() == {"detail": "your role does not allow: manage_credentials"}
    assert _credential_state() == credentials
    assert _server_state() == servers
    assert AuditEvent.objects.count() == audited
    for answer in answers.values():
        assert "secretname" not in answer.content.decode()  # no credential's name (cred-a-secretname)


def test_the_forms_checks_apply_and_a_refusal_never_echoes_the_password(alice, tenant_a) -> None:
    api, _ = _token(alice)
    good = {"customer": tenant_a.customer.pk, "name": "psa", "username": "svc", "auth": "ntlm", "secret": SECRET}
    refused = {
        "bad username": (_post(api, "/api/v1/credentials/", {**good, "username": "a/b"}), 400),
        "taken name": (_post(api, "/api/v1/credentials/", {**good, "name": tenant_a.credential.name}), 400),
        "no password": (_post(api, "/api/v1/credentials/", {**good, "secret": ""}), 400),
        "no customer": (_post(api, "/api/v1/credentials/", {**good, "customer": 10**9}), 404),
        "unknown auth": (_post(api, "/api/v1/credentials/", {**good, "auth": SECRET}), 400),
        "too long": (_post(api, "/api/v1/credentials/", {**good, "username": "u" * 300}), 400),
    }
    assert {what: answer.json() for what, (answer, _) in refused.items()} == {
        "bad username": {"username": "Enter an account as NAME, HOST\\NAME, DOMAIN\\NAME or name@domain."},
        "taken name": {"detail": "Credential with this Customer and Name already exists."},
        "no password": {"secret": "This field may not be blank."},
        "no customer": {"detail": "Not found."},
        "unknown auth": {"auth": f'"{SECRET}" is not a valid choice.'},
        "too long": {"username": "Ensure this field has no more than 256 characters."},
    }
    assert {what: answer.status_code for what, (answer, _) in refused.items()} == {
        what: code for what, (_, code) in refused.items()
    }
    for what, (answer, _) in refused.items():
        if what != "unknown auth":  # a choice names the value it refused: the caller put it there
            assert SECRET not in answer.content.decode()
    assert not Credential.objects.filter(name="psa").exists()


def test_basic_authentication_is_refused_while_a_server_uses_the_credential_without_verified_https(
    alice, tenant_a
) -> None:
    api, _ = _token(alice)
    Server.objects.filter(pk=tenant_a.server.pk).update(winrm_scheme=WinRMScheme.HTTP, winrm_port=5985)
    answer = _put(
        api,
        f"/api/v1/credentials/{tenant_a.credential.pk}/",
        {"name": tenant_a.credential.name, "username": "Administrator", "auth": "basic"},
    )
    assert answer.status_code == 400
    assert answer.json() == {
        "auth": "Basic authentication sends the password itself; it is allowed only over HTTPS with certificate "
        "verification on, and these servers use this credential without it: mx-a-01"
    }
    tenant_a.credential.refresh_from_db()
    assert tenant_a.credential.auth == AuthMethod.NTLM


def test_a_credential_servers_use_is_not_deleted(alice, tenant_a) -> None:
    api, _ = _token(alice)
    audited = AuditEvent.objects.count()
    answer = api.delete(f"/api/v1/credentials/{tenant_a.credential.pk}/")
    assert answer.status_code == 400
    assert answer.json() == {"detail": "Credential cred-a-secretname is used by servers; assign them another first."}
    assert Credential.objects.filter(pk=tenant_a.credential.pk).exists()
    assert AuditEvent.objects.count() == audited  # the service's audit row went with its transaction


def test_an_msp_admin_binds_and_unbinds_a_server_credential(alice, tenant_a, tenant_b) -> None:
    api, prefix = _token(alice)
    spare = CredentialFactory(customer=tenant_a.customer, name="spare-a")
    url = f"/api/v1/servers/{tenant_a.server.pk}/credential/"
    answer = _put(api, url, {"credential": spare.pk})
    assert answer.status_code == 200, answer.content
    assert answer.json()["credential"] == spare.pk
    server = Server.objects.get(pk=tenant_a.server.pk)
    assert server.credential_id == spare.pk
    assert is_bound(server)
    bind = AuditEvent.objects.filter(action="server.credential_bind").get()
    assert (bind.actor_name, bind.object_repr, bind.changes) == (
        f"alice (API token 'psa', {prefix})",
        "mx-a-01",
        {
            "credential": ["spare-a (Administrator)", "spare-a (Administrator)"],
            "endpoint": "https://mx.a.example:5986/wsman",
        },
    )
    update = AuditEvent.objects.filter(action="server.update").get()
    assert update.changes == {"credential": ["cred-a-secretname (Administrator)", "spare-a (Administrator)"]}

    # another customer's credential, and a Basic one over plain HTTP: the Edit server form's refusals
    other = _put(api, url, {"credential": tenant_b.credential.pk})
    assert (other.status_code, other.json()) == (400, {"credential": "Choose a credential of the same customer."})
    basic = CredentialFactory(customer=tenant_a.customer, name="basic-a", auth=AuthMethod.BASIC)
    plain = ServerFactory(customer=tenant_a.customer, name="mx-a-plain", winrm_scheme=WinRMScheme.HTTP, credential=None)
    refused = _put(api, f"/api/v1/servers/{plain.pk}/credential/", {"credential": basic.pk})
    assert (refused.status_code, refused.json()) == (
        400,
        {"credential": "Basic authentication is allowed only over HTTPS with certificate verification on."},
    )
    assert _put(api, url, {"credential": 10**9}).status_code == 404

    answer = _put(api, url, {"credential": None})
    assert (answer.status_code, answer.json()["credential"]) == (200, None)
    server.refresh_from_db()
    assert (server.credential_id, server.credential_binding) == (None, "")
    unbind = AuditEvent.objects.filter(action="server.credential_unbind").get()
    assert unbind.changes == {
        "credential": ["spare-a (Administrator)", None],
        "endpoint": "https://mx.a.example:5986/wsman",
    }
