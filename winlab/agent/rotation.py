"""Mode rotate_password in Python, with the PowerShell's semantics (`Invoke-FleetPasswordRotation`).

1. The account must exist and the request's *previous* password must log it on (LogonUser, network;
   "logon type not granted" still proves the password): otherwise nothing is changed, because the
   agent could not put the old password back.
2. SetPassword(new) on the account, Win32_Service.Change(StartPassword=new) on every service whose
   StartName is the account (by SID), restart those that ran, settle, health check.
3. Any failure: SetPassword(previous), Change(StartPassword=previous), restart, and report
   `health_check_failed` with `rotation.restored` set. Nothing is recorded for rollback: a password
   change is not a hardening change.
"""

from __future__ import annotations

from lockdown.rules.contract import AgentError, AgentResult, RotationReport
from lockdown.rules.vocabulary import RuleAction
from winlab.agent.context import HEALTH_SETTLE_SECONDS, AgentRun, ItemError, error_text
from winlab.agent.handlers import services_running_as, set_service_passwords
from winlab.agent.runner import EXIT_AGENT_ERROR, EXIT_OK, _new_problems, _restart, _result
from winlab.windows.errors import ERROR_LOGON_FAILURE, ERROR_LOGON_TYPE_NOT_GRANTED, Win32Error
from winlab.windows.tokens import LogonType


def _error(run: AgentRun, code: str, message: str, report: RotationReport | None = None) -> tuple[AgentResult, int]:
    error = AgentError(code=code, message=message[:4096])
    action = RuleAction.ROLLED_BACK if report is not None and report.restored else RuleAction.NONE
    return _result(run.request, error=error, rotation=report, action=action), EXIT_AGENT_ERROR


def rotate_password(run: AgentRun) -> tuple[AgentResult, int]:
    """Set a new service-account password on the account and its services; restore the old one on failure."""
    host = run.host
    new, previous = run.service_password, run.previous_service_password
    if new is None or previous is None:  # the contract refuses such a request; kept for type narrowing
        return _error(run, "agent_error", "rotate_password needs both passwords")
    name = run.request.service_account
    user = host.accounts.users.get(name.lower())
    if user is None:
        return _error(run, "account_missing", f"{name} does not exist on this host: harden it first")
    try:
        host.authority.logon(f"{host.accounts.machine_name}\\{user.name}", previous, LogonType.NETWORK)
    except Win32Error as exc:
        if exc.code == ERROR_LOGON_FAILURE:
            return _error(
                run,
                "previous_password_mismatch",
                f"the stored password of {user.name} does not log it on: nothing was changed (an adopted account "
                "is taken over by a harden with 'reset the adopted password')",
            )
        if exc.code != ERROR_LOGON_TYPE_NOT_GRANTED:
            return _error(run, "agent_error", error_text(exc))
    names = services_running_as(run, user.sid)
    running = [n for n in names if host.services.get(n).running]
    baseline = host.health()
    try:
        host.accounts.set_password(user.name, new, run.token)
    except Win32Error as exc:
        return _error(run, "password_rejected", f"SetPassword refused the new password: {error_text(exc)}")
    report = RotationReport(account=user.name, account_sid=user.sid, services=names, password_set=True)
    problems: list[str] = []
    try:
        set_service_passwords(run, names, new)
    except ItemError as exc:
        problems.append(str(exc))
    if not problems:
        run.restart = list(running)
        problems += _restart(run)
        host.advance(HEALTH_SETTLE_SECONDS)
        problems += _new_problems(baseline, host.health(), run.request.health)
    if not problems:
        return _result(run.request, action=RuleAction.CHANGED, rotation=report), EXIT_OK
    undo_errors: list[str] = []
    try:
        host.accounts.set_password(user.name, previous, run.token)
    except Win32Error as exc:
        undo_errors.append(f"SetPassword(previous): {error_text(exc)}")
    try:
        set_service_passwords(run, names, previous)
    except ItemError as exc:
        undo_errors.append(str(exc))
    run.restart = list(running)
    undo_errors += _restart(run)
    host.advance(HEALTH_SETTLE_SECONDS)
    still = _new_problems(baseline, host.health(), run.request.health)
    message = "health check failed after the password change: " + "; ".join(problems)
    message += "; the previous password was restored on the account and its services"
    if undo_errors or still:
        message += " (services still failing: " + "; ".join(undo_errors + still) + ")"
    return _error(run, "health_check_failed", message, report.model_copy(update={"restored": True}))


__all__ = ["rotate_password"]
