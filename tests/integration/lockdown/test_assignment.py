"""Assignment: a server's pin, else its customer's default, else the built-in's latest version."""

from __future__ import annotations

from typing import cast

import pytest
from django.urls import reverse

from lockdown import selectors
from lockdown.models import ProfileVersion
from servers.models import AuditEvent
from tests.factories import ProfileFactory, ProfileVersionFactory, sample_rule, stored_rules

pytestmark = pytest.mark.django_db


def test_effective_version_falls_back_from_server_to_customer_to_builtin(tenant_a) -> None:
    server, customer = tenant_a.server, tenant_a.customer
    builtin = selectors.latest_builtin_version()
    assert builtin is not None
    assert selectors.effective_profile_version(server) == customer.default_profile_version
    pinned = cast(ProfileVersion, ProfileVersionFactory(profile=ProfileFactory(slug="pinned")))
    server.profile_version = pinned
    server.save()
    assert selectors.effective_profile_version(server) == pinned
    server.profile_version = None
    server.save()
    customer.default_profile_version = None
    customer.save()
    server.refresh_from_db()
    assert selectors.effective_profile_version(server) == builtin


def test_the_builtin_fallback_is_its_latest_version(tenant_a) -> None:
    builtin = selectors.latest_builtin_version()
    assert builtin is not None
    newer = cast(
        ProfileVersion,
        ProfileVersionFactory(
            profile=builtin.profile, number=2, rules=stored_rules([sample_rule("user_right.only_one_rule")])
        ),
    )
    tenant_a.customer.default_profile_version = None
    tenant_a.customer.save()
    tenant_a.server.refresh_from_db()
    assert selectors.effective_profile_version(tenant_a.server) == newer


def test_admin_assigns_a_customer_default_and_it_is_audited(client, alice, tenant_a) -> None:
    builtin = selectors.latest_builtin_version()
    assert builtin is not None
    client.force_login(alice)
    url = reverse("customer_profile_assign", kwargs={"customer_id": tenant_a.customer.pk})
    response = client.post(url, {"version": builtin.pk})
    assert response.status_code == 302
    tenant_a.customer.refresh_from_db()
    assert tenant_a.customer.default_profile_version == builtin
    event = AuditEvent.objects.get(action="customer.assign_profile")
    assert event.actor == alice
    assert event.changes == {"default_profile_version": ["tenant-a-baseline v1", "mailenable-hardened v1"]}


def test_admin_pins_and_unpins_a_server_and_both_are_audited(client, alice, tenant_a) -> None:
    builtin = selectors.latest_builtin_version()
    assert builtin is not None
    client.force_login(alice)
    url = reverse("server_profile_assign", kwargs={"server_id": tenant_a.server.pk})
    assert client.post(url, {"version": builtin.pk}).status_code == 302
    tenant_a.server.refresh_from_db()
    assert tenant_a.server.profile_version == builtin
    assert client.post(url, {"version": ""}).status_code == 302
    tenant_a.server.refresh_from_db()
    assert tenant_a.server.profile_version is None
    changes = list(
        AuditEvent.objects.filter(action="server.assign_profile").order_by("id").values_list("changes", flat=True)
    )
    assert changes == [
        {"profile_version": [None, "mailenable-hardened v1"]},
        {"profile_version": ["mailenable-hardened v1", None]},
    ]


@pytest.mark.parametrize("role", ["msp_operator", "customer_operator"])
def test_only_msp_admins_assign(client, make_role_user, tenant_a, role: str) -> None:
    builtin = selectors.latest_builtin_version()
    assert builtin is not None
    client.force_login(make_role_user(role))
    url = reverse("server_profile_assign", kwargs={"server_id": tenant_a.server.pk})
    assert client.post(url, {"version": builtin.pk}).status_code == 403
    tenant_a.server.refresh_from_db()
    assert tenant_a.server.profile_version is None


def test_server_page_shows_the_effective_version(client, cora, tenant_a) -> None:
    client.force_login(cora)
    body = client.get(reverse("server_detail", kwargs={"server_id": tenant_a.server.pk})).content.decode()
    assert "Tenant A Ltd baseline version 1" in body
    assert "the customer's default" in body
