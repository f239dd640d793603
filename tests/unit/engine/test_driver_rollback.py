"""rollback against a scripted host: what is read, the inverses and their order, the journals, what is reported."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lockdown.engine.driver import journal_records
from lockdown.engine.program import Step
from lockdown.rules.contract import ChangeRecord, HealthStatus, HealthTargets
from lockdown.rules.vocabulary import AgentMode, RuleAction, TargetKind
from tests.unit.engine.scripted import Answer, ScriptedHost

IME = "S-1-5-21-1-2-3-1001"
OTHER = "S-1-5-21-1-2-3-1007"
CONFIG = "C:\\Program Files (x86)\\Mail Enable\\Config"
BIN = "C:\\Program Files (x86)\\Mail Enable\\Bin"
KEY = "HKLM\\SOFTWARE\\Mail Enable"
SDDL_BEFORE = "O:BAD:(A;OICI;FA;;;SY)"
SDDL_AFTER = f"O:BAD:(A;OICI;FA;;;SY)(A;OICI;0x1200a9;;;{IME})"
SDDL_BOTH = f"O:BAD:(A;OICI;FA;;;SY)(A;OICI;0x1200a9;;;{IME})(A;OICI;0x1200a9;;;{OTHER})"
STORE = "S19ENG\\MailEnable Store"
RIGHT = "SeServiceLogonRight"
# the DACL the host reads back after an undo (with what Windows inherits)
READ_BACK = "O:BAD:AI(A;OICI;FA;;;SY)(A;OICIID;FA;;;BA)"


def _acl(target: str = CONFIG, seq: int = 0, job: str | None = "7.1", **kw: Any) -> ChangeRecord:
    fields: dict[str, Any] = {"before": SDDL_BEFORE, "after": SDDL_AFTER, "target_kind": TargetKind.DIRECTORY, **kw}
    fields.setdefault("rule_id", f"acl.{seq}")
    return ChangeRecord(target=target, sequence=seq, job_id=job, **fields)


def _membership(seq: int = 1, job: str | None = "7.1") -> ChangeRecord:
    return ChangeRecord(
        rule_id="member.store",
        target=STORE,
        target_kind=TargetKind.MEMBERSHIP,
        sequence=seq,
        before=json.dumps({"members": []}),
        after=json.dumps({"members": [IME]}),
        job_id=job,
    )


def _right(seq: int = 2, job: str | None = "7.1") -> ChangeRecord:
    return ChangeRecord(
        rule_id="right.logon",
        target="Log on as a service",
        target_kind=TargetKind.RIGHT,
        sequence=seq,
        before=json.dumps({"right": RIGHT, "holders": []}),
        after=json.dumps({"right": RIGHT, "holders": [IME]}),
        job_id=job,
    )


def _service(seq: int = 3, job: str | None = "7.1") -> ChangeRecord:
    return ChangeRecord(
        rule_id="svc.memtas",
        target="MEMTAS",
        target_kind=TargetKind.SERVICE,
        sequence=seq,
        before=json.dumps({"start_name": "LocalSystem"}),
        after=json.dumps({"start_name": ".\\IME_SYSTEM"}),
        job_id=job,
    )


def _sd(sddl: str = SDDL_AFTER, owner: str = "S-1-5-32-544") -> dict[str, Any]:
    return {"exists": True, "object": "directory", "owner": owner, "sddl": sddl, "protected": False}


MEMTAS = {"name": "MEMTAS", "exists": True, "start_name": ".\\IME_SYSTEM", "start_name_sid": IME, "state": "Running"}


def _host(**answers: Any) -> ScriptedHost:
    table: dict[str, Any] = {
        "host": {"computer_name": "S19ENG"},
        "b.services": {"services": [MEMTAS]},
        "h.services": {"services": [{**MEMTAS, "state": "Running"}]},
    }
    table.update(answers)
    return ScriptedHost(answers=table)


def _rollback(host: ScriptedHost, changes: list[ChangeRecord], **fields: Any) -> Any:
    return host.run(mode=AgentMode.ROLLBACK, job_id="8.1", rollback=changes, **fields)


FACTS_AFTER = ["e.host", "e.me", "e.bin64", "e.services", "e.ime", "e.store", "e.legacy", "e.defender"]


def _ids(steps: list[Step]) -> list[str]:
    """The rollback's own steps; the facts read again at the end of its program are checked on their own."""
    ids = [s.id for s in steps]
    if ids[-len(FACTS_AFTER) :] == FACTS_AFTER:
        return ids[: -len(FACTS_AFTER)]
    return ids


def _full() -> tuple[ScriptedHost, list[ChangeRecord]]:
    host = _host(
        o1=_sd(),
        o2={"exists": True, "sid": "S-1-5-21-1-2-3-1010", "members": [IME.lower()]},
        o3={"sids": [IME.lower()]},
        u3={"changed": True, "conflict": False, "current": None, "after": READ_BACK, "failures": []},
    )
    return host, [_acl(), _membership(), _right(), _service()]


def test_rollback_reads_each_object_once_then_undoes_newest_first_in_one_program() -> None:
    host, changes = _full()
    result = _rollback(host, changes)
    assert result.error is None
    assert len(host.programs) == 2
    observe, program = host.programs
    assert observe.steps == [
        Step(id="host", op="host_info"),
        Step(id="o1", op="sd_read", args={"kind": "path", "path": CONFIG}),
        Step(id="o2", op="group_get", args={"name": "MailEnable Store"}),
        Step(id="o3", op="lsa_enum", args={"right": RIGHT}),
        Step(id="b.services", op="service_get", args={"names": None}),
    ]
    assert (observe.job_id, observe.mode, observe.secrets) == ("8.1", "rollback", {})
    assert _ids(program.steps) == ["u0", "u1.0", "u2.0", "u3", "r.stop0", "r.start0", "h.settle", "h.services", "d0"]
    # Last, in the same program, the facts are read again (what the undo made of the host).
    assert [s.id for s in program.steps][-len(FACTS_AFTER) :] == FACTS_AFTER
    steps = {s.id: s for s in program.steps}
    assert steps["u0"] == Step(
        id="u0",
        op="service_change",
        args={"name": "MEMTAS", "start_name": "LocalSystem", "password": ""},
        expect={"return_value": 0},
    )
    assert steps["u1.0"] == Step(id="u1.0", op="lsa_remove", args={"sid": IME, "right": RIGHT})
    assert steps["u2.0"] == Step(id="u2.0", op="group_member_remove", args={"group": "MailEnable Store", "sid": IME})
    assert steps["u3"].op == "dacl_write"
    assert steps["u3"].bind == {"AFTER_U3": "after"}
    assert steps["u3"].args["expected"] == SDDL_AFTER
    assert steps["u3"].args["sddl"] == "D:AI(A;OICI;0x1f01ff;;;S-1-5-18)"
    # the restarted service's health is checked, but a rollback never aborts on it
    assert steps["h.services"].args == {"names": ["MEMTAS"]}
    assert not any(s.critical for s in program.steps)
    # the journal of 7.1 is spent only when every undo and the check succeeded
    assert steps["d0"] == Step(
        id="d0",
        op="journal_delete",
        args={"job_id": "7.1"},
        when_ok=["u0", "u1.0", "u2.0", "u3", "h.services"],
    )
    assert program.on_failure == []


def test_rollback_reports_each_undone_change_with_before_and_after_swapped() -> None:
    host, changes = _full()
    result = _rollback(host, changes)
    assert result.action is RuleAction.ROLLED_BACK
    assert [(c.rule_id, c.sequence) for c in result.changes] == [
        ("svc.memtas", 3),
        ("right.logon", 2),
        ("member.store", 1),
        ("acl.0", 0),
    ]
    service, right, member, acl = result.changes
    assert (service.before, service.after) == (changes[3].after, changes[3].before)
    assert (member.before, member.after) == (changes[1].after, changes[1].before)
    assert (right.before, right.after, right.job_id) == (changes[2].after, changes[2].before, "7.1")
    # an ACL's after is the DACL the host read back after the write
    assert (acl.before, acl.after) == (SDDL_AFTER, READ_BACK)
    assert [(i.rule_id, i.target, i.action, i.error) for i in result.items] == [
        ("svc.memtas", "MEMTAS", RuleAction.ROLLED_BACK, None),
        ("right.logon", "Log on as a service", RuleAction.ROLLED_BACK, None),
        ("member.store", STORE, RuleAction.ROLLED_BACK, None),
        ("acl.0", CONFIG, RuleAction.ROLLED_BACK, None),
    ]
    assert result.recovered == []
    assert next((h.check, h.status) for h in result.health) == ("services", HealthStatus.OK)
    assert result.mode is AgentMode.ROLLBACK
    assert result.job_id == "8.1"


def test_a_member_or_holder_no_longer_there_is_not_removed() -> None:
    host = _host(o1={"exists": True, "sid": "S-1-5-21-1-2-3-1010", "members": [OTHER]}, o2={"sids": []})
    result = _rollback(host, [_membership(0), _right(1)])
    # nothing left to undo: the program only spends the journal; both are reported as rolled back
    assert _ids(host.programs[1].steps) == ["d0"]
    assert host.programs[1].steps[0].when_ok == []
    assert {i.action for i in result.items} == {RuleAction.ROLLED_BACK}


def test_a_group_read_that_failed_leaves_the_decision_to_the_primitive() -> None:
    host = _host(
        o1=Answer(status="error", error=("win32_5", "Access is denied.")),
        o2=Answer(status="error", error=("win32_5", "Access is denied.")),
    )
    _rollback(host, [_membership(0), _right(1)])
    assert _ids(host.programs[1].steps) == ["u0.0", "u1.0", "d0"]


def test_a_group_that_is_gone_is_reported_as_such() -> None:
    host = _host(o1={"exists": False, "sid": None, "members": []})
    result = _rollback(host, [_membership(0)])
    assert len(host.programs) == 2  # only the journal delete
    assert _ids(host.programs[1].steps) == ["d0"]
    assert result.items[0].action is RuleAction.ROLLED_BACK


def test_two_changes_of_one_object_are_chained_through_the_dacl_the_first_undo_writes() -> None:
    # the same object, spelled in another case by the later change (Windows paths are case-insensitive)
    second = _acl(target=CONFIG.upper(), seq=1, before=SDDL_AFTER, after=SDDL_BOTH)
    host = _host(o1=_sd(SDDL_BOTH))
    _rollback(host, [_acl(seq=0), second])
    steps = host.programs[1].steps
    assert _ids(steps) == ["u0", "u1", "d0"]
    first, then = steps[0], steps[1]
    assert first.bind == {"AFTER_U0": "after"}
    assert first.args["expected"] == SDDL_BOTH
    assert first.args["sddl"] == f"D:AI(A;OICI;0x1f01ff;;;S-1-5-18)(A;OICI;0x1200a9;;;{IME})"
    # the second undo expects exactly what the first one leaves, as the host reads it back
    assert then.args["expected"] == "{{AFTER_U0}}"
    assert then.bind == {"AFTER_U1": "after"}
    assert then.args["sddl"] == "D:AI(A;OICI;0x1f01ff;;;S-1-5-18)"
    assert then.args["take_ownership"] is False
    assert then.args["object"] == "directory"


def test_a_trustedinstaller_object_is_written_taking_ownership_and_a_key_in_the_64_bit_view() -> None:
    ti = "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464"
    key = _acl(target=KEY, seq=0, target_kind=TargetKind.REGISTRY_KEY)
    host = _host(o1={**_sd(owner=ti), "object": "key", "sddl": SDDL_AFTER.replace("O:BA", f"O:{ti}")})
    _rollback(host, [key])
    assert host.programs[0].steps[1] == Step(id="o1", op="sd_read", args={"kind": "key", "path": KEY, "view": 64})
    write = host.programs[1].steps[0]
    assert (write.args["kind"], write.args["view"], write.args["object"]) == ("key", 64, "key")
    assert write.args["take_ownership"] is True


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (Answer(status="error", error=("win32_5", "Access is denied.")), "Access is denied. [win32_5]"),
        (Answer(status="expect_failed", result=None), "read step expect_failed"),
        ({"exists": True, "object": "directory", "sddl": "O:BAD:(A;;XX;;;SY)"}, "bad right 'XX'"),
    ],
)
def test_an_object_that_cannot_be_read_fails_its_item_and_keeps_its_job_journal(answer: Any, why: str) -> None:
    host = _host(o1=answer, o2={"exists": True, "sid": "S-1-5-21-1-2-3-1010", "members": [IME]})
    result = _rollback(host, [_acl(seq=0), _membership(seq=1, job="6.1")])
    steps = host.programs[1].steps
    assert _ids(steps) == ["u0.0", "d0"]
    assert steps[1].args == {"job_id": "6.1"}  # 7.1 keeps its journal: one of its undos could not be computed
    acl = next(i for i in result.items if i.rule_id == "acl.0")
    assert acl.action is RuleAction.FAILED
    assert acl.error == why
    # the other change was undone: the run did roll back
    assert result.action is RuleAction.ROLLED_BACK
    assert [c.rule_id for c in result.changes] == ["member.store"]


def test_an_undo_the_host_refused_or_that_met_a_changed_object_fails_its_item() -> None:
    host = _host(
        o1=_sd(),
        o2=_sd(),
        u0={"changed": False, "conflict": True, "current": SDDL_BEFORE, "after": None, "failures": []},
        u1=Answer(status="error", error=("win32_5", "Access is denied.")),
    )
    result = _rollback(host, [_acl(target=CONFIG, seq=0), _acl(target=BIN, seq=1)])
    items = {i.target: i for i in result.items}
    # the newest change (Bin) is undone first: u0
    assert items[BIN].error == "the object changed since it was read"
    assert items[CONFIG].error == "Access is denied. [win32_5]"
    assert {i.action for i in result.items} == {RuleAction.FAILED}
    assert result.changes == []
    assert result.action is RuleAction.FAILED
    # the host skips the journal delete: its when_ok names the failed undos
    assert next(r for r in host.results[1].steps if r.id == "d0").status == "skipped"


def test_the_errors_of_an_undo_of_several_steps_are_joined_and_cut_to_the_contract_length() -> None:
    both = _membership(0).model_copy(update={"after": json.dumps({"members": [IME, OTHER]})})
    host = _host(
        o1={"exists": True, "sid": "S-1-5-21-1-2-3-1010", "members": [IME, OTHER]},
        **{f"u0.{n}": Answer(status="error", error=("win32_5", "m" * 3000)) for n in range(2)},
    )
    result = _rollback(host, [both])
    (item,) = result.items
    assert item.error is not None
    assert len(item.error) == 4096
    assert item.error.startswith("m" * 3000 + " [win32_5]; m")


def test_a_change_undone_after_another_of_the_same_item_failed_leaves_the_item_failed() -> None:
    older = _membership(0, job="7.1")
    newer = _membership(0, job="7.2").model_copy(
        update={"before": json.dumps({"members": [IME]}), "after": json.dumps({"members": [IME, OTHER]})}
    )
    host = _host(
        o1={"exists": True, "sid": "S-1-5-21-1-2-3-1010", "members": [IME, OTHER]},
        **{"u0.0": Answer(status="error", error=("win32_5", "Access is denied."))},
    )
    result = _rollback(host, [older, newer])
    assert [(s.id, s.args.get("sid")) for s in host.programs[1].steps if s.op == "group_member_remove"] == [
        ("u0.0", OTHER),
        ("u1.0", IME),
    ]
    (item,) = result.items
    assert (item.action, item.error) == (RuleAction.FAILED, "Access is denied. [win32_5]")
    assert [c.job_id for c in result.changes] == ["7.1"]
    assert result.action is RuleAction.ROLLED_BACK


def test_a_right_recorded_without_an_after_is_read_by_its_target() -> None:
    change = _right(0).model_copy(update={"after": None, "target": RIGHT})
    host = _host(o1={"sids": [IME]})
    _rollback(host, [change])
    assert host.programs[0].steps[1] == Step(id="o1", op="lsa_enum", args={"right": RIGHT})


def test_an_undo_that_failed_its_expectation_is_described_by_its_result() -> None:
    host = _host(u0=Answer(status="expect_failed", result={"changed": False, "return_value": 22}))
    result = _rollback(host, [_service(0)])
    assert result.items[0].error == 'service_change: expect_failed ({"changed": false, "return_value": 22})'
    assert result.action is RuleAction.FAILED


def test_a_service_that_does_not_come_back_is_a_health_error_after_rollback() -> None:
    host = _host(
        h_services=None,
    )
    host.answers["h.services"] = Answer(status="expect_failed", result={"services": [{**MEMTAS, "state": "Stopped"}]})
    result = _rollback(host, [_service(0)], health=HealthTargets(webmail_url="https://mail1.example.com/webmail"))
    assert result.error is not None
    assert result.error.code == "health_check_failed"
    assert result.error.message == "after rollback: MEMTAS is Stopped"
    assert result.action is RuleAction.ROLLED_BACK
    assert result.health[0].status is HealthStatus.FAILED
    webmail = next(h for h in result.health if h.check == "webmail")
    assert (webmail.status, webmail.detail) == (
        HealthStatus.NOT_CHECKED,
        "https://mail1.example.com/webmail: did not answer before the change",
    )


def test_a_long_health_error_after_rollback_is_cut_to_the_contract_length() -> None:
    down = [{**MEMTAS, "name": f"MESVC{n:03d}", "state": "Stopped"} for n in range(300)]
    host = _host()
    host.answers["h.services"] = Answer(status="expect_failed", result={"services": down})
    result = _rollback(host, [_service(0)])
    assert result.error is not None
    assert result.error.message.startswith("after rollback: MESVC000 is Stopped; MESVC001 is Stopped")
    assert len(result.error.message) == 4096


def test_without_a_restart_there_is_no_health_check() -> None:
    host = _host(o1=_sd())
    result = _rollback(host, [_acl()])
    assert not any(s.id.startswith("h.") for s in host.programs[1].steps)
    assert result.health == []
    assert result.error is None


def test_nothing_to_undo_is_one_read_only_invocation() -> None:
    host = _host()
    result = _rollback(host, [])
    assert len(host.programs) == 1
    assert result.action is RuleAction.NONE
    assert result.error is None
    assert result.items == []
    assert result.changes == []


def test_a_change_recorded_without_a_job_has_no_journal_to_delete() -> None:
    host = _host(o1=_sd())
    result = _rollback(host, [_acl(job=None)])
    assert _ids(host.programs[1].steps) == ["u0"]
    assert result.action is RuleAction.ROLLED_BACK


# --- journals of runs whose result was lost ----------------------------------------------------------
def _entry(record: ChangeRecord, step: str = "p1", **vars_: str) -> dict[str, Any]:
    return {"step": step, "record": record.model_dump(mode="json", exclude={"job_id"}), "vars": vars_}


def test_recovered_journals_are_read_deduplicated_and_undone_before_the_listed_changes() -> None:
    listed = _acl(target=CONFIG, seq=0, job="5.1")
    lost = _acl(target=BIN, seq=1, job="5.1", after=SDDL_AFTER.replace(IME, "{{SID_IME}}"))
    host = _host(
        o1=_sd(),
        j0={"exists": True, "trusted": True, "entries": [_entry(listed), _entry(lost, SID_IME=IME)], "problem": None},
        j1={"exists": False, "trusted": True, "entries": [], "problem": None},
        o2=_sd(),
    )
    result = _rollback(host, [listed], recover_job_ids=["5.1", "6.1", "5.1"])
    assert len(host.programs) == 3
    observe, extra, program = host.programs
    assert _ids(observe.steps) == ["host", "o1", "b.services", "j0", "j1"]
    assert observe.steps[3].args == {"job_id": "5.1"}
    assert observe.steps[4].args == {"job_id": "6.1"}
    # the object only the journal names is read on its own, before the inverses are computed
    assert extra.steps == [Step(id="o2", op="sd_read", args={"kind": "path", "path": BIN})]
    # the journal's variables are filled in; the entry already listed is not undone twice
    assert [(c.target, c.sequence, c.job_id) for c in result.recovered] == [(BIN, 1, "5.1")]
    assert result.recovered[0].after == SDDL_AFTER
    assert [s.args.get("path") for s in program.steps if s.op == "dacl_write"] == [BIN, CONFIG]
    deletes = [s for s in program.steps if s.op == "journal_delete"]
    assert [(s.id, s.args["job_id"], s.when_ok) for s in deletes] == [("d0", "5.1", ["u0", "u1"]), ("d1", "6.1", [])]
    assert [c.target for c in result.changes] == [BIN, CONFIG]


def test_a_recovered_change_on_an_object_already_read_needs_no_third_invocation() -> None:
    listed = _acl(target=CONFIG, seq=0, job="5.1")
    lost = _acl(target=CONFIG, seq=1, job="5.1", before=SDDL_AFTER, after=SDDL_BOTH)
    host = _host(o1=_sd(SDDL_BOTH), j0={"exists": True, "trusted": True, "entries": [_entry(lost)]})
    result = _rollback(host, [listed], recover_job_ids=["5.1"])
    assert len(host.programs) == 2
    assert [c.sequence for c in result.changes] == [1, 0]


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (Answer(status="error", error=("win32_5", "Access is denied.")), "journal of 5.1: Access is denied."),
        (Answer(status="skipped"), "journal of 5.1: skipped"),
        (
            {"exists": True, "trusted": False, "entries": [], "problem": "the folder is a junction"},
            "journal of 5.1 refused: the folder is a junction",
        ),
        ({"exists": True, "trusted": False, "entries": [], "problem": None}, "journal of 5.1 refused: not trusted"),
        (
            {"exists": True, "trusted": True, "entries": [{"step": "p1"}]},
            "journal of 5.1: a malformed entry (a journal entry without a record)",
        ),
        (
            {"exists": True, "trusted": True, "entries": ["not an object"]},
            "journal of 5.1: a malformed entry (a journal entry without a record)",
        ),
        (
            {"exists": True, "trusted": True, "entries": [{"record": {"rule_id": "x"}}]},
            "journal of 5.1: a malformed entry (3 validation errors for ChangeRecord)",
        ),
    ],
)
def test_a_journal_that_cannot_be_used_stops_the_rollback_before_any_undo(answer: Any, message: str) -> None:
    host = _host(o1=_sd(), j0=answer)
    result = _rollback(host, [_acl(job="7.1")], recover_job_ids=["5.1"])
    assert len(host.programs) == 1
    assert result.error is not None
    assert (result.error.code, result.error.message) == ("agent_error", message)
    assert result.items == []
    assert result.changes == []
    assert result.recovered == []


def test_a_refused_journal_is_named_even_when_a_later_one_is_fine() -> None:
    host = _host(
        j0={"exists": False},
        j1={"exists": True, "trusted": False, "problem": "owned by " + OTHER},
    )
    result = _rollback(host, [], recover_job_ids=["4.1", "5.1"])
    assert result.error is not None
    assert result.error.message == f"journal of 5.1 refused: owned by {OTHER}"


def test_a_long_journal_problem_is_cut_to_the_contract_length() -> None:
    host = _host(j0={"exists": True, "trusted": False, "problem": "x" * 5000})
    result = _rollback(host, [], recover_job_ids=["5.1"])
    assert result.error is not None
    assert len(result.error.message) == 4096


def test_journal_records_fill_in_the_variables_and_take_the_job_id() -> None:
    record = _acl(seq=4, job=None, before="{{A}}", after="O:BAD:(A;;FA;;;{{SID}})")
    entries = [{"step": "p4", "record": record.model_dump(mode="json"), "vars": {"SID": IME, "A": "O:BAD:"}}]
    (out,) = journal_records(entries, "3.1")
    assert (out.before, out.after, out.job_id, out.sequence) == ("O:BAD:", f"O:BAD:(A;;FA;;;{IME})", "3.1", 4)
    # no or malformed vars: the text is kept as journalled
    (kept,) = journal_records([{"record": record.model_dump(mode="json"), "vars": ["SID"]}], "3.1")
    assert kept.after == "O:BAD:(A;;FA;;;{{SID}})"
    (bare,) = journal_records([{"record": record.model_dump(mode="json")}], "3.1")
    assert bare.before == "{{A}}"
    with pytest.raises(ValueError, match="a journal entry without a record"):
        journal_records([{"record": "text"}], "3.1")


def test_the_state_of_every_group_and_right_is_read_past_one_that_failed() -> None:
    other_group = _membership(2).model_copy(update={"target": "S19ENG\\IME_STORE_GROUP", "rule_id": "member.group"})
    other_right = _right(3).model_copy(
        update={
            "rule_id": "right.batch",
            "before": json.dumps({"right": "SeBatchLogonRight", "holders": []}),
            "after": json.dumps({"right": "SeBatchLogonRight", "holders": [IME]}),
        }
    )
    denied = Answer(status="error", error=("win32_5", "Access is denied."))
    host = _host(
        o1=denied,  # MailEnable Store: unknown, the primitive decides
        o2=denied,  # SeServiceLogonRight: unknown
        o3={"exists": True, "sid": "S-1-5-21-1-2-3-1012", "members": []},  # IME no longer in IME_STORE_GROUP
        o4={"sids": []},  # nobody holds SeBatchLogonRight
    )
    _rollback(host, [_membership(0), _right(1), other_group, other_right])
    assert [s.op for s in host.programs[0].steps[1:5]] == ["group_get", "lsa_enum", "group_get", "lsa_enum"]
    removes = [(s.op, s.args) for s in host.programs[1].steps if s.op in ("group_member_remove", "lsa_remove")]
    assert removes == [
        ("lsa_remove", {"sid": IME, "right": RIGHT}),
        ("group_member_remove", {"group": "MailEnable Store", "sid": IME}),
    ]


def test_a_group_reported_missing_is_not_touched_whatever_members_the_host_lists() -> None:
    host = _host(o1={"exists": False, "sid": None, "members": [IME]})
    _rollback(host, [_membership(0)])
    assert not any(s.op == "group_member_remove" for s in host.programs[1].steps)


def test_the_entries_of_every_recovered_journal_are_undone() -> None:
    first = _acl(target=CONFIG, seq=0, job="5.1")
    second = _acl(target=BIN, seq=0, job="6.1")
    host = _host(
        o1=_sd(),
        o2=_sd(),
        j0={"exists": True, "trusted": True, "entries": [_entry(first)]},
        j1={"exists": True, "trusted": True, "entries": [_entry(second)]},
    )
    result = _rollback(host, [], recover_job_ids=["5.1", "6.1"])
    assert [(c.target, c.job_id) for c in result.recovered] == [(CONFIG, "5.1"), (BIN, "6.1")]
    assert [(c.target, c.job_id) for c in result.changes] == [(BIN, "6.1"), (CONFIG, "5.1")]


def test_a_chain_on_a_trustedinstaller_object_keeps_taking_ownership() -> None:
    ti = "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464"
    now = SDDL_BOTH.replace("O:BA", f"O:{ti}")
    host = _host(o1={**_sd(now, owner=ti)})
    second = _acl(seq=1, before=SDDL_AFTER, after=SDDL_BOTH)
    _rollback(host, [_acl(seq=0), second])
    first, then = host.programs[1].steps[:2]
    assert first.args["take_ownership"] is True
    assert then.args["take_ownership"] is True
    assert then.args["sddl"] == "D:AI(A;OICI;0x1f01ff;;;S-1-5-18)"


def test_a_long_result_of_a_failed_undo_is_quoted_in_part() -> None:
    returned = {"changed": False, "return_value": 22, "pad": "p" * 400}
    host = _host(u0=Answer(status="expect_failed", result=returned))
    result = _rollback(host, [_service(0)])
    assert result.items[0].error == f"service_change: expect_failed ({json.dumps(returned)[:300]})"


def test_a_change_without_a_job_does_not_hide_the_journal_of_the_others() -> None:
    host = _host(o1=_sd(), o2=_sd())
    _rollback(host, [_acl(target=CONFIG, seq=0, job="7.1"), _acl(target=BIN, seq=1, job=None)])
    steps = host.programs[1].steps
    assert [(s.id, s.op) for s in steps if s.id in _ids(steps)] == [
        ("u0", "dacl_write"),
        ("u1", "dacl_write"),
        ("d0", "journal_delete"),
    ]
    assert steps[2].args == {"job_id": "7.1"}
    assert steps[2].when_ok == ["u1"]
