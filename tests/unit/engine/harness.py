"""The engine against an emulated host, in process: programs go to winlab's executor directly
(the WinRM path is covered by tests/integration/winlab_agent)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any, Final

from lockdown.agent import AGENT_VERSION
from lockdown.engine import driver
from lockdown.engine.program import Program, ProgramResult
from lockdown.rules import AgentRequest, Facts, Plan, Profile, RuleOutcome, compile_plan, evaluate, load_builtin_profile
from lockdown.rules.exceptions import ExceptionState
from lockdown.rules.vocabulary import AgentMode, Tristate
from tests.unit.winlab.builders import make_host
from winlab.agent.executor import run_program
from winlab.windows.host import WindowsHost

SERVICE_PASSWORD: Final = "Ime-System-Pw-42!"


@cache
def builtin_profile() -> Profile:
    """The built-in profile, parsed once per process (YAML parsing dominated a test's time)."""
    return load_builtin_profile()


@dataclass
class Harness:
    host: WindowsHost
    programs: list[Program] = field(default_factory=list)
    results: list[ProgramResult] = field(default_factory=list)

    def invoke(self, program: Program) -> ProgramResult:
        self.programs.append(program)
        result, _code = run_program(
            self.host, self.host.admin_token(), program.to_stdin_json(), agent_version=AGENT_VERSION
        )
        self.results.append(result)
        return result

    def run(self, mode: AgentMode, **fields: Any) -> Any:
        if mode in (AgentMode.APPLY, AgentMode.ROTATE_PASSWORD) and "service_password" not in fields:
            fields["service_password"] = SERVICE_PASSWORD
        request = AgentRequest(agent_version=AGENT_VERSION, mode=mode, job_id=fields.pop("job_id", "job-1"), **fields)
        return driver.run(request, self.invoke)

    def facts(self) -> Facts:
        result = self.run(AgentMode.DISCOVER)
        assert result.error is None, result.error
        return result.facts

    def plan(self, *, sql: bool = False, integrated: bool = False) -> Plan:
        declared = self.facts().model_copy(
            update={
                "sql_integrated": Tristate.YES if sql else Tristate.NO,
                "integrated_auth": Tristate.YES if integrated else Tristate.NO,
                # the rights apply only under an approved exception (lockdown.rules.exceptions)
                "integrated_auth_exception": ExceptionState.ACTIVE if integrated else ExceptionState.NONE,
            }
        )
        return compile_plan(builtin_profile(), declared)


def harness(**spec: Any) -> Harness:
    return Harness(make_host(**{"name": "S19ENG", "os": "2019", **spec}))


def outcomes(plan: Plan, items: Any) -> list[RuleOutcome]:
    return evaluate(plan, items, [], datetime.now(UTC))


def counts(plan: Plan, items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for outcome in outcomes(plan, items):
        out[outcome.status.value] = out.get(outcome.status.value, 0) + 1
    return out


def steps_of(program: Program, op: str) -> list[Any]:
    return [s for s in program.steps if s.op == op]
