"""Waivers: proposed, approved by another MSP admin, in force until expiry or revocation; scoped by customer."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.urls import reverse

from lockdown import clock, selectors, services
from lockdown.choices import WaiverStatus
from lockdown.models import Waiver
from lockdown.rules.vocabulary import WaiverScope
from servers.audit import Actor
from servers.models import AuditEvent
from servers.tenancy import scope_for_user
from tests.factories import TENANT_RULE_ID, MembershipFactory, UserFactory, WaiverFactory

pytestmark = pytest.mark.django_db

EXPIRY_FORMAT = "%Y-%m-%dT%H:%M"


def _propose_form(
    rule_id: str = TENANT_RULE_ID, days: int = 30, justification: str = "Vendor needs it until v11."
) -> dict[str, str]:
    return {
        "rule_id": rule_id,
        "justification": justification,
        "expires_at": (clock.now() + timedelta(days=days)).strftime(EXPIRY_FORMAT),
    }


def _propose(client, user, server, **kwargs) -> Waiver:
    client.force_login(user)
    response = client.post(reverse("server_waiver_propose", kwargs={"server_id": server.pk}), _propose_form(**kwargs))
    assert response.status_code == 302, response.context["form"].errors if response.context else response
    return Waiver.objects.latest("id")


def test_lifecycle_propose_approve_expire(client, frozen_clock, carol, alice, tenant_a) -> None:
    server = tenant_a.server
    tenant_a.waiver.delete()
    waiver = _propose(client, carol, server)
    assert waiver.proposed_by == carol
    assert waiver.status_at(clock.now()) == WaiverStatus.PENDING
    assert selectors.active_waivers_for(server, clock.now()) == []

    client.force_login(alice)
    assert client.post(reverse("waiver_approve", kwargs={"waiver_id": waiver.pk})).status_code == 302
    waiver.refresh_from_db()
    assert waiver.approved_by == alice
    assert waiver.approved_at == frozen_clock
    [active] = selectors.active_waivers_for(server, clock.now())
    assert (active.rule_id, active.scope, active.justification) == (
        TENANT_RULE_ID,
        WaiverScope.SERVER,
        waiver.justification,
    )
    assert active.expires_at == waiver.expires_at

    clock.set_now(waiver.expires_at - timedelta(seconds=1))
    assert len(selectors.active_waivers_for(server, clock.now())) == 1
    clock.set_now(waiver.expires_at)
    assert selectors.active_waivers_for(server, clock.now()) == []
    assert waiver.status_at(clock.now()) == WaiverStatus.EXPIRED
    actions = list(
        AuditEvent.objects.filter(object_type="lockdown.waiver").order_by("id").values_list("action", "actor_name")
    )
    assert actions == [("waiver.propose", "carol"), ("waiver.approve", "alice")]
    assert AuditEvent.objects.filter(action="waiver.propose", customer=tenant_a.customer).exists()


def test_an_expired_pending_waiver_cannot_be_approved(frozen_clock, alice, tenant_a) -> None:
    clock.set_now(tenant_a.waiver.expires_at + timedelta(days=1))
    with pytest.raises(services.WaiverError, match="expired"):
        services.waiver_approve(scope=scope_for_user(alice), actor=Actor(user=alice), waiver=tenant_a.waiver)


def test_a_proposer_cannot_approve_their_own_waiver(client, frozen_clock, alice, tenant_a) -> None:
    waiver = _propose(client, alice, tenant_a.server)
    response = client.post(reverse("waiver_approve", kwargs={"waiver_id": waiver.pk}))
    assert response.status_code == 400
    assert "cannot approve their own" in response.content.decode()
    waiver.refresh_from_db()
    assert waiver.approved_at is None
    assert not AuditEvent.objects.filter(action="waiver.approve").exists()


def test_the_approve_button_is_shown_only_to_an_admin_the_service_lets_approve(
    client, frozen_clock, alice, tenant_a
) -> None:
    from servers.choices import Role
    from tests.factories import MembershipFactory, UserFactory

    waiver = _propose(client, alice, tenant_a.server)
    approve_url = reverse("waiver_approve", kwargs={"waiver_id": waiver.pk})
    detail_url = reverse("waiver_detail", kwargs={"waiver_id": waiver.pk})
    page = client.get(detail_url).content.decode()
    assert approve_url not in page  # alice proposed it
    assert "Waiting for approval: A proposer cannot approve their own waiver" in page

    bob = UserFactory(username="bob-admin")
    MembershipFactory(user=bob, customer=None, role=Role.ADMIN)
    client.force_login(bob)
    page = client.get(detail_url).content.decode()
    assert approve_url in page
    assert "Waiting for approval" not in page


@pytest.mark.parametrize("role", ["msp_operator", "customer_operator"])
def test_only_msp_admins_approve(make_role_user, frozen_clock, tenant_a, role: str) -> None:
    user = make_role_user(role)
    with pytest.raises(PermissionDenied):
        services.waiver_approve(scope=scope_for_user(user), actor=Actor(user=user), waiver=tenant_a.waiver)


def test_revoked_waiver_stops_applying_and_is_audited(client, frozen_clock, alice, carol, tenant_a) -> None:
    waiver = tenant_a.waiver
    services.waiver_approve(scope=scope_for_user(alice), actor=Actor(user=alice), waiver=waiver)
    assert len(selectors.active_waivers_for(tenant_a.server, clock.now())) == 1
    client.force_login(carol)
    assert client.post(reverse("waiver_revoke", kwargs={"waiver_id": waiver.pk})).status_code == 302
    waiver.refresh_from_db()
    assert (waiver.revoked_by, waiver.revoked_at) == (carol, frozen_clock)
    assert selectors.active_waivers_for(tenant_a.server, clock.now()) == []
    assert AuditEvent.objects.filter(action="waiver.revoke", actor=carol).exists()
    assert client.post(reverse("waiver_revoke", kwargs={"waiver_id": waiver.pk})).status_code == 400


def test_customer_waiver_covers_its_servers_only(client, frozen_clock, alice, tenant_a, tenant_b) -> None:
    client.force_login(UserFactory(username="approver-2"))
    oscar_like = tenant_a.waiver.proposed_by
    waiver = services.waiver_propose(
        scope=scope_for_user(alice),
        actor=Actor(user=alice),
        rule_id=TENANT_RULE_ID,
        justification="Customer-wide exception agreed.",
        expires_at=clock.now() + timedelta(days=10),
        allowed_rule_ids=selectors.rule_ids_for_customer(tenant_a.customer),
        customer=tenant_a.customer,
    )
    assert oscar_like != alice
    waiver.approved_by, waiver.approved_at = oscar_like, clock.now()
    waiver.save()
    [active] = selectors.active_waivers_for(tenant_a.server, clock.now())
    assert active.scope == WaiverScope.CUSTOMER
    assert selectors.active_waivers_for(tenant_b.server, clock.now()) == []


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        (
            {"rule_id": "user_right.not_in_profile"},
            "rule_id",
            "No rule 'user_right.not_in_profile' in the effective profile",
        ),
        ({"justification": "too short"}, "justification", "at least 10"),
        ({"days": -1}, "expires_at", "in the future"),
        ({"days": 400}, "expires_at", "at most 365 days"),
    ],
)
def test_bad_proposals_are_refused_with_precise_errors(
    client, frozen_clock, carol, tenant_a, form, field, message
) -> None:
    client.force_login(carol)
    count = Waiver.objects.count()
    data = _propose_form(**form)
    response = client.post(reverse("server_waiver_propose", kwargs={"server_id": tenant_a.server.pk}), data)
    assert response.status_code == 400
    assert any(message in error for error in response.context["form"].errors[field])
    assert Waiver.objects.count() == count


def test_rule_ids_follow_the_effective_version(client, frozen_clock, carol, tenant_a) -> None:
    # The builtin's rule ids are not in tenant A's default profile; after unassigning, they are.
    client.force_login(carol)
    url = reverse("server_waiver_propose", kwargs={"server_id": tenant_a.server.pk})
    assert client.post(url, _propose_form(rule_id="user_right.se_tcb_privilege")).status_code == 400
    tenant_a.customer.default_profile_version = None
    tenant_a.customer.save()
    assert client.post(url, _propose_form(rule_id="user_right.se_tcb_privilege")).status_code == 302


def test_viewers_cannot_propose(client, frozen_clock, cora, tenant_a) -> None:
    client.force_login(cora)
    response = client.post(reverse("server_waiver_propose", kwargs={"server_id": tenant_a.server.pk}), _propose_form())
    assert response.status_code == 403


def test_customer_users_see_only_their_customers_waivers(client, frozen_clock, cora, tenant_a, tenant_b) -> None:
    client.force_login(cora)
    page = client.get(reverse("waiver_list"))
    assert [waiver for waiver, _status in page.context["rows"]] == [tenant_a.waiver]
    assert tenant_b.server.name not in page.content.decode()
    assert client.get(reverse("waiver_detail", kwargs={"waiver_id": tenant_b.waiver.pk})).status_code == 404
    assert client.post(reverse("waiver_revoke", kwargs={"waiver_id": tenant_b.waiver.pk})).status_code == 404
    customer_b_waiver = WaiverFactory(customer=tenant_b.customer)
    assert client.get(reverse("waiver_detail", kwargs={"waiver_id": customer_b_waiver.pk})).status_code == 404


def test_a_waiver_is_for_exactly_one_server_or_customer(tenant_a) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        WaiverFactory(server=tenant_a.server, customer=tenant_a.customer)
    with pytest.raises(IntegrityError), transaction.atomic():
        WaiverFactory(server=None, customer=None)


@pytest.mark.parametrize("how", ["create", "password_reset"])
def test_an_account_the_proposer_made_or_reset_cannot_approve_the_waiver(
    client, frozen_clock, alice, tenant_a, how
) -> None:
    # the audit's finding: an MSP admin creates a second admin account and approves their own waiver
    from servers.choices import Role
    from servers.users_services import user_create, user_reset_password

    waiver = _propose(client, alice, tenant_a.server)
    if how == "create":
        sock, _password = user_create(
            scope=scope_for_user(alice), actor=Actor(user=alice), username="alice2", email="a2@example.net",
            first_name="", last_name="", customer=None, role=Role.ADMIN,
        )  # fmt: skip
    else:
        sock = UserFactory(username="adam")
        MembershipFactory(user=sock, customer=None, role=Role.ADMIN)
        user_reset_password(scope=scope_for_user(alice), actor=Actor(user=alice), user=sock)
    with pytest.raises(services.WaiverError, match="created or reset by the waiver's proposer"):
        services.waiver_approve(scope=scope_for_user(sock), actor=Actor(user=sock), waiver=waiver)
    waiver.refresh_from_db()
    assert waiver.approved_at is None
    # an admin the proposer had nothing to do with still may
    other = UserFactory(username="olga")
    MembershipFactory(user=other, customer=None, role=Role.ADMIN)
    services.waiver_approve(scope=scope_for_user(other), actor=Actor(user=other), waiver=waiver)
    waiver.refresh_from_db()
    assert waiver.approved_by_id == other.pk


def test_the_waiver_forms_example_rule_id_is_a_rule_of_the_builtin_profile():
    # issue 12: "the waiver form's own example rule id is invalid"
    import re

    from lockdown.forms import WaiverForm
    from lockdown.rules.builtin import load_builtin_profile

    example = re.search(r"e\.g\. (\S+)", str(WaiverForm.base_fields["rule_id"].help_text))
    assert example is not None
    assert example.group(1) in {rule.id for rule in load_builtin_profile().rules}


def test_the_rule_is_chosen_from_the_effective_profile_by_section(client, alice, tenant_a) -> None:
    from lockdown.selectors import effective_profile_version

    client.force_login(alice)
    page = client.get(reverse("server_waiver_propose", kwargs={"server_id": tenant_a.server.pk}))
    field = page.context["form"].fields["rule_id"]
    offered = {value for _section, options in field.choices[1:] for value, _label in options}
    version = effective_profile_version(tenant_a.server)
    assert version is not None
    assert offered == {rule["id"] for rule in version.rules}
    html = page.content.decode()
    assert '<select name="rule_id"' in html
    assert "<optgroup label=" in html
