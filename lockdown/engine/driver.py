"""One job's host work as programs: verify = 1 invocation; harden = observe + execute (2);
rollback = observe + execute (a third only to read objects named by recovered journals);
rotate_password = observe + execute; discover = 1.

`run(request, invoke)` takes the Python-side `AgentRequest` (what the jobs layer asks for) and
a function that sends one `Program` to the host and returns its `ProgramResult`, and returns an
`AgentResult` built from what the host observed. Every decision is made here, in Python.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import SecretStr

from lockdown.agent import AGENT_VERSION
from lockdown.engine import health
from lockdown.engine.changes import (
    PREVIOUS_PASSWORD_VAR,
    SERVICE_PASSWORD_VAR,
    ApplyBuilder,
    HostNow,
    Inverse,
    acl_inverse,
    build_apply,
    change_read_args,
    records_from,
    search_items,
    simple_inverse,
    substitute,
)
from lockdown.engine.observe import (
    ME_KEY,
    ME_VALUES,
    Observed,
    ReadError,
    Reads,
    build_observations,
    edition_and_version,
    read_steps,
    short_name,
)
from lockdown.engine.program import Program, ProgramResult, Step, StepResult
from lockdown.rules.contract import AgentError, AgentRequest, AgentResult, ChangeRecord, RotationReport
from lockdown.rules.evaluate import evaluate
from lockdown.rules.facts import Facts
from lockdown.rules.observed import ObservedItem, SearchObservation
from lockdown.rules.plan import Plan
from lockdown.rules.targets import LEGACY_STORE_GROUP_NAME, STORE_GROUP_NAME, validate_service_name
from lockdown.rules.vocabulary import (
    AgentMode,
    Arch,
    DomainRole,
    RuleAction,
    RuleStatus,
    TargetKind,
)

Invoke = Callable[[Program], ProgramResult]
SEARCH_SERVICES: Final = ("WSearch", "cisvc")
HEALTH: Final = "h."
BASE: Final = "b."
_DOMAIN_ROLES: Final = list(DomainRole)


class HostRefused(Exception):
    """The host refused the whole program (e.g. unsupported PowerShell)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _program(
    request: AgentRequest,
    steps: list[Step],
    on_failure: list[Step] | None = None,
    secrets: dict[str, str] | None = None,
) -> Program:
    return Program(
        agent_version=AGENT_VERSION,
        job_id=request.job_id,
        mode=request.mode.value,
        steps=steps,
        on_failure=on_failure or [],
        secrets={name: SecretStr(value) for name, value in (secrets or {}).items()},
    )


def _secrets(request: AgentRequest) -> dict[str, str]:
    out = {}
    if request.service_password is not None:
        out[SERVICE_PASSWORD_VAR] = request.service_password.get_secret_value()
    if request.previous_service_password is not None:
        out[PREVIOUS_PASSWORD_VAR] = request.previous_service_password.get_secret_value()
    return out


def _call(invoke: Invoke, program: Program) -> tuple[ProgramResult, dict[str, StepResult]]:
    result = invoke(program)
    if result.error is not None:
        raise HostRefused(result.error.code, result.error.message)
    return result, result.by_id()


def _result(request: AgentRequest, **fields: Any) -> AgentResult:
    return AgentResult(agent_version=AGENT_VERSION, mode=request.mode, job_id=request.job_id, **fields)


def _host_step() -> Step:
    return Step(id="host", op="host_info")


def _host_mismatch(plan: Plan | None, results: Mapping[str, StepResult]) -> str | None:
    host = results.get("host")
    name = str((host.result or {}).get("computer_name") or "") if host is not None else ""
    if plan is not None and name and name.upper() != plan.computer_name.upper():
        return f"the plan was compiled for {plan.computer_name}, this host is {name}"
    return None


def run(request: AgentRequest, invoke: Invoke) -> AgentResult:
    """Carry out `request` through `invoke` (one call = one WinRM invocation)."""
    try:
        if request.mode is AgentMode.DISCOVER:
            return _discover(request, invoke)
        if request.mode is AgentMode.VERIFY:
            return _verify(request, invoke)
        if request.mode is AgentMode.APPLY:
            return _apply(request, invoke)
        if request.mode is AgentMode.ROTATE_PASSWORD:
            return _rotate(request, invoke)
        return _rollback(request, invoke)
    except HostRefused as exc:
        return _result(request, error=AgentError(code=exc.code, message=exc.message[:4096]))


# --- discover ---------------------------------------------------------------------------------------
# Verify and apply read the facts again in their own programs (no extra invocation): before the changes,
# and after them in an apply's second program.
FACTS_BEFORE: Final = "d."
FACTS_AFTER: Final = "e."


def discover_steps(service_account: str, prefix: str = "") -> list[Step]:
    """What discover reads: the host, MailEnable's registry key, its services, accounts and Defender.

    `prefix` names the steps (and the one variable) apart when verify and apply read the facts again in
    their own programs, so the facts stay current at no extra invocation."""
    program_dir = f"{prefix.upper().replace('.', '_')}ME_PROGRAM_DIR"
    return [
        Step(id=f"{prefix}host", op="host_info"),
        Step(
            id=f"{prefix}me",
            op="registry_read",
            args={"path": ME_KEY, "view": 32, "names": list(ME_VALUES)},
            bind={program_dir: "values.Program Directory"},
        ),
        Step(id=f"{prefix}bin64", op="sd_read", args={"kind": "path", "path": f"{{{{{program_dir}}}}}\\Bin64"}),
        Step(id=f"{prefix}services", op="service_get", args={"names": None}),
        Step(id=f"{prefix}ime", op="user_get", args={"name": service_account}),
        Step(id=f"{prefix}store", op="group_get", args={"name": STORE_GROUP_NAME}),
        Step(id=f"{prefix}legacy", op="group_get", args={"name": LEGACY_STORE_GROUP_NAME}),
        Step(id=f"{prefix}defender", op="defender_get"),
    ]


def _refreshed_facts(results: Mapping[str, StepResult], prefix: str) -> Facts | None:
    """The facts read again by a verify or an apply, or None unless every one of those reads succeeded
    (a half-read would replace good stored facts with defaults)."""
    ids = [step.id for step in discover_steps("IME_SYSTEM", prefix)]
    if not all(results.get(step_id) is not None and results[step_id].status == "ok" for step_id in ids):
        return None
    return facts_from(results, prefix)


def _discover(request: AgentRequest, invoke: Invoke) -> AgentResult:
    _, results = _call(invoke, _program(request, discover_steps(request.service_account)))
    return _result(request, facts=facts_from(results))


def _ok(results: Mapping[str, StepResult], step_id: str) -> dict[str, Any]:
    step = results.get(step_id)
    return step.result if step is not None and step.status == "ok" and step.result is not None else {}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _service_name_ok(name: object) -> bool:
    """A host may report any name: one that is not a service short name is left out, not fatal."""
    try:
        validate_service_name(str(name))
    except ValueError:
        return False
    return True


def facts_from(results: Mapping[str, StepResult], prefix: str = "") -> Facts:
    host = _ok(results, f"{prefix}host")
    me = _ok(results, f"{prefix}me")
    raw_values = me.get("values")
    values: dict[str, Any] = raw_values if isinstance(raw_values, dict) else {}
    edition, version = edition_and_version(values) if me.get("exists") else (None, None)
    services = [
        str(s.get("name"))
        for s in _ok(results, f"{prefix}services").get("services") or []
        if isinstance(s, dict) and s.get("exists") and _service_name_ok(s.get("name"))
    ]
    ime = _ok(results, f"{prefix}ime")
    store, legacy = _ok(results, f"{prefix}store"), _ok(results, f"{prefix}legacy")
    group = store if store.get("exists") else legacy
    group_name = None
    if group.get("exists"):
        group_name = STORE_GROUP_NAME if store.get("exists") else LEGACY_STORE_GROUP_NAME
    role = host.get("domain_role")
    names = {s.casefold() for s in services}
    return Facts(
        computer_name=str(host.get("computer_name") or "UNKNOWN"),
        system_root=str(host.get("system_root") or "C:\\Windows"),
        os_caption=str(host.get("os_caption") or "Windows")[:200],
        os_build=int(host.get("os_build") or 0),
        arch=Arch.X86 if host.get("arch") == "x86" else Arch.X64,
        domain_role=_DOMAIN_ROLES[role]
        if isinstance(role, int) and 0 <= role < len(_DOMAIN_ROLES)
        else DomainRole.STANDALONE_SERVER,
        powershell_version=str(host.get("powershell_version") or "")[:40],
        mailenable_version=(version or "")[:40] or None,
        mailenable_edition=edition,
        program_dir=_text(values.get("Program Directory")),
        application_dir=_text(values.get("Application Directory")),
        config_dir=_text(values.get("Configuration Directory")),
        mail_root=_text(values.get("Mail Root")),
        bin64_exists=bool(_ok(results, f"{prefix}bin64").get("exists")),
        services=services,
        ime_system_sid=ime.get("sid") if ime.get("exists") else None,
        store_group_name=group_name,
        store_group_sid=group.get("sid") if group.get("exists") else None,
        windows_search_present="wsearch" in names,
        indexing_service_present="cisvc" in names,
        defender_present=bool(_ok(results, f"{prefix}defender").get("installed")),
    )


# --- verify -----------------------------------------------------------------------------------------
def _verify(request: AgentRequest, invoke: Invoke) -> AgentResult:
    plan = request.plan
    assert plan is not None  # the request validator demands it
    reads = read_steps(plan, "r")
    refresh = discover_steps(request.service_account, FACTS_BEFORE)
    _, results = _call(invoke, _program(request, [_host_step(), *reads.steps, *refresh]))
    mismatch = _host_mismatch(plan, results)
    if mismatch:
        return _result(request, error=AgentError(code="plan_mismatch", message=mismatch))
    return _result(
        request,
        items=build_observations(plan, Observed(reads, results)),
        facts=_refreshed_facts(results, FACTS_BEFORE),
    )


# --- apply ------------------------------------------------------------------------------------------
def _observe_for_change(
    request: AgentRequest, plan: Plan | None, services: list[str] | None
) -> tuple[Reads, list[Step]]:
    reads = (
        read_steps(plan, "o")
        if plan is not None
        else Reads(prefix="o", plan=Plan(profile_slug="-", profile_version="-", computer_name="-", items=[]))
    )
    steps = [
        _host_step(),
        *reads.steps,
        Step(id=f"{BASE}services", op="service_get", args={"names": services}),
        *health.probe_steps(BASE, request.health),
    ]
    return reads, steps


def _item_map(items: list[ObservedItem]) -> dict[tuple[str, str], ObservedItem]:
    return {i.key: i for i in items}


def _control(step_id: str, name: str, action: str) -> Step:
    """service_control stop/start (never Restart-Service: it would start a service that was stopped)."""
    return Step(
        id=step_id,
        op="service_control",
        args={"name": name, "action": action, "timeout_ms": health.SERVICE_TIMEOUT_MS},
    )


def _restart_steps(prefix: str, names: list[str]) -> list[Step]:
    steps = []
    for n, name in enumerate(dict.fromkeys(names)):
        steps += [_control(f"{prefix}stop{n}", name, "stop"), _control(f"{prefix}start{n}", name, "start")]
    return steps


def _apply(request: AgentRequest, invoke: Invoke) -> AgentResult:
    plan = request.plan
    assert plan is not None
    secrets = _secrets(request)
    reads, steps = _observe_for_change(request, plan, None)
    account = request.service_account
    check_password = SERVICE_PASSWORD_VAR in secrets
    if check_password:
        steps.append(
            Step(
                id="o.logon",
                op="logon_check",
                args={"user": f"{plan.computer_name}\\{account}", "password": "{{SERVICE_PASSWORD}}"},
            )
        )
        steps.append(Step(id="o.account", op="user_get", args={"name": account}))
    steps += discover_steps(account, FACTS_BEFORE)
    _, first = _call(invoke, _program(request, steps, secrets=secrets))
    mismatch = _host_mismatch(plan, first)
    if mismatch:
        return _result(request, error=AgentError(code="plan_mismatch", message=mismatch))
    observed = Observed(reads, first)
    items = build_observations(plan, observed)
    outcomes = evaluate(plan, items, [], datetime.now(UTC))
    drifted_keys = {(o.rule_id, o.target) for o in outcomes if o.status is RuleStatus.DRIFT}
    # Verify-only checks are judged, never changed: each says how to fix it by hand (its remedy or reason).
    drifted = [i for i in plan.items if i.key in drifted_keys and i.status is None and not i.verify_only]
    baseline = health.baseline_from(first, BASE, f"{BASE}services")
    account_data = _ok(first, "o.account")
    logon = _ok(first, "o.logon")
    password_ok = bool(logon.get("ok")) or logon.get("code") == 1385 if logon else None
    builder = ApplyBuilder(
        computer=plan.computer_name,
        observed=observed,
        items=_item_map(items),
        reset_adopted_password=request.reset_adopted_password,
        adopted_password_ok=password_ok,
    )
    build_apply(builder, drifted)
    rotation: RotationReport | None = None
    reset_steps: list[Step] = []
    restart = list(builder.services_changed)
    all_services = {str(s.get("name")): s for s in (_ok(first, f"{BASE}services").get("services") or [])}
    adopted_sid = account_data.get("sid") if account_data.get("exists") else None
    if request.reset_adopted_password and adopted_sid:
        running_as = sorted(n for n, s in all_services.items() if s.get("start_name_sid") == adopted_sid)
        reset_steps.append(
            Step(
                id="p.set",
                op="user_set_password",
                args={"name": account, "password": "{{SERVICE_PASSWORD}}"},
                critical=True,
            )
        )
        for n, name in enumerate(running_as):
            svc = all_services[name]
            reset_steps.append(
                Step(
                    id=f"p.svc{n}",
                    op="service_change",
                    expect={"return_value": 0},
                    args={"name": name, "start_name": svc.get("start_name"), "password": "{{SERVICE_PASSWORD}}"},
                )
            )
            if svc.get("state") == "Running":
                restart.append(name)
        rotation = RotationReport(account=account, account_sid=adopted_sid, services=running_as, password_set=True)
    searching = [i for i in search_items(list(plan.items)) if i.status is None]
    if not builder.steps and not reset_steps:
        # nothing to change: the observation already holds each search item's presence and state
        return _result(
            request,
            items=_with_problems(items, builder.problems),
            action=RuleAction.NONE,
            facts=_refreshed_facts(first, FACTS_BEFORE),
        )
    program_steps: list[Step] = []
    search_restore: list[Step] = []
    for n, name in enumerate(SEARCH_SERVICES):
        state = baseline.state_of(name) or _service_entry(all_services, name)
        if (
            state is not None
            and state.get("state") == "Running"
            and any(i.target.casefold() == name.casefold() for i in searching)
        ):
            program_steps.append(_control(f"s.stop{n}", name, "stop"))
            search_restore.append(_control(f"s.start{n}", name, "start"))
    during = Step(id="s.during", op="service_get", args={"names": list(SEARCH_SERVICES)})
    program_steps.append(during)
    program_steps += builder.steps + reset_steps
    touched = [n for n in restart if (baseline.state_of(n) or {}).get("state") == "Running"]
    program_steps += _restart_steps("r.", touched)
    if touched or builder.steps:
        program_steps += health.check_steps(HEALTH, baseline, request.health)
    program_steps += search_restore
    after = read_steps(plan, "a", services=SEARCH_SERVICES)
    program_steps += after.steps
    program_steps += discover_steps(account, FACTS_AFTER)  # what the changes made of the host (a new account)
    # (an adopted account's reset has no undo: its old password is not known)
    on_failure = [*reversed(builder.undo)]
    on_failure += [s.model_copy(update={"id": "f." + s.id}) for s in _restart_steps("r.", touched)]
    on_failure += [s.model_copy(update={"id": "f." + s.id}) for s in search_restore]
    failed_reads = read_steps(plan, "z", services=SEARCH_SERVICES)
    on_failure += failed_reads.steps
    program = _program(request, program_steps, on_failure, secrets=secrets)
    second, results = _call(invoke, program)
    aborted = second.aborted_at is not None
    reads_used = failed_reads if aborted else after
    final_items = build_observations(plan, Observed(reads_used, results))
    changes = records_from(builder.planned, results, second.vars, request.job_id)
    health_list = health.report(HEALTH, baseline, request.health, results) if (touched or builder.steps) else []
    error = None
    action = RuleAction.CHANGED if changes or rotation else RuleAction.NONE
    if aborted:
        problems = health.start_failures(program.steps, results) + health.regressions(HEALTH, results)
        problems = problems or [f"step {second.aborted_at} failed"]
        undo_failed = [s.id for s in second.on_failure if s.status in ("error", "expect_failed")]
        message = "health check failed: " + "; ".join(problems) + "; this run's changes were rolled back"
        if undo_failed:
            message += f" (incompletely: {len(undo_failed)} undo step(s) failed: {', '.join(undo_failed[:5])})"
        error = AgentError(code="health_check_failed", message=message[:4096])
        action = RuleAction.ROLLED_BACK
        if not undo_failed:
            # Every change was undone on the host: its journal is spent (a failed undo keeps it).
            _call(invoke, _program(request, [Step(id="d0", op="journal_delete", args={"job_id": request.job_id})]))
        changed_keys = {(c.rule_id, c.target) for c in changes}
        final_items = [
            i.model_copy(update={"action": RuleAction.ROLLED_BACK}) if i.key in changed_keys else i for i in final_items
        ]
        changes = []
    else:
        changed_keys = {(c.rule_id, c.target) for c in changes}
        final_items = [
            i.model_copy(update={"action": RuleAction.CHANGED}) if i.key in changed_keys else i for i in final_items
        ]
        failed_keys = _failed_keys(builder, results)
        final_items = [
            i.model_copy(update={"action": RuleAction.FAILED, "error": failed_keys[i.key]})
            if i.key in failed_keys
            else i
            for i in final_items
        ]
    final_items = _search_during(final_items, searching, baseline, results, reads_used)
    # Aborted, the program never reached its after-reads and the host was put back: the facts read
    # before the changes describe it.
    facts = _refreshed_facts(results, FACTS_AFTER)
    return _result(
        request,
        items=_with_problems(final_items, builder.problems),
        changes=changes,
        action=action,
        rotation=rotation,
        health=health_list,
        error=error,
        facts=facts or _refreshed_facts(first, FACTS_BEFORE),
    )


def _service_entry(services: Mapping[str, dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((s for n, s in services.items() if n.casefold() == name.casefold()), None)


def _failed_keys(builder: ApplyBuilder, results: Mapping[str, StepResult]) -> dict[tuple[str, str], str]:
    out = {}
    for change in builder.planned:
        step = results.get(change.step_id)
        if step is None or (step.status == "ok" and (step.result or {}).get("changed") is not False):
            continue
        if step.status == "ok" and (step.result or {}).get("conflict"):
            text = "the object changed since it was read (nothing written); run the harden again"
        elif step.error is not None:
            text = f"{step.error.message} [{step.error.code}]"
        elif step.status == "expect_failed":
            text = f"{step.op} returned {json.dumps(step.result)[:300]}"
        else:
            continue
        out[(change.rule_id, change.target)] = text[:4096]
    for step_id, step in results.items():
        failures = (step.result or {}).get("failures") if step.op == "dacl_write" else None
        if failures:
            for change in builder.planned:
                if change.step_id == step_id:
                    first = failures[0] if isinstance(failures[0], dict) else {}
                    out[(change.rule_id, change.target)] = (
                        f"the ACE was written but {len(failures)} object(s) below could not be updated; first: "
                        f"{first.get('path')} [Win32 error {first.get('code')}]"
                    )
    return out


def _with_problems(items: list[ObservedItem], problems: Mapping[tuple[str, str], str]) -> list[ObservedItem]:
    return [
        i.model_copy(update={"error": problems[i.key], "action": RuleAction.FAILED})
        if i.key in problems and not i.error
        else i
        for i in items
    ]


def _search_during(
    items: list[ObservedItem],
    searching: list[Any],
    baseline: health.Baseline,
    results: Mapping[str, StepResult],
    reads: Reads,
) -> list[ObservedItem]:
    if not searching:
        return items
    during = {str(s.get("name")).casefold(): s for s in _ok(results, "s.during").get("services") or []}
    out = []
    keys = {i.key for i in searching}
    for item in items:
        if item.key not in keys or item.search is None or not item.search.present:
            out.append(item)
            continue
        before = (baseline.state_of(item.target) or {}).get("state")
        now = during.get(item.target.casefold(), {})
        search = SearchObservation(
            present=True,
            state_before=before or item.search.state_before,
            state_during_job=now.get("state") if now.get("exists") else None,
            state_after=item.search.state_before,
        )
        out.append(item.model_copy(update={"search": search}))
    return out


# --- rollback ---------------------------------------------------------------------------------------
def journal_records(entries: list[Any], job_id: str) -> list[ChangeRecord]:
    """The ChangeRecords of one job's host journal (each entry: step, record, vars), vars filled in.

    Raises ValueError on a malformed entry (the journal is host output: untrusted).
    """
    out: list[ChangeRecord] = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("record"), dict):
            raise ValueError("a journal entry without a record")
        record = dict(entry["record"])
        raw_vars = entry.get("vars") or {}
        values = {str(k): str(v) for k, v in raw_vars.items()} if isinstance(raw_vars, dict) else {}
        record["before"] = substitute(record.get("before"), values)
        record["after"] = substitute(record.get("after"), values)
        record["job_id"] = job_id
        out.append(ChangeRecord.model_validate(record))
    return out


def _journal_records(results: Mapping[str, StepResult], job_ids: list[str]) -> tuple[list[ChangeRecord], str | None]:
    out: list[ChangeRecord] = []
    for n, job_id in enumerate(job_ids):
        step = results.get(f"j{n}")
        if step is not None and step.status != "ok":
            message = step.error.message if step.error is not None else step.status
            return [], f"journal of {job_id}: {message}"
        data = _ok(results, f"j{n}")
        if not data.get("exists"):
            continue
        if not data.get("trusted"):
            return [], f"journal of {job_id} refused: {data.get('problem') or 'not trusted'}"
        try:
            out += journal_records(list(data.get("entries") or []), job_id)
        except ValueError as exc:
            return [], f"journal of {job_id}: a malformed entry ({str(exc).splitlines()[0]})"
    return out, None


def _rollback(request: AgentRequest, invoke: Invoke) -> AgentResult:
    listed = {(c.job_id, c.sequence) for c in request.rollback if c.job_id is not None}
    recover = list(dict.fromkeys(request.recover_job_ids))
    reads = Reads(prefix="o", plan=Plan(profile_slug="-", profile_version="-", computer_name="-", items=[]))
    for change in request.rollback:
        _read_for_inverse(reads, change)
    steps = [
        _host_step(),
        *reads.steps,
        Step(id=f"{BASE}services", op="service_get", args={"names": None}),
        *[Step(id=f"j{n}", op="journal_read", args={"job_id": job_id}) for n, job_id in enumerate(recover)],
    ]
    _, first = _call(invoke, _program(request, steps))
    recovered, problem = _journal_records(first, recover)
    if problem:
        return _result(request, error=AgentError(code="agent_error", message=problem[:4096]))
    recovered = [c for c in recovered if (c.job_id, c.sequence) not in listed]
    before_ids = set(reads.ids.values())
    for change in recovered:
        _read_for_inverse(reads, change)
    unread = [s for s in reads.steps if s.id not in before_ids]
    if unread:
        # Objects only the recovered journals name: read them before computing their inverses.
        _, extra = _call(invoke, _program(request, unread))
        first = {**first, **extra}
    observed = Observed(reads, first)
    services_now = {str(s.get("name")).casefold(): s for s in _ok(first, f"{BASE}services").get("services") or []}
    now = HostNow(services=services_now, groups=_groups_now(observed), rights=_rights_now(observed))
    ordered = list(reversed(recovered)) + list(reversed(request.rollback))
    program_steps: list[Step] = []
    restart: list[str] = []
    undone: list[tuple[ChangeRecord, list[str], str]] = []
    chain: dict[str, dict[str, Any]] = {}  # object -> the state our earlier inverse leaves it in
    for n, change in enumerate(ordered):
        step_id = f"u{n}"
        args = change_read_args(change)
        try:
            if args is not None:
                obj_key = f"{args['kind']}|{change.target.casefold()}"
                current = chain.get(obj_key) or observed.sd(args)
                inverse = acl_inverse(change, current, args, step_id)
                if inverse.steps:
                    bind = f"AFTER_U{n}"
                    inverse.steps[0] = inverse.steps[0].model_copy(update={"bind": {bind: "after"}})
                    written = str(inverse.steps[0].args["sddl"])
                    chain[obj_key] = {
                        "exists": True,
                        "object": current.get("object"),
                        "sddl": _owner_part(str(current.get("sddl") or "")) + written,
                        "expected_var": bind,
                    }
                if "expected_var" in current and inverse.steps:
                    inverse.steps[0] = inverse.steps[0].model_copy(
                        update={"args": {**inverse.steps[0].args, "expected": "{{" + current["expected_var"] + "}}"}}
                    )
            else:
                inverse = simple_inverse(change, step_id, now)
        except (ReadError, ValueError) as exc:
            inverse = Inverse([], note=f"error: {str(exc).splitlines()[0]}")
        program_steps += inverse.steps
        restart += inverse.restart
        undone.append((change, [s.id for s in inverse.steps], inverse.note))
    program_steps += _restart_steps("r.", restart)
    baseline = health.baseline_from(first, BASE, f"{BASE}services")
    if restart:
        program_steps += [
            s.model_copy(update={"critical": False}) for s in health.check_steps(HEALTH, baseline, request.health)
        ]
    # The journals of these jobs are spent once every undo of the job (and the health check) succeeded:
    # deleted in the same invocation, each only `when_ok` (a failed undo keeps its job's journal).
    checks = [s.id for s in program_steps if s.id.startswith(HEALTH) and s.op != "sleep"]
    by_job: dict[str, list[str]] = {}
    broken: set[str] = set()
    for change, step_ids, note in undone:
        if change.job_id is None:
            continue
        by_job.setdefault(change.job_id, []).extend(step_ids)
        if note.startswith("error:"):
            broken.add(change.job_id)
    for job_id in recover:
        by_job.setdefault(job_id, [])
    program_steps += [
        Step(id=f"d{n}", op="journal_delete", args={"job_id": job_id}, when_ok=[*ids, *checks])
        for n, (job_id, ids) in enumerate(by_job.items())
        if job_id not in broken
    ]
    if program_steps:
        program_steps += discover_steps(request.service_account, FACTS_AFTER)  # a removed account, say
    _, results = _call(invoke, _program(request, program_steps)) if program_steps else (None, {})
    items: dict[tuple[str, str], ObservedItem] = {}
    changes: list[ChangeRecord] = []
    failed_jobs: set[str | None] = set()
    for change, step_ids, note in undone:
        key = (change.rule_id, change.target)
        errors = [_step_error(results[s]) for s in step_ids if s in results and results[s].status != "ok"]
        conflicts = [s for s in step_ids if s in results and (results[s].result or {}).get("conflict")]
        if note.startswith("error:") or errors or conflicts:
            failed_jobs.add(change.job_id)
            text = (
                note[7:] if note.startswith("error:") else "; ".join(errors) or "the object changed since it was read"
            )
            items[key] = ObservedItem(
                rule_id=change.rule_id, target=change.target, error=text[:4096], action=RuleAction.FAILED
            )
            continue
        after = next(
            (
                str((results[s].result or {}).get("after"))
                for s in step_ids
                if s in results and (results[s].result or {}).get("after")
            ),
            None,
        )
        changes.append(change.model_copy(update={"before": change.after, "after": after or change.before}))
        items.setdefault(key, ObservedItem(rule_id=change.rule_id, target=change.target, action=RuleAction.ROLLED_BACK))
    health_list = health.report(HEALTH, baseline, request.health, results) if restart else []
    error = None
    problems = health.regressions(HEALTH, results) if restart else []
    if problems:
        error = AgentError(code="health_check_failed", message=("after rollback: " + "; ".join(problems))[:4096])
    failed = any(i.action is RuleAction.FAILED for i in items.values())
    action = RuleAction.ROLLED_BACK if changes else (RuleAction.FAILED if failed else RuleAction.NONE)
    return _result(
        request,
        items=list(items.values()),
        changes=changes,
        recovered=recovered,
        action=action,
        health=health_list,
        error=error,
        facts=_refreshed_facts(results, FACTS_AFTER),
    )


def _read_for_inverse(reads: Reads, change: ChangeRecord) -> None:
    """What the inverse of `change` must see first: the object's DACL, the group's members, the right's holders."""
    args = change_read_args(change)
    if args is not None:
        reads.sd(args)
    elif change.target_kind is TargetKind.MEMBERSHIP:
        reads.group(short_name(change.target))
    elif change.target_kind is TargetKind.RIGHT:
        after = json.loads(change.after) if change.after else {}
        reads.lsa(str(after.get("right") or change.target))


def _groups_now(observed: Observed) -> dict[str, list[str] | None]:
    out: dict[str, list[str] | None] = {}
    for key in observed.reads.ids:
        if key[0] == "group":
            try:
                data = observed.get(key)
            except ReadError:
                continue  # unknown: the primitive decides
            out[key[1]] = [str(m).upper() for m in data.get("members") or []] if data.get("exists") else None
    return out


def _rights_now(observed: Observed) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key in observed.reads.ids:
        if key[0] == "lsa":
            try:
                out[str(key[1]).casefold()] = [str(x).upper() for x in observed.get(key).get("sids") or []]
            except ReadError:
                continue
    return out


def _step_error(step: StepResult) -> str:
    if step.error is not None:
        return f"{step.error.message} [{step.error.code}]"
    return f"{step.op}: {step.status} ({json.dumps(step.result)[:300]})"


def _owner_part(text: str) -> str:
    return text.split("D:", 1)[0]


# --- rotate_password --------------------------------------------------------------------------------
def _rotate(request: AgentRequest, invoke: Invoke) -> AgentResult:
    account = request.service_account
    secrets = _secrets(request)
    steps = [
        _host_step(),
        Step(id="o.account", op="user_get", args={"name": account}),
        Step(id=f"{BASE}services", op="service_get", args={"names": None}),
        *health.probe_steps(BASE, request.health),
    ]
    _, first = _call(invoke, _program(request, steps, secrets=secrets))
    host = _ok(first, "host")
    user = _ok(first, "o.account")
    if not user.get("exists"):
        return _result(request, error=AgentError(code="agent_error", message=f"{account} does not exist on this host"))
    computer = str(host.get("computer_name") or "")
    check = [
        Step(
            id="o.logon", op="logon_check", args={"user": f"{computer}\\{account}", "password": "{{PREVIOUS_PASSWORD}}"}
        )
    ]
    _, logon_results = _call(invoke, _program(request, check, secrets=secrets))
    logon = _ok(logon_results, "o.logon")
    if not (logon.get("ok") or logon.get("code") == 1385):
        message = f"{account}'s current password is not the one stored here (logon failed: {logon.get('code')})"
        return _result(request, error=AgentError(code="previous_password_mismatch", message=message))
    sid = user.get("sid")
    services = {str(s.get("name")): s for s in _ok(first, f"{BASE}services").get("services") or []}
    running_as = sorted(n for n, s in services.items() if s.get("start_name_sid") == sid)
    baseline = health.baseline_from(first, BASE, f"{BASE}services")
    program = [
        Step(
            id="p.set",
            op="user_set_password",
            args={"name": account, "password": "{{SERVICE_PASSWORD}}"},
            critical=True,
        )
    ]
    undo = [
        Step(
            id="f.set",
            op="user_set_password",
            args={"name": account, "password": "{{PREVIOUS_PASSWORD}}"},
            when_done="p.set",
        )
    ]
    for n, name in enumerate(running_as):
        start_name = services[name].get("start_name")
        program.append(
            Step(
                id=f"p.svc{n}",
                op="service_change",
                expect={"return_value": 0},
                critical=True,
                args={"name": name, "start_name": start_name, "password": "{{SERVICE_PASSWORD}}"},
            )
        )
        undo.append(
            Step(
                id=f"f.svc{n}",
                op="service_change",
                when_done=f"p.svc{n}",
                args={"name": name, "start_name": start_name, "password": "{{PREVIOUS_PASSWORD}}"},
            )
        )
    restart = [n for n in running_as if services[n].get("state") == "Running"]
    program += _restart_steps("r.", restart)
    program += health.check_steps(HEALTH, baseline, request.health)
    undo += [s.model_copy(update={"id": "f." + s.id}) for s in _restart_steps("r.", restart)]
    second, results = _call(invoke, _program(request, program, undo, secrets=secrets))
    report = RotationReport(account=account, account_sid=sid, services=running_as, password_set=True)
    health_list = health.report(HEALTH, baseline, request.health, results)
    if second.aborted_at is not None:
        problems = health.start_failures(program, results) + health.regressions(HEALTH, results)
        problems = problems or [f"step {second.aborted_at} failed"]
        message = "health check failed after the password change: " + "; ".join(problems)
        message += "; the previous password was restored on the account and its services"
        restored = report.model_copy(update={"restored": True, "password_set": False})
        return _result(
            request,
            rotation=restored,
            health=health_list,
            error=AgentError(code="health_check_failed", message=message[:4096]),
        )
    return _result(request, rotation=report, health=health_list, action=RuleAction.CHANGED)


__all__ = ["HostRefused", "Invoke", "discover_steps", "facts_from", "journal_records", "run", "short_name"]
