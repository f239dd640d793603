"""`make demo`'s set-up: two MSP admins (so a waiver can be approved), and credentials printed last."""

from __future__ import annotations

import pytest

from config import demo
from servers.choices import Role
from servers.models import Membership

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_migrate(monkeypatch):
    monkeypatch.setattr("django.core.management.call_command", lambda *args, **kwargs: None)


def test_the_demo_creates_two_msp_admins_once(no_migrate) -> None:
    first = demo._prepare()
    assert [name for name, _ in first] == ["admin", "approver"]
    assert all(password and len(password) >= 20 for _, password in first)
    assert first[0][1] != first[1][1]
    roles = set(Membership.objects.filter(user__username__in=demo.DEMO_ADMINS).values_list("customer", "role"))
    assert roles == {(None, Role.ADMIN.value)}  # type: ignore[comparison-overlap]
    assert Membership.objects.filter(role=Role.ADMIN, customer=None).count() == 2

    again = demo._prepare()
    assert again == [("admin", None), ("approver", None)]


def test_one_demo_admin_can_approve_what_the_other_proposed(no_migrate, tenant_a) -> None:
    from django.contrib.auth import get_user_model

    from lockdown import services

    demo._prepare()
    admin, approver = (get_user_model().objects.get(username=name) for name in demo.DEMO_ADMINS)
    waiver = tenant_a.waiver
    waiver.proposed_by = admin
    waiver.save(update_fields=["proposed_by"])
    assert services.approval_refusal(user_id=admin.pk, waiver=waiver)
    assert services.approval_refusal(user_id=approver.pk, waiver=waiver) is None


def test_the_banner_shows_the_url_and_new_passwords_and_says_where_the_logs_are() -> None:
    text = demo.banner("http://127.0.0.1:8000/", [("admin", "s3cret-one"), ("approver", None)], demo.LOG_DIR)
    lines = text.splitlines()
    assert "http://127.0.0.1:8000/" in text
    assert any("admin" in line and "s3cret-one" in line for line in lines)
    assert any("approver" in line and "changepassword approver" in line for line in lines)
    assert "var/log/" in text
