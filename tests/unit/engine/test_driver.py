"""The engine end to end against an emulated host (winlab's executor and primitives, in process)."""

from __future__ import annotations

import json
from typing import Any

from lockdown.agent import AGENT_VERSION
from lockdown.engine import driver, sddl
from lockdown.engine.changes import PHASES
from lockdown.engine.driver import journal_records
from lockdown.engine.program import Program
from lockdown.rules.contract import AgentRequest
from lockdown.rules.vocabulary import AgentMode, RuleType
from tests.unit.engine.harness import Harness, counts, harness, outcomes, steps_of
from winlab.agent.primitives import journal_path
from winlab.windows.policy import GroupPolicyObject

PHASE_OF_OP = {
    "user_create": PHASES[RuleType.LOCAL_USER],
    "user_set_flags": PHASES[RuleType.LOCAL_USER],
    "group_create": PHASES[RuleType.LOCAL_GROUP],
    "group_member_add": PHASES[RuleType.GROUP_MEMBER],
    "lsa_add": PHASES[RuleType.USER_RIGHT],
    "dacl_write": PHASES[RuleType.FILE_ACL],
    "sql": PHASES[RuleType.SQL_GRANT],
    "service_change": PHASES[RuleType.SERVICE_IDENTITY],
}


def _state(h: Harness) -> dict[str, Any]:
    return h.host.to_state_dict()


def _hardened(h: Harness) -> tuple[Any, Any]:
    plan = h.plan()
    h.programs.clear()
    return plan, h.run(AgentMode.APPLY, plan=plan)


def test_verify_is_one_read_only_invocation() -> None:
    h = harness()
    plan = h.plan()
    h.programs.clear()
    mutations = h.host.mutations
    result = h.run(AgentMode.VERIFY, plan=plan)
    assert len(h.programs) == 1
    assert h.host.mutations == mutations
    assert not any(
        s.op
        not in {
            "host_info",
            "sid_lookup",
            "user_get",
            "group_get",
            "sd_read",
            "lsa_enum",
            "service_get",
            "defender_get",
            "registry_read",
            "sql",
        }
        for s in h.programs[0].steps
    )
    assert counts(plan, result.items)["drift"] > 100
    # The same program read the facts again (no extra invocation): they are what discover finds.
    assert result.facts is not None
    assert result.facts == h.run(AgentMode.DISCOVER).facts


def test_planted_06_registry_rules_are_read_and_written_in_the_64_bit_view() -> None:
    h = harness()
    _plan, _result = _hardened(h)
    keys = [s for p in h.programs for s in p.steps if s.op in ("sd_read", "dacl_write") and s.args["kind"] == "key"]
    assert keys
    assert {s.args["view"] for s in keys} == {64}


def test_harden_is_two_invocations_reaches_100_and_a_second_changes_nothing() -> None:
    h = harness()
    plan, result = _hardened(h)
    assert result.error is None
    assert len(h.programs) == 2
    assert "drift" not in counts(plan, result.items)
    assert "error" not in counts(plan, result.items)
    mutations = h.host.mutations
    h.programs.clear()
    again = h.run(AgentMode.APPLY, plan=plan)
    assert h.host.mutations == mutations
    assert again.changes == []
    assert len(h.programs) == 1


def test_an_apply_reads_the_facts_again_after_its_changes_in_the_same_program() -> None:
    h = harness()
    before = h.facts()
    assert before.ime_system_sid is None  # a fresh host
    _plan, result = _hardened(h)
    assert len(h.programs) == 2
    # The account the apply created is in the facts it returns, as a discover now finds it.
    assert result.facts is not None
    assert result.facts.ime_system_sid == h.host.accounts.user("IME_SYSTEM").sid
    assert result.facts == h.facts()
    # A second apply changes nothing and still returns the facts, from its one invocation.
    h.programs.clear()
    again = h.run(AgentMode.APPLY, plan=_plan)
    assert len(h.programs) == 1
    assert again.facts == result.facts


def test_an_undone_apply_returns_the_facts_read_before_its_changes() -> None:
    h = harness()
    plan = h.plan()
    h.host.policy.link(GroupPolicyObject("revert", {"SeServiceLogonRight": ()}), refresh_in=1.0)
    result = h.run(AgentMode.APPLY, plan=plan)
    assert result.error is not None
    assert result.facts is not None
    assert result.facts.ime_system_sid is None  # the account it created was removed again


def test_facts_that_could_not_all_be_read_again_are_not_returned() -> None:
    h = harness()
    plan = h.plan()

    def failing(program: Program) -> Any:
        result = h.invoke(program)
        assert any(r.id == "d.services" for r in result.steps)
        steps = [r.model_copy(update={"status": "error"}) if r.id == "d.services" else r for r in result.steps]
        return result.model_copy(update={"steps": steps})

    request_result = driver.run(
        AgentRequest(agent_version=AGENT_VERSION, mode=AgentMode.VERIFY, job_id="job-2", plan=plan), failing
    )
    assert request_result.error is None
    assert request_result.items
    assert request_result.facts is None


def test_order_of_work_accounts_first_services_last() -> None:
    h = harness()
    _plan, _result = _hardened(h)
    program: Program = h.programs[1]
    phases = [PHASE_OF_OP[s.op] for s in program.steps if s.op in PHASE_OF_OP]
    assert phases == sorted(phases)
    assert phases[0] == PHASES[RuleType.LOCAL_USER]


def test_first_apply_grants_to_the_account_it_creates_in_the_same_program() -> None:
    h = harness()
    _plan, result = _hardened(h)
    program = h.programs[1]
    (create,) = steps_of(program, "user_create")
    var = next(iter(create.bind))
    assert any("{{" + var + "}}" in s.args["sddl"] for s in steps_of(program, "dacl_write"))
    sid = h.host.accounts.user("IME_SYSTEM").sid
    assert any(sid in (c.after or "") for c in result.changes if c.target_kind.value in ("file", "directory"))


def test_planted_11_every_change_is_journalled_and_has_an_inverse() -> None:
    h = harness()
    _plan, result = _hardened(h)
    program = h.programs[1]
    mutating = [s for s in program.steps if s.op in PHASE_OF_OP or s.op in ("defender_add",)]
    assert mutating
    assert all(s.journal is not None for s in mutating)
    undone = {s.when_done for s in program.on_failure if s.when_done}
    assert {s.id for s in mutating} <= undone
    # the host journal holds every change the result reports, as the same record, in order; for an
    # ACL the journal has the DACL as written, the result as re-read: the same owner and explicit ACEs
    lines = (h.host.fs.read_text(journal_path("job-1")) or "").splitlines()
    journalled = journal_records([json.loads(line) for line in lines], "job-1")
    assert result.changes
    assert len(journalled) == len(result.changes)
    for written, reported in zip(journalled, result.changes, strict=True):
        assert written.model_copy(update={"after": None}) == reported.model_copy(update={"after": None})
        if reported.target_kind.value in ("file", "directory", "registry_key"):
            a, b = sddl.parse(written.after or ""), sddl.parse(reported.after or "")
            assert (a.owner, a.protected, a.explicit) == (b.owner, b.protected, b.explicit)
        else:
            assert written.after == reported.after


def test_planted_07_changed_services_are_restarted_and_health_checked() -> None:
    h = harness()
    _plan, result = _hardened(h)
    program = h.programs[1]
    changed = {s.args["name"] for s in steps_of(program, "service_change")}
    assert changed
    started = {s.args["name"] for s in steps_of(program, "service_control") if s.args["action"] == "start"}
    assert changed <= started
    assert any(s.critical and s.op == "service_get" for s in program.steps)
    assert {h.check for h in result.health} >= {"services", "smtp", "pop", "imap", "mta"}
    # every mail probe that answered before the change is re-checked after it, critically, by its banner
    observed = h.results[len(h.results) - len(h.programs)]  # the answer to the first (observe) program
    answered = {
        r.id[2:]
        for r in observed.steps
        if r.id.startswith("b.") and r.op == "tcp_probe" and (r.result or {}).get("connected")
    }
    assert answered >= {"smtp", "pop", "imap"}
    rechecks = {s.id[2:]: s for s in program.steps if s.id.startswith("h.") and s.op == "tcp_probe"}
    assert set(rechecks) == answered
    assert all(s.critical and s.expect == {"connected": True} and s.expect_match for s in rechecks.values())


def test_planted_05_results_are_the_state_after_the_change() -> None:
    h = harness()
    _plan, result = _hardened(h)
    sid = h.host.accounts.user("IME_SYSTEM").sid
    acl = [i for i in result.items if i.dacl is not None]
    assert acl
    assert any(any(a.sid == sid for a in i.dacl or []) for i in acl)


def test_planted_03_file_deny_rules_write_deny_aces() -> None:
    h = harness()
    plan = h.plan()
    denies = {i.target for i in plan.items if i.rule_type is RuleType.FILE_DENY and i.status is None}
    _plan, _result = _hardened(h)
    written = [s for s in steps_of(h.programs[1], "dacl_write") if s.args["path"] in denies]
    assert written
    for step in written:
        assert "(D;" in step.args["sddl"]


def test_rollback_restores_every_object_exactly() -> None:
    h = harness()
    before = _state(h)
    _plan, result = _hardened(h)
    assert _state(h) != before
    back = h.run(AgentMode.ROLLBACK, rollback=result.changes)
    assert back.error is None
    assert _state(h) == before


def test_planted_08_failed_health_check_undoes_the_changes() -> None:
    h = harness()
    plan = h.plan()
    before = _state(h)
    # A GPO that reverts "Log on as a service" at the next refresh, inside the run: the moved services
    # fail with 1069 at their restart (the model decides), the health check fails, the run is undone.
    h.host.policy.link(GroupPolicyObject("revert", {"SeServiceLogonRight": ()}), refresh_in=1.0)
    result = h.run(AgentMode.APPLY, plan=plan)
    assert result.error is not None
    assert result.error.code == "health_check_failed"
    assert result.changes == []
    h.host.policy.unlink("revert")
    state = _state(h)
    assert {k: v for k, v in state.items() if k != "lsa"} == {k: v for k, v in before.items() if k != "lsa"}


def test_planted_13_rotation_updates_every_service_running_as_the_account_by_sid() -> None:
    h = harness()
    _plan, result = _hardened(h)
    assert result.error is None
    h.programs.clear()
    rotated = h.run(
        AgentMode.ROTATE_PASSWORD, service_password="New-Pw-77-xyz!", previous_service_password="Ime-System-Pw-42!"
    )
    assert rotated.error is None, rotated.error
    sid = h.host.accounts.user("IME_SYSTEM").sid
    running_as = sorted(s.name for s in h.host.services.all() if h.host.services.account_sid(s.name) == sid)
    assert rotated.rotation is not None
    assert sorted(rotated.rotation.services) == running_as
    changed = sorted(s.args["name"] for p in h.programs for s in steps_of(p, "service_change"))
    assert changed == running_as


def test_planted_04_service_identity_is_compared_by_sid() -> None:
    h = harness()
    plan, _result = _hardened(h)
    svc = h.host.services.get("MEMTAS")
    svc.start_name = svc.start_name.replace(h.host.accounts.machine_name, ".")  # same account, other spelling
    result = h.run(AgentMode.VERIFY, plan=plan)
    assert "drift" not in counts(plan, result.items)


def test_sql_express_as_a_named_instance_is_hardened_through_its_data_source() -> None:
    h = harness(sql=True, sql_instance="SQLEXPRESS")
    plan = h.plan(sql=True)
    sql_items = [i for i in plan.items if i.rule_type is RuleType.SQL_GRANT and i.status is None]
    assert sql_items
    assert {i.sql_instance for i in sql_items} == {".\\SQLEXPRESS"}
    before = _state(h)
    h.programs.clear()
    result = h.run(AgentMode.APPLY, plan=plan)
    assert result.error is None, result.error
    assert "drift" not in counts(plan, result.items)
    assert "error" not in counts(plan, result.items)
    assert {s.args["instance"] for p in h.programs for s in steps_of(p, "sql")} == {".\\SQLEXPRESS"}
    back = h.run(AgentMode.ROLLBACK, rollback=result.changes)
    assert back.error is None
    assert _state(h) == before


def test_a_sql_login_failure_is_needs_input_naming_the_role() -> None:
    h = harness(sql=True)
    plan = h.plan(sql=True)
    assert h.host.sql is not None
    h.host.sql.logins.clear()  # the WinRM account has no login on this instance
    result = h.run(AgentMode.VERIFY, plan=plan)
    sql = [o for o in outcomes(plan, result.items) if o.rule_id.startswith("sql")]
    assert sql
    assert {o.status.value for o in sql} == {"needs_input"}
    assert all("sysadmin" in o.reason for o in sql)


def test_a_change_whose_journal_append_failed_is_still_recorded() -> None:
    """A user planted the journal folder: every append is refused, but the changes WERE made."""
    h = harness()
    plan = h.plan()
    user = "S-1-5-21-1-2-3-1001"
    h.host.fs.create_dir("C:\\ProgramData\\FleetLockdown", owner=user)
    h.host.fs.create_dir("C:\\ProgramData\\FleetLockdown\\journal", owner=user)
    result = h.run(AgentMode.APPLY, plan=plan)
    program_result = h.results[-1]
    failed = [s for s in program_result.steps if s.status == "error" and (s.result or {}).get("changed")]
    assert failed  # the append failed after the change
    assert {s.error.code for s in failed if s.error} != set()
    recorded = {(c.rule_id, c.target) for c in result.changes}
    assert recorded
    back = h.run(AgentMode.ROLLBACK, rollback=result.changes)
    assert back.error is None or back.error.code != "agent_error"
    assert all(i.action.value in ("rolled_back", "none") for i in back.items if not i.error)


def test_rollback_is_two_invocations_and_spends_the_journal_only_when_every_undo_succeeded() -> None:
    h = harness()
    plan = h.plan()
    applied = h.run(AgentMode.APPLY, plan=plan, job_id="7.1")
    journal = "C:\\ProgramData\\FleetLockdown\\journal\\7.1.jsonl"
    assert h.host.fs.read_text(journal)
    # One object now refuses the write (access denied, as an injected fault): that undo fails, so
    # 7.1's journal stays for a later rollback; everything else is undone.
    acl = next(c for c in applied.changes if c.target_kind.value == "directory")
    h.host.fs.tree.faults[h.host.fs.tree.node(acl.target).path.lower()] = 5
    h.programs.clear()
    first = h.run(AgentMode.ROLLBACK, rollback=applied.changes, job_id="8.1")
    assert len(h.programs) == 2
    assert any(i.error for i in first.items)
    assert h.host.fs.read_text(journal)  # kept: not every change of 7.1 was undone
    h.host.fs.tree.faults.clear()
    second = h.run(AgentMode.ROLLBACK, rollback=[], recover_job_ids=["7.1"], job_id="9.1")
    assert second.error is None
    assert not h.host.fs.exists(journal) or not h.host.fs.read_text(journal)
