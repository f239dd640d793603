"""agent.ps1's mode switch in Python: discover / verify / apply / rollback against one emulated host.

Order inside an apply (the PowerShell does the same): pre-flight (Defender exclusion; Windows
Search and the Indexing Service are stopped just before the first change), accounts, group and
membership, user rights, registry, files and folders, SQL, service identities; then the changed
services are restarted (stop, wait, start) and, after a settling delay, the health check runs:
every MailEnable service that ran before still runs, SMTP/POP/IMAP answer (their services run),
the MTA could move a message, webmail and web admin answer when the request's `health` gives
their URL (else "not_checked", as the PowerShell does). A failed health check rolls back this
run's changes, newest first, restarts what it touched and reports `health_check_failed`. The
checks are reported in the result's `health` list with the same fields as the PowerShell's
(`health_checks`).
Items are reported in plan order.
"""

from __future__ import annotations

from typing import Final

from lockdown.agent import AGENT_VERSION
from lockdown.rules.contract import (
    AgentError,
    AgentRequest,
    AgentResult,
    ChangeRecord,
    HealthCheckResult,
    HealthStatus,
    HealthTargets,
)
from lockdown.rules.observed import ObservedItem
from lockdown.rules.plan import PlanItem
from lockdown.rules.vocabulary import AgentMode, RuleAction, RuleType
from winlab.agent.context import (
    HEALTH_SETTLE_SECONDS,
    SEARCH_CHECKS,
    STOP_WAIT_SECONDS,
    AgentRun,
    ItemError,
    error_text,
)
from winlab.agent.discover import discover_facts
from winlab.agent.handlers import HANDLERS, ROLLBACK_HANDLERS, search_observation
from winlab.agent.journal import JournalError, read_journal, remove_journal
from winlab.windows.errors import MESSAGES, Win32Error
from winlab.windows.host import HealthReport, WindowsHost
from winlab.windows.sql import SqlError
from winlab.windows.tokens import Token

EXIT_OK: Final = 0
EXIT_AGENT_ERROR: Final = 2
_PHASES: Final = {
    RuleType.PREFLIGHT: 0,
    RuleType.LOCAL_USER: 1,
    RuleType.LOCAL_GROUP: 2,
    RuleType.GROUP_MEMBER: 3,
    RuleType.USER_RIGHT: 4,
    RuleType.REGISTRY_ACL: 5,
    RuleType.FILE_ACL: 6,
    RuleType.FILE_DENY: 6,
    RuleType.PATH_ACL: 6,
    RuleType.SQL_GRANT: 7,
    RuleType.SERVICE_IDENTITY: 8,
}


def _result(request: AgentRequest, **fields: object) -> AgentResult:
    data: dict[str, object] = {"agent_version": AGENT_VERSION, "mode": request.mode, "job_id": request.job_id}
    data.update(fields)
    return AgentResult.model_validate(data)


def run_request(host: WindowsHost, token: Token, request: AgentRequest) -> tuple[AgentResult, int]:
    """Run one validated request as `token`; returns the result and the agent's exit code."""
    if request.agent_version != AGENT_VERSION:
        error = AgentError(
            code="version_mismatch",
            message=f"this is agent {AGENT_VERSION}, the request is for {request.agent_version}",
        )
        return _result(request, error=error), EXIT_AGENT_ERROR
    if not token.is_admin:
        # ([Security.Principal.WindowsPrincipal][Security.Principal.WindowsIdentity]::GetCurrent()).IsInRole(
        # [Security.Principal.WindowsBuiltInRole]::Administrator) is false for a UAC-filtered token.
        message = (
            f"{token.account} is not elevated: the token has no enabled Administrators group (UAC remote "
            "restrictions filter local administrators other than the built-in Administrator; use that account, "
            "a domain account, or set LocalAccountTokenFilterPolicy=1)"
        )
        return _result(request, error=AgentError(code="not_elevated", message=message)), EXIT_AGENT_ERROR
    plan = request.plan
    if plan is not None and plan.computer_name.upper() != host.accounts.machine_name.upper():
        message = f"the plan was compiled for {plan.computer_name}, this host is {host.accounts.machine_name}"
        return _result(request, error=AgentError(code="plan_mismatch", message=message)), EXIT_AGENT_ERROR
    run = AgentRun(host=host, token=token, request=request)
    if request.mode is AgentMode.DISCOVER:
        return _result(request, facts=discover_facts(host, token)), EXIT_OK
    if request.mode is AgentMode.VERIFY:
        return _result(request, items=_verify(run)), EXIT_OK
    if request.mode is AgentMode.APPLY:
        return _apply(run)
    if request.mode is AgentMode.ROTATE_PASSWORD:
        from winlab.agent.rotation import rotate_password

        return rotate_password(run)
    return _rollback(run)


def _actionable(run: AgentRun) -> list[PlanItem]:
    plan = run.request.plan
    return [item for item in plan.items if item.status is None] if plan is not None else []


def _verify(run: AgentRun) -> list[ObservedItem]:
    items = []
    for item in _actionable(run):
        items.append(HANDLERS[(AgentMode.VERIFY, item.rule_type)](run, item))
        run.tick()
    return items


def _health_baseline(host: WindowsHost) -> HealthReport:
    return host.health()


_DEFAULT_PORTS: Final = {"smtp": 25, "pop": 110, "imap": 143}
_PAGES: Final = (("webmail", "webmail_url"), ("webadmin", "admin_url"))


def _page_url(targets: HealthTargets | None, key: str) -> str | None:
    return getattr(targets, key) if targets is not None else None


def _unchecked_pages(targets: HealthTargets | None) -> set[str]:
    """Login pages without a URL in the request: not checked (Test-FleetMailHealth skips them)."""
    return {label for label, key in _PAGES if not _page_url(targets, key)}


def _absolute_problems(after: HealthReport, targets: HealthTargets | None) -> list[str]:
    """`after.reasons` without the pages that are not checked."""
    skipped = _unchecked_pages(targets)
    return [r for r in after.reasons if r.split(":", 1)[0] not in skipped]


def health_checks(targets: HealthTargets | None, before: HealthReport, after: HealthReport) -> list[HealthCheckResult]:
    """The structured report of one health check, with the fields Test-FleetMailHealth reports.

    services: MailEnable services that ran before and run now; smtp/pop/imap: the protocol's service
    answers (winlab has no sockets here; the port is the one the request configured); mta: MEMTAS
    runs and may move messages (winlab's model can check this fully; the PowerShell checks the
    service and the queue folders' ACLs only); webmail/webadmin: only when their URL is set.
    """

    def entry(check: str, ok: bool, detail: str) -> HealthCheckResult:
        status = HealthStatus.OK if ok else HealthStatus.FAILED
        return HealthCheckResult(check=check, status=status, detail=detail[:1000])

    down = [f"{n} is {after.services.get(n, 'missing')}" for n, s in sorted(before.services.items()) if s == "Running"]
    down = [d for d in down if not d.endswith(" is Running")]
    running = [n for n, s in sorted(after.services.items()) if s == "Running"]
    checks = [entry("services", not down, "; ".join(down) if down else "running: " + ", ".join(running))]
    for protocol, default in _DEFAULT_PORTS.items():
        port = getattr(targets, f"{protocol}_port", None) if targets is not None else None
        port = port or default
        if protocol not in after.protocols:
            checks.append(HealthCheckResult(check=protocol, status=HealthStatus.NOT_CHECKED, detail="not installed"))
        elif after.protocols[protocol]:
            checks.append(entry(protocol, True, f"port {port}"))
        else:
            checks.append(entry(protocol, False, f"{protocol.upper()} does not answer on port {port}"))
    mta_ok, mta_why = after.mta
    checks.append(entry("mta", mta_ok, "MEMTAS running; queue folders writable" if mta_ok else mta_why))
    for label, key in _PAGES:
        url = _page_url(targets, key)
        if not url:
            detail = "not checked: no URL configured"
            checks.append(HealthCheckResult(check=label, status=HealthStatus.NOT_CHECKED, detail=detail))
            continue
        ok, why = after.webmail if label == "webmail" else after.webadmin
        checks.append(entry(label, ok, url if ok else f"{url}: {why}"))
    return checks


def _new_problems(before: HealthReport, after: HealthReport, targets: HealthTargets | None = None) -> list[str]:
    """What broke since the baseline: services that ran and stopped, checks that passed and fail now.

    Login pages whose URL the request does not give are not checked (as in the PowerShell).
    """
    skipped = _unchecked_pages(targets)
    reasons = []
    for name, state in sorted(before.services.items()):
        if state == "Running" and after.services.get(name) != "Running":
            reasons.append(next((r for r in after.reasons if r.startswith(f"{name} ")), f"{name} is not running"))
    for label, was, now in (
        ("mta", before.mta, after.mta),
        ("webmail", before.webmail, after.webmail),
        ("webadmin", before.webadmin, after.webadmin),
    ):
        if was[0] and not now[0] and label not in skipped:
            reasons.append(f"{label}: {now[1]}")
    for protocol, was_up in sorted(before.protocols.items()):
        if was_up and not after.protocols.get(protocol, False):
            reasons.append(f"{protocol.upper()} does not answer")
    return reasons


def _restart(run: AgentRun) -> list[str]:
    """Restart-Service for every service whose identity changed: stop, wait for Stopped, start."""
    failures = []
    services = run.host.services
    for name in run.restart:
        if services.get(name).running:
            services.stop(name, run.token)
        run.host.advance(STOP_WAIT_SECONDS)
        code = services.start(name, run.token)
        if code != 0:
            failures.append(f"{name} did not start: {MESSAGES.get(code, 'error')} [Win32 error {code}]")
    run.restart = []
    return failures


def _apply(run: AgentRun) -> tuple[AgentResult, int]:
    host = run.host
    baseline = _health_baseline(host)
    actionable = _actionable(run)
    search_items = [i for i in actionable if i.preflight_check in SEARCH_CHECKS]
    ordered = sorted(
        (i for i in actionable if i not in search_items), key=lambda i: _PHASES.get(i.rule_type, len(_PHASES))
    )
    observed: dict[tuple[str, str], ObservedItem] = {}
    for item in ordered:
        observed[item.key] = HANDLERS[(AgentMode.APPLY, item.rule_type)](run, item)
        run.tick()
    error: AgentError | None = None
    health: list[HealthCheckResult] = []
    targets = run.request.health
    action = RuleAction.CHANGED if run.changes or run.rotation else RuleAction.NONE
    if run.changes or run.restart:
        failures = _restart(run)
        host.advance(HEALTH_SETTLE_SECONDS)
        after = host.health()
        health = health_checks(targets, baseline, after)
        problems = failures + _new_problems(baseline, after, targets)
        if problems:
            undone, undo_errors = _undo(run, list(run.changes))
            if run.restart:
                _restart(run)
            host.advance(HEALTH_SETTLE_SECONDS)
            still = _new_problems(baseline, host.health(), targets)
            message = "health check failed: " + "; ".join(problems) + "; this run's changes were rolled back"
            if undo_errors or still:
                message += " (incompletely: " + "; ".join(undo_errors + still) + ")"
            error = AgentError(code="health_check_failed", message=message[:4096])
            action = RuleAction.ROLLED_BACK
            if not undo_errors:
                remove_journal(host, run.token, run.request.job_id)
            rolled = {(c.rule_id, c.target) for c in undone}
            for item in ordered:
                if item.key in rolled:
                    fresh = HANDLERS[(AgentMode.VERIFY, item.rule_type)](run, item)
                    observed[item.key] = fresh.model_copy(
                        update={
                            "action": RuleAction.ROLLED_BACK,
                            "sddl_before": observed[item.key].sddl_before,
                            "sddl_after": observed[item.key].sddl_after,
                        }
                    )
            run.changes = []
    run.restore_search()
    for item in search_items:
        observed[item.key] = search_observation(run, item)
    items = [observed[i.key] for i in actionable if i.key in observed]
    if error is None and any(i.action is RuleAction.FAILED for i in items):
        action = RuleAction.FAILED if not run.changes else RuleAction.CHANGED
    result = _result(
        run.request,
        items=items,
        changes=run.changes,
        action=action,
        rotation=run.rotation,
        health=health,
        error=error,
    )
    return result, EXIT_AGENT_ERROR if error is not None else EXIT_OK


def _undo(run: AgentRun, changes: list[ChangeRecord]) -> tuple[list[ChangeRecord], list[str]]:
    """Undo `changes` newest first; returns the undo records and the errors (the rest still runs)."""
    undone: list[ChangeRecord] = []
    errors: list[str] = []
    for change in reversed(changes):
        try:
            undone.append(ROLLBACK_HANDLERS[change.target_kind](run, change))
        except (Win32Error, SqlError, ItemError) as exc:
            errors.append(f"{change.rule_id} {change.target}: {error_text(exc)}")
        run.tick()
    return undone, errors


def _recovered(run: AgentRun) -> list[ChangeRecord]:
    """Journal entries of the request's recover_job_ids that its change list does not already carry."""
    listed = {(c.job_id, c.sequence) for c in run.request.rollback if c.job_id is not None}
    recovered: list[ChangeRecord] = []
    for job_id in dict.fromkeys(run.request.recover_job_ids):
        recovered += [e for e in read_journal(run.host, run.token, job_id) if (job_id, e.sequence) not in listed]
    return recovered


def _rollback(run: AgentRun) -> tuple[AgentResult, int]:
    """Undo the given ChangeRecords (and the recovered journal entries) newest first; one item per record key."""
    host = run.host
    try:
        recovered = _recovered(run)
    except JournalError as exc:
        return _result(run.request, error=AgentError(code="agent_error", message=str(exc)[:4096])), EXIT_AGENT_ERROR
    # A run whose result was lost is taken as the newest: its entries are undone first.
    records = list(run.request.rollback) + recovered
    items: dict[tuple[str, str], ObservedItem] = {}
    undone: list[ChangeRecord] = []
    failed_jobs: set[str | None] = set()
    for change in reversed(records):
        key = (change.rule_id, change.target)
        try:
            undone.append(ROLLBACK_HANDLERS[change.target_kind](run, change))
            items.setdefault(
                key, ObservedItem(rule_id=change.rule_id, target=change.target, action=RuleAction.ROLLED_BACK)
            )
        except (Win32Error, SqlError, ItemError) as exc:
            failed_jobs.add(change.job_id)
            items[key] = ObservedItem(
                rule_id=change.rule_id, target=change.target, error=error_text(exc)[:4096], action=RuleAction.FAILED
            )
        run.tick()
    error: AgentError | None = None
    health: list[HealthCheckResult] = []
    if run.restart:
        before = host.health()
        failures = _restart(run)
        host.advance(HEALTH_SETTLE_SECONDS)
        after = host.health()
        health = health_checks(run.request.health, before, after)
        problems = failures + _absolute_problems(after, run.request.health)
        if problems:
            error = AgentError(code="health_check_failed", message=("after rollback: " + "; ".join(problems))[:4096])
    if error is None:
        # Undone: the journals of these jobs are spent (kept when one of their changes failed).
        jobs = [c.job_id for c in run.request.rollback if c.job_id is not None] + list(run.request.recover_job_ids)
        for job_id in dict.fromkeys(jobs):
            if job_id not in failed_jobs:
                remove_journal(host, run.token, job_id)
    failed = any(i.action is RuleAction.FAILED for i in items.values())
    action = RuleAction.ROLLED_BACK if undone else (RuleAction.FAILED if failed else RuleAction.NONE)
    result = _result(
        run.request,
        items=list(items.values()),
        changes=undone,
        recovered=recovered,
        action=action,
        health=health,
        error=error,
    )
    return result, EXIT_AGENT_ERROR if error is not None else EXIT_OK


__all__ = ["EXIT_AGENT_ERROR", "EXIT_OK", "health_checks", "run_request"]
