"""Exceptions (issue 14): the waiver machinery with kind=exception, only ever for the integrated-authentication
rights (`exception.integrated_auth`), its CIS/STIG conflicts recorded at proposal; pages and API alike.

Alice and Adam are MSP admins, Oscar an MSP operator, Carol operates customer A. Customer C follows the
built-in profile (the one with the six rights); A's own profile has none of them.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.db import IntegrityError, transaction
from django.test import Client
from django.urls import reverse

from api.tokens import token_issue
from lockdown import clock, selectors, services
from lockdown.choices import WaiverKind
from lockdown.models import Waiver
from lockdown.rules.exceptions import EXCEPTION_KEY, ExceptionState
from servers.audit import Actor
from servers.choices import Role
from servers.models import AuditEvent
from servers.tenancy import scope_for_user
from tests.factories import CustomerFactory, MembershipFactory, ServerFactory, UserFactory, WaiverFactory

pytestmark = pytest.mark.django_db
EXPIRY_FORMAT = "%Y-%m-%dT%H:%M"
JUSTIFICATION = "The vendor documents these rights for integrated authentication (KB ME020184)."
CONFLICT_IDS = {"2.2.3", "2.2.4", "2.2.6", "2.2.8", "2.2.15", "2.2.37", "WN22-UR-000020", "WN22-UR-000060"}


@pytest.fixture
def builtin_server():
    return ServerFactory(customer=CustomerFactory(name="Customer C"), name="mx-c-01")


@pytest.fixture
def adam():
    user = UserFactory(username="adam")
    MembershipFactory(user=user, customer=None, role=Role.ADMIN)
    return user


def _form(kind: str = "exception", rule_id: str = EXCEPTION_KEY, days: int = 30) -> dict[str, str]:
    return {
        "kind": kind,
        "rule_id": rule_id,
        "justification": JUSTIFICATION,
        "expires_at": (clock.now() + timedelta(days=days)).strftime(EXPIRY_FORMAT),
    }


def _propose_url(server) -> str:
    return reverse("server_waiver_propose", kwargs={"server_id": server.pk})


def test_an_exception_proposed_on_the_page_records_the_conflicts_and_is_audited_as_one(
    client, frozen_clock, alice, builtin_server
) -> None:
    client.force_login(alice)
    form = client.get(_propose_url(builtin_server) + "?kind=exception")
    page = form.content.decode()
    assert 'id="exception-help"' in page
    assert "WN22-UR-000020" in page
    assert form.context["form"].initial == {"kind": "exception", "rule_id": EXCEPTION_KEY}
    assert client.post(_propose_url(builtin_server), _form()).status_code == 302
    exception = Waiver.objects.get(server=builtin_server)
    assert (exception.kind, exception.rule_id, exception.server) == ("exception", EXCEPTION_KEY, builtin_server)
    assert {c["id"] for c in exception.conflicts} == CONFLICT_IDS
    assert {c["framework"] for c in exception.conflicts} == {"cis", "stig"}
    event = AuditEvent.objects.get(action="exception.propose", actor=alice)
    assert "stig WN22-UR-000060" in event.changes["conflicts"]
    detail = client.get(reverse("waiver_detail", kwargs={"waiver_id": exception.pk})).content.decode()
    assert "Exception for <code>exception.integrated_auth</code>" in detail
    assert 'id="exception-conflicts"' in detail
    assert "Act as part of the operating system" in detail


@pytest.mark.parametrize(
    ("kind", "rule_id", "message"),
    [
        ("exception", "user_right.se_tcb_privilege", "An exception covers only the integrated-authentication rights"),
        ("exception", "file_deny.system32.cmd_exe", "An exception covers only the integrated-authentication rights"),
        ("waiver", EXCEPTION_KEY, "is not a rule to waive"),
    ],
)
def test_the_page_refuses_a_kind_that_does_not_fit_the_key(
    client, frozen_clock, alice, builtin_server, kind, rule_id, message
) -> None:
    client.force_login(alice)
    response = client.post(_propose_url(builtin_server), _form(kind=kind, rule_id=rule_id))
    assert response.status_code == 400
    assert any(message in error for error in response.context["form"].errors["rule_id"])
    assert not Waiver.objects.filter(server=builtin_server).exists()


@pytest.mark.parametrize(
    ("kind", "rule_id", "message"),
    [
        ("exception", "user_right.se_tcb_privilege", "an exception covers only the integrated-authentication rights"),
        ("waiver", EXCEPTION_KEY, "is not a rule to waive"),
    ],
)
def test_the_service_refuses_them_too(frozen_clock, alice, builtin_server, kind, rule_id, message) -> None:
    with pytest.raises(services.WaiverError, match=message):
        services.waiver_propose(
            scope=scope_for_user(alice), actor=Actor(user=alice), kind=WaiverKind(kind), rule_id=rule_id,
            justification=JUSTIFICATION, expires_at=clock.now() + timedelta(days=3),
            allowed_rule_ids=frozenset({rule_id}), server=builtin_server,
        )  # fmt: skip


def test_a_profile_without_the_rights_has_nothing_to_except(client, frozen_clock, alice, tenant_a) -> None:
    client.force_login(alice)
    response = client.post(_propose_url(tenant_a.server), _form())
    assert response.status_code == 400
    assert "exception.integrated_auth" in str(response.context["form"].errors["rule_id"])  # not offered
    with pytest.raises(services.WaiverError, match="no integrated-authentication rights"):
        services.waiver_propose(
            scope=scope_for_user(alice), actor=Actor(user=alice), kind=WaiverKind.EXCEPTION, rule_id=EXCEPTION_KEY,
            justification=JUSTIFICATION, expires_at=clock.now() + timedelta(days=3), allowed_rule_ids=frozenset(),
            server=tenant_a.server,
        )  # fmt: skip
    assert not Waiver.objects.filter(kind="exception").exists()


def test_the_database_refuses_a_mismatched_kind(tenant_a) -> None:
    with transaction.atomic(), pytest.raises(IntegrityError):
        WaiverFactory(server=tenant_a.server, kind="exception", rule_id="user_right.se_tcb_privilege")
    with transaction.atomic(), pytest.raises(IntegrityError):
        WaiverFactory(server=tenant_a.server, kind="waiver", rule_id=EXCEPTION_KEY)


def test_the_proposer_cannot_approve_it_on_the_page_and_another_admin_can(
    client, frozen_clock, alice, adam, builtin_server
) -> None:
    client.force_login(alice)
    client.post(_propose_url(builtin_server), _form())
    exception = Waiver.objects.get(server=builtin_server)
    approve = reverse("waiver_approve", kwargs={"waiver_id": exception.pk})
    assert approve not in client.get(reverse("waiver_detail", kwargs={"waiver_id": exception.pk})).content.decode()
    response = client.post(approve)
    assert response.status_code == 400
    assert "cannot approve their own" in response.content.decode()
    assert selectors.integrated_auth_exception_state(builtin_server, clock.now()) is ExceptionState.NONE

    client.force_login(adam)
    assert "against CIS Microsoft Windows Server 2022" in client.get(approve).content.decode()
    assert client.post(approve).status_code == 302
    assert selectors.integrated_auth_exception_state(builtin_server, clock.now()) is ExceptionState.ACTIVE
    assert selectors.active_waivers_for(builtin_server, clock.now()) == []  # it waives no rule
    assert AuditEvent.objects.filter(action="exception.approve", actor=adam).exists()
    clock.set_now(exception.expires_at)
    assert selectors.integrated_auth_exception_state(builtin_server, clock.now()) is ExceptionState.ENDED


def test_a_customer_exception_covers_its_servers_and_no_other_customers(
    frozen_clock, alice, adam, builtin_server, tenant_b
) -> None:
    exception = services.waiver_propose(
        scope=scope_for_user(alice), actor=Actor(user=alice), kind=WaiverKind.EXCEPTION, rule_id=EXCEPTION_KEY,
        justification=JUSTIFICATION, expires_at=clock.now() + timedelta(days=3), allowed_rule_ids=frozenset(),
        customer=builtin_server.customer,
    )  # fmt: skip
    services.waiver_approve(scope=scope_for_user(adam), actor=Actor(user=adam), waiver=exception)
    assert selectors.integrated_auth_exception_state(builtin_server, clock.now()) is ExceptionState.ACTIVE
    other = ServerFactory(customer=CustomerFactory(name="Customer D"), name="mx-d-01")
    assert selectors.integrated_auth_exception_state(other, clock.now()) is ExceptionState.NONE
    services.waiver_revoke(scope=scope_for_user(alice), actor=Actor(user=alice), waiver=exception)
    assert selectors.integrated_auth_exception_state(builtin_server, clock.now()) is ExceptionState.ENDED


def test_a_pending_exception_allows_nothing(frozen_clock, alice, builtin_server) -> None:
    services.waiver_propose(
        scope=scope_for_user(alice), actor=Actor(user=alice), kind=WaiverKind.EXCEPTION, rule_id=EXCEPTION_KEY,
        justification=JUSTIFICATION, expires_at=clock.now() + timedelta(days=3), allowed_rule_ids=frozenset(),
        server=builtin_server,
    )  # fmt: skip
    assert selectors.integrated_auth_exception_state(builtin_server, clock.now()) is ExceptionState.NONE


# --- The API ------------------------------------------------------------------------------------
def _api(user) -> Client:
    secret = token_issue(
        scope=scope_for_user(user), actor=Actor(user=user), name="psa", days=30, read_only=False, customer=None
    ).secret
    return Client(HTTP_AUTHORIZATION=f"Bearer {secret}")


def _post(api: Client, url: str, body: dict[str, Any]):
    return api.post(url, data=json.dumps(body), content_type="application/json")


def _proposal(server, **overrides: Any) -> dict[str, Any]:
    return {
        "server": server.pk,
        "kind": "exception",
        "rule_id": EXCEPTION_KEY,
        "justification": JUSTIFICATION,
        "expires_at": (clock.now() + timedelta(days=20)).isoformat(),
        **overrides,
    }


def test_the_api_proposes_lists_and_shows_an_exception_with_its_conflicts(
    frozen_clock, alice, adam, builtin_server
) -> None:
    response = _post(_api(alice), "/api/v1/waivers/", _proposal(builtin_server))
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["kind"], body["rule_id"], body["status"]) == ("exception", EXCEPTION_KEY, "pending")
    assert {c["id"] for c in body["conflicts"]} == CONFLICT_IDS
    listed = _api(adam).get(f"/api/v1/waivers/?kind=exception&server={builtin_server.pk}").json()["results"]
    assert [w["id"] for w in listed] == [body["id"]]
    assert _api(adam).get(f"/api/v1/waivers/?kind=waiver&server={builtin_server.pk}").json()["results"] == []
    kinds = {w["kind"] for w in _api(adam).get("/api/v1/waivers/?kind=waiver").json()["results"]}
    assert kinds == {"waiver"}  # the tenants' waivers, none of their exceptions
    assert _api(adam).get("/api/v1/waivers/?kind=other").status_code == 400
    refused = _post(_api(alice), f"/api/v1/waivers/{body['id']}/approve/", {})
    assert refused.status_code == 403
    assert "cannot approve their own" in refused.content.decode()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"rule_id": "user_right.se_tcb_privilege"}, "An exception covers only the integrated-authentication rights"),
        ({"kind": "waiver"}, "is not a rule to waive"),
    ],
)
def test_the_api_refuses_kind_exception_for_anything_but_the_key(
    frozen_clock, alice, builtin_server, overrides, message
) -> None:
    response = _post(_api(alice), "/api/v1/waivers/", _proposal(builtin_server, **overrides))
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Waiver.objects.filter(server=builtin_server).exists()


def test_the_dashboard_shows_an_exception_only_while_it_is_in_force(client, frozen_clock, alice, adam) -> None:
    server = ServerFactory(customer=CustomerFactory(name="Customer E"), name="mx-e-01")
    exception = services.waiver_propose(
        scope=scope_for_user(alice), actor=Actor(user=alice), kind=WaiverKind.EXCEPTION, rule_id=EXCEPTION_KEY,
        justification=JUSTIFICATION, expires_at=clock.now() + timedelta(days=3), allowed_rule_ids=frozenset(),
        server=server,
    )  # fmt: skip
    link = reverse("waiver_detail", kwargs={"waiver_id": exception.pk})
    client.force_login(adam)
    assert link not in client.get(reverse("dashboard")).content.decode()  # pending: nothing is permitted yet
    services.waiver_approve(scope=scope_for_user(adam), actor=Actor(user=adam), waiver=exception)
    dashboard = client.get(reverse("dashboard")).content.decode()
    row = dashboard.split(link, 1)[1].split("</tr>", 1)[0]
    assert "server mx-e-01" in row
    assert "2.2.4" in row
    assert exception.expires_at.strftime("%Y") in row
    clock.set_now(exception.expires_at)
    assert link not in client.get(reverse("dashboard")).content.decode()  # expired: gone from the panel
