"""Logging in: throttling, two-factor for privileged roles, health, logout, admin access."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from servers.choices import Role
from tests.factories import TEST_PASSWORD, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_login_page_and_health_need_no_login(client):
    assert client.get(reverse("login")).status_code == 200
    response = client.get(reverse("health"))
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_correct_password_logs_in_and_lands_on_the_dashboard(client, alice):
    response = client.post(reverse("login"), {"username": "alice", "password": TEST_PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == reverse("dashboard")


def test_repeated_failures_lock_the_account_even_for_the_right_password(client, alice, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post(reverse("login"), {"username": "alice", "password": "wrong-password"})
    response = client.post(reverse("login"), {"username": "alice", "password": TEST_PASSWORD})
    assert response.status_code == 429
    assert b"Too many failed log-ins" in response.content
    assert "_auth_user_id" not in client.session


def test_guesses_from_many_addresses_still_lock_the_username(client, alice, settings):
    # the audit's finding: 50 guesses from 50 addresses never locked (the lockout was per username+address)
    for n in range(settings.AXES_FAILURE_LIMIT):
        client.post(reverse("login"), {"username": "alice", "password": "wrong"}, REMOTE_ADDR=f"198.51.100.{n + 1}")
    response = client.post(
        reverse("login"), {"username": "alice", "password": TEST_PASSWORD}, REMOTE_ADDR="198.51.100.200"
    )
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session


def test_logout_needs_post(client, alice):
    client.force_login(alice)
    assert client.get(reverse("logout")).status_code == 405
    assert client.post(reverse("logout")).status_code == 302
    assert client.get(reverse("server_list")).status_code == 302


def test_admin_site_is_for_superusers_only(client, alice):
    client.force_login(alice)  # MSP admin, but not a superuser
    alice.is_staff = True
    alice.save()
    assert client.get("/admin/").status_code == 302
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(root)
    page = client.get("/admin/servers/credential/")
    assert page.status_code == 200


def test_admin_never_offers_a_secret_field(client):
    from tests.factories import CredentialFactory

    credential = CredentialFactory(secret="Adm1n-Sup3r-S3cret!")
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(root)
    page = client.get(f"/admin/servers/credential/{credential.pk}/change/").content.decode()
    assert "secret_encrypted" not in page
    assert credential.secret_encrypted not in page
    assert "Adm1n-Sup3r-S3cret!" not in page


@pytest.mark.parametrize("role", [Role.ADMIN, Role.OPERATOR, Role.VIEWER])
def test_two_factor_is_enforced_for_every_msp_role(client, settings, role):
    settings.FLEET_REQUIRE_2FA = True
    user = UserFactory(username=f"u-{role}")
    MembershipFactory(user=user, customer=None, role=role)
    client.force_login(user)
    response = client.get(reverse("server_list"))
    assert response.status_code == 302
    assert response["Location"] == reverse("two_factor_setup")


def test_enrolling_a_totp_device_then_verifying_unlocks_the_pages(client, settings):
    settings.FLEET_REQUIRE_2FA = True
    settings.OTP_TOTP_THROTTLE_FACTOR = 0  # the wrong code below would otherwise delay the right one
    user = UserFactory(username="olga")
    MembershipFactory(user=user, customer=None, role=Role.OPERATOR)
    client.force_login(user)
    setup = client.get(reverse("two_factor_setup"))
    assert setup.status_code == 200
    device = TOTPDevice.objects.get(user=user)
    assert client.post(reverse("two_factor_setup"), {"token": "000000"}).status_code == 200
    token = f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"
    response = client.post(reverse("two_factor_setup"), {"token": token})
    assert response.status_code == 302
    assert client.get(reverse("server_list")).status_code == 200
    # A new session must present a code again.
    client.logout()
    client.force_login(user)
    assert client.get(reverse("server_list"))["Location"] == reverse("two_factor_verify")


def test_a_generated_password_must_be_replaced_at_the_first_log_in(client, alice):
    # the audit's finding: whoever read the generated password (the admin who made it) kept knowing it
    from servers.audit import Actor
    from servers.models import AccountSecurity, AuditEvent
    from servers.tenancy import scope_for_user
    from servers.users_services import user_create

    user, generated = user_create(
        scope=scope_for_user(alice), actor=Actor(user=alice), username="newbie", email="n@example.net",
        first_name="", last_name="", customer=None, role=Role.VIEWER,
    )  # fmt: skip
    assert client.post(reverse("login"), {"username": "newbie", "password": generated}).status_code == 302
    assert client.get(reverse("server_list"))["Location"] == reverse("password_change")
    assert client.get(reverse("dashboard"))["Location"] == reverse("password_change")
    page = client.get(reverse("password_change"))
    assert page.status_code == 200
    assert "set by an administrator" in page.content.decode()
    wrong = client.post(
        reverse("password_change"),
        {"old_password": "not-it", "new_password1": "Quiet-Harbour-2026!", "new_password2": "Quiet-Harbour-2026!"},
    )
    assert wrong.status_code == 200
    assert AccountSecurity.objects.get(user=user).must_change_password
    done = client.post(
        reverse("password_change"),
        {"old_password": generated, "new_password1": "Quiet-Harbour-2026!", "new_password2": "Quiet-Harbour-2026!"},
    )
    assert done.status_code == 302
    assert client.get(reverse("server_list")).status_code == 200  # still logged in, free to go on
    user.refresh_from_db()
    assert user.check_password("Quiet-Harbour-2026!")
    assert not user.check_password(generated)
    assert not AccountSecurity.objects.get(user=user).must_change_password
    assert AuditEvent.objects.filter(action="user.password_change", object_id=str(user.pk)).exists()


def test_anyone_may_change_their_own_password_without_being_forced(client, alice):
    client.force_login(alice)
    assert client.get(reverse("server_list")).status_code == 200
    assert "Change password" in client.get(reverse("dashboard")).content.decode()
    response = client.post(
        reverse("password_change"),
        {
            "old_password": TEST_PASSWORD,
            "new_password1": "Another-Long-Pass-77",
            "new_password2": "Another-Long-Pass-77",
        },
    )
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password("Another-Long-Pass-77")
