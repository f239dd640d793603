"""A harden whose changes the host partly refused (winlab; some step results rewritten as a host could report them).

The program is not aborted (none of these steps is critical): each failed change fails its own item, with
the host's reason, and the rest of the run stands.
"""

from __future__ import annotations

import json
from typing import Any

from lockdown.agent import AGENT_VERSION
from lockdown.engine import driver
from lockdown.engine.program import Program, ProgramResult, StepResult
from lockdown.rules.contract import AgentRequest
from lockdown.rules.vocabulary import AgentMode, RuleAction
from tests.unit.engine.harness import SERVICE_PASSWORD, Harness, harness
from winlab.agent.primitives import journal_path
from winlab.windows.policy import GroupPolicyObject


def _run_rewritten(h: Harness, rewrites: dict[str, dict[str, Any]]) -> tuple[Any, Program]:
    """Harden with the second program's results for the steps in `rewrites` replaced."""
    plan = h.plan()
    sent: list[Program] = []

    def invoke(program: Program) -> ProgramResult:
        sent.append(program)
        result = h.invoke(program)
        if len(sent) != 2:
            return result
        steps = [
            StepResult.model_validate({"id": s.id, "op": s.op, **rewrites[s.id]}) if s.id in rewrites else s
            for s in result.steps
        ]
        return result.model_copy(update={"steps": steps})

    request = AgentRequest(
        agent_version=AGENT_VERSION, mode=AgentMode.APPLY, job_id="f-1", plan=plan, service_password=SERVICE_PASSWORD
    )
    return driver.run(request, invoke), sent[1]


def _key(program: Program, step_id: str) -> tuple[str, str]:
    step = next(s for s in program.steps if s.id == step_id)
    assert step.journal is not None
    return str(step.journal["rule_id"]), str(step.journal["target"])


def test_each_refused_change_fails_its_item_with_the_hosts_reason() -> None:
    pad = "x" * 400
    rewrites: dict[str, dict[str, Any]] = {
        "c6.dacl": {
            "status": "ok",
            "result": {"changed": False, "conflict": True, "current": "O:BAD:", "after": None, "failures": []},
        },
        "c7.dacl": {"status": "error", "error": {"code": "win32_5", "message": "Access is denied."}},
        "c8.dacl": {
            "status": "ok",
            "result": {
                "changed": True,
                "conflict": False,
                "current": None,
                "after": None,
                "failures": [{"path": "HKLM\\SYSTEM\\Setup", "code": 5}, {"path": "HKLM\\SYSTEM\\Select", "code": 5}],
            },
        },
        "c1.av_add": {"status": "expect_failed", "result": {"changed": False, "pad": pad}},
        "c2.user_create": {"status": "ok", "result": {"changed": False, "sid": None, "flags": 0}},
        "c9.dacl": {"status": "skipped"},
        "c10.dacl": {"status": "error", "error": {"code": "win32_5", "message": "m" * 4096}},
        # a `failures` list means something only in a dacl_write's result
        "c3.group_create": {
            "status": "ok",
            "result": {"changed": True, "sid": "S-1-5-21-1-2-3-1010", "failures": [{"path": "x", "code": 5}]},
        },
        # contradictory host output: a step that says it changed the object is a change, whatever else it says
        "c11.dacl": {
            "status": "ok",
            "result": {"changed": True, "conflict": True, "current": None, "after": None, "failures": []},
        },
    }
    result, program = _run_rewritten(harness(), rewrites)
    assert result.error is None
    items = {i.key: i for i in result.items}
    conflict, denied, partial = _key(program, "c6.dacl"), _key(program, "c7.dacl"), _key(program, "c8.dacl")
    assert items[conflict].action is RuleAction.FAILED
    assert items[conflict].error == "the object changed since it was read (nothing written); run the harden again"
    assert items[denied].action is RuleAction.FAILED
    assert items[denied].error == "Access is denied. [win32_5]"
    assert items[partial].action is RuleAction.FAILED
    assert items[partial].error == (
        "the ACE was written but 2 object(s) below could not be updated; first: HKLM\\SYSTEM\\Setup [Win32 error 5]"
    )
    expected = "defender_add returned " + json.dumps({"changed": False, "pad": pad})[:300]
    assert items[_key(program, "c1.av_add")].error == expected
    assert items[_key(program, "c1.av_add")].action is RuleAction.FAILED
    long = items[_key(program, "c10.dacl")]
    assert long.error is not None
    assert len(long.error) == 4096
    # a step that changed nothing, or did not run, is no failure (and no change)
    for step_id in ("c2.user_create", "c9.dacl"):
        assert items[_key(program, step_id)].action is not RuleAction.FAILED
    changed = {(c.rule_id, c.target) for c in result.changes}
    assert items[_key(program, "c11.dacl")].action is RuleAction.CHANGED
    assert _key(program, "c11.dacl") in changed
    assert partial in changed  # the ACE was written
    assert conflict not in changed
    assert denied not in changed
    assert _key(program, "c2.user_create") not in changed
    # everything else the host did is a change of this run
    assert items[_key(program, "c3.group_create")].action is RuleAction.CHANGED
    assert result.action is RuleAction.CHANGED


def test_a_failures_list_that_is_not_made_of_objects_still_fails_the_item() -> None:
    rewrites: dict[str, dict[str, Any]] = {
        "c6.dacl": {
            "status": "ok",
            "result": {"changed": True, "conflict": False, "current": None, "after": None, "failures": ["odd"]},
        },
    }
    result, program = _run_rewritten(harness(), rewrites)
    item = next(i for i in result.items if i.key == _key(program, "c6.dacl"))
    assert item.action is RuleAction.FAILED
    assert (
        item.error == "the ACE was written but 1 object(s) below could not be updated; first: None [Win32 error None]"
    )


def test_a_failed_health_check_marks_the_changed_items_rolled_back_and_spends_the_journal() -> None:
    h = harness()
    plan = h.plan()
    # a GPO reverts "Log on as a service" inside the run: the moved services fail to start (1069)
    h.host.policy.link(GroupPolicyObject("revert", {"SeServiceLogonRight": ()}), refresh_in=1.0)
    h.programs.clear()
    result = h.run(AgentMode.APPLY, plan=plan, job_id="g-1")
    assert result.error is not None
    assert result.error.code == "health_check_failed"
    assert result.error.message.startswith("health check failed: ")
    assert "did not start: The service did not start due to a logon failure. [Win32 error 1069]" in result.error.message
    assert result.error.message.endswith("this run's changes were rolled back")
    assert result.action is RuleAction.ROLLED_BACK
    assert result.changes == []
    rolled = [i for i in result.items if i.action is RuleAction.ROLLED_BACK]
    assert rolled
    assert not any(i.action is RuleAction.CHANGED for i in result.items)
    # every undo succeeded: the third invocation deletes the spent journal
    assert len(h.programs) == 3
    assert [(s.op, s.args) for s in h.programs[2].steps] == [("journal_delete", {"job_id": "g-1"})]
    assert not h.host.fs.exists(journal_path("g-1"))
