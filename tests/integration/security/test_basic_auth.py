"""Basic over unverified TLS (security-audit-2026-12, medium): Basic sends the password itself, so it
may go only to a host whose certificate was verified — refused in remote/ at connection time, on the
server form, and when a credential used by an unverified server is switched to Basic."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from remote.connection import AuthMethod, HostConnection, Scheme, TlsVerify
from remote.errors import InsecureConfiguration
from servers.audit import Actor
from servers.choices import TLSVerify
from servers.models import Credential, Server
from servers.services import credential_update
from servers.tenancy import Scope

pytestmark = pytest.mark.django_db


def _connection(scheme: Scheme, verify: TlsVerify, auth: AuthMethod) -> HostConnection:
    pin = "ab" * 32 if verify is TlsVerify.PINNED else None
    return HostConnection(
        address="mx.example", username="u", password="p4ssw0rd!", scheme=scheme, auth=auth, tls_verify=verify,
        pinned_sha256=pin,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("scheme", "verify", "refused"),
    [
        (Scheme.HTTP, TlsVerify.SYSTEM, True),
        (Scheme.HTTPS, TlsVerify.OFF, True),
        (Scheme.HTTPS, TlsVerify.SYSTEM, False),
        (Scheme.HTTPS, TlsVerify.PINNED, False),
    ],
)
def test_the_transport_refuses_basic_unless_the_certificate_is_verified(scheme, verify, refused):
    if refused:
        with pytest.raises(InsecureConfiguration, match="only over HTTPS with certificate verification on"):
            _connection(scheme, verify, AuthMethod.BASIC).validate()
    else:
        _connection(scheme, verify, AuthMethod.BASIC).validate()
    _connection(scheme, verify, AuthMethod.NTLM).validate()  # NTLM (message encryption) is not affected


def test_switching_a_credential_to_basic_is_refused_while_a_server_using_it_is_unverified(client, alice, tenant_a):
    Server.objects.filter(pk=tenant_a.server.pk).update(tls_verify=TLSVerify.OFF)
    credential = tenant_a.credential
    client.force_login(alice)
    response = client.post(
        reverse("credential_edit", args=[credential.pk]),
        {"name": credential.name, "username": credential.username, "auth": "basic", "secret": ""},
    )
    assert response.status_code == 200  # the form again, with the reason
    assert tenant_a.server.name in response.content.decode()
    assert Credential.objects.get(pk=credential.pk).auth == "ntlm"
    with pytest.raises(ValidationError, match=tenant_a.server.name):
        credential_update(
            scope=Scope(user_id=alice.pk, msp_role="admin"),
            actor=Actor.system("t"),
            credential=credential,
            data={"auth": "basic"},
        )
    # once every server using it verifies its certificate, Basic is accepted
    Server.objects.filter(pk=tenant_a.server.pk).update(tls_verify=TLSVerify.SYSTEM)
    credential_update(
        scope=Scope(user_id=alice.pk, msp_role="admin"), actor=Actor.system("t"), credential=credential,
        data={"auth": "basic"},
    )  # fmt: skip
    assert Credential.objects.get(pk=credential.pk).auth == "basic"
