"""/api/v1/ governance as an integrator drives it: waivers proposed by one user and approved by another MSP
admin, revoked; alerts read and acknowledged; the audit trail, MSP admins only, naming the token, no secret.

Alice is an MSP admin, Oscar an MSP operator, Carol operates customer A, Cora views it; B is the other
customer, whose objects A's users must not learn exist.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from api.tokens import token_issue
from jobs.models import Alert
from lockdown import clock
from lockdown.models import Waiver
from servers import services as server_services
from servers.audit import Actor, audit_record
from servers.models import AuditEvent
from servers.tenancy import scope_for_user
from tests.factories import TENANT_RULE_ID, WaiverFactory, tenant_alert

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
JUSTIFICATION = "The vendor's spam filter add-on needs this right until its 5.2 release."


@pytest.fixture(autouse=True)
def _frozen_clock():
    with clock.frozen(NOW):
        yield


def _api(user, **kwargs: Any) -> Client:
    options = {"name": "psa", "days": 30, "read_only": False, "customer": None, **kwargs}
    secret = token_issue(scope=scope_for_user(user), actor=Actor(user=user), **options).secret
    return Client(HTTP_AUTHORIZATION=f"Bearer {secret}")


def _post(api: Client, url: str, body: dict[str, Any] | None = None):
    return api.post(url, data=json.dumps(body or {}), content_type="application/json")


def _json(response, status: int) -> Any:
    assert response.status_code == status, response.content
    return response.json()


def _proposal(server: int | None = None, customer: int | None = None, **overrides: Any) -> dict[str, Any]:
    return {
        "server": server,
        "customer": customer,
        "rule_id": TENANT_RULE_ID,
        "justification": JUSTIFICATION,
        "expires_at": "2026-04-01T00:00:00Z",
        **overrides,
    }


@pytest.fixture
def oscar(make_role_user):
    return make_role_user("msp_operator")


# --- Waivers -----------------------------------------------------------------------------------
def test_a_proposal_approved_by_another_msp_admin_applies(alice, oscar, tenant_a) -> None:
    proposed = _json(_post(_api(oscar), "/api/v1/waivers/", _proposal(server=tenant_a.server.pk)), 201)
    waiver = Waiver.objects.get(pk=proposed["id"])
    assert proposed == {
        "id": waiver.pk,
        "kind": "waiver",
        "rule_id": TENANT_RULE_ID,
        "conflicts": [],
        "applies_to": "server",
        "server": tenant_a.server.pk,
        "server_name": "mx-a-01",
        "customer": tenant_a.customer.pk,
        "customer_name": "Tenant A Ltd",
        "status": "pending",
        "justification": JUSTIFICATION,
        "proposed_by": "oscar",
        "proposed_at": "2026-03-02T09:00:00Z",
        "approved_by": None,
        "approved_at": None,
        "expires_at": "2026-04-01T00:00:00Z",
        "revoked_by": None,
        "revoked_at": None,
    }
    approved = _json(_post(_api(alice), f"/api/v1/waivers/{waiver.pk}/approve/"), 200)
    assert (approved["status"], approved["approved_by"], approved["approved_at"]) == (
        "active",
        "alice",
        "2026-03-02T09:00:00Z",
    )
    assert _json(_api(oscar).get(f"/api/v1/waivers/{waiver.pk}/"), 200)["status"] == "active"
    waiver.refresh_from_db()
    assert waiver.approved_by_id == alice.pk
    events = AuditEvent.objects.filter(object_type="lockdown.waiver", object_id=str(waiver.pk)).order_by("id")
    assert [(e.action, e.actor_name.split(" (API token 'psa', ")[0]) for e in events] == [
        ("waiver.propose", "oscar"),
        ("waiver.approve", "alice"),
    ]


def test_a_customer_wide_proposal_names_the_customer(carol, tenant_a) -> None:
    proposed = _json(_post(_api(carol), "/api/v1/waivers/", _proposal(customer=tenant_a.customer.pk)), 201)
    assert (proposed["applies_to"], proposed["server"], proposed["server_name"], proposed["customer"]) == (
        "customer",
        None,
        None,
        tenant_a.customer.pk,
    )


def test_a_proposer_cannot_approve_their_own_waiver(alice, tenant_a) -> None:
    api = _api(alice)
    proposed = _json(_post(api, "/api/v1/waivers/", _proposal(server=tenant_a.server.pk)), 201)
    refused = _json(_post(api, f"/api/v1/waivers/{proposed['id']}/approve/"), 403)
    assert refused == {"detail": "a proposer cannot approve their own waiver; another MSP admin must"}
    waiver = Waiver.objects.get(pk=proposed["id"])
    assert (waiver.approved_at, waiver.approved_by_id) == (None, None)
    assert not AuditEvent.objects.filter(action="waiver.approve").exists()
    assert _json(api.get(f"/api/v1/waivers/{waiver.pk}/"), 200)["status"] == "pending"


def test_only_an_msp_admin_approves(oscar, carol, tenant_a) -> None:
    for user in (oscar, carol):
        refused = _json(_post(_api(user), f"/api/v1/waivers/{tenant_a.waiver.pk}/approve/"), 403)
        assert refused == {"detail": "your role does not allow: approve_waiver"}
    tenant_a.waiver.refresh_from_db()
    assert tenant_a.waiver.approved_at is None


def test_approving_asks_for_the_code_of_an_enrolled_authenticator(alice, tenant_a) -> None:
    device = TOTPDevice.objects.create(user=alice, name="phone", confirmed=True)
    api = _api(alice)
    url = f"/api/v1/waivers/{tenant_a.waiver.pk}/approve/"
    assert _json(_post(api, url), 403) == {
        "detail": "approving a waiver needs your authenticator's current code in otp_code"
    }
    assert _json(_post(api, url, {"otp_code": "000000"}), 403) == {
        "detail": "that authenticator code is not valid (or was used already)"
    }
    tenant_a.waiver.refresh_from_db()
    assert tenant_a.waiver.approved_at is None
    device.refresh_from_db()
    device.throttling_failure_count = 0  # the wrong code above throttles the next attempt
    device.throttling_failure_timestamp = None
    device.save()
    code = f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"  # of the real time
    assert _json(_post(api, url, {"otp_code": code}), 200)["approved_by"] == "alice"


def test_a_waiver_that_is_not_pending_is_not_approved(alice, tenant_a) -> None:
    Waiver.objects.filter(pk=tenant_a.waiver.pk).update(revoked_at=NOW)
    refused = _json(_post(_api(alice), f"/api/v1/waivers/{tenant_a.waiver.pk}/approve/"), 400)
    assert refused == {"detail": "only a pending waiver can be approved; this one is revoked"}


def test_revoking_ends_a_waiver_and_a_second_revoke_is_refused(alice, carol, tenant_a) -> None:
    Waiver.objects.filter(pk=tenant_a.waiver.pk).update(approved_at=NOW, approved_by=alice)
    api = _api(carol)
    revoked = _json(_post(api, f"/api/v1/waivers/{tenant_a.waiver.pk}/revoke/"), 200)
    assert (revoked["status"], revoked["revoked_by"], revoked["revoked_at"]) == (
        "revoked",
        "carol",
        "2026-03-02T09:00:00Z",
    )
    assert _json(_post(api, f"/api/v1/waivers/{tenant_a.waiver.pk}/revoke/"), 400) == {
        "detail": "this waiver is already revoked"
    }
    assert AuditEvent.objects.filter(action="waiver.revoke").count() == 1


def test_a_customer_token_sees_its_customers_waivers_only(carol, tenant_a, tenant_b) -> None:
    own_customer_wide = WaiverFactory(customer=tenant_a.customer)
    api = _api(carol)
    listed = [row["id"] for row in _json(api.get("/api/v1/waivers/"), 200)["results"]]
    assert listed == [own_customer_wide.pk, tenant_a.waiver.pk]
    assert _json(api.get(f"/api/v1/waivers/{tenant_b.waiver.pk}/"), 404) == {
        "detail": "No Waiver matches the given query."
    }
    assert _post(api, f"/api/v1/waivers/{tenant_b.waiver.pk}/revoke/").status_code == 404
    assert _post(api, f"/api/v1/waivers/{tenant_b.waiver.pk}/approve/").status_code == 404
    # B's server in a proposal is 404 too, before its rule is even looked at
    assert _post(api, "/api/v1/waivers/", _proposal(server=tenant_b.server.pk, rule_id="nope")).status_code == 404
    tenant_b.waiver.refresh_from_db()
    assert tenant_b.waiver.revoked_at is None
    assert Waiver.objects.count() == 3


def test_waivers_filter_by_status_customer_and_server(alice, tenant_a, tenant_b) -> None:
    expired = WaiverFactory(customer=tenant_a.customer, proposed_at=NOW - timedelta(days=40), expires_at=NOW)
    active = WaiverFactory(customer=tenant_b.customer, approved_at=NOW, approved_by=alice)
    api = _api(alice)

    def ids(query: str) -> list[int]:
        return [row["id"] for row in _json(api.get(f"/api/v1/waivers/?{query}"), 200)["results"]]

    assert ids("status=pending") == [tenant_b.waiver.pk, tenant_a.waiver.pk]
    assert ids("status=active") == [active.pk]
    assert ids("status=expired") == [expired.pk]
    assert ids("status=revoked") == []
    assert ids(f"customer={tenant_a.customer.pk}") == [expired.pk, tenant_a.waiver.pk]
    assert ids(f"server={tenant_b.server.pk}") == [tenant_b.waiver.pk]
    assert _json(api.get("/api/v1/waivers/?status=lapsed"), 400) == {
        "status": "one of pending, active, expired, revoked"
    }
    assert _json(api.get("/api/v1/waivers/?customer=x"), 400) == {"customer": "a customer id"}


def test_a_proposal_is_checked_as_the_form_checks_it(carol, cora, tenant_a) -> None:
    api = _api(carol)
    both = _proposal(server=tenant_a.server.pk, customer=tenant_a.customer.pk)
    assert _json(_post(api, "/api/v1/waivers/", both), 400) == {"detail": "Name exactly one of server and customer."}
    unknown = _proposal(server=tenant_a.server.pk, rule_id="file_acl.nope")
    assert _json(_post(api, "/api/v1/waivers/", unknown), 400) == {
        "rule_id": "No rule 'file_acl.nope' in the effective profile (tenant-a-baseline v1)."
    }
    past = _proposal(server=tenant_a.server.pk, expires_at="2026-03-01T00:00:00Z")
    assert _json(_post(api, "/api/v1/waivers/", past), 400) == {"expires_at": "The expiry must be in the future."}
    short = _proposal(server=tenant_a.server.pk, justification="because   ")
    assert _json(_post(api, "/api/v1/waivers/", short), 400) == {
        "justification": "Ensure this value has at least 10 characters (it has 7)."
    }
    viewer = _json(_post(_api(cora), "/api/v1/waivers/", _proposal(server=tenant_a.server.pk)), 403)
    assert viewer == {"detail": "your role does not allow: propose_waiver"}
    # the role before the rule: a viewer learns nothing about the profile from a refused rule id
    assert _json(_post(_api(cora, name="probe"), "/api/v1/waivers/", unknown), 403) == viewer
    assert Waiver.objects.count() == 1  # the tenant's own
    assert not AuditEvent.objects.filter(action="waiver.propose").exists()


def test_a_read_only_token_writes_nothing(alice, tenant_a) -> None:
    api = _api(alice, read_only=True)
    alert = tenant_alert(tenant_a)
    before = AuditEvent.objects.count()
    writes = {
        "/api/v1/waivers/": _proposal(server=tenant_a.server.pk),
        f"/api/v1/waivers/{tenant_a.waiver.pk}/approve/": {},
        f"/api/v1/waivers/{tenant_a.waiver.pk}/revoke/": {},
        f"/api/v1/alerts/{alert}/acknowledge/": {},
    }
    answers = {url: _post(api, url, body).json() for url, body in writes.items()}
    assert answers == {
        "/api/v1/waivers/": {"detail": "your role does not allow: propose_waiver"},
        f"/api/v1/waivers/{tenant_a.waiver.pk}/approve/": {"detail": "your role does not allow: approve_waiver"},
        f"/api/v1/waivers/{tenant_a.waiver.pk}/revoke/": {"detail": "your role does not allow: propose_waiver"},
        f"/api/v1/alerts/{alert}/acknowledge/": {"detail": "your role does not allow: edit_servers"},
    }
    tenant_a.waiver.refresh_from_db()
    assert (tenant_a.waiver.approved_at, tenant_a.waiver.revoked_at) == (None, None)
    assert Waiver.objects.count() == 1
    assert Alert.objects.get(pk=alert).acknowledged_at is None
    assert AuditEvent.objects.count() == before


# --- Alerts ------------------------------------------------------------------------------------
def test_acknowledging_an_alert_takes_it_off_the_open_list(carol, cora, tenant_a) -> None:
    alert = tenant_alert(tenant_a)
    api = _api(carol)
    assert [row["id"] for row in _json(api.get("/api/v1/alerts/"), 200)["results"]] == [alert]
    assert _json(_post(_api(cora), f"/api/v1/alerts/{alert}/acknowledge/"), 403) == {
        "detail": "your role does not allow: edit_servers"
    }
    acknowledged = _json(_post(api, f"/api/v1/alerts/{alert}/acknowledge/"), 200)
    assert (acknowledged["open"], acknowledged["acknowledged_by"], acknowledged["acknowledged_at"]) == (
        False,
        "carol",
        "2026-03-02T09:00:00Z",
    )
    assert _json(api.get("/api/v1/alerts/"), 200)["results"] == []
    assert [row["id"] for row in _json(api.get("/api/v1/alerts/?show=all"), 200)["results"]] == [alert]
    with clock.frozen(NOW + timedelta(hours=1)):  # again: nothing changes, nothing more is audited
        again = _json(_post(_api(carol, name="other"), f"/api/v1/alerts/{alert}/acknowledge/"), 200)
    assert (again["acknowledged_by"], again["acknowledged_at"]) == ("carol", "2026-03-02T09:00:00Z")
    assert list(AuditEvent.objects.filter(action="alert.acknowledge").values_list("actor_name", flat=True)) == [
        f"carol (API token 'psa', {_prefix('carol', 'psa')})"
    ]


def _prefix(username: str, name: str) -> str:
    from api.models import ApiToken

    return ApiToken.objects.get(user__username=username, name=name).prefix


def test_an_alert_shows_what_dropped_and_when_a_verify_resolved_it(cora, tenant_a) -> None:
    from jobs.models import HostRun
    from tests.factories import tenant_job

    job = tenant_job(tenant_a)
    alert = Alert.objects.get(pk=tenant_alert(tenant_a))
    alert.details = {
        "status_before": "compliant",
        "status_after": "drifted",
        "rules": [{"rule_id": TENANT_RULE_ID, "target": "IME_SYSTEM", "status": "drift"}],
        "rules_total": 1,
    }
    alert.resolved_at = NOW
    alert.resolved_by_run = HostRun.objects.get(job_id=job)
    alert.save()
    shown = _json(_api(cora).get(f"/api/v1/alerts/{alert.pk}/"), 200)
    assert shown == {
        "id": alert.pk,
        "kind": "drift",
        "server": tenant_a.server.pk,
        "server_name": "mx-a-01",
        "customer": tenant_a.customer.pk,
        "customer_name": "Tenant A Ltd",
        "message": "mx-a-01: 1 check(s) that were compliant are now in drift or error.",
        "status_before": "compliant",
        "status_after": "drifted",
        "rules": [{"rule_id": TENANT_RULE_ID, "target": "IME_SYSTEM", "status": "drift"}],
        "rules_total": 1,
        "created_at": "2026-03-02T09:00:00Z",
        "open": False,
        "acknowledged_at": None,
        "acknowledged_by": None,
        "resolved_at": "2026-03-02T09:00:00Z",
        "resolved_by_job": job,
        "remediation_job": None,
    }
    assert _json(_api(cora).get("/api/v1/alerts/?show=nope"), 400) == {"show": "open or all"}


def test_a_customer_token_sees_its_customers_alerts_only(carol, tenant_a, tenant_b) -> None:
    own, theirs = tenant_alert(tenant_a), tenant_alert(tenant_b)
    api = _api(carol)
    assert [row["id"] for row in _json(api.get("/api/v1/alerts/?show=all"), 200)["results"]] == [own]
    assert api.get(f"/api/v1/alerts/{theirs}/").status_code == 404
    assert _post(api, f"/api/v1/alerts/{theirs}/acknowledge/").status_code == 404
    assert Alert.objects.get(pk=theirs).acknowledged_at is None


# --- The audit trail ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "who", ["msp_operator", "msp_viewer", "customer_operator", "alice_narrowed", "alice_read_only"]
)
def test_the_audit_trail_is_for_msp_admins_only(make_role_user, tenant_a, who: str) -> None:
    if who.startswith("alice"):
        options = {"customer": tenant_a.customer} if who == "alice_narrowed" else {"read_only": True}
        api = _api(make_role_user("msp_admin"), **options)
    else:
        api = _api(make_role_user(who))
    assert _json(api.get("/api/v1/audit-events/"), 403) == {"detail": "your role does not allow: view_audit"}


def test_the_audit_trail_shows_the_api_actions_under_the_token(alice, oscar, tenant_a) -> None:
    _post(_api(oscar, name="ticket sync"), "/api/v1/waivers/", _proposal(server=tenant_a.server.pk))
    api = _api(alice)
    rows = _json(api.get("/api/v1/audit-events/?action=waiver."), 200)["results"]
    waiver = Waiver.objects.get(proposed_by=oscar)
    assert rows == [
        {
            "id": AuditEvent.objects.get(action="waiver.propose").pk,
            "at": rows[0]["at"],  # auto_now_add: the database's clock, not lockdown's
            "actor": f"oscar (API token 'ticket sync', {_prefix('oscar', 'ticket sync')})",
            "source_ip": "127.0.0.1",
            "action": "waiver.propose",
            "object_type": "lockdown.waiver",
            "object_id": str(waiver.pk),
            "object": "waiver user_right.ime_system.service_logon for mx-a-01",
            "customer": tenant_a.customer.pk,
            "customer_name": "Tenant A Ltd",
            "changes": {
                "rule_id": TENANT_RULE_ID,
                "for": "server mx-a-01",
                "expires_at": "2026-04-01T00:00:00+00:00",
            },
        }
    ]
    newest_first = [row["action"] for row in _json(api.get("/api/v1/audit-events/"), 200)["results"]]
    assert newest_first[:2] == ["api_token.create", "waiver.propose"]  # alice's token, then oscar's proposal
    assert _json(api.get("/api/v1/audit-events/?actor=ticket sync"), 200)["results"][0]["action"] == "waiver.propose"
    assert _json(api.get("/api/v1/audit-events/?since=2026-03-02"), 400) == {
        "since": "an ISO 8601 date and time with its offset (…Z or +01:00)"
    }


def test_no_secret_reaches_the_audit_trail(alice, tenant_a) -> None:
    scope = scope_for_user(alice)
    credential = server_services.credential_create(
        scope=scope,
        actor=Actor(user=alice),
        customer=tenant_a.customer,
        name="audit-probe",
        username=".\\fleet",
        auth="ntlm",
        secret="Plain-Audit-Secret-1!",
    )
    # A service that nested a secret (audit_record masks the top level only) must not leak it either.
    audit_record(
        actor=Actor(user=alice),
        action="credential.probe",
        obj=credential,
        changes={"binding": {"password": "Nested-Secret-2!", "secret_encrypted": credential.secret_encrypted}},
    )
    body = _api(alice).get("/api/v1/audit-events/?action=credential.").content.decode()
    for secret in ("Plain-Audit-Secret-1!", "Nested-Secret-2!", credential.secret_encrypted):
        assert secret not in body
    rows = {row["action"]: row["changes"] for row in json.loads(body)["results"]}
    assert rows["credential.create"]["secret"] == "[secret changed]"
    assert rows["credential.probe"] == {
        "binding": {"password": "[secret changed]", "secret_encrypted": "[secret changed]"}
    }


@pytest.mark.parametrize("url", ["/api/v1/waivers/", "/api/v1/alerts/?show=all", "/api/v1/audit-events/"])
def test_a_list_costs_the_same_queries_for_3_and_30_rows(alice, oscar, tenant_a, url: str) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from jobs.choices import AlertKind

    api = _api(alice)
    api.get(url)  # the token's last use is written on the first request
    counts = []
    for total in (3, 30):
        while Waiver.objects.count() < total:
            WaiverFactory(server=tenant_a.server, proposed_by=oscar, approved_by=alice, approved_at=NOW)
            Alert.objects.create(
                server=tenant_a.server, server_name="mx-a-01", customer=tenant_a.customer, kind=AlertKind.STATUS,
                message="status worse", created_at=NOW, acknowledged_by=oscar, acknowledged_at=NOW,
            )  # fmt: skip
            audit_record(actor=Actor(user=oscar), action="probe.row", customer=tenant_a.customer)
        with CaptureQueriesContext(connection) as queries:
            assert api.get(url).status_code == 200
        counts.append(len(queries.captured_queries))
    assert counts[0] == counts[1], counts
