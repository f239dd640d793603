"""The agent self-test: may this host run the agent, and what would a harden change? Read-only.

`run_selftest(invoke, job_id=..., plan_for=...)` sends two programs (two WinRM invocations):
1. discover's steps (`driver.discover_steps`): the executor's refusals (PowerShell 2.0 from the
   bootstrap, ConstrainedLanguage, a 32-bit process, a token without elevation — UAC remote
   filtering) answer this one, and its `host_info` says the same things from inside;
2. the verify of the plan `plan_for(facts)` compiles (`driver.run` in verify mode, the job's own
   code): every object the profile touches is read, every rule judged, and each drift is what a
   harden would change.
Only read primitives are ever sent (`READ_PRIMITIVES`, checked before each invocation): the self-test
changes nothing on the host. Everything the host returns is untrusted text: `clean_text` drops control
characters and caps lengths before it reaches a terminal, a page or the JSON for support.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pydantic import Field

from lockdown.agent import AGENT_VERSION
from lockdown.engine import driver
from lockdown.engine.observe import read_steps
from lockdown.engine.program import Program, ProgramResult, StepResult
from lockdown.rules.base import LockdownModel
from lockdown.rules.contract import AgentRequest
from lockdown.rules.evaluate import evaluate
from lockdown.rules.facts import Facts
from lockdown.rules.plan import Plan
from lockdown.rules.vocabulary import AgentMode, RuleStatus

Invoke = Callable[[Program], ProgramResult]
Verdict = Literal["pass", "fail", "warn", "not_run"]
# The contract's read primitives (lockdown.engine.program.PRIMITIVES, "reads"), less logon_check (it takes a password).
READ_PRIMITIVES: Final = frozenset(
    {
        "host_info",
        "registry_read",
        "sd_read",
        "sid_lookup",
        "user_get",
        "group_get",
        "lsa_enum",
        "service_get",
        "defender_get",
        "sql",
        "tcp_probe",
        "http_probe",
        "journal_read",
    }
)
READ_ONLY_SQL: Final = frozenset({"whoami", "login_exists", "user_exists", "permissions"})
CHECKS: Final = ("connect", "powershell", "language_mode", "elevation", "process_64bit", "reads", "verify")
# Program-level refusal -> the check it fails.
REFUSALS: Final = {
    "unsupported_powershell": "powershell",
    "constrained_language": "language_mode",
    "not_elevated": "elevation",
    "not_admin": "elevation",
    "not_64bit_process": "process_64bit",
}
HINTS: Final = {
    "powershell": "install WMF 5.1 (Windows PowerShell 5.1) on the host",
    "language_mode": "the account's sessions run in ConstrainedLanguage (AppLocker/WDAC): the agent needs FullLanguage",
    "elevation": (
        "the token is not elevated: UAC remote restrictions filter local administrators other than the built-in "
        "Administrator; use that account or a domain account, or set LocalAccountTokenFilterPolicy=1"
    ),
    "process_64bit": "a 32-bit PowerShell ran on a 64-bit Windows: the agent needs the 64-bit powershell.exe",
}
MAX_TEXT: Final = 500
MAX_CHANGES: Final = 2000
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def clean_text(value: object, limit: int = MAX_TEXT) -> str:
    """Host text made safe to print: control and bidi characters removed, one line, capped."""
    text = _CONTROL.sub("", str(value)).replace("\n", " ").replace("\r", " ").replace("\t", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


class NotReadOnly(AssertionError):
    """A self-test program contains a step that could change the host (a bug: nothing was sent)."""


class SelftestCheck(LockdownModel):
    name: str
    verdict: Verdict
    detail: str = Field(max_length=MAX_TEXT)


class WouldChange(LockdownModel):
    rule_id: str
    target: str
    expected: str
    observed: str


class SelftestReport(LockdownModel):
    """What the self-test found: one verdict per check, what a harden would change, the host's facts."""

    agent_version: str = AGENT_VERSION
    started_at: str
    invocations: int
    ok: bool
    checks: list[SelftestCheck]
    host: dict[str, Any] = Field(default_factory=dict)
    profile: str | None = None
    summary: dict[str, int] = Field(default_factory=dict)
    would_change: list[WouldChange] = Field(default_factory=list)


def assert_read_only(program: Program) -> None:
    """Refuse (before sending) a program with any step that is not a read, or a SQL statement that writes."""
    for step in [*program.steps, *program.on_failure]:
        if step.op not in READ_PRIMITIVES:
            raise NotReadOnly(f"step {step.id}: {step.op} is not a read primitive")
        if step.op == "sql" and step.args.get("statement") not in READ_ONLY_SQL:
            raise NotReadOnly(f"step {step.id}: SQL statement {step.args.get('statement')!r} writes")
        if step.journal is not None:
            raise NotReadOnly(f"step {step.id} appends to the journal")
    if program.secrets:
        raise NotReadOnly("a self-test program carries no secret")


class _Session:
    def __init__(self, invoke: Invoke) -> None:
        self.invoke = invoke
        self.invocations = 0

    def send(self, program: Program) -> ProgramResult:
        assert_read_only(program)
        self.invocations += 1
        return self.invoke(program)


def _ps_version_ok(version: str) -> bool:
    match = re.match(r"^(\d+)\.(\d+)", version)
    return match is not None and (int(match.group(1)), int(match.group(2))) >= (5, 1)


def _host_checks(host: dict[str, Any]) -> dict[str, SelftestCheck]:
    version = clean_text(host.get("powershell_version") or "", 40)
    mode = clean_text(host.get("language_mode") or "", 40)
    elevated, process_64 = host.get("elevated"), host.get("process_64bit")
    arch = host.get("arch")
    user = clean_text(host.get("user_name") or "?", 120)

    def check(name: str, good: bool, detail: str) -> SelftestCheck:
        return SelftestCheck(
            name=name, verdict="pass" if good else "fail", detail=detail if good else _hint(name, detail)
        )

    return {
        "powershell": check("powershell", _ps_version_ok(version), f"Windows PowerShell {version or '?'}"),
        "language_mode": check("language_mode", mode == "FullLanguage", f"language mode {mode or '?'}"),
        "elevation": check("elevation", elevated is True, f"{user}: elevated={elevated}"),
        "process_64bit": check(
            "process_64bit",
            process_64 is True or arch == "x86",
            f"{'64' if process_64 else '32'}-bit process on {clean_text(arch or '?', 10)} Windows",
        ),
    }


def _hint(name: str, detail: str) -> str:
    return clean_text(f"{detail}; {HINTS[name]}" if name in HINTS else detail)


def _report(started: str, session: _Session, checks: dict[str, SelftestCheck], **fields: Any) -> SelftestReport:
    ordered = [
        checks.get(name) or SelftestCheck(name=name, verdict="not_run", detail="not run: another check failed first")
        for name in CHECKS
    ]
    ok = all(c.verdict in ("pass", "warn") for c in ordered)
    return SelftestReport(started_at=started, invocations=session.invocations, ok=ok, checks=ordered, **fields)


def connect_failed(kind: str, message: str) -> SelftestReport:
    """The report when no program reached the host (authentication, network, TLS...)."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    check = SelftestCheck(name="connect", verdict="fail", detail=clean_text(f"{kind}: {message}"))
    return _report(started, _Session(lambda p: ProgramResult()), {"connect": check})


def run_selftest(invoke: Invoke, *, job_id: str, plan_for: Callable[[Facts], tuple[Plan, str]]) -> SelftestReport:
    """Two read-only invocations (see the module docstring). `invoke` raises `driver.HostRefused` for a
    refusal the transport raises instead of returning; connection failures are the caller's (`connect_failed`)."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    session = _Session(invoke)
    checks: dict[str, SelftestCheck] = {}
    program = Program(
        agent_version=AGENT_VERSION, job_id=job_id, mode="selftest", steps=driver.discover_steps("IME_SYSTEM")
    )
    try:
        first = session.send(program)
        if first.error is not None:
            raise driver.HostRefused(first.error.code, first.error.message)
    except driver.HostRefused as refused:
        checks["connect"] = SelftestCheck(name="connect", verdict="pass", detail="the agent answered")
        name = REFUSALS.get(refused.code, "language_mode" if "language" in refused.code else "connect")
        message = refused.message.removeprefix(f"{refused.code}: ")
        detail = clean_text(f"the host refused the program: {refused.code}: {message}")
        checks[name] = SelftestCheck(name=name, verdict="fail", detail=_hint(name, detail))
        return _report(started, session, checks)
    checks["connect"] = SelftestCheck(name="connect", verdict="pass", detail="the agent answered")
    results: dict[str, StepResult] = first.by_id()
    host_step = results.get("host")
    host = host_step.result if host_step is not None and host_step.status == "ok" and host_step.result else {}
    checks.update(_host_checks(host))
    facts = driver.facts_from(results)
    host_facts = {
        "computer_name": clean_text(facts.computer_name, 40),
        "os": clean_text(f"{facts.os_caption} (build {facts.os_build}, {facts.arch.value})", 200),
        "powershell_version": clean_text(facts.powershell_version, 40),
        "mailenable": clean_text(f"{facts.mailenable_edition or '?'} {facts.mailenable_version or 'not found'}", 80),
    }
    if any(c.verdict == "fail" for c in checks.values()):
        return _report(started, session, checks, host=host_facts)
    plan, profile_label = plan_for(facts)
    request = AgentRequest(agent_version=AGENT_VERSION, mode=AgentMode.VERIFY, job_id=job_id, plan=plan)
    result = driver.run(request, session.send)
    if result.error is not None:
        checks["reads"] = SelftestCheck(
            name="reads", verdict="fail", detail=clean_text(f"{result.error.code}: {result.error.message}")
        )
        return _report(started, session, checks, host=host_facts, profile=profile_label)
    outcomes = evaluate(plan, result.items, [], datetime.now(UTC))
    objects = len(read_steps(plan, "r").steps)
    errors = [o for o in outcomes if o.status is RuleStatus.ERROR]
    checks["reads"] = SelftestCheck(
        name="reads",
        verdict="fail" if errors else "pass",
        detail=clean_text(
            f"{objects} objects read, {len(errors)} could not be read"
            + (": " + "; ".join(f"{o.target}: {o.reason}" for o in errors[:3]) if errors else "")
        ),
    )
    summary = {status.value: sum(1 for o in outcomes if o.status is status) for status in RuleStatus}
    drift = [o for o in outcomes if o.status is RuleStatus.DRIFT]
    checks["verify"] = SelftestCheck(
        name="verify",
        verdict="pass",
        detail=clean_text(
            f"{summary['compliant']} compliant, {len(drift)} would change, {summary['not_applicable']} not applicable, "
            f"{summary['needs_input']} need input, {summary['error']} errors"
        ),
    )
    would_change = [
        WouldChange(
            rule_id=clean_text(o.rule_id, 200),
            target=clean_text(o.target, 300),
            expected=clean_text(o.expected_text),
            observed=clean_text(o.observed_text),
        )
        for o in drift[:MAX_CHANGES]
    ]
    return _report(
        started, session, checks, host=host_facts, profile=profile_label, summary=summary, would_change=would_change
    )


def render_table(report: SelftestReport, server: str) -> list[str]:
    """The report as lines a person reads (a table of checks, then what a harden would change)."""
    width = max(len(name) for name in CHECKS)
    lines = [f"Agent self-test of {clean_text(server, 120)} ({report.invocations} invocations, read-only)"]
    for key, value in report.host.items():
        lines.append(f"  {key:<18} {value}")
    if report.profile:
        lines.append(f"  {'profile':<18} {clean_text(report.profile, 120)}")
    lines.append("")
    lines.append(f"  {'check':<{width}}  {'verdict':<8} detail")
    for check in report.checks:
        lines.append(f"  {check.name:<{width}}  {check.verdict.upper():<8} {check.detail}")
    lines.append("")
    if report.would_change:
        lines.append(f"A harden would change {len(report.would_change)} item(s):")
        for change in report.would_change:
            lines.append(f"  {change.rule_id}  {change.target}")
            lines.append(f"      now: {change.observed}")
            lines.append(f"      to:  {change.expected}")
    elif report.ok:
        lines.append("A harden would change nothing.")
    lines.append(f"Verdict: {'READY' if report.ok else 'NOT READY'}")
    return lines


def secret_free(report: SelftestReport, secrets: tuple[str, ...]) -> SelftestReport:
    """The report with every given secret replaced (defence in depth: no program carries one)."""
    text = report.model_dump_json()
    if not any(s and s in text for s in secrets):
        return report
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return SelftestReport.model_validate_json(text)


__all__ = [
    "READ_PRIMITIVES",
    "NotReadOnly",
    "SelftestReport",
    "assert_read_only",
    "clean_text",
    "connect_failed",
    "render_table",
    "run_selftest",
    "secret_free",
]
