"""Windows Search during a harden (winlab): stopped for the job, started again, and reported before / during / after."""

from __future__ import annotations

from lockdown.agent import AGENT_VERSION
from lockdown.engine import driver
from lockdown.engine.program import Program, ProgramResult
from lockdown.rules.contract import AgentRequest
from lockdown.rules.observed import SearchObservation
from lockdown.rules.vocabulary import AgentMode
from tests.unit.engine.harness import SERVICE_PASSWORD, harness
from winlab.windows.services import ServiceState


def test_a_running_windows_search_is_stopped_for_the_changes_and_started_after_the_checks() -> None:
    h = harness(wsearch=True)
    plan = h.plan()
    h.programs.clear()
    result = h.run(AgentMode.APPLY, plan=plan)
    assert result.error is None
    program = h.programs[1]
    ids = [s.id for s in program.steps]
    # stopped first, its state read while stopped, started again after the health checks
    assert ids[:2] == ["s.stop0", "s.during"]
    stop, during = program.steps[0], program.steps[1]
    assert (stop.op, stop.args["name"], stop.args["action"]) == ("service_control", "WSearch", "stop")
    assert during.args == {"names": ["WSearch", "cisvc"]}
    start = ids.index("s.start0")
    assert start > max(i for i, step_id in enumerate(ids) if step_id.startswith("h."))
    assert program.steps[start].args["action"] == "start"
    assert program.steps[start].args["name"] == "WSearch"
    # an abort starts it again too
    undo = [s for s in program.on_failure if s.id == "f.s.start0"]
    assert [(s.args["name"], s.args["action"]) for s in undo] == [("WSearch", "start")]
    search = [i for i in result.items if i.search is not None]
    assert [(i.rule_id, i.target) for i in search] == [("preflight.windows_search", "WSearch")]
    assert search[0].search == SearchObservation(
        present=True, state_before="Running", state_during_job="Stopped", state_after="Running"
    )
    assert h.host.services.get("WSearch").state is ServiceState.RUNNING


def test_a_harden_with_nothing_to_change_reports_windows_search_as_observed() -> None:
    h = harness(wsearch=True)
    plan = h.plan()
    h.run(AgentMode.APPLY, plan=plan)
    h.programs.clear()
    again = h.run(AgentMode.APPLY, plan=plan)
    assert len(h.programs) == 1
    search = [i.search for i in again.items if i.search is not None]
    assert search == [SearchObservation(present=True, state_before="Running")]


def test_a_windows_search_stopped_since_the_plan_was_compiled_is_left_alone() -> None:
    h = harness(wsearch=True)
    plan = h.plan()
    h.host.services.get("WSearch").state = ServiceState.STOPPED
    h.programs.clear()
    result = h.run(AgentMode.APPLY, plan=plan)
    program = h.programs[1]
    assert not any(s.id.startswith(("s.stop", "s.start")) for s in program.steps)
    search = [i.search for i in result.items if i.search is not None]
    assert search == [
        SearchObservation(present=True, state_before="Stopped", state_during_job="Stopped", state_after="Stopped")
    ]


def test_a_windows_search_removed_since_the_plan_was_compiled_is_not_stopped_and_reported_absent() -> None:
    h = harness(wsearch=True)
    plan = h.plan()
    del h.host.services._services["wsearch"]  # uninstalled in the meantime (the model has no uninstall)
    h.programs.clear()
    result = h.run(AgentMode.APPLY, plan=plan)
    program = h.programs[1]
    assert not any(s.id.startswith(("s.stop", "s.start")) for s in program.steps)
    search = [i.search for i in result.items if i.search is not None]
    assert search == [SearchObservation(present=False)]


def test_the_state_before_is_the_one_read_before_the_job_not_after() -> None:
    h = harness(wsearch=True)
    plan = h.plan()
    sent: list[Program] = []

    def invoke(program: Program) -> ProgramResult:
        # the host reads WSearch as Stopped after the job (it did not come back)
        sent.append(program)
        result = h.invoke(program)
        if len(sent) != 2:
            return result
        after = {s.id for s in program.steps if s.op == "service_get" and s.id.startswith("a")}
        steps = [
            s.model_copy(
                update={
                    "result": {
                        "services": [
                            {**e, "state": "Stopped"} if e.get("name") == "WSearch" else e
                            for e in (s.result or {}).get("services", [])
                        ]
                    }
                }
            )
            if s.id in after
            else s
            for s in result.steps
        ]
        return result.model_copy(update={"steps": steps})

    request = AgentRequest(
        agent_version=AGENT_VERSION, mode=AgentMode.APPLY, job_id="w-1", plan=plan, service_password=SERVICE_PASSWORD
    )
    result = driver.run(request, invoke)
    search = [i.search for i in result.items if i.search is not None]
    assert search == [
        SearchObservation(present=True, state_before="Running", state_during_job="Stopped", state_after="Stopped")
    ]


def test_a_search_service_missing_from_the_read_during_the_job_has_no_state_during() -> None:
    h = harness(wsearch=True)
    plan = h.plan()
    sent: list[Program] = []

    def invoke(program: Program) -> ProgramResult:
        sent.append(program)
        result = h.invoke(program)
        if len(sent) != 2:
            return result
        steps = [s.model_copy(update={"result": {"services": []}}) if s.id == "s.during" else s for s in result.steps]
        return result.model_copy(update={"steps": steps})

    request = AgentRequest(
        agent_version=AGENT_VERSION, mode=AgentMode.APPLY, job_id="w-2", plan=plan, service_password=SERVICE_PASSWORD
    )
    result = driver.run(request, invoke)
    search = [i.search for i in result.items if i.search is not None]
    assert search == [SearchObservation(present=True, state_before="Running", state_after="Running")]
