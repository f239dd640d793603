"""The host-run runner: claim → connect → plan → one agent invocation → evaluate → store.

The runner owns the HostRun state machine. A claim is a guarded update (queued → running),
so a redelivered Celery message does nothing. Statuses are recomputed in Python from what
the host observed (`lockdown.rules.evaluate`); the agent's own claims are never trusted.
Cancellation is checked between phases; a heartbeat thread lets the reaper tell a slow host
from a dead worker.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Protocol

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from pydantic import SecretStr

from jobs.choices import CONNECT_ERROR_KINDS, CONNECT_FAILED, HostRunState, JobKind
from jobs.models import ChangeRecord, HostRun, RuleResult, ServerCompliance, ServiceAccountSecret
from jobs.services import event_append, job_host_run_finished
from lockdown import clock
from lockdown.agent import AGENT_VERSION
from lockdown.engine.program import Program
from lockdown.engine.selftest import SelftestReport
from lockdown.rules import Facts, Plan, compile_plan, evaluate, summarize
from lockdown.rules.contract import AgentRequest, AgentResult, HealthStatus, HealthTargets
from lockdown.rules.contract import ChangeRecord as ContractChange
from lockdown.rules.outcome import RuleOutcome
from lockdown.rules.profile import profile_from_data
from lockdown.rules.vocabulary import AgentMode, RuleStatus
from remote import run_agent
from remote.connection import AuthMethod, HostConnection, Scheme, TlsVerify
from remote.errors import OutsideManagementNetworks, RemoteError
from remote.networks import require_inside
from servers.assessment import NOT_ASSESSED_RUN_FAILURES
from servers.binding import is_bound
from servers.choices import ServerStatus, StaleReason
from servers.crypto import contains_secret, decrypt_secret, encrypt_secret, redact, register_secret
from servers.models import Server
from servers.services import server_results_mark_stale

log = logging.getLogger(__name__)

HEARTBEAT_EVERY_S = float(getattr(settings, "FLEET_HEARTBEAT_EVERY_S", 15))
SNAPSHOT_EVERY = timedelta(days=getattr(settings, "FLEET_RESULT_SNAPSHOT_DAYS", 7))
RUN_TIMEOUT_S = float(getattr(settings, "FLEET_RUN_TIMEOUT_S", 1500))
UNREACHABLE_KINDS = frozenset({"unreachable", "timeout", "tls_verification_failed"})
# How a harden can end after its command started without its result (and ChangeRecords) being stored.
RESULT_LOST_KINDS = frozenset(
    {"worker_lost", "timeout", "unreachable", "protocol_error", "output_too_large", "agent_error", "internal_error"}
)
MAIL_BANNERS = {
    "SMTP": re.compile(r"^220 .*Mail(Enable| Enable SMTP) Service"),
    "POP": re.compile(r"^\+OK .*MailEnable"),
    "IMAP": re.compile(r"^\* OK .*Welcome to MailEnable"),
}


class AgentCall(Protocol):
    """How the runner reaches a host (`remote.run_agent`, or a test's scripted host).

    `on_program` is told each program before it is sent, so the live log can say which phase
    a long apply is in (one WinRM invocation per program).
    """

    def __call__(
        self, conn: HostConnection, request: AgentRequest, *, on_program: Callable[[Program], None] | None = None
    ) -> AgentResult: ...


_agent_call: AgentCall = run_agent

# Primitives that change a host (everything else reads it): a program with one of them is the apply itself.
CHANGING_OPS = frozenset(
    {
        "dacl_write", "lsa_add", "lsa_remove", "user_create", "user_set_flags", "user_set_password", "user_delete",
        "group_create", "group_delete", "group_member_add", "group_member_remove", "service_change",
        "service_control", "defender_add", "defender_remove", "create_login", "drop_login", "create_user",
        "drop_user", "grant", "revoke",
    }
)  # fmt: skip
PHASED_MODES = frozenset({AgentMode.APPLY, AgentMode.ROLLBACK, AgentMode.ROTATE_PASSWORD})


def phase_text(program: Program) -> str:
    """One log line for a program about to run on the host: reading, changing, or clearing the journal."""
    ops = [step.op for step in program.steps]
    if ops and set(ops) == {"journal_delete"}:
        return "Clearing the host's change journal (every change of this run was undone)."
    changing = sum(1 for op in ops if op in CHANGING_OPS)
    if not changing:
        return f"Reading the host: {len(ops)} reads (its state and health baseline)…"
    undo = sum(1 for step in program.on_failure if step.op in CHANGING_OPS)  # its re-reads are no undo
    return (
        f"Changing the host: {changing} change and restart steps, then the health check "
        f"({undo} undo steps ready if anything regresses). Mail may pause now…"
    )


def _phase_reporter(run: HostRun, request: AgentRequest) -> Callable[[Program], None] | None:
    if request.mode not in PHASED_MODES:
        return None  # a verify or discover is one short read

    def report(program: Program) -> None:
        event_append(run.pk, phase_text(program))

    return report


def _scrub(value: Any, secrets: tuple[str, ...] = ()) -> Any:
    """Host output is untrusted: drop NUL (PostgreSQL cannot store it in text or JSON) everywhere, and
    with `secrets`, every known secret and each of `secrets` (servers.crypto.redact)."""
    if isinstance(value, str):
        text = value.replace("\x00", "")
        return redact(text, secrets) if secrets else text
    if isinstance(value, list):
        return [_scrub(item, secrets) for item in value]
    if isinstance(value, dict):
        return {_scrub(key, secrets): _scrub(item, secrets) for key, item in value.items()}
    return value


def _texts(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _texts(item)


def _request_secrets(conn: HostConnection, request: AgentRequest) -> tuple[str, ...]:
    """Every password this invocation carries (the credential's and each SecretStr of the request),
    registered for redaction in this process before it travels anywhere."""
    found = [conn.password]
    found += [value.get_secret_value() for _name, value in request if isinstance(value, SecretStr)]
    for secret in found:
        register_secret(secret)
    return tuple(secret for secret in found if secret)


def _call_agent(run: HostRun, conn: HostConnection, request: AgentRequest) -> AgentResult:
    """One agent invocation; its result is re-validated after scrubbing, before anything is stored.

    The whole result is host output: no text of it (errors, observations, change records, the
    rotation report) is stored or shown before every known secret is redacted from it.
    """
    secrets = _request_secrets(conn, request)
    result = _agent_call(conn, request, on_program=_phase_reporter(run, request))
    data = result.model_dump(mode="json")
    # one search over every text of the result first: redaction per string only when something is there
    flat = "\n".join(_texts(data))
    clean = _scrub(data, secrets) if contains_secret(flat, secrets) else _scrub(data)
    return result if clean == data else AgentResult.model_validate(clean)


def set_agent_call(function: AgentCall | None) -> None:
    """Tests may replace the transport with a scripted one; None restores `remote.run_agent`."""
    global _agent_call
    _agent_call = function or run_agent


class RunFailed(Exception):
    """Ends a run as failed with a kind and a message a person understands."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class Cancelled(Exception):
    """The job was cancelled; the run stops between phases."""


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


@contextmanager
def heartbeat(host_run_id: int) -> Iterator[None]:
    """Write heartbeat_at every HEARTBEAT_EVERY_S from a side thread while the run works."""
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(HEARTBEAT_EVERY_S):
                HostRun.objects.filter(pk=host_run_id, state=HostRunState.RUNNING).update(heartbeat_at=clock.now())
        finally:
            connection.close()

    thread = threading.Thread(target=beat, name=f"heartbeat-{host_run_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def run_host(host_run_id: int) -> str:
    """Run one HostRun to an end state. Returns the final state (or 'skipped')."""
    # No close_old_connections() here: Celery's Django fixup closes stale connections around
    # every task, and closing inside a caller's transaction (tests, run_job) would break it.
    run = HostRun.objects.select_related("job").filter(pk=host_run_id).first()
    if run is None or run.state != HostRunState.QUEUED:
        return "skipped"
    if not run.mutating and run.server_id is not None:
        # Verifies queue behind a mutating run on the same host; the sweeper sends them again.
        busy = HostRun.objects.filter(server_id=run.server_id, mutating=True, state=HostRunState.RUNNING).exists()
        if busy:
            return "skipped"
    now = clock.now()
    claimed = HostRun.objects.filter(pk=host_run_id, state=HostRunState.QUEUED).update(
        state=HostRunState.RUNNING,
        worker=worker_name()[:200],
        started_at=now,
        heartbeat_at=now,
        attempts=F("attempts") + 1,
    )
    if claimed != 1:
        return "skipped"
    run.refresh_from_db()
    final: str = HostRunState.FAILED
    with heartbeat(run.pk):
        try:
            final = _execute(run)
        except Cancelled:
            final = _end(run, HostRunState.CANCELLED, "cancelled", "Cancelled by request.")
        except RunFailed as failure:
            event_append(run.pk, failure.message, level="error")
            if failure.kind in NOT_ASSESSED_RUN_FAILURES:
                _mark_not_assessed(run, failure.kind)
            final = _end(run, HostRunState.FAILED, failure.kind, failure.message)
        except RemoteError as error:
            message = _without_prefix(error.message, error.kind)
            _connect_failure_events(run, error.kind, f"{error.kind}: {message}")
            _mark_not_assessed(run, error.kind)
            final = _end(run, HostRunState.FAILED, error.kind, message)
        except Exception:
            log.error("host run %s crashed:\n%s", run.pk, traceback.format_exc())
            event_append(run.pk, "Internal error in the runner; see the worker log.", level="error")
            final = _end(
                run, HostRunState.FAILED, "internal_error", "Internal error in the runner; see the worker log."
            )
    job_host_run_finished(run.job_id)
    return final


def _connect_failure_events(run: HostRun, kind: str, detail: str) -> None:
    """A failed connection: the detail for the MSP, one sentence for customer-scoped users."""
    if kind in CONNECT_ERROR_KINDS:
        event_append(run.pk, CONNECT_FAILED, level="error")
        event_append(run.pk, detail, level="error", msp_only=True)
    else:
        event_append(run.pk, detail, level="error")


def _without_prefix(message: str, kind: str) -> str:
    """The kind is shown beside the message; do not repeat it inside."""
    prefix = f"{kind}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def _end(run: HostRun, state: str, kind: str = "", message: str = "", **fields: Any) -> str:
    HostRun.objects.filter(pk=run.pk, state=HostRunState.RUNNING).update(
        state=state,
        finished_at=clock.now(),
        error_kind=kind[:40],
        error_message=redact(message.replace("\x00", ""))[:4000],
        **fields,
    )
    return state


def _check_cancel(run: HostRun) -> None:
    if type(run.job).objects.filter(pk=run.job_id, cancel_requested_at__isnull=False).exists():
        raise Cancelled


def connection_for(server: Server) -> HostConnection:
    """Build the transport's connection from the inventory. DANGER: decrypts the credential."""
    credential = server.credential
    if credential is None:
        raise RunFailed(
            "no_credential", f"{server.name} has no WinRM credential: an MSP admin must bind one (edit the server)."
        )
    if not is_bound(server):
        # servers.binding: the settings changed since an MSP admin bound the credential (refused before
        # anything is decrypted or any connection is opened)
        raise RunFailed(
            "credential_unbound",
            f"{server.name}'s connection settings changed since its credential was bound: an MSP admin must bind "
            "it again (edit the server and save).",
        )
    return HostConnection(
        address=server.address,
        username=credential.username,
        password=credential.reveal_secret(),
        scheme=Scheme(server.winrm_scheme),
        port=server.winrm_port,
        auth=AuthMethod(credential.auth),
        tls_verify=TlsVerify(server.tls_verify),
        ca_bundle_pem=server.tls_ca_bundle or None,
        pinned_sha256=server.tls_fingerprint or None,
        run_timeout_s=RUN_TIMEOUT_S,
        management_networks=server.customer.networks,
    )


def _http_url(url: str) -> str | None:
    """The URL when it is http(s) (what the agent may GET), else None: "not checked"."""
    url = (url or "").strip()
    return url if url.lower().startswith(("http://", "https://")) and len(url) <= 2048 else None


def health_targets(server: Server) -> HealthTargets:
    """The Server's mail ports and login pages, for the agent's post-change health check."""
    return HealthTargets(
        smtp_port=server.smtp_port,
        pop_port=server.pop_port,
        imap_port=server.imap_port,
        webmail_url=_http_url(server.webmail_url),
        admin_url=_http_url(server.admin_url),
        allow_self_signed=server.web_self_signed,
    )


def _request(run: HostRun, mode: AgentMode, **fields: Any) -> AgentRequest:
    return AgentRequest(agent_version=AGENT_VERSION, mode=mode, job_id=f"{run.job_id}.{run.pk}", **fields)


def _execute(run: HostRun) -> str:
    server = (
        Server.objects.select_related("customer", "credential").filter(pk=run.server_id).first()
        if run.server_id is not None
        else None
    )
    if server is None:
        raise RunFailed("server_deleted", f"{run.server_name} was deleted before the run started.")
    _check_cancel(run)
    if run.job.kind == JobKind.SELFTEST:
        return _selftest(run, server)
    conn = connection_for(server)
    event_append(run.pk, f"Connecting to {server.name} ({conn.endpoint}, {conn.auth.value.upper()}).")
    kind = run.job.kind
    if kind == JobKind.DISCOVER:
        _discover(run, server, conn)
        return _end(run, HostRunState.SUCCEEDED)
    if kind == JobKind.ROTATE_PASSWORD:
        return _rotate_password(run, server, conn)
    facts = _facts(run, server, conn)
    _check_cancel(run)
    plan, profile_label = _plan(server, facts)
    not_applicable = sum(1 for item in plan.items if item.status is not None)
    event_append(
        run.pk,
        f"Plan from {profile_label}: {len(plan.items)} checks, {not_applicable} not applicable or needing input.",
    )
    if kind == JobKind.VERIFY or (kind == JobKind.HARDEN and run.job.dry_run):
        result = _call_agent(run, conn, _request(run, AgentMode.VERIFY, plan=plan))
        fresh = result.facts
        if _refresh_facts(run, server, facts, fresh) and fresh is not None:
            fresh_plan, fresh_label = _plan(server, fresh)
            if fresh_plan.model_dump() != plan.model_dump():
                # What was read was chosen from the old facts (paths, services, accounts): read again.
                event_append(run.pk, "The plan compiled from the new facts differs: verifying again against it.")
                plan, profile_label = fresh_plan, fresh_label
                result = _call_agent(run, conn, _request(run, AgentMode.VERIFY, plan=plan))
                _refresh_facts(run, server, fresh, result.facts)
        outcomes = _store_outcomes(run, server, plan, result, profile_label)
        if kind == JobKind.HARDEN:
            would_change = sum(
                1 for outcome in outcomes if outcome.status == RuleStatus.DRIFT and not outcome.expected.get("remedy")
            )
            event_append(run.pk, f"Dry run: {would_change} checks would change; nothing was changed.")
        return _end(run, HostRunState.SUCCEEDED)
    if kind == JobKind.HARDEN:
        return _harden(run, server, conn, plan, profile_label, facts)
    if kind == JobKind.ROLLBACK:
        return _rollback(run, server, conn)
    raise RunFailed("unsupported", f"Unknown job kind {kind}.")


def _discover(run: HostRun, server: Server, conn: HostConnection) -> Facts:
    result = _call_agent(run, conn, _request(run, AgentMode.DISCOVER))
    if result.facts is None:
        raise RunFailed("agent_error", "The host answered discover without facts.")
    facts = result.facts
    Server.objects.filter(pk=server.pk).update(facts=facts.model_dump(mode="json"), facts_updated_at=clock.now())
    event_append(
        run.pk,
        f"Discovered {facts.os_caption} (build {facts.os_build}, {facts.arch}), PowerShell {facts.powershell_version}, "
        f"MailEnable {facts.mailenable_edition or '?'} {facts.mailenable_version or 'not found'}.",
    )
    return facts


def _refresh_facts(run: HostRun, server: Server, before: Facts | None, fresh: Facts | None) -> bool:
    """Store the facts a verify or an apply read again in its own program; True when they changed.

    None (a read of them failed) keeps the stored facts; the log says which facts changed."""
    if fresh is None:
        event_append(run.pk, "The host's facts could not all be read again; the stored ones are kept.", level="warning")
        return False
    data = fresh.model_dump(mode="json")
    old = before.model_dump(mode="json") if before is not None else {}
    Server.objects.filter(pk=server.pk).update(facts=data, facts_updated_at=clock.now())
    changed = [name for name in data if data[name] != old.get(name)]
    if changed:
        event_append(run.pk, f"Facts read again; changed since last read: {', '.join(changed)}.")
    return bool(changed)


def _stored_facts(server: Server) -> Facts | None:
    try:
        return Facts.model_validate(server.facts) if server.facts else None
    except ValueError:
        return None


def _facts(run: HostRun, server: Server, conn: HostConnection) -> Facts:
    """Stored facts (validated again: they came from the host), or discover them first."""
    if server.facts:
        try:
            return Facts.model_validate(server.facts)
        except ValueError:
            event_append(run.pk, "Stored facts are no longer valid; discovering again.", level="warning")
    return _discover(run, server, conn)


def selftest_server(server: Server, job_id: str) -> SelftestReport:
    """The read-only agent self-test of one server (`lockdown.engine.selftest`), over its WinRM connection.

    Raises RunFailed when no connection may be opened (no or unbound credential); a failed connection is a
    report whose `connect` check failed. No known secret is left in the report.
    """
    from lockdown.engine.selftest import connect_failed, run_selftest, secret_free
    from remote.transport import selftest_invoke

    conn = connection_for(server)
    try:
        report = run_selftest(selftest_invoke(conn), job_id=job_id, plan_for=lambda facts: _plan(server, facts))
    except RemoteError as error:
        report = connect_failed(error.kind, _without_prefix(error.message, error.kind))
    return secret_free(report, (conn.password,))


def _selftest(run: HostRun, server: Server) -> str:
    """A self-test job: the report's table as the run's log, its JSON in the run's summary."""
    from lockdown.engine.selftest import render_table

    report = selftest_server(server, f"{run.job_id}.{run.pk}")
    for line in render_table(report, server.name):
        if line:
            event_append(run.pk, line, msp_only=True)
    HostRun.objects.filter(pk=run.pk).update(summary={"selftest": report.model_dump(mode="json")})
    if report.ok:
        return _end(run, HostRunState.SUCCEEDED)
    failed = [c.name for c in report.checks if c.verdict == "fail"]
    return _end(run, HostRunState.FAILED, "selftest_failed", "Self-test failed: " + ", ".join(failed) + ".")


def _plan(server: Server, facts: Facts) -> tuple[Plan, str]:
    from lockdown.advisory_store import current_advisories
    from lockdown.selectors import effective_profile_version, integrated_auth_exception_state, version_document

    version = effective_profile_version(server)
    if version is None:
        raise RunFailed("no_profile", "No lockdown profile is assigned and the built-in profile is missing.")
    profile = profile_from_data(version_document(version))
    # Validate (not model_copy): the operator's declarations must become the engine's enum values. Whether an
    # approved exception covers the integrated-authentication rights is the database's word, never the host's.
    declared = Facts.model_validate(
        {
            **facts.model_dump(),
            "sql_integrated": server.sql_integrated,
            "integrated_auth": server.integrated_auth,
            "integrated_auth_exception": integrated_auth_exception_state(server, clock.now()),
            # Who alone may reach webadmin (iis_ip_restriction): the customer's management networks, ours to say.
            "management_networks": list(server.customer.networks),
        }
    )
    # The advisory file in force travels in the plan: an import changes the next verdict, no release needed.
    return compile_plan(profile, declared, current_advisories()), version.label


def _waivers(server: Server) -> list[Any]:
    from lockdown.selectors import active_waivers_for

    return list(active_waivers_for(server, clock.now()))


def _probe_observations(run: HostRun, server: Server, plan: Plan) -> list[Any]:
    """The worker's own network checks of the host (one SMTP probe when the plan has smtp_probe items)."""
    from lockdown.engine.probes import describe, smtp_items, smtp_observations
    from remote.mailprobe import probe_smtp

    if not smtp_items(plan):
        return []
    # probe_smtp vets the address against the management networks itself and connects only to the vetted one.
    probe = probe_smtp(server.address, server.smtp_port, management_networks=server.customer.networks)
    evidence = probe.to_evidence()
    event_append(run.pk, f"SMTP probe of port {server.smtp_port}: {describe(evidence)}.")
    return smtp_observations(plan, evidence)


def _store_outcomes(
    run: HostRun, server: Server, plan: Plan, result: AgentResult, profile_label: str
) -> list[RuleOutcome]:
    now = clock.now()
    outcomes = evaluate(plan, [*result.items, *_probe_observations(run, server, plan)], _waivers(server), now)
    summary = summarize(outcomes)
    summary_data = summary.model_dump(mode="json")
    outcome_data = [outcome.model_dump(mode="json") for outcome in outcomes]
    counts = summary_data.get("counts", {})
    status_before = server.status
    with transaction.atomic():
        current = ServerCompliance.objects.select_for_update().filter(server=server).first()
        if current is not None and current.verified_at > now:
            # A newer run already stored its results (concurrent jobs): keep the newest.
            event_append(run.pk, "A newer verify of this server finished first; its results were kept.")
            return outcomes
        previous = {(o["rule_id"], o["target"]): o for o in (current.outcomes if current else [])}
        snapshot = (
            current is None or current.last_snapshot_at is None or current.last_snapshot_at <= now - SNAPSHOT_EVERY
        )
        history = []
        for outcome in outcome_data:
            before = previous.get((outcome["rule_id"], outcome["target"]))
            changed = before is None or any(
                before.get(k) != outcome.get(k) for k in ("status", "action", "observed_text")
            )
            if changed or snapshot:
                history.append(
                    RuleResult(
                        server=server,
                        host_run=run,
                        rule_id=outcome["rule_id"],
                        target=outcome["target"][:1024],
                        section=outcome["section"][:200],
                        status=outcome["status"],
                        action=outcome["action"],
                        expected_text=outcome["expected_text"],
                        observed_text=outcome["observed_text"],
                        reason=outcome["reason"],
                        snapshot=snapshot and not changed,
                        created_at=now,
                    )
                )
        # A key the new outcomes lack left the server's profile: close its history, so its newest row
        # (the "current result" the fleet rule view counts) does not stay drift forever.
        now_keys = {(o["rule_id"], o["target"]) for o in outcome_data}
        for key, before in previous.items():
            if key not in now_keys and before.get("status") != RuleStatus.NOT_APPLICABLE:
                history.append(
                    RuleResult(
                        server=server,
                        host_run=run,
                        rule_id=key[0],
                        target=key[1][:1024],
                        section=str(before.get("section", ""))[:200],
                        status=RuleStatus.NOT_APPLICABLE,
                        observed_text="not checked",
                        reason="the rule is no longer in the server's profile",
                        created_at=now,
                    )
                )
        RuleResult.objects.bulk_create(history, batch_size=500)
        ServerCompliance.objects.update_or_create(
            server=server,
            defaults={
                "host_run": run,
                "verified_at": now,
                "profile_label": profile_label,
                "outcomes": outcome_data,
                "summary": summary_data,
                "last_snapshot_at": now if snapshot else (current.last_snapshot_at if current else now),
            },
        )
        if counts.get(RuleStatus.ERROR, 0):
            status = ServerStatus.FAILING
        elif counts.get(RuleStatus.DRIFT, 0):
            status = ServerStatus.DRIFTED
        else:
            status = ServerStatus.COMPLIANT
        Server.objects.filter(pk=server.pk).update(
            status=status,
            compliance_pct=summary.compliant_percent,
            compliance_counts=counts,
            last_verified_at=now,
            not_assessed_kind="",
            results_stale_reason="",
            results_stale_since=None,
        )
        HostRun.objects.filter(pk=run.pk).update(summary=counts, compliance_pct=summary.compliant_percent)
    from jobs.alerts import compliance_checked

    compliance_checked(
        server=server,
        host_run=run,
        previous=list(previous.values()),
        current=outcome_data,
        status_before=status_before,
        status_after=status,
    )
    pct = "n/a" if summary.compliant_percent is None else f"{summary.compliant_percent:.1f} %"
    event_append(
        run.pk,
        f"Verified: {counts.get('compliant', 0)} compliant, {counts.get('drift', 0)} drift, "
        f"{counts.get('error', 0)} errors, {counts.get('not_applicable', 0)} not applicable, "
        f"{counts.get('waived', 0)} waived — {pct} compliant.",
    )
    return outcomes


def _service_password(server: Server) -> str:
    """The server's generated IME_SYSTEM password (created on first harden). DANGER: plaintext."""
    from lockdown.agent.passwords import generate_service_password

    secret = ServiceAccountSecret.objects.filter(server=server).first()
    if secret is None:
        secret = ServiceAccountSecret.objects.create(
            server=server, password_encrypted=encrypt_secret(generate_service_password())
        )
    return decrypt_secret(secret.password_encrypted)


def _harden(run: HostRun, server: Server, conn: HostConnection, plan: Plan, profile_label: str, facts: Facts) -> str:
    password = _service_password(server)
    _check_cancel(run)
    event_append(
        run.pk,
        "Hardening: the host is read first (with a health baseline), then every change runs in one program "
        "that restarts what it moved, checks the host's health and undoes itself there if anything regressed.",
    )
    reset = run.job.reset_adopted_password
    if reset:
        event_append(
            run.pk, "The operator chose to reset the password of an adopted IME_SYSTEM (cannot be rolled back)."
        )
    # From here the host may change: the stored results are stale until this run stores new ones
    # (a run that ends without them leaves the mark, and the pages say so).
    server_results_mark_stale(servers=Server.objects.filter(pk=server.pk), reason=StaleReason.HARDEN_FAILED)
    try:
        result = _call_agent(
            run,
            conn,
            _request(
                run,
                AgentMode.APPLY,
                plan=plan,
                service_password=password,
                reset_adopted_password=reset,
                health=health_targets(server),
            ),
        )
    except RemoteError as error:
        if error.kind not in RESULT_LOST_KINDS:
            # Refused before the program ran (credential, TLS, PowerShell 2.0...): the host did not change.
            Server.objects.filter(pk=server.pk).update(
                results_stale_reason=server.results_stale_reason, results_stale_since=server.results_stale_since
            )
        raise
    now = clock.now()
    _refresh_facts(run, server, facts, result.facts)
    if result.rotation is not None and result.rotation.password_set:
        _record_adopted_reset(run, server, result.rotation.services, now)
    changes = [
        ChangeRecord(
            server=server,
            host_run=run,
            seq=change.sequence,
            rule_id=change.rule_id,
            target=change.target[:1024],
            target_kind=str(change.target_kind),
            before=change.before or "",
            after=change.after or "",
            created_object=change.created_object,
            created_at=now,
        )
        for change in result.changes
    ]
    ChangeRecord.objects.bulk_create(changes, batch_size=500)
    HostRun.objects.filter(pk=run.pk).update(changes_made=len(changes))
    ServiceAccountSecret.objects.filter(server=server).update(set_at=now)
    event_append(run.pk, f"Applied: {len(changes)} changes recorded for rollback.")
    _log_health(run, result)
    outcomes = _store_outcomes(run, server, plan, result, profile_label)
    if result.error is not None:
        # The agent's health check failed and it undid this run's changes on the host.
        ChangeRecord.objects.filter(host_run=run).update(rolled_back_at=now, rolled_back_by=run)
        # The outcomes just stored were read before the host undid the run.
        server_results_mark_stale(servers=Server.objects.filter(pk=server.pk), reason=StaleReason.HARDEN_FAILED)
        message = _without_prefix(result.error.message, result.error.code)
        event_append(run.pk, f"{result.error.code}: {message}", level="error")
        return _end(run, HostRunState.ROLLED_BACK, result.error.code, message)
    # Nothing changed on the host: nothing can have regressed, and ports that were down stay down.
    changed_host = bool(result.changes) or (result.rotation is not None and result.rotation.password_set)
    ports_failed = (
        _mail_ports_failed(run, server, "The agent's health check passed", _answered(result)) if changed_host else None
    )
    if ports_failed:
        return ports_failed
    failed = [outcome for outcome in outcomes if outcome.status == RuleStatus.ERROR]
    if failed:
        # The other rules were applied; the host is not fully hardened, so the run counts as failed
        # (and towards the canary threshold).
        listed = "; ".join(f"{o.rule_id} {o.target}: {o.reason}" for o in failed[:5])
        more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
        message = f"{len(failed)} check(s) could not be applied: {listed}{more}"
        event_append(run.pk, message, level="error")
        return _end(run, HostRunState.FAILED, "rule_errors", message)
    return _end(run, HostRunState.SUCCEEDED)


def _log_health(run: HostRun, result: AgentResult) -> None:
    """One log line with what the host's own health check saw after the restarts."""
    if not result.health:
        return
    failed = [h for h in result.health if h.status == HealthStatus.FAILED]
    parts = [f"{h.check} {h.status.value.replace('_', ' ')}" for h in result.health]
    event_append(run.pk, "Health check on the host: " + ", ".join(parts) + ".", level="error" if failed else "info")
    for check in failed:
        event_append(run.pk, f"{check.check}: {check.detail}", level="error")


def _record_adopted_reset(run: HostRun, server: Server, services: list[str], now: Any) -> None:
    ServiceAccountSecret.objects.filter(server=server).update(rotated_at=now)
    event_append(
        run.pk,
        f"The adopted IME_SYSTEM's password was reset and given to {len(services)} service(s) "
        f"({', '.join(services) or 'none'}); this reset cannot be rolled back.",
        level="warning",
    )
    from servers.audit import Actor, audit_record

    audit_record(
        actor=Actor.system(f"job #{run.job_id}"),
        action="server.adopted_password_reset",
        obj=server,
        changes={"services": services, "job": run.job_id},
    )


def _password_policy(server: Server) -> tuple[int, bool]:
    """(minimum length, complexity) when discover reported the host's policy; the defaults otherwise."""
    from lockdown.agent.passwords import MIN_LENGTH

    policy = server.facts.get("password_policy") if isinstance(server.facts, dict) else None
    if not isinstance(policy, dict):
        return MIN_LENGTH, True
    length = policy.get("min_length")
    min_length = length if isinstance(length, int) and 0 <= length <= 127 else MIN_LENGTH
    return min_length, bool(policy.get("complexity", True))


def _rotate_password(run: HostRun, server: Server, conn: HostConnection) -> str:
    """A new IME_SYSTEM password on the account and every service running as it.

    DANGER: handles two plaintext service passwords. The new one is stored encrypted as *pending*
    before the host is asked, and becomes the server's password only when the host confirms;
    on failure the agent restores the previous one and the stored password stays as it was.
    """
    from lockdown.agent.passwords import generate_service_password

    secret = ServiceAccountSecret.objects.filter(server=server).first()
    if secret is None or secret.set_at is None:
        raise RunFailed(
            "no_service_password", f"{server.name} has no IME_SYSTEM password set by this tool yet: harden it first."
        )
    previous = decrypt_secret(secret.password_encrypted)
    min_length, complexity = _password_policy(server)
    new = generate_service_password(min_length, complexity)
    while new == previous:  # pragma: no cover - a 24+ character random collision
        new = generate_service_password(min_length, complexity)
    register_secret(new)  # redaction knows it before it travels anywhere
    pending = encrypt_secret(new)
    ServiceAccountSecret.objects.filter(pk=secret.pk).update(pending_password_encrypted=pending)
    _check_cancel(run)
    event_append(
        run.pk,
        "Rotating the IME_SYSTEM password on the account and every service running as it (the current password "
        "is checked first; a failed health check puts it back).",
    )
    result = _call_agent(
        run,
        conn,
        _request(
            run,
            AgentMode.ROTATE_PASSWORD,
            service_password=new,
            previous_service_password=previous,
            health=health_targets(server),
        ),
    )
    rotation = result.rotation
    if result.error is not None:
        ServiceAccountSecret.objects.filter(pk=secret.pk).update(pending_password_encrypted="")
        message = f"{result.error.code}: {result.error.message}"
        event_append(run.pk, message, level="error")
        if rotation is not None and rotation.restored:
            event_append(
                run.pk,
                "The previous password was put back on the account and its services; the stored password is unchanged.",
                level="warning",
            )
            return _end(run, HostRunState.ROLLED_BACK, result.error.code, message)
        return _end(run, HostRunState.FAILED, result.error.code, message)
    now = clock.now()
    ServiceAccountSecret.objects.filter(pk=secret.pk).update(
        password_encrypted=pending, pending_password_encrypted="", set_at=now, rotated_at=now
    )
    services = rotation.services if rotation is not None else []
    event_append(
        run.pk,
        f"Rotated: IME_SYSTEM and {len(services)} service(s) ({', '.join(services) or 'none'}) use the new password; "
        "the services were restarted and answer.",
    )
    from servers.audit import Actor, audit_record

    audit_record(
        actor=Actor.system(f"job #{run.job_id}"),
        action="server.service_password_rotated",
        obj=server,
        changes={"services": services, "job": run.job_id},
    )
    ports_failed = _mail_ports_failed(run, server, "The host confirmed the new password", _answered(result))
    if ports_failed:
        return ports_failed
    return _end(run, HostRunState.SUCCEEDED)


def _lost_runs(run: HostRun, server: Server) -> list[HostRun]:
    """This server's applies whose result never reached the database and whose journal was not read yet.

    A harden that ended failed with one of RESULT_LOST_KINDS may have changed the host after its
    command started (the agent journals each change on the host before it returns); a later
    rollback asks the agent to recover those changes from the journal.
    """
    return list(
        HostRun.objects.filter(
            server=server,
            mutating=True,
            journal_recovered=False,
            state=HostRunState.FAILED,
            error_kind__in=RESULT_LOST_KINDS,
            started_at__isnull=False,
            job__kind=JobKind.HARDEN,
            job__dry_run=False,
        )
        .exclude(pk=run.pk)
        .order_by("pk")
    )


def _rollback(run: HostRun, server: Server, conn: HostConnection) -> str:
    records = list(
        ChangeRecord.objects.select_related("host_run")
        .filter(server=server, rolled_back_at__isnull=True)
        .order_by("host_run_id", "seq")
    )
    lost = _lost_runs(run, server)
    if not records and not lost:
        event_append(run.pk, "Nothing to roll back: no change of ours is recorded on this server.")
        return _end(run, HostRunState.SUCCEEDED)
    # Oldest first, each with its run's job_id and own sequence (the agent undoes the list newest first
    # and matches journal entries against it by (job_id, sequence)).
    ordered = [ContractChange.model_validate(record.as_contract()) for record in records]
    recover = [f"{lost_run.job_id}.{lost_run.pk}" for lost_run in lost]
    if recover:
        event_append(
            run.pk,
            f"{len(recover)} earlier run(s) ended without storing their result ({', '.join(recover)}); "
            "their changes are read from the host's journal.",
        )
    event_append(run.pk, f"Rolling back {len(ordered)} recorded changes, newest first.")
    # Whatever the outcome, the host no longer matches the stored results.
    server_results_mark_stale(servers=Server.objects.filter(pk=server.pk), reason=StaleReason.ROLLBACK)
    result = _call_agent(
        run,
        conn,
        _request(run, AgentMode.ROLLBACK, rollback=ordered, recover_job_ids=recover, health=health_targets(server)),
    )
    if result.error is not None:
        message = _without_prefix(result.error.message, result.error.code)
        event_append(run.pk, f"{result.error.code}: {message}", level="error")
        return _end(run, HostRunState.FAILED, result.error.code, message)
    now = clock.now()
    if result.facts is not None:  # read again at the end of the rollback's program (an account it removed)
        _refresh_facts(run, server, _stored_facts(server), result.facts)
    ChangeRecord.objects.filter(pk__in=[record.pk for record in records]).update(rolled_back_at=now, rolled_back_by=run)
    if recover:
        HostRun.objects.filter(pk__in=[lost_run.pk for lost_run in lost]).update(journal_recovered=True)
        event_append(run.pk, f"Recovered and undid {len(result.recovered)} changes from the host's journal.")
    Server.objects.filter(pk=server.pk).update(status=ServerStatus.DRIFTED)
    event_append(run.pk, "Rolled back: the stored results are stale. Verify the server to see its state now.")
    return _end(run, HostRunState.SUCCEEDED)


def _mark_not_assessed(run: HostRun, kind: str) -> None:
    """The run could not read the host: its status says so (never "failing", which is a finding about
    an assessed host) and `not_assessed_kind` keeps the cause (servers.assessment words it)."""
    if run.server_id is None:
        return
    status = ServerStatus.UNREACHABLE if kind in UNREACHABLE_KINDS else ServerStatus.NOT_ASSESSED
    before = Server.objects.filter(pk=run.server_id).values_list("status", flat=True).first()
    Server.objects.filter(pk=run.server_id).update(status=status, not_assessed_kind=kind[:40])
    if before is not None:
        from jobs.alerts import server_status_changed

        server_status_changed(server_id=run.server_id, host_run=run, status_before=before, status_after=status)


def _answered(result: AgentResult) -> set[str] | None:
    """The mail protocols the host's own health check saw answer (None: it checked none)."""
    if not result.health:
        return None
    return {h.check.upper() for h in result.health if h.status == HealthStatus.OK}


def _mail_ports_failed(run: HostRun, server: Server, preface: str, answered: set[str] | None = None) -> str | None:
    """After the agent's own health check: the mail ports as a client sees them from here.

    Only the protocols that answered on the host are checked (a POP service that was disabled before
    the run is no reason to fail it). Ends the run as failed (and returns its state) if a port does
    not answer like MailEnable.
    """
    if answered is not None and not answered & {"SMTP", "POP", "IMAP"}:
        event_append(run.pk, "No mail port answered on the host before the run: none was checked from the network.")
        return None
    problems = check_mail_banners(server, protocols=answered)
    if problems:
        message = f"{preface}, but from here: " + "; ".join(problems)
        _connect_failure_events(run, "mail_ports", message)
        return _end(run, HostRunState.FAILED, "mail_ports", message)
    event_append(run.pk, "Mail ports answer with MailEnable's banners from the network.")
    return None


def check_mail_banners(server: Server, timeout: float = 5.0, protocols: set[str] | None = None) -> list[str]:
    """Connect to SMTP, POP and IMAP (or only `protocols`) like a mail client and match MailEnable's banners."""
    problems = []
    for name, port in (("SMTP", server.smtp_port), ("POP", server.pop_port), ("IMAP", server.imap_port)):
        if protocols is not None and name not in protocols:
            continue
        try:
            vetted = require_inside(server.address, port, server.customer.networks)
        except OutsideManagementNetworks as refused:
            return [refused.message]  # no port of this address is touched
        target = str(vetted) if vetted is not None else server.address  # the checked address, not a new lookup
        try:
            with socket.create_connection((target, port), timeout=timeout) as sock:
                sock.settimeout(timeout)
                banner = sock.recv(512).decode("ascii", "replace").strip()
        except OSError as exc:
            problems.append(f"{name} port {port} does not answer ({exc.__class__.__name__})")
            continue
        if not MAIL_BANNERS[name].search(banner):
            problems.append(f"{name} port {port} answers without MailEnable's banner")
    return problems
