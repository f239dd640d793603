"""apply -> verify 100 % -> second apply changes nothing (host counter) -> rollback restores the state."""

from __future__ import annotations

import time

import pytest

from lockdown.rules import RuleAction, RuleStatus
from lockdown.rules.vocabulary import AgentMode, TargetKind
from tests.integration.winlab_agent.conftest import (
    STATE_DIFF_IGNORED,
    discover,
    judged_not_compliant,
    name_of,
    outcomes,
    plan_for,
    run,
)
from winlab.lab import Lab
from winlab.windows.mailenable import HARDENING_DENIES
from winlab.windows.state import state_diff

pytestmark = pytest.mark.winlab

CASES = [
    pytest.param("r2", False, False, id="2008r2-wmf51-no-sql"),
    pytest.param("sql", True, False, id="2016-sql-integrated"),
    pytest.param("plesk", False, True, id="2022-plesk-integrated-auth"),
    pytest.param("adopted", False, False, id="2019-meinstaller-adopted"),
]


@pytest.mark.parametrize(("role", "sql", "integrated"), CASES)
def test_apply_then_verify_is_compliant_then_idempotent_then_rolled_back(
    lab: Lab, role: str, sql: bool, integrated: bool
) -> None:
    name = name_of(role)
    host = lab.host(name).model
    plan = plan_for(discover(lab, name), sql=sql, integrated=integrated)
    with lab.host(name).binding.lock:
        baseline = host.to_state_dict()

    started = time.monotonic()
    applied = run(lab, name, AgentMode.APPLY, plan)
    apply_seconds = time.monotonic() - started
    assert applied.error is None, applied.error
    assert applied.action is RuleAction.CHANGED
    assert applied.changes
    assert apply_seconds < 5

    verified = run(lab, name, AgentMode.VERIFY, plan)
    assert judged_not_compliant(outcomes(plan, verified)) == []

    mutations = host.mutations
    again = run(lab, name, AgentMode.APPLY, plan)
    assert again.changes == []
    assert again.action is RuleAction.NONE
    assert host.mutations == mutations, "a second apply must not change the host"

    rolled = run(lab, name, AgentMode.ROLLBACK, rollback=applied.changes)
    assert rolled.error is None, rolled.error
    assert {i.action for i in rolled.items} == {RuleAction.ROLLED_BACK}
    with lab.host(name).binding.lock:
        assert state_diff(baseline, host.to_state_dict(), ignore=STATE_DIFF_IGNORED) == []
    assert host.health().ok


def test_meinstaller_hardening_is_adopted_without_a_second_account(lab: Lab) -> None:
    name = name_of("adopted")
    host = lab.host(name).model
    plan = plan_for(discover(lab, name), sql=False)
    applied = run(lab, name, AgentMode.APPLY, plan)
    try:
        kinds = {c.target_kind for c in applied.changes}
        assert TargetKind.USER not in kinds
        assert TargetKind.GROUP not in kinds
        assert TargetKind.SERVICE not in kinds  # the services already run as the adopted IME_SYSTEM
        names = {u.lower() for u in host.accounts.users}
        assert "ime_system" in names
        assert "ime_store_group" not in {g.lower() for g in host.accounts.groups}
        # MEInstaller's System32 denies landed in SysWOW64 only: the System32 ones are this run's work.
        denies = [c for c in applied.changes if c.rule_id.startswith("file_deny.")]
        meinstaller = {n.lower() for n in HARDENING_DENIES}
        wow64 = [c.target.rsplit("\\", 1)[1].lower() for c in denies if "\\SysWOW64\\" in c.target]
        assert denies
        assert not meinstaller & set(wow64)
    finally:
        run(lab, name, AgentMode.ROLLBACK, rollback=applied.changes)


def test_sql_rules_grant_the_login_user_and_permissions(lab: Lab) -> None:
    name = name_of("sql")
    plan = plan_for(discover(lab, name), sql=True)
    applied = run(lab, name, AgentMode.APPLY, plan)
    try:
        sql = {o.rule_id: o for o in outcomes(plan, run(lab, name, AgentMode.VERIFY, plan))}
        assert sql["sql_grant.login.ime_system"].status is RuleStatus.COMPLIANT
        assert sql["sql_grant.mailenable_db.ime_system"].status is RuleStatus.COMPLIANT
        assert lab.host(name).model.health().ok  # the services run as IME_SYSTEM and can use the database
    finally:
        run(lab, name, AgentMode.ROLLBACK, rollback=applied.changes)
    assert "S16SQL\\IME_SYSTEM".lower() not in lab.host(name).model.sql.logins


def test_sql_host_declared_without_sql_fails_health_and_rolls_back(lab: Lab) -> None:
    """The services need the MAILENABLE grants: without them they stop after settling (1067)."""
    name = name_of("sql")
    host = lab.host(name).model
    plan = plan_for(discover(lab, name), sql=False)
    with lab.host(name).binding.lock:
        baseline = host.to_state_dict()
    applied = run(lab, name, AgentMode.APPLY, plan)
    assert applied.error is not None
    assert applied.error.code == "health_check_failed"
    # Win32_Service says which services stopped (their reason, SQL login failed, is in MailEnable's logs).
    assert "MESMTPCS is Stopped" in applied.error.message
    assert applied.action is RuleAction.ROLLED_BACK
    assert applied.changes == []
    with lab.host(name).binding.lock:
        assert state_diff(baseline, host.to_state_dict()) == []


def test_search_service_is_stopped_during_the_job_and_restored(lab: Lab) -> None:
    name = name_of("plesk")
    plan = plan_for(discover(lab, name), sql=False)
    applied = run(lab, name, AgentMode.APPLY, plan)
    try:
        search = next(o for o in outcomes(plan, applied) if o.rule_id == "preflight.windows_search")
        assert search.status is RuleStatus.COMPLIANT, search.reason
        assert lab.host(name).model.services.get("WSearch").running
    finally:
        run(lab, name, AgentMode.ROLLBACK, rollback=applied.changes)
