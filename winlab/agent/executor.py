"""winlab's agent v2 executor: runs one `Program` of primitive steps against an emulated host.

This mirrors the PowerShell executor (lockdown/agent/executor.ps1) one to one, with the semantics
of `lockdown.engine.program` (its module docstring is the specification; keep both in step): the
program-level refusals, then each step's substitution -> primitive -> bind -> expect /
expect_match -> journal -> critical abort, then `on_failure` with `when_done`. It decides nothing
about hardening: the engine built the program, the primitives (`winlab.agent.primitives`) touch the
model as the caller's token.

Two choices the contract leaves open are made here (and must be the same in the PowerShell):
- a bound value is text as PowerShell's `[string]` makes it (numbers in decimal, booleans
  `True`/`False`, lists joined by spaces; an object as compact JSON); an absent or null value
  leaves the variable unbound (so a later `{{VAR}}` fails with `unbound_var`);
- a journal append that fails turns an `ok` step into `error` (the change stays in its result), so
  a critical step aborts and `on_failure` undoes what is not journaled.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

from pydantic import ValidationError

from lockdown.engine.program import (
    PROGRAM_VERSION,
    VAR_PATTERN,
    Program,
    ProgramError,
    ProgramResult,
    Step,
    StepError,
    StepResult,
    StepStatus,
    lookup,
)
from winlab.agent.primitives import PRIMITIVES, PrimitiveContext, PrimitiveError, journal_append
from winlab.mail import Protocol
from winlab.windows.host import WindowsHost
from winlab.windows.tokens import Token

EXIT_OK: Final = 0
EXIT_PROGRAM_ERROR: Final = 2
MAX_MESSAGE: Final = 4096
REDACTED: Final = "***"


class _Unbound(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _text(value: Any) -> str:
    """PowerShell's [string] of a JSON value."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, list):
        return " ".join(_text(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return "" if value is None else str(value)


def _substitute(value: Any, variables: Mapping[str, str]) -> Any:
    """Each {{NAME}} in every string at any depth (dictionary values, list items); one pass, not re-scanned."""
    if isinstance(value, str):

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in variables:
                raise _Unbound(name)
            return variables[name]

        return VAR_PATTERN.sub(one, value)
    if isinstance(value, list):
        return [_substitute(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, variables) for k, v in value.items()}
    return value


class _Run:
    """One program's execution state: the variables, the secret names and values, the results so far."""

    def __init__(self, ctx: PrimitiveContext, program: Program) -> None:
        self.ctx = ctx
        self.program = program
        self.vars: dict[str, str] = {name: value.get_secret_value() for name, value in program.secrets.items()}
        self.secret_names = frozenset(program.secrets)
        # Longest first, so a secret that contains another is redacted whole.
        self.secret_values = sorted(set(program.secret_values()), key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secret_values:
            text = text.replace(secret, REDACTED)
        return text

    def public_vars(self) -> dict[str, str]:
        return {k: self.redact(v) for k, v in self.vars.items() if k not in self.secret_names}

    def error(self, step: Step, status: StepStatus, code: str, message: str, result: Any = None) -> StepResult:
        error = StepError(code=code[:100], message=self.redact(message)[:MAX_MESSAGE])
        return StepResult(id=step.id, op=step.op, status=status, result=result, error=error)

    def step(self, step: Step) -> StepResult:
        try:
            args = _substitute(step.args, self.vars)
        except _Unbound as exc:
            return self.error(step, "error", "unbound_var", f"{{{{{exc.name}}}}} is not bound")
        try:
            result = PRIMITIVES[step.op](self.ctx, args)
        except PrimitiveError as exc:
            return self.error(step, "error", exc.code, exc.message)
        except Exception as exc:  # what the PowerShell's catch-all turns into "exception"
            return self.error(step, "error", "exception", f"{type(exc).__name__}: {exc}")
        finally:
            self.ctx.host.run_due()  # modelled time acts between steps (services settle, GPOs refresh)
        for var, path in step.bind.items():
            value = lookup(result, path)
            if value is None:
                self.vars.pop(var, None)
            else:
                self.vars[var] = _text(value)
        misses = [
            f"{path}: expected {want!r}, got {lookup(result, path)!r}"
            for path, want in step.expect.items()
            if lookup(result, path) != want
        ]
        misses += [
            f"{path}: {_text(lookup(result, path))!r} does not match {pattern!r}"
            for path, pattern in step.expect_match.items()
            if re.search(pattern, _text(lookup(result, path))) is None
        ]
        if misses:
            return self.error(step, "expect_failed", "expect_failed", "; ".join(misses), result)
        if step.journal is not None and result.get("changed") is True:
            entry = {"step": step.id, "record": step.journal, "vars": self.public_vars()}
            try:
                journal_append(self.ctx.host, self.ctx.token, self.program.job_id, entry)
            except PrimitiveError as exc:
                return self.error(step, "error", exc.code, f"journal: {exc.message}", result)
        return StepResult(id=step.id, op=step.op, status="ok", result=result)


def _head(program_json: str) -> dict[str, Any]:
    """agent_version / job_id / mode / program_version of a program that may not validate (for refusals)."""
    try:
        data = json.loads(program_json)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    head: dict[str, Any] = {}
    for key, limit in (("agent_version", 40), ("job_id", 100), ("mode", 40)):
        value = data.get(key)
        if isinstance(value, str) and len(value) <= limit:
            head[key] = value
    version = data.get("program_version")
    if isinstance(version, int) and not isinstance(version, bool):
        head["program_version"] = version
    return head


def run_program(
    host: WindowsHost,
    token: Token,
    program_json: str,
    *,
    agent_version: str,
    mail_ports: Mapping[int, Protocol] | None = None,
) -> tuple[ProgramResult, int]:
    """Run one program (the JSON on stdin) as `token`; returns the result and the exit code (0, or 2)."""
    head = _head(program_json)

    def refuse(code: str, message: str) -> tuple[ProgramResult, int]:
        fields = {k: head[k] for k in ("job_id", "mode", "program_version") if k in head}
        error = ProgramError(code=code, message=message[:MAX_MESSAGE])
        return ProgramResult(agent_version=agent_version, error=error, **fields), EXIT_PROGRAM_ERROR

    if not token.is_admin:
        # WindowsPrincipal.IsInRole(Administrator) is false for a UAC-filtered token.
        return refuse(
            "not_elevated",
            f"{token.account} is not elevated: the token has no enabled Administrators group (UAC remote "
            "restrictions filter local administrators other than the built-in Administrator; use that account, "
            "a domain account, or set LocalAccountTokenFilterPolicy=1)",
        )
    wanted_version = head.get("program_version", PROGRAM_VERSION)
    if "agent_version" in head and (head["agent_version"] != agent_version or wanted_version != PROGRAM_VERSION):
        return refuse(
            "version_mismatch",
            f"this is executor {agent_version} (program version {PROGRAM_VERSION}), the program is for "
            f"{head['agent_version']} (program version {wanted_version})",
        )
    try:
        program = Program.model_validate_json(program_json)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['type']}" for e in exc.errors()[:5])
        return refuse("bad_program", f"the program does not match the contract ({problems})")

    ctx = PrimitiveContext(host=host, token=token, job_id=program.job_id)
    if mail_ports is not None:
        ctx.mail_ports = dict(mail_ports)
    run = _Run(ctx, program)
    steps: list[StepResult] = []
    aborted_at: str | None = None
    ran: dict[str, StepResult] = {}
    for step in program.steps:
        if any(ran.get(i) is None or ran[i].status != "ok" for i in step.when_ok):
            outcome = StepResult(id=step.id, op=step.op, status="skipped")
        else:
            outcome = run.step(step)
        steps.append(outcome)
        ran[step.id] = outcome
        if outcome.status != "ok" and step.critical:
            aborted_at = step.id
            break
    undo: list[StepResult] = []
    if aborted_at is not None:
        ran = {s.id: s for s in steps}
        for step in program.on_failure:
            done = ran.get(step.when_done) if step.when_done is not None else None
            if step.when_done is not None and (
                done is None or done.status != "ok" or (done.result or {}).get("changed") is False
            ):
                undo.append(StepResult(id=step.id, op=step.op, status="skipped"))
                continue
            undo.append(run.step(step))
    result = ProgramResult(
        agent_version=agent_version,
        job_id=program.job_id,
        mode=program.mode,
        program_version=program.program_version,
        steps=steps,
        aborted_at=aborted_at,
        on_failure=undo,
        vars=run.public_vars(),
    )
    return result, EXIT_OK


__all__ = ["EXIT_OK", "EXIT_PROGRAM_ERROR", "run_program"]
