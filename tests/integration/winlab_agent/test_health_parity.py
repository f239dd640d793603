"""The health check's structured report, as the PowerShell's Test-FleetMailHealth gives it.

A plan item that takes IME_USER's read access to the webmail login page (a bad rule, as a profile
mistake would) breaks webmail in the model: with the Server's webmail URL in the request the check
fails and the run is rolled back; without a URL webmail is "not_checked" (nothing else notices).
"""

from __future__ import annotations

from lockdown.agent import AGENT_VERSION
from lockdown.rules import RuleAction
from lockdown.rules.contract import AgentRequest, HealthStatus, HealthTargets
from lockdown.rules.plan import Plan
from lockdown.rules.vocabulary import AgentMode, RuleType
from remote.transport import run_agent
from tests.integration.winlab_agent.conftest import (
    SERVICE_PASSWORD,
    connection,
    discover,
    name_of,
    plan_for,
    run,
)
from winlab.lab import Lab
from winlab.windows import security as sec
from winlab.windows.state import state_diff

WEBMAIL_URL = "http://127.0.0.1/mewebmail/Mondo/lang/sys/login.aspx"


def _plan_that_breaks_webmail(lab: Lab, name: str) -> Plan:
    plan = plan_for(discover(lab, name), sql=False)
    template = next(i for i in plan.items if i.rule_type is RuleType.FILE_DENY and i.status is None)
    login = lab.host(name).model.mailenable.install.webmail_dir + "\\Mondo\\lang\\sys\\login.aspx"
    bad = template.model_copy(
        update={
            "rule_id": "file_deny.test.webmail_login",
            "target": login,
            "principal_name": f"{plan.computer_name}\\IME_USER",
            "principal_sid": None,
            "access_mask": sec.FILE_READ_EXECUTE,
            "ace_flags": [],
        }
    )
    return plan.model_copy(update={"items": [*plan.items, bad]})


def _apply(lab: Lab, name: str, plan: Plan, health: HealthTargets | None):
    request = AgentRequest(
        agent_version=AGENT_VERSION,
        mode=AgentMode.APPLY,
        job_id="job-health",
        plan=plan,
        service_password=SERVICE_PASSWORD,
        health=health,
    )
    return run_agent(connection(lab, name), request)


def test_webmail_lost_by_ime_user_fails_the_health_check_and_rolls_back(lab: Lab) -> None:
    name = name_of("plesk")
    host = lab.host(name)
    plan = _plan_that_breaks_webmail(lab, name)
    assert host.model.mailenable.webmail_ok()[0]
    with host.binding.lock:
        baseline = host.model.to_state_dict()
    applied = _apply(lab, name, plan, HealthTargets(smtp_port=25, pop_port=110, imap_port=143, webmail_url=WEBMAIL_URL))
    assert applied.error is not None
    assert applied.error.code == "health_check_failed"
    assert "webmail" in applied.error.message
    assert "(500) Internal Server Error" in applied.error.message  # what HttpWebRequest reports
    assert applied.action is RuleAction.ROLLED_BACK
    assert applied.changes == []
    checks = {c.check: c for c in applied.health}
    assert list(checks) == ["services", "smtp", "pop", "imap", "mta", "webmail", "webadmin"]
    assert checks["webmail"].status is HealthStatus.FAILED
    assert checks["webmail"].detail.startswith(WEBMAIL_URL)
    assert checks["webadmin"].status is HealthStatus.NOT_CHECKED
    assert "not checked" in checks["webadmin"].detail
    assert checks["mta"].status is HealthStatus.OK
    assert checks["smtp"].detail == "port 25 (127.0.0.1 and ::1)"
    with host.binding.lock:
        assert state_diff(baseline, host.model.to_state_dict()) == []
    assert host.model.mailenable.webmail_ok()[0]


def test_without_a_webmail_url_webmail_is_not_checked(lab: Lab) -> None:
    name = name_of("plesk")
    host = lab.host(name)
    plan = _plan_that_breaks_webmail(lab, name)
    applied = _apply(lab, name, plan, HealthTargets(smtp_port=2525))
    try:
        assert applied.error is None, applied.error
        checks = {c.check: c for c in applied.health}
        assert checks["webmail"].status is HealthStatus.NOT_CHECKED
        assert checks["webadmin"].status is HealthStatus.NOT_CHECKED
        # Nothing answers on 2525 on this host, before or after: reported, never a reason to roll back.
        assert checks["smtp"].status is HealthStatus.NOT_CHECKED
        assert "did not answer before the change" in checks["smtp"].detail
        assert "2525" in checks["smtp"].detail
        assert not host.model.mailenable.webmail_ok()[0]  # broken, and honestly reported as not checked
    finally:
        undone = run(lab, name, AgentMode.ROLLBACK, rollback=applied.changes)
    assert undone.error is None
    assert host.model.mailenable.webmail_ok()[0]
