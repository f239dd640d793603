"""Users and memberships pages: MSP admins only, passwords shown once and never kept in clear."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from servers.choices import Role
from servers.models import AuditEvent, Membership
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db
User = get_user_model()
PASSWORD_IN_PAGE = re.compile(r'data-testid="generated-password">([^<]+)</code>')


def _shown_password(response) -> str:
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    match = PASSWORD_IN_PAGE.search(response.content.decode())
    assert match, "the generated password is shown on the page"
    return match.group(1)


def _create_viewer(client, customer, username: str = "newviewer"):
    return client.post(
        reverse("user_create"),
        {
            "username": username,
            "email": f"{username}@example.net",
            "first_name": "New",
            "last_name": "Viewer",
            "customer": customer.pk,
            "role": Role.VIEWER,
        },
    )


def _assert_password_never_kept(password: str) -> None:
    assert all(password not in str(changes) for changes in AuditEvent.objects.values_list("changes", flat=True))
    assert not AuditEvent.objects.filter(object_repr__contains=password).exists()
    with connection.cursor() as cursor:
        cursor.execute("SELECT password FROM auth_user")
        hashes = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT session_data FROM django_session")
        sessions = [row[0] for row in cursor.fetchall()]
    assert all(password not in value for value in hashes + sessions)


def test_admin_creates_a_customer_viewer_who_logs_in_and_sees_only_that_customer(
    client, alice, tenant_a, tenant_b, caplog
):
    client.force_login(alice)
    password = _shown_password(_create_viewer(client, tenant_a.customer))
    assert len(password) >= 20

    viewer = User.objects.get(username="newviewer")
    assert viewer.is_active
    assert not viewer.is_superuser
    assert not viewer.is_staff
    assert list(Membership.objects.filter(user=viewer).values_list("customer_id", "role")) == [
        (tenant_a.customer.pk, Role.VIEWER)
    ]
    assert viewer.password != password
    assert viewer.check_password(password)
    _assert_password_never_kept(password)
    assert password not in caplog.text
    event = AuditEvent.objects.get(action="user.create")
    assert event.customer_id == tenant_a.customer.pk
    assert event.changes["membership"] == [None, f"viewer of {tenant_a.customer.name}"]

    # The password is not shown again anywhere.
    for url in (reverse("user_list"), reverse("user_detail", args=[viewer.pk])):
        assert password not in client.get(url).content.decode()

    # The new user logs in through the login form with the shown password.
    client.post(reverse("logout"))
    response = client.post(reverse("login"), {"username": "newviewer", "password": password})
    assert response.status_code == 302, response.content.decode()[:500]
    # ... and must choose a password of their own before anything else
    assert client.get(reverse("server_list"))["Location"] == reverse("password_change")
    own = {"old_password": password, "new_password1": "Viewer-Own-Pass-2026", "new_password2": "Viewer-Own-Pass-2026"}
    assert client.post(reverse("password_change"), own).status_code == 302
    page = client.get(reverse("server_list")).content.decode()
    assert tenant_a.server.name in page
    assert tenant_b.server.name not in page
    assert client.get(reverse("server_detail", args=[tenant_b.server.pk])).status_code == 404
    assert client.get(reverse("user_list")).status_code == 403


def test_list_shows_users_memberships_and_two_factor(client, alice, cora, tenant_a):
    TOTPDevice.objects.create(user=alice, name="phone", confirmed=True)
    UserFactory(username="root-user", is_superuser=True, is_staff=True)
    client.force_login(alice)
    page = client.get(reverse("user_list")).content.decode()
    assert "MSP-wide admin" in page
    assert f"viewer of {tenant_a.customer.name}" in page
    assert "root-user" in page
    assert "superuser" in page
    users = {u.username: u for u in client.get(reverse("user_list")).context["users"]}
    assert users["alice"].has_2fa is True
    assert users["cora"].has_2fa is False


def test_password_reset_shows_a_new_password_once_and_audits_no_secret(client, alice, cora):
    client.force_login(alice)
    old_hash = cora.password
    password = _shown_password(client.post(reverse("user_password_reset", args=[cora.pk])))
    cora.refresh_from_db()
    assert cora.password != old_hash
    assert cora.check_password(password)
    _assert_password_never_kept(password)
    event = AuditEvent.objects.get(action="user.password_reset")
    assert event.changes == {"password": "[secret changed]"}


def test_reset_two_factor_deletes_the_devices(client, alice, make_role_user):
    oscar = make_role_user("msp_operator")
    TOTPDevice.objects.create(user=oscar, name="phone", confirmed=True)
    client.force_login(alice)
    assert client.post(reverse("user_2fa_reset", args=[oscar.pk])).status_code == 302
    assert not TOTPDevice.objects.filter(user=oscar).exists()
    assert AuditEvent.objects.filter(action="user.2fa_reset", object_id=str(oscar.pk)).exists()


def test_deactivate_and_reactivate(client, alice, cora):
    client.force_login(alice)
    client.post(reverse("user_deactivate", args=[cora.pk]))
    cora.refresh_from_db()
    assert not cora.is_active
    client.post(reverse("user_reactivate", args=[cora.pk]))
    cora.refresh_from_db()
    assert cora.is_active
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"user.deactivate", "user.reactivate"} <= actions


def test_admin_cannot_lock_themselves_out(client, alice):
    client.force_login(alice)
    response = client.post(reverse("user_deactivate", args=[alice.pk]), follow=True)
    assert "You cannot deactivate yourself" in response.content.decode()
    alice.refresh_from_db()
    assert alice.is_active

    own = Membership.objects.get(user=alice)
    response = client.post(reverse("user_membership_remove", args=[alice.pk, own.pk]), follow=True)
    assert "You cannot remove your own MSP admin membership" in response.content.decode()
    assert Membership.objects.filter(pk=own.pk, role=Role.ADMIN).exists()
    assert not AuditEvent.objects.filter(action__in=["user.deactivate", "membership.delete"]).exists()


def test_admin_may_remove_another_users_membership(client, alice, cora):
    client.force_login(alice)
    membership = Membership.objects.get(user=cora)
    assert client.post(reverse("user_membership_remove", args=[cora.pk, membership.pk])).status_code == 302
    assert not Membership.objects.filter(user=cora).exists()
    assert AuditEvent.objects.filter(action="membership.delete").exists()


def test_superusers_are_shown_but_not_changed(client, alice):
    root = UserFactory(username="root-user", is_superuser=True, is_staff=True)
    client.force_login(alice)
    assert client.get(reverse("user_detail", args=[root.pk])).status_code == 200
    response = client.post(reverse("user_deactivate", args=[root.pk]), follow=True)
    assert "Django admin" in response.content.decode()
    response = client.post(reverse("user_password_reset", args=[root.pk]), follow=True)
    assert 'data-testid="generated-password"' not in response.content.decode()
    root.refresh_from_db()
    assert root.is_active
    assert root.check_password("correct-horse-battery-staple-42")


@pytest.mark.parametrize("role", ["msp_operator", "msp_viewer", "customer_operator", "customer_viewer"])
def test_non_admins_get_403(client, make_role_user, tenant_a, role):
    user = make_role_user(role)
    member = MembershipFactory(user=UserFactory(username="member-a"), customer=tenant_a.customer)
    client.force_login(user)
    assert client.get(reverse("user_list")).status_code == 403
    assert client.get(reverse("user_create")).status_code == 403
    assert _create_viewer(client, tenant_a.customer).status_code == 403
    assert client.get(reverse("user_detail", args=[member.user_id])).status_code == 403
    assert client.post(reverse("user_deactivate", args=[member.user_id])).status_code == 403
    assert client.post(reverse("user_password_reset", args=[member.user_id])).status_code == 403
    assert not User.objects.filter(username="newviewer").exists()
    assert User.objects.get(pk=member.user_id).is_active


def test_second_msp_wide_membership_is_a_form_error(client, alice, make_role_user):
    oscar = make_role_user("msp_operator")
    client.force_login(alice)
    response = client.post(reverse("user_membership_add", args=[oscar.pk]), {"customer": "", "role": Role.ADMIN})
    assert response.status_code == 200
    assert "already has an MSP-wide membership" in str(response.context["form"].non_field_errors())
    assert list(Membership.objects.filter(user=oscar).values_list("role", flat=True)) == [Role.OPERATOR]


def test_customer_admin_role_is_a_form_error(client, alice, cora, tenant_b):
    client.force_login(alice)
    response = client.post(
        reverse("user_create"), {"username": "cust-admin", "customer": tenant_b.customer.pk, "role": Role.ADMIN}
    )
    assert response.status_code == 200
    assert "never admin" in str(response.context["form"].non_field_errors())
    assert not User.objects.filter(username="cust-admin").exists()

    response = client.post(
        reverse("user_membership_add", args=[cora.pk]), {"customer": tenant_b.customer.pk, "role": Role.ADMIN}
    )
    assert response.status_code == 200
    assert "never admin" in str(response.context["form"].non_field_errors())
    assert not Membership.objects.filter(user=cora, customer=tenant_b.customer).exists()


def test_duplicate_username_is_a_form_error(client, alice, cora, tenant_a):
    client.force_login(alice)
    response = _create_viewer(client, tenant_a.customer, username="CORA")
    assert response.status_code == 200
    assert "already exists" in str(response.context["form"].errors["username"])


def test_admin_adds_a_customer_membership(client, alice, cora, tenant_b):
    client.force_login(alice)
    response = client.post(
        reverse("user_membership_add", args=[cora.pk]), {"customer": tenant_b.customer.pk, "role": Role.OPERATOR}
    )
    assert response.status_code == 302
    assert Membership.objects.filter(user=cora, customer=tenant_b.customer, role=Role.OPERATOR).exists()
    event = AuditEvent.objects.get(action="membership.create")
    assert event.customer_id == tenant_b.customer.pk
