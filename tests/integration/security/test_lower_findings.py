"""The audit's lower findings, each shown closed (security-audit-2026-12, "Lower")."""

from __future__ import annotations

import logging

import pytest
import spnego
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from servers.crypto import RedactSecretsFilter

pytestmark = pytest.mark.django_db


def test_the_django_admin_shows_no_totp_seed_or_qr_code(client, alice):
    alice.is_staff = alice.is_superuser = True
    alice.save()
    device = TOTPDevice.objects.create(user=alice, name="phone", confirmed=True)
    client.force_login(alice)
    page = client.get(reverse("admin:otp_totp_totpdevice_change", args=[device.pk])).content.decode()
    assert "phone" in page  # the page itself is there
    assert device.key not in page
    assert "qrcode" not in page.lower()


def test_ntlm_tokens_never_reach_a_log_even_at_debug(caplog):
    caplog.set_level(logging.DEBUG)  # the root logger: FLEET_LOG_LEVEL=DEBUG
    context = spnego.client("user", "p4ssw0rd-x", hostname="mx.example", protocol="ntlm")
    token = context.step()
    assert token
    assert not [r for r in caplog.records if r.name.startswith("spnego")]  # not even emitted
    assert not [r for r in caplog.records if "TlRMTVNTUA" in r.getMessage()]


def test_the_log_filter_strips_authentication_tokens_that_reach_a_handler():
    record = logging.LogRecord(
        "urllib3",
        logging.WARNING,
        __file__,
        1,
        "sent %s",
        ("Authorization: Negotiate TlRMTVNTUAADAAAAGAAYAEgA=",),
        None,
    )
    RedactSecretsFilter().filter(record)
    assert record.getMessage() == "sent Authorization: Negotiate [REDACTED]"
    plain = logging.LogRecord("x", logging.INFO, __file__, 1, "Basic authentication is refused over http", (), None)
    RedactSecretsFilter().filter(plain)
    assert plain.getMessage() == "Basic authentication is refused over http"
