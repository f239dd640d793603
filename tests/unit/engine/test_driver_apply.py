"""harden (apply) and verify against a scripted host: the observation, the adopted account's reset, aborts."""

from __future__ import annotations

from typing import Any

import pytest

from lockdown.engine.program import Step
from lockdown.rules.contract import HealthStatus, RotationReport
from lockdown.rules.plan import Plan
from lockdown.rules.vocabulary import AgentMode, RuleAction
from tests.unit.engine.scripted import Answer, ScriptedHost

IME = "S-1-5-21-1-2-3-1001"
PASSWORD = "Ime-System-Pw-42!"
EMPTY = Plan(profile_slug="-", profile_version="-", computer_name="S19ENG", items=[])
SERVICES = [
    {"name": "MEMTAS", "exists": True, "start_name": ".\\IME_SYSTEM", "start_name_sid": IME, "state": "Running"},
    {"name": "MEPOPS", "exists": True, "start_name": "S19ENG\\IME_SYSTEM", "start_name_sid": IME, "state": "Stopped"},
    {"name": "MESMTPCS", "exists": True, "start_name": "LocalSystem", "start_name_sid": "S-1-5-18", "state": "Running"},
]
PROBES = ["b.smtp", "b.smtp.v6", "b.pop", "b.pop.v6", "b.imap", "b.imap.v6"]
# Verify and apply read the facts again in their own programs: before the changes, and after them.
FACTS_BEFORE = ["d.host", "d.me", "d.bin64", "d.services", "d.ime", "d.store", "d.legacy", "d.defender"]
FACTS_AFTER = [step_id.replace("d.", "e.", 1) for step_id in FACTS_BEFORE]


def _host(**answers: Any) -> ScriptedHost:
    table: dict[str, Any] = {
        "host": {"computer_name": "S19ENG"},
        "b.services": {"services": SERVICES},
        "o.account": {"exists": True, "sid": IME, "flags": 66048, "groups": []},
        "o.logon": {"ok": False, "code": 1326},
        "h.services": {"services": [{**s, "state": "Running"} for s in SERVICES if s["name"] != "MEPOPS"]},
    }
    table.update({k.replace("_", "."): v for k, v in answers.items()})
    return ScriptedHost(answers=table)


def _apply(host: ScriptedHost, **fields: Any) -> Any:
    return host.run(mode=AgentMode.APPLY, job_id="h-1", **{"plan": EMPTY, "service_password": PASSWORD, **fields})


def _ids(steps: list[Step]) -> list[str]:
    return [s.id for s in steps]


def test_the_observation_checks_the_stored_password_of_the_account() -> None:
    host = _host()
    result = _apply(host, service_account="MEADMIN")
    assert len(host.programs) == 1  # nothing to change
    (observe,) = host.programs
    assert _ids(observe.steps) == ["host", "b.services", *PROBES, "o.logon", "o.account", *FACTS_BEFORE]
    assert observe.steps[1] == Step(id="b.services", op="service_get", args={"names": None})
    steps = {s.id: s for s in observe.steps}
    assert steps["o.logon"] == Step(
        id="o.logon", op="logon_check", args={"user": "S19ENG\\MEADMIN", "password": "{{SERVICE_PASSWORD}}"}
    )
    assert steps["o.account"] == Step(id="o.account", op="user_get", args={"name": "MEADMIN"})
    assert steps["d.ime"] == Step(id="d.ime", op="user_get", args={"name": "MEADMIN"})
    assert {k: v.get_secret_value() for k, v in observe.secrets.items()} == {"SERVICE_PASSWORD": PASSWORD}
    assert (observe.job_id, observe.mode) == ("h-1", "apply")
    assert result.action is RuleAction.NONE
    assert result.error is None
    assert result.rotation is None
    assert result.changes == []


def test_without_a_password_there_is_no_logon_check() -> None:
    host = _host()
    _apply(host, service_password=None)
    assert _ids(host.programs[0].steps) == ["host", "b.services", *PROBES, *FACTS_BEFORE]
    assert host.programs[0].secrets == {}


@pytest.mark.parametrize("mode", [AgentMode.APPLY, AgentMode.VERIFY])
def test_a_plan_compiled_for_another_host_is_refused_before_any_change(mode: AgentMode) -> None:
    host = _host(host={"computer_name": "MAIL2"})
    fields: dict[str, Any] = (
        {"plan": EMPTY} if mode is AgentMode.VERIFY else {"plan": EMPTY, "service_password": PASSWORD}
    )
    result = host.run(mode=mode, **fields)
    assert len(host.programs) == 1
    assert result.error is not None
    assert result.error.code == "plan_mismatch"
    assert result.error.message == "the plan was compiled for S19ENG, this host is MAIL2"
    assert result.items == []


@pytest.mark.parametrize("name", ["s19eng", None, ""])
def test_the_host_name_is_compared_case_insensitively_and_a_missing_one_is_no_mismatch(name: str | None) -> None:
    host = _host(host={"computer_name": name})
    result = host.run(mode=AgentMode.VERIFY, plan=EMPTY)
    assert result.error is None
    assert _ids(host.programs[0].steps) == ["host", *FACTS_BEFORE]


def test_a_host_step_without_a_result_is_no_mismatch() -> None:
    host = _host(host=Answer(status="error", error=("exception", "CIM failed")))
    result = host.run(mode=AgentMode.VERIFY, plan=EMPTY)
    assert result.error is None


def test_resetting_an_adopted_account_sets_its_password_and_every_service_running_as_it() -> None:
    host = _host()
    result = _apply(host, reset_adopted_password=True)
    assert len(host.programs) == 2
    program = host.programs[1]
    assert _ids(program.steps) == [
        "s.during",
        "p.set",
        "p.svc0",
        "p.svc1",
        "r.stop0",
        "r.start0",
        "h.settle",
        "h.services",
        "a1",
        *FACTS_AFTER,
    ]
    steps = {s.id: s for s in program.steps}
    assert steps["s.during"] == Step(id="s.during", op="service_get", args={"names": ["WSearch", "cisvc"]})
    assert steps["p.set"] == Step(
        id="p.set",
        op="user_set_password",
        args={"name": "IME_SYSTEM", "password": "{{SERVICE_PASSWORD}}"},
        critical=True,
    )
    assert steps["p.svc0"] == Step(
        id="p.svc0",
        op="service_change",
        expect={"return_value": 0},
        args={"name": "MEMTAS", "start_name": ".\\IME_SYSTEM", "password": "{{SERVICE_PASSWORD}}"},
    )
    assert steps["p.svc1"].args == {
        "name": "MEPOPS",
        "start_name": "S19ENG\\IME_SYSTEM",
        "password": "{{SERVICE_PASSWORD}}",
    }
    assert (steps["r.stop0"].args["name"], steps["r.start0"].args["name"]) == ("MEMTAS", "MEMTAS")
    assert steps["h.services"].args == {"names": ["MEMTAS", "MESMTPCS"]}
    assert steps["h.services"].critical
    # the old password of an adopted account is not known: the reset has no undo, the restart has
    assert _ids(program.on_failure) == ["f.r.stop0", "f.r.start0", "z1"]
    assert {k: v.get_secret_value() for k, v in program.secrets.items()} == {"SERVICE_PASSWORD": PASSWORD}
    assert result.rotation == RotationReport(
        account="IME_SYSTEM", account_sid=IME, services=["MEMTAS", "MEPOPS"], password_set=True
    )
    assert result.action is RuleAction.CHANGED
    assert result.error is None
    assert next((h.check, h.status) for h in result.health) == ("services", HealthStatus.OK)
    assert PASSWORD not in result.model_dump_json()


def test_no_reset_without_the_operators_choice_or_without_the_account() -> None:
    for fields, account in (({}, None), ({"reset_adopted_password": True}, {"exists": False, "sid": IME})):
        host = _host(**({"o_account": account} if account else {}))
        result = _apply(host, **fields)
        assert len(host.programs) == 1
        assert result.rotation is None
        assert result.action is RuleAction.NONE


def test_a_failed_reset_is_reported_and_the_spent_journal_deleted() -> None:
    host = _host(p_set=Answer(status="error", error=("win32_2245", "The password does not meet the policy")))
    result = _apply(host, reset_adopted_password=True)
    assert host.results[1].aborted_at == "p.set"
    assert result.error is not None
    assert result.error.code == "health_check_failed"
    assert result.error.message == "health check failed: step p.set failed; this run's changes were rolled back"
    assert result.action is RuleAction.ROLLED_BACK
    assert result.changes == []
    # every undo ran: a third, tiny invocation deletes this run's journal
    assert len(host.programs) == 3
    assert host.programs[2].steps == [Step(id="d0", op="journal_delete", args={"job_id": "h-1"})]


def test_a_failed_health_check_names_the_service_and_a_failed_undo_keeps_the_journal() -> None:
    host = _host(
        r_start0={"changed": False, "state": "Stopped", "code": 1069},
        h_services=Answer(status="expect_failed", result={"services": [{**SERVICES[0], "state": "Stopped"}]}),
        f_r_start0=Answer(status="error", error=("win32_1069", "logon failure")),
    )
    result = _apply(host, reset_adopted_password=True)
    assert host.results[1].aborted_at == "h.services"
    assert result.error is not None
    assert result.error.message == (
        "health check failed: MEMTAS did not start: The service did not start due to a logon failure. "
        "[Win32 error 1069]; MEMTAS is Stopped; this run's changes were rolled back "
        "(incompletely: 1 undo step(s) failed: f.r.start0)"
    )
    assert len(host.programs) == 2  # the journal stays for a later rollback
    assert {h.check: h.status for h in result.health}["services"] is HealthStatus.FAILED


def test_many_failed_undos_are_counted_and_the_first_five_named() -> None:
    names = ["MEMTAS", "MESMTPCS", "MEPOPS", "MEIMAPS", "MELCS", "MEPOCS", "MEPOPCS"]
    services = [{**SERVICES[0], "name": n} for n in names]
    # an undo step fails by an error or by its expectation
    answers: dict[str, Any] = {
        f"f_r_start{n}": Answer(status="error", error=("exception", "x"))
        if n % 2
        else Answer(status="expect_failed", result={"changed": False, "state": "Stopped", "code": 0})
        for n in range(7)
    }
    host = _host(
        b_services={"services": services},
        h_services=Answer(status="expect_failed", result={"services": []}),
        **answers,
    )
    result = _apply(host, reset_adopted_password=True)
    assert result.error is not None
    assert result.error.message == (
        "health check failed: services not running; this run's changes were rolled back "
        "(incompletely: 7 undo step(s) failed: f.r.start0, f.r.start1, f.r.start2, f.r.start3, f.r.start4)"
    )


def test_a_long_abort_message_is_cut_to_the_contract_length() -> None:
    services = [{**SERVICES[0], "name": f"SVC{n:02d}"} for n in range(60)] + [SERVICES[0]]
    starts = {f"r_start{n}": {"changed": False, "state": "Stopped", "code": 1069} for n in range(61)}
    host = _host(
        b_services={"services": services},
        h_services=Answer(status="expect_failed", result={"services": []}),
        **starts,
    )
    result = _apply(host, reset_adopted_password=True)
    assert result.error is not None
    assert result.error.message.startswith("health check failed: MEMTAS did not start")
    assert len(result.error.message) == 4096


def test_a_reset_of_an_account_whose_services_are_all_stopped_restarts_and_checks_nothing() -> None:
    host = _host(b_services={"services": [SERVICES[1], SERVICES[2]]})
    result = _apply(host, reset_adopted_password=True)
    program = host.programs[1]
    assert _ids(program.steps) == ["s.during", "p.set", "p.svc0", "a1", *FACTS_AFTER]
    assert result.health == []
    assert result.rotation is not None
    assert result.rotation.services == ["MEPOPS"]
