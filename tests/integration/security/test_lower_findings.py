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


# --- sensitive fields marked so; the demo says loudly it is a demo -----------------------------


def test_every_page_outside_production_says_it_is_a_demo(client, settings, alice):
    settings.PRODUCTION = False
    page = client.get(reverse("login")).content.decode()
    assert "Demo / development instance — not for real customers." in page
    client.force_login(alice)
    assert "not for real customers" in client.get(reverse("dashboard")).content.decode()
    settings.PRODUCTION = True
    assert "not for real customers" not in client.get(reverse("dashboard")).content.decode()


@pytest.mark.parametrize(
    ("url_name", "fields"),
    [
        ("credential_create", {"secret"}),
        ("password_change", {"old_password", "new_password1", "new_password2"}),
        ("two_factor_verify", {"token"}),
    ],
)
def test_views_that_receive_secrets_keep_them_out_of_error_reports(client, alice, url_name, fields, monkeypatch):
    # Django's error reports (mail to ADMINS, the debug page) print POST data unless the view marks
    # its sensitive parameters; capture what the view's request carries.
    from django.views.debug import SafeExceptionReporterFilter

    seen: list[object] = []
    original = SafeExceptionReporterFilter.get_post_parameters

    def spy(self, request):
        seen.append(getattr(request, "sensitive_post_parameters", None))
        return original(self, request)

    from servers import auth_views, views

    view_module = views if url_name == "credential_create" else auth_views
    real_render = view_module.render

    def render(request, *args, **kwargs):
        SafeExceptionReporterFilter().get_post_parameters(request)
        return real_render(request, *args, **kwargs)

    monkeypatch.setattr(SafeExceptionReporterFilter, "get_post_parameters", spy)
    monkeypatch.setattr(view_module, "render", render)
    client.force_login(alice)
    if url_name == "two_factor_verify":
        from django_otp.plugins.otp_totp.models import TOTPDevice

        TOTPDevice.objects.create(user=alice, name="phone", confirmed=True)
    client.post(reverse(url_name), dict.fromkeys(fields, "x"))
    assert seen, "the view rendered nothing"
    assert set(seen[-1]) == fields
