"""The agent self-test's engine (`lockdown.engine.selftest`) over an in-process winlab host: read-only by
construction, the right verdict for each refusal and for what host_info says, host text made safe to print."""

from __future__ import annotations

from typing import Any

import pytest

from lockdown.agent import AGENT_VERSION
from lockdown.engine.driver import HostRefused
from lockdown.engine.program import PRIMITIVES, Program, ProgramError, ProgramResult, Step
from lockdown.engine.selftest import (
    READ_PRIMITIVES,
    NotReadOnly,
    assert_read_only,
    clean_text,
    render_table,
    run_selftest,
    secret_free,
)
from lockdown.rules import compile_plan, load_builtin_profile
from lockdown.rules.facts import Facts
from lockdown.rules.plan import Plan
from tests.unit.winlab.builders import make_host
from winlab.agent.executor import run_program
from winlab.windows.host import WindowsHost


def plan_for(facts: Facts) -> tuple[Plan, str]:
    return compile_plan(load_builtin_profile(), facts), "mailenable-hardened (built-in)"


class Recorder:
    """Runs each program on a winlab host as its admin token, and keeps what was sent."""

    def __init__(self, host: WindowsHost) -> None:
        self.host = host
        self.ops: list[str] = []

    def __call__(self, program: Program) -> ProgramResult:
        self.ops += [s.op for s in program.steps]
        return run_program(self.host, self.host.admin_token(), program.to_stdin_json(), agent_version=AGENT_VERSION)[0]


def verdicts(report: Any) -> dict[str, str]:
    return {c.name: c.verdict for c in report.checks}


def test_a_good_host_passes_with_two_invocations_of_reads_only_and_no_mutation() -> None:
    host = make_host()
    before = host.mutations
    invoke = Recorder(host)
    report = run_selftest(invoke, job_id="st-1", plan_for=plan_for)
    assert host.mutations == before
    assert report.ok is True
    assert report.invocations == 2
    assert set(verdicts(report).values()) == {"pass"}
    assert set(invoke.ops) <= READ_PRIMITIVES
    assert report.would_change
    assert report.summary["drift"] == len(report.would_change)
    assert render_table(report, "ME01")[-1] == "Verdict: READY"


@pytest.mark.parametrize("op", sorted(set(PRIMITIVES) - READ_PRIMITIVES))
def test_every_write_primitive_is_refused_before_anything_is_sent(op: str) -> None:
    names, _ = PRIMITIVES[op]
    args = {n.rstrip("?"): "x" for n in names if not n.endswith("?")}
    program = Program(
        agent_version=AGENT_VERSION, job_id="st-1", mode="selftest", steps=[Step(id="a", op=op, args=args)]
    )
    with pytest.raises(NotReadOnly):
        assert_read_only(program)


@pytest.mark.parametrize("statement", ["create_login", "drop_login", "create_user", "drop_user", "grant", "revoke"])
def test_a_writing_sql_statement_is_refused(statement: str) -> None:
    step = Step(id="a", op="sql", args={"instance": ".", "statement": statement, "params": {}})
    with pytest.raises(NotReadOnly):
        assert_read_only(Program(agent_version=AGENT_VERSION, job_id="st-1", mode="selftest", steps=[step]))


@pytest.mark.parametrize(
    ("code", "check"),
    [
        ("constrained_language", "language_mode"),
        ("not_64bit_process", "process_64bit"),
        ("not_elevated", "elevation"),
        ("unsupported_powershell", "powershell"),
    ],
)
def test_each_refusal_fails_its_own_check_and_nothing_else_runs(code: str, check: str) -> None:
    def refuse(program: Program) -> ProgramResult:
        return ProgramResult(agent_version=AGENT_VERSION, error=ProgramError(code=code, message="refused\x1b[2J"))

    report = run_selftest(refuse, job_id="st-1", plan_for=plan_for)
    assert report.ok is False
    assert report.invocations == 1
    assert verdicts(report)[check] == "fail"
    assert verdicts(report)["connect"] == "pass"
    assert {v for k, v in verdicts(report).items() if k not in ("connect", check)} == {"not_run"}
    assert "\x1b" not in report.model_dump_json()


def test_a_refusal_raised_by_the_transport_is_a_verdict_too() -> None:
    def refuse(program: Program) -> ProgramResult:
        raise HostRefused("not_elevated", "not_elevated: HOST\\fleetadmin is not elevated")

    report = run_selftest(refuse, job_id="st-1", plan_for=plan_for)
    assert verdicts(report)["elevation"] == "fail"
    assert "LocalAccountTokenFilterPolicy" in next(c.detail for c in report.checks if c.name == "elevation")


@pytest.mark.parametrize(
    ("field", "value", "check"),
    [
        ("elevated", False, "elevation"),
        ("language_mode", "ConstrainedLanguage", "language_mode"),
        ("powershell_version", "4.0", "powershell"),
        ("process_64bit", False, "process_64bit"),
    ],
)
def test_host_info_that_contradicts_a_passing_executor_fails_the_check(field: str, value: object, check: str) -> None:
    host = make_host()
    inner = Recorder(host)

    def lying(program: Program) -> ProgramResult:
        result = inner(program)
        steps = [
            s.model_copy(update={"result": {**(s.result or {}), field: value}}) if s.op == "host_info" else s
            for s in result.steps
        ]
        return result.model_copy(update={"steps": steps})

    report = run_selftest(lying, job_id="st-1", plan_for=plan_for)
    assert verdicts(report)[check] == "fail"
    assert report.ok is False
    assert report.invocations == 1  # no verify on a host that cannot run the agent


def test_clean_text_drops_control_and_bidi_characters_and_caps_the_length() -> None:
    assert clean_text("a\x1b[31mb\u202ec\nd") == "a[31mbc d"
    assert len(clean_text("x" * 2000)) == 500


def test_a_secret_the_host_echoes_is_removed_from_the_report() -> None:
    def refuse(program: Program) -> ProgramResult:
        return ProgramResult(
            agent_version=AGENT_VERSION, error=ProgramError(code="not_elevated", message="pw S3cret-Pw!")
        )

    report = secret_free(run_selftest(refuse, job_id="st-1", plan_for=plan_for), ("S3cret-Pw!",))
    assert "S3cret-Pw!" not in report.model_dump_json()
    assert "pw ***" in next(c.detail for c in report.checks if c.name == "elevation")
