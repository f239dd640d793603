"""Issue 14: the guide's integrated-authentication rights only through a recorded, approved exception.

Real path end to end: `job_create` → runner → engine → WinRM → winlab's executor over the emulated LSA.
Oscar (MSP operator) proposes, Alice (MSP admin) approves; the reports and pages say what happened.

What happens when an exception ends (decided here, stated in the README): the next harden grants none of
the rights and does not remove those granted under it (they are what the operator declared MailEnable
needs; a rollback, which undoes exactly this tool's changes, takes them away); verify reads them: each
one still held is drift (so the server is not compliant) with a reason that says the exception ended,
each one no longer held needs input — never compliant.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from pypdf import PdfReader

from jobs import runner, services
from jobs.choices import HostRunState, JobKind
from jobs.models import HostRun, ServerCompliance
from jobs.services import job_create
from lockdown import clock
from lockdown.choices import WaiverKind
from lockdown.models import Waiver
from lockdown.rules.exceptions import EXCEPTION_KEY
from lockdown.services import WaiverError, waiver_approve, waiver_propose, waiver_revoke
from reports.models import ReportFormat
from reports.services import report_create
from servers.audit import Actor
from servers.choices import Declared, Role
from servers.models import AuditEvent, Server
from servers.tenancy import Scope, scope_for_user
from tests.factories import MembershipFactory, UserFactory
from tests.integration.jobs.conftest import lab_server
from tests.integration.winlab_agent.conftest import SPECS, start_lab
from winlab.lab import Lab

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.winlab]
MSP = Scope(user_id=None, msp_role="admin")
RIGHTS = {
    "user_right.se_tcb_privilege": "SeTcbPrivilege",
    "user_right.se_create_token_privilege": "SeCreateTokenPrivilege",
    "user_right.se_interactive_logon_right": "SeInteractiveLogonRight",
    "user_right.se_increase_quota_privilege": "SeIncreaseQuotaPrivilege",
    "user_right.se_network_logon_right": "SeNetworkLogonRight",
    "user_right.se_batch_logon_right": "SeBatchLogonRight",
}
CONFLICTS = {"2.2.3", "2.2.4", "2.2.6", "2.2.8", "2.2.15", "2.2.37", "WN22-UR-000020", "WN22-UR-000060"}
JUSTIFICATION = "MailEnable's vendor documents these rights for integrated authentication on this host."
HOSTS = {"none": "S22EXCNO", "granted": "S22EXCOK", "expired": "S22EXCEXP", "revoked": "S22EXCREV"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    from dataclasses import replace

    running = start_lab(
        tmp_path_factory.mktemp("winlab-exception"), [replace(SPECS["spare"], name=n) for n in HOSTS.values()]
    )
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(autouse=True)
def inline() -> Iterator[None]:
    services.set_enqueue(runner.run_host)
    yield
    services.set_enqueue(None)


@pytest.fixture
def people() -> dict[str, Any]:
    oscar, alice = UserFactory(username="oscar"), UserFactory(username="alice")
    MembershipFactory(user=oscar, customer=None, role=Role.OPERATOR)
    MembershipFactory(user=alice, customer=None, role=Role.ADMIN)
    return {"oscar": oscar, "alice": alice}


def declared_server(lab: Lab, role: str) -> Server:
    server: Server = lab_server(
        lab, HOSTS[role], f"Exceptions {role} Ltd", sql_integrated=Declared.NO, integrated_auth=Declared.YES
    )
    return server


def run(kind: JobKind, server: Server) -> HostRun:
    job = job_create(scope=MSP, actor=Actor.system("test"), kind=kind, servers=[server])
    host_run = HostRun.objects.get(job=job)
    assert host_run.state == HostRunState.SUCCEEDED, host_run.error_message
    return host_run


def ime_system_sid(lab: Lab, name: str) -> str:
    with lab.host(name).binding.lock:
        return str(lab.host(name).model.accounts.user("IME_SYSTEM").sid)


def held_rights(lab: Lab, name: str, sid: str | None = None) -> set[str]:
    """The integrated-authentication rights IME_SYSTEM (or `sid`, once the account is gone) holds, as winlab's
    LSA model has them (by SID: deleting an account leaves its assignments behind, as on Windows)."""
    sid = sid or ime_system_sid(lab, name)
    model = lab.host(name).model
    with lab.host(name).binding.lock:
        return {right for right in RIGHTS.values() if sid in model.lsa.holders(right)}


def results(server: Server) -> dict[str, dict[str, Any]]:
    outcomes = ServerCompliance.objects.get(server=server).outcomes
    return {o["rule_id"]: o for o in outcomes if o["rule_id"] in RIGHTS}


def propose_and_approve(server: Server, people: dict[str, Any], *, days: int = 30) -> Waiver:
    oscar, alice = people["oscar"], people["alice"]
    exception = waiver_propose(
        scope=scope_for_user(oscar),
        actor=Actor(user=oscar),
        kind=WaiverKind.EXCEPTION,
        rule_id=EXCEPTION_KEY,
        justification=JUSTIFICATION,
        expires_at=clock.now() + timedelta(days=days),
        allowed_rule_ids=frozenset(),
        server=server,
    )
    return waiver_approve(scope=scope_for_user(alice), actor=Actor(user=alice), waiver=exception)


def report(server: Server) -> tuple[str, dict[str, Any]]:
    now = clock.now()
    made = report_create(
        scope=MSP, actor=Actor.system("test"), customer=server.customer, fmt=ReportFormat.PDF,
        period_start=now - timedelta(days=7), period_end=now,
    )  # fmt: skip
    pdf = " ".join(" ".join(p.extract_text().split()) for p in PdfReader(io.BytesIO(bytes(made.content))).pages)
    return pdf, json.loads(bytes(made.evidence))


def test_declared_without_an_exception_harden_grants_none_and_the_report_says_why(lab: Lab, client) -> None:
    server = declared_server(lab, "none")
    run(JobKind.HARDEN, server)
    assert held_rights(lab, HOSTS["none"]) == set()
    found = results(server)
    assert set(found) == set(RIGHTS)
    for rule_id, outcome in found.items():
        assert outcome["status"] == "needs_input", rule_id
        assert "no approved exception covers these rights" in outcome["reason"]
        assert all(control in outcome["reason"] for control in CONFLICTS), outcome["reason"]
    server.refresh_from_db()
    assert server.compliance_pct == 100.0  # everything else was applied: the six are outside the figure

    pdf, evidence = report(server)
    assert "no approved exception covers these rights" in pdf
    assert "WN22-UR-000020" in pdf
    assert "No exception applied during the period" in pdf
    assert evidence["exceptions"] == []
    (served,) = evidence["servers"]
    reasons = {o["reason"] for o in served["outcomes"] if o["rule_id"] in RIGHTS}
    assert len(reasons) == 1
    assert "none of them is granted" in reasons.pop()

    # The server page says it too, where the operator declared it.
    admin = UserFactory(username="pat")
    MembershipFactory(user=admin, customer=None, role=Role.ADMIN)
    client.force_login(admin)
    page = client.get(reverse("server_detail", kwargs={"server_id": server.pk})).content.decode()
    assert "no approved exception covers it" in page
    assert "no approved exception covers these rights" in page  # the six results' cause
    assert f"{reverse('server_waiver_propose', kwargs={'server_id': server.pk})}?kind=exception" in page


def test_with_an_approved_exception_harden_grants_them_and_reports_and_controls_show_it(
    lab: Lab, client, people
) -> None:
    server = declared_server(lab, "granted")
    exception = propose_and_approve(server, people)
    assert {c["id"] for c in exception.conflicts} == CONFLICTS  # recorded from the effective profile
    assert all(c["framework"] in ("cis", "stig") for c in exception.conflicts)
    assert AuditEvent.objects.filter(action="exception.approve", actor=people["alice"]).exists()

    run(JobKind.HARDEN, server)
    assert held_rights(lab, HOSTS["granted"]) == set(RIGHTS.values())
    assert {o["status"] for o in results(server).values()} == {"compliant"}

    pdf, evidence = report(server)
    (listed,) = evidence["exceptions"]
    assert listed["subject"] == f"server {server.name}"
    assert listed["proposed_by"] == "oscar"
    assert listed["approved_by"] == "alice"
    assert listed["justification"] == JUSTIFICATION
    assert listed["active"] is True
    assert {c["id"] for c in listed["conflicts"]} == CONFLICTS
    assert evidence["summary"]["open_exceptions"] == 1
    assert "Exceptions in force (integrated-authentication rights): 1" in pdf  # the executive summary
    assert "WN22-UR-000060" in pdf
    by_control = {c["id"]: c["status"] for c in evidence["controls"]}
    assert {by_control[c] for c in CONFLICTS} == {"exception"}

    client.force_login(people["alice"])
    controls = client.get(reverse("control_list")).content.decode()
    for control in ("2.2.4", "WN22-UR-000020"):
        row = controls.split(f"<strong>{control}</strong>", 1)[1].split("</tr>", 1)[0]
        assert '<span class="badge badge-orange">Exception</span>' in row, control
        assert "(1 with the exception)" in row
    dashboard = client.get(reverse("dashboard")).content.decode()
    assert 'id="active-exceptions"' in dashboard
    assert reverse("waiver_detail", kwargs={"waiver_id": exception.pk}) in dashboard


@pytest.mark.parametrize("ending", ["expired", "revoked"])
def test_when_the_exception_ends_nothing_more_is_granted_and_verify_does_not_claim_compliance(
    lab: Lab, people, ending: str
) -> None:
    name = HOSTS[ending]
    server = declared_server(lab, ending)
    exception = propose_and_approve(server, people, days=10)
    run(JobKind.HARDEN, server)
    assert held_rights(lab, name) == set(RIGHTS.values())
    with clock.frozen(clock.now() + timedelta(days=11) if ending == "expired" else clock.now()):
        if ending == "revoked":
            waiver_revoke(scope=scope_for_user(people["oscar"]), actor=Actor(user=people["oscar"]), waiver=exception)
        run(JobKind.VERIFY, server)
        for outcome in results(server).values():
            assert outcome["status"] == "drift"  # still held, and no exception covers them: not compliant
            assert "which no exception covers now; harden does not remove it" in outcome["reason"]
            assert "has expired or been revoked" in outcome["reason"]
        summary = ServerCompliance.objects.get(server=server).summary
        assert summary["counts"]["drift"] >= len(RIGHTS)  # counted against the server's compliance
        assert held_rights(lab, name) == set(RIGHTS.values())  # verify changes nothing
        # A right taken away by hand is not granted again by the next harden.
        with lab.host(name).binding.lock:
            model = lab.host(name).model
            model.lsa.remove_account_rights(model.accounts.user("IME_SYSTEM").sid, ["SeTcbPrivilege"])
        run(JobKind.HARDEN, server)
        assert held_rights(lab, name) == set(RIGHTS.values()) - {"SeTcbPrivilege"}
        after = results(server)
        assert after["user_right.se_tcb_privilege"]["status"] == "needs_input"  # gone: the operator decides
        assert {o["status"] for k, o in after.items() if k != "user_right.se_tcb_privilege"} == {"drift"}
        pdf, evidence = report(server)
        (listed,) = evidence["exceptions"]  # it applied during the period: still listed, no longer active
        assert listed["active"] is False
        assert evidence["summary"]["open_exceptions"] == 0
        assert "has expired or been revoked" in pdf
        # What takes the rest away: a rollback undoes this tool's changes, these grants among them.
        sid = ime_system_sid(lab, name)
        run(JobKind.ROLLBACK, server)
        assert held_rights(lab, name, sid) == set()


def test_the_proposer_cannot_approve_their_own_exception(lab: Lab, people) -> None:
    server = declared_server(lab, "none")
    oscar = people["oscar"]
    oscar.memberships.update(role=Role.ADMIN)  # an admin too: only having proposed it stops him
    exception = waiver_propose(
        scope=scope_for_user(oscar), actor=Actor(user=oscar), kind=WaiverKind.EXCEPTION, rule_id=EXCEPTION_KEY,
        justification=JUSTIFICATION, expires_at=clock.now() + timedelta(days=5), allowed_rule_ids=frozenset(),
        server=server,
    )  # fmt: skip
    with pytest.raises(WaiverError, match="proposer cannot approve"):
        waiver_approve(scope=scope_for_user(oscar), actor=Actor(user=oscar), waiver=exception)
    exception.refresh_from_db()
    assert exception.approved_at is None
