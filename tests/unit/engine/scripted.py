"""A scripted host for driver tests: each step is answered from a table, with the executor's control flow.

The winlab harness runs real primitives against a Windows model; this one answers by step id, so a
test can craft what a host could say but winlab never does (a refused program, a failed logon, a
malformed journal, a step that errors) and see exactly which programs the engine sent. It follows
the executor semantics of `lockdown.engine.program` that the driver relies on: `when_ok`, `critical`
aborts, `on_failure` with `when_done`. Every result goes through the wire models (JSON and back).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lockdown.agent import AGENT_VERSION
from lockdown.engine import driver
from lockdown.engine.program import Program, ProgramResult, Step
from lockdown.rules.contract import AgentRequest, AgentResult

# Answers of the write primitives when a test names none: they changed something.
WRITES = {
    "user_set_password": {"changed": True},
    "service_change": {"changed": True, "return_value": 0},
    "service_control": {"changed": True, "state": "Running", "code": 0},
    "journal_delete": {"changed": True},
    "sleep": {"changed": False},
}


@dataclass
class Answer:
    """How one step ends: its status, result and error."""

    result: dict[str, Any] | None = None
    status: str = "ok"
    error: tuple[str, str] | None = None  # (code, message)


@dataclass
class ScriptedHost:
    """Answers each step by id (`answers`), every other step `ok` with WRITES' result or `{}`."""

    answers: dict[str, Answer | dict[str, Any]] = field(default_factory=dict)
    refusals: dict[int, tuple[str, str]] = field(default_factory=dict)  # invocation number -> (code, message)
    programs: list[Program] = field(default_factory=list)
    results: list[ProgramResult] = field(default_factory=list)

    def answer(self, step: Step) -> Answer:
        found = self.answers.get(step.id)
        if isinstance(found, Answer):
            return found
        if found is not None:
            return Answer(result=found)
        return Answer(result=dict(WRITES.get(step.op, {})))

    def invoke(self, program: Program) -> ProgramResult:
        # what the host receives is the wire form (it must serialise)
        Program.model_validate_json(program.model_dump_json())
        self.programs.append(program)
        number = len(self.programs) - 1
        if number in self.refusals:
            code, message = self.refusals[number]
            out: dict[str, Any] = {"agent_version": AGENT_VERSION, "error": {"code": code, "message": message}}
            result = ProgramResult.model_validate_json(ProgramResult.model_validate(out).model_dump_json())
            self.results.append(result)
            return result
        steps: list[dict[str, Any]] = []
        done: dict[str, dict[str, Any]] = {}
        aborted_at = None
        for step in program.steps:
            entry = self._run(step, done, when_done=False)
            steps.append(entry)
            done[step.id] = entry
            if entry["status"] != "ok" and step.critical:
                aborted_at = step.id
                break
        on_failure = []
        if aborted_at is not None:
            on_failure = [self._run(step, done, when_done=True) for step in program.on_failure]
        out = {
            "agent_version": AGENT_VERSION,
            "job_id": program.job_id,
            "mode": program.mode,
            "program_version": 1,
            "steps": steps,
            "aborted_at": aborted_at,
            "on_failure": on_failure,
        }
        result = ProgramResult.model_validate_json(ProgramResult.model_validate(out).model_dump_json())
        self.results.append(result)
        return result

    def _run(self, step: Step, done: dict[str, dict[str, Any]], *, when_done: bool) -> dict[str, Any]:
        skipped = {"id": step.id, "op": step.op, "status": "skipped"}
        if any(done.get(i, {}).get("status") != "ok" for i in step.when_ok):
            return skipped
        if when_done and step.when_done is not None:
            before = done.get(step.when_done)
            if before is None or before["status"] != "ok" or (before.get("result") or {}).get("changed") is False:
                return skipped
        answer = self.answer(step)
        entry: dict[str, Any] = {"id": step.id, "op": step.op, "status": answer.status, "result": answer.result}
        if answer.error is not None:
            entry["error"] = {"code": answer.error[0], "message": answer.error[1]}
        return entry

    def run(self, **fields: Any) -> AgentResult:
        request = AgentRequest(agent_version=AGENT_VERSION, **{"job_id": "job-1", **fields})
        return driver.run(request, self.invoke)
