"""Job lifecycle: create (with the per-host lock), dispatch in waves, finish, sweep, reap, cancel.

The runner (`jobs.runner`) executes one HostRun; everything about *which* runs may start
lives here, judged against the database and `lockdown.clock`, so tests move time instead of
sleeping.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, OuterRef, Q, Subquery
from django.utils import timezone

from jobs.choices import (
    ACTIVE_JOB_STATES,
    ACTIVE_RUN_STATES,
    MUTATING_KINDS,
    NOT_ASSESSED_KINDS,
    OPEN_JOB_STATES,
    CanaryOrder,
    HostRunState,
    JobKind,
    JobState,
)
from jobs.models import HostRun, HostRunEvent, Job
from lockdown import clock
from servers.audit import Actor, audit_record
from servers.models import Server
from servers.tenancy import Action, Scope, require

log = logging.getLogger(__name__)

# A run whose worker has not written a heartbeat for this long is declared dead by the reaper.
HEARTBEAT_TIMEOUT = timedelta(seconds=getattr(settings, "FLEET_HEARTBEAT_TIMEOUT_S", 120))
# A queued run dispatched this long ago and still unclaimed is sent again by the sweeper.
REDISPATCH_AFTER = timedelta(seconds=getattr(settings, "FLEET_REDISPATCH_AFTER_S", 60))
GLOBAL_MAX_IN_FLIGHT: int = getattr(settings, "FLEET_GLOBAL_MAX_IN_FLIGHT", 200)


class JobRefused(ValueError):
    """The job cannot be created (e.g. a host already has a mutating job); the message says why."""


@dataclass(frozen=True)
class JobOptions:
    """What the operator chose; recorded on the Job and in the audit log."""

    dry_run: bool = False
    canary_size: int = 0
    failure_threshold_pct: int = 20
    max_in_flight: int = 20
    not_before: datetime | None = None
    not_after: datetime | None = None
    # Harden only: reset the password of an IME_SYSTEM that MEInstaller created (cannot be rolled back).
    reset_adopted_password: bool = False
    # The canary wave: these servers when the operator chose them (canary_size is then their number),
    # else the first canary_size hosts by customer and name, or with healthy_first those whose last
    # verify succeeded before the others.
    canary_server_ids: tuple[int, ...] = ()
    canary_healthy_first: bool = False
    # Wait for an operator's "continue" once the canary wave passed.
    pause_after_canary: bool = False

    @property
    def canary_count(self) -> int:
        return len(set(self.canary_server_ids)) if self.canary_server_ids else self.canary_size

    @property
    def canary_order(self) -> CanaryOrder:
        if self.canary_server_ids:
            return CanaryOrder.CHOSEN
        return CanaryOrder.HEALTHY_FIRST if self.canary_healthy_first else CanaryOrder.FIRST

    def validate(self) -> None:
        if not 0 <= self.failure_threshold_pct <= 100:
            raise JobRefused("The failure threshold is a percentage between 0 and 100.")
        if not 1 <= self.max_in_flight <= 500:
            raise JobRefused("Hosts in flight must be between 1 and 500.")
        if self.not_before and self.not_after and self.not_after <= self.not_before:
            raise JobRefused("The window must end after it starts.")
        if self.canary_size > 10_000:
            raise JobRefused("The canary wave is too large.")
        if self.pause_after_canary and self.canary_count == 0:
            raise JobRefused("A pause after the canary needs a canary wave.")


def typed_confirmation_needed(kind: JobKind, server_count: int, *, dry_run: bool = False) -> str | None:
    """The phrase a person must type to start this job, or None when a click is enough.

    A harden or rollback of more than FLEET_CONFIRM_TYPED_ABOVE servers interrupts mail on each of them.
    """
    limit = int(getattr(settings, "FLEET_CONFIRM_TYPED_ABOVE", 10))
    if kind not in (JobKind.HARDEN, JobKind.ROLLBACK) or dry_run or server_count <= limit:
        return None
    verb = "harden" if kind == JobKind.HARDEN else "roll back"
    return f"{verb} {server_count} servers"


def servers_last_verify_succeeded(server_ids: Sequence[int]) -> set[int]:
    """The servers among `server_ids` whose latest finished verify succeeded (one query)."""
    latest = (
        HostRun.objects.filter(server=OuterRef("pk"), job__kind=JobKind.VERIFY)
        .exclude(state__in=list(ACTIVE_RUN_STATES))
        .order_by("-id")
        .values("state")[:1]
    )
    return set(
        Server.objects.filter(pk__in=list(server_ids))
        .annotate(last_verify=Subquery(latest))
        .filter(last_verify=HostRunState.SUCCEEDED)
        .values_list("pk", flat=True)
    )


def _canary_first(servers: list[Server], options: JobOptions) -> list[Server]:
    """`servers` (already by customer and name) with the canary wave first."""
    if options.canary_server_ids:
        chosen = set(options.canary_server_ids)
        if not chosen <= {server.pk for server in servers}:
            raise JobRefused("The canary hosts must be among the job's servers.")
        return [s for s in servers if s.pk in chosen] + [s for s in servers if s.pk not in chosen]
    if options.canary_healthy_first and options.canary_size:
        healthy = servers_last_verify_succeeded([server.pk for server in servers])
        return sorted(servers, key=lambda server: server.pk not in healthy)  # stable: by name within each
    return servers


def maintenance_window_for(servers: Sequence[Server], now: datetime) -> tuple[datetime, datetime]:
    """(not_before, not_after) for the customers' next maintenance window; all servers of one customer."""
    customers = {server.customer_id: server.customer for server in servers}
    if len(customers) != 1:
        raise JobRefused("A job in a maintenance window needs servers of one customer (each has its own window).")
    customer = next(iter(customers.values()))
    window = customer.maintenance_window(now)
    if window is None:
        raise JobRefused(f"{customer.name} has no maintenance window; set one on the customer's page.")
    return max(window.start, now), window.end


Enqueue = Callable[[int], None]


def _default_enqueue(host_run_id: int) -> None:
    from jobs.tasks import run_host_run

    run_host_run.delay(host_run_id)


_enqueue: Enqueue = _default_enqueue


def set_enqueue(function: Enqueue | None) -> None:
    """Tests replace how runs reach the broker (e.g. run inline); None restores Celery."""
    global _enqueue
    _enqueue = function or _default_enqueue


def action_for(kind: JobKind) -> Action:
    """The permission a job of this kind needs (DESIGN.md, "Who may do what"): the self-test is MSP admins'."""
    if kind in MUTATING_KINDS:
        return Action.HARDEN
    if kind == JobKind.SELFTEST:
        return Action.SELFTEST
    return Action.EDIT_SERVERS


def job_create(
    *,
    scope: Scope,
    actor: Actor,
    kind: JobKind,
    servers: Sequence[Server],
    options: JobOptions | None = None,
    description: str = "",
    typed_confirmation: str = "",
) -> Job:
    """Create a job and its host runs; refuse if a host is locked by another mutating job.

    Permission is checked per server's customer. The lock is the database's partial unique
    constraint on HostRun, so two simultaneous requests cannot both pass. A person starting a
    large harden or rollback must have typed `typed_confirmation_needed`'s phrase (commands and
    schedules act as the system and are not asked).
    """
    options = options or JobOptions()
    options.validate()
    if not servers:
        raise JobRefused("Choose at least one server.")
    action = action_for(kind)
    for customer_id in {server.customer_id for server in servers}:
        require(scope, action, customer_id)
    mutating = kind in MUTATING_KINDS
    now = clock.now()
    if kind == JobKind.DISCOVER and actor.user is not None:
        # "Test connection" is rate-limited per user: it must not serve as a port scanner
        limit = int(getattr(settings, "FLEET_TEST_CONNECTION_PER_MINUTE", 10))
        recent = Job.objects.filter(
            kind=JobKind.DISCOVER, requested_by=actor.user, created_at__gte=timezone.now() - timedelta(minutes=1)
        ).count()  # created_at is the wall clock (auto_now_add)
        if recent >= limit:
            raise JobRefused(f"At most {limit} connection tests a minute; try again shortly.")
    phrase = typed_confirmation_needed(kind, len(servers), dry_run=options.dry_run)
    if phrase is not None and actor.user is not None and typed_confirmation.strip().casefold() != phrase:
        raise JobRefused(f"Not started: type “{phrase}” to confirm.")
    ordered = _canary_first(sorted(servers, key=lambda server: (server.customer.name, server.name)), options)
    canary_count = options.canary_count
    try:
        with transaction.atomic():
            job = Job.objects.create(
                kind=kind,
                state=JobState.SCHEDULED if options.not_before and options.not_before > now else JobState.RUNNING,
                requested_by=actor.user,
                requested_by_name=actor.label,
                description=description[:300],
                dry_run=options.dry_run,
                canary_size=canary_count,
                canary_order=options.canary_order,
                pause_after_canary=options.pause_after_canary,
                failure_threshold_pct=options.failure_threshold_pct,
                max_in_flight=options.max_in_flight,
                not_before=options.not_before,
                not_after=options.not_after,
                reset_adopted_password=options.reset_adopted_password and kind == JobKind.HARDEN,
                started_at=now,
            )
            HostRun.objects.bulk_create(
                [
                    HostRun(
                        job=job,
                        server=server,
                        server_name=server.name,
                        customer_id=server.customer_id,
                        customer_name=server.customer.name,
                        mutating=mutating,
                        wave=0 if (canary_count == 0 or index < canary_count) else 1,
                    )
                    for index, server in enumerate(ordered)
                ]
            )
            audit_record(
                actor=actor,
                action=f"job.{kind}",
                obj=job,
                customer=ordered[0].customer if len({s.customer_id for s in ordered}) == 1 else None,
                changes={
                    "servers": [server.name for server in ordered][:200],
                    "server_count": len(ordered),
                    "dry_run": options.dry_run,
                    "canary_size": canary_count,
                    "canary_order": options.canary_order.value,
                    "canary_servers": [s.name for s in ordered[:canary_count]][:200],
                    "pause_after_canary": options.pause_after_canary,
                    "failure_threshold_pct": options.failure_threshold_pct,
                    "max_in_flight": options.max_in_flight,
                    "not_before": options.not_before.isoformat() if options.not_before else None,
                    "not_after": options.not_after.isoformat() if options.not_after else None,
                    "reset_adopted_password": options.reset_adopted_password and kind == JobKind.HARDEN,
                },
            )
            transaction.on_commit(lambda: job_dispatch(job.pk))
    except IntegrityError:
        busy = (
            HostRun.objects.filter(
                server__in=[s.pk for s in ordered],
                mutating=True,
                state__in=[HostRunState.QUEUED, HostRunState.RUNNING],
            )
            .values_list("server_name", "job_id")
            .first()
        )
        detail = f"{busy[0]} is being changed by job #{busy[1]}" if busy else "a server is being changed by another job"
        raise JobRefused(f"Not started: {detail}. Wait for it to finish or cancel it.") from None
    return job


def job_dispatch(job_id: int) -> int:
    """Send the runs that may start now: released wave, window open, within the caps.

    Safe to call any number of times from anywhere (web, worker, sweeper): a run is sent
    again only after REDISPATCH_AFTER without a claim.
    """
    now = clock.now()
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.state not in OPEN_JOB_STATES:
            return 0
        if job.cancel_requested_at is not None:
            _cancel_queued(job, now)
            _finish_if_done(job, now)
            return 0
        if job.not_before is not None and job.not_before > now:
            return 0
        if job.not_after is not None and now >= job.not_after:
            # The maintenance window closed: what has not started must wait for another job.
            job.host_runs.filter(state=HostRunState.QUEUED).update(
                state=HostRunState.CANCELLED,
                finished_at=now,
                error_kind="window_closed",
                error_message="The maintenance window closed before this host was started.",
            )
            _finish_if_done(job, now)
            return 0
        if job.state == JobState.SCHEDULED:
            job.state = JobState.RUNNING
            job.save(update_fields=["state"])
        _advance_waves(job, now)
        if job.state not in ACTIVE_JOB_STATES:
            return 0
        running = job.host_runs.filter(state=HostRunState.RUNNING).count()
        global_running = HostRun.objects.filter(state=HostRunState.RUNNING).count()
        room = max(0, min(job.max_in_flight - running, GLOBAL_MAX_IN_FLIGHT - global_running))
        candidates = list(
            job.host_runs.filter(state=HostRunState.QUEUED, wave__lte=job.current_wave)
            .filter(Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=now - REDISPATCH_AFTER))
            .order_by("wave", "id")
            .values_list("pk", flat=True)[:room]
        )
        if candidates:
            HostRun.objects.filter(pk__in=candidates).update(dispatched_at=now)
    for host_run_id in candidates:
        _enqueue(host_run_id)
    return len(candidates)


def _advance_waves(job: Job, now: datetime) -> None:
    """Release the next wave when the current one is done, or stop at the failure threshold.

    On a verify, a host that could not be assessed at all (PowerShell 2.0, a rejected
    credential, down: NOT_ASSESSED_KINDS) says nothing about the job's safety: it is left out of the
    wave's failure rate. After a canary that passed, a job with pause_after_canary waits (PAUSED).
    """
    failed_q = Q(state__in=[HostRunState.FAILED, HostRunState.ROLLED_BACK])
    not_assessed_q = Q(state=HostRunState.FAILED, error_kind__in=sorted(NOT_ASSESSED_KINDS))
    read_only = job.kind == JobKind.VERIFY  # a discover is the connection test: its failures are its answer
    while True:
        in_wave = job.host_runs.filter(wave__lte=job.current_wave)
        counts = in_wave.aggregate(
            total=Count("id"),
            open=Count("id", filter=Q(state__in=[HostRunState.QUEUED, HostRunState.RUNNING])),
            failed=Count("id", filter=failed_q & ~not_assessed_q if read_only else failed_q),
            not_assessed=Count("id", filter=not_assessed_q),
        )
        if counts["open"]:
            return
        later = job.host_runs.filter(wave__gt=job.current_wave).exists()
        if not later:
            return
        judged = counts["total"] - (counts["not_assessed"] if read_only else 0)
        failure_pct = 100.0 * counts["failed"] / (judged or 1)
        if failure_pct > job.failure_threshold_pct:
            job.state = JobState.STOPPED
            unassessed = counts["not_assessed"] if read_only else 0
            job.stop_reason = (
                f"Wave {job.current_wave + 1}: {counts['failed']} of {judged} hosts failed "
                f"({failure_pct:.0f} % > {job.failure_threshold_pct} %)"
                + (f"; {unassessed} more could not be assessed (not counted)" if unassessed else "")
                + "; the remaining hosts were not started."
            )
            job.finished_at = now
            job.save(update_fields=["state", "stop_reason", "finished_at"])
            job.host_runs.filter(state=HostRunState.QUEUED).update(
                state=HostRunState.CANCELLED, finished_at=now, error_kind="stopped", error_message=job.stop_reason
            )
            return
        if job.pause_after_canary and job.current_wave == 0 and job.canary_size:
            job.state = JobState.PAUSED
            job.save(update_fields=["state"])
            return
        job.current_wave += 1
        job.save(update_fields=["current_wave"])


def _cancel_queued(job: Job, now: datetime) -> None:
    job.host_runs.filter(state=HostRunState.QUEUED).update(
        state=HostRunState.CANCELLED,
        finished_at=now,
        error_kind="cancelled",
        error_message="Cancelled before it started.",
    )


def _finish_if_done(job: Job, now: datetime) -> None:
    if job.host_runs.filter(state__in=[HostRunState.QUEUED, HostRunState.RUNNING]).exists():
        return
    if job.state not in OPEN_JOB_STATES:
        return
    states = set(job.host_runs.values_list("state", flat=True))
    if job.cancel_requested_at is not None or states == {HostRunState.CANCELLED}:
        job.state = JobState.CANCELLED
    elif states & {HostRunState.FAILED, HostRunState.ROLLED_BACK}:
        job.state = JobState.FAILED
    else:
        job.state = JobState.SUCCEEDED
    job.finished_at = now
    job.save(update_fields=["state", "finished_at"])


def job_host_run_finished(job_id: int) -> None:
    """Called after a run ends: finish the job or dispatch the next runs."""
    now = clock.now()
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None:
            return
        if job.state == JobState.RUNNING:
            _advance_waves(job, now)
        _finish_if_done(job, now)
    job_dispatch(job_id)


def _require_control(scope: Scope, job: Job) -> None:
    """Acting on a whole job (cancel, continue) needs the job's action on every customer in it.

    A customer's user who opens a fleet job with other customers' hosts gets 404 here (require).
    """
    customer_ids = set(job.host_runs.values_list("customer_id", flat=True))
    for customer_id in customer_ids:
        if customer_id is not None:
            require(scope, action_for(JobKind(job.kind)), customer_id)


def job_cancel(*, scope: Scope, actor: Actor, job: Job) -> None:
    """Request cancellation: queued runs are cancelled now, running ones between phases."""
    _require_control(scope, job)
    now = clock.now()
    with transaction.atomic():
        Job.objects.filter(pk=job.pk, cancel_requested_at__isnull=True).update(cancel_requested_at=now)
        audit_record(actor=actor, action="job.cancel", obj=job)
    job_dispatch(job.pk)


def job_continue(*, scope: Scope, actor: Actor, job: Job) -> None:
    """Start the hosts after the canary: of a job paused for approval, or stopped by the threshold.

    A stopped job's hosts were cancelled before they started (error "stopped"); they are queued
    again, which takes their per-host lock again: refused if another job changes one of them now.
    """
    _require_control(scope, job)
    now = clock.now()
    try:
        with transaction.atomic():
            locked = Job.objects.select_for_update().get(pk=job.pk)
            before = locked.state
            if locked.cancel_requested_at is not None or before not in (JobState.PAUSED, JobState.STOPPED):
                raise JobRefused("Only a job paused after its canary or stopped by the canary threshold can continue.")
            requeued = 0
            if before == JobState.STOPPED:
                requeued = locked.host_runs.filter(state=HostRunState.CANCELLED, error_kind="stopped").update(
                    state=HostRunState.QUEUED, finished_at=None, error_kind="", error_message="", dispatched_at=None
                )
                if not requeued:
                    raise JobRefused("No host is left to continue with.")
            locked.state = JobState.RUNNING
            locked.current_wave += 1
            locked.finished_at = None
            locked.stop_reason = ""
            locked.save(update_fields=["state", "current_wave", "finished_at", "stop_reason"])
            audit_record(
                actor=actor,
                action="job.continue",
                obj=locked,
                changes={"from_state": before, "wave": locked.current_wave + 1, "requeued": requeued},
            )
    except IntegrityError:
        raise JobRefused(
            "Not continued: a server of this job is being changed by another job. Wait for it to finish."
        ) from None
    log.info("job %s continued at %s", job.pk, now)
    job_dispatch(job.pk)


def job_retry_servers(*, scope: Scope, job: Job) -> list[Server]:
    """The servers of `job`'s failed or rolled-back hosts that `scope` sees, for a new job ("retry failed").

    A retry is a new job, not the old rows run again: a failed harden whose result was lost keeps
    its HostRun as it is, so a later rollback still recovers its changes from the host's journal.
    """
    runs = scope.filter(
        HostRun.objects.filter(job=job, state__in=[HostRunState.FAILED, HostRunState.ROLLED_BACK], server__isnull=False)
    )
    return list(Server.objects.filter(pk__in=runs.values("server_id")).select_related("customer"))


def sweep() -> dict[str, int]:
    """Periodic: reap runs whose worker died, open maintenance windows, re-send lost messages."""
    now = clock.now()
    reaped = reap_dead_runs()
    dispatched = 0
    for job_id in Job.objects.filter(state__in=list(ACTIVE_JOB_STATES)).values_list("pk", flat=True):
        dispatched += job_dispatch(job_id)
    log.debug("sweep at %s: reaped %d, dispatched %d", now, reaped, dispatched)
    return {"reaped": reaped, "dispatched": dispatched}


def reap_dead_runs() -> int:
    """Fail runs whose worker stopped heartbeating; the host stays recoverable (verify, rollback)."""
    now = clock.now()
    stale = list(
        HostRun.objects.filter(state=HostRunState.RUNNING, heartbeat_at__lt=now - HEARTBEAT_TIMEOUT).values_list(
            "pk", "job_id"
        )
    )
    reaped = 0
    for run_id, job_id in stale:
        changed = HostRun.objects.filter(
            pk=run_id, state=HostRunState.RUNNING, heartbeat_at__lt=now - HEARTBEAT_TIMEOUT
        ).update(
            state=HostRunState.FAILED,
            finished_at=now,
            error_kind="worker_lost",
            error_message=(
                "The worker running this host stopped answering. The host may be partly changed: verify it, "
                "then harden again or roll back."
            ),
        )
        if changed:
            reaped += 1
            event_append(run_id, "The worker stopped heartbeating; run marked failed by the reaper.", level="error")
            job_host_run_finished(job_id)
    return reaped


def event_append(host_run_id: int, message: str, *, level: str = "info", msp_only: bool = False) -> None:
    """Append one log line with the next sequence number (atomic against other writers)."""
    from django.db.models import F

    from servers.crypto import redact

    with transaction.atomic():
        HostRun.objects.filter(pk=host_run_id).update(next_event_seq=F("next_event_seq") + 1)
        seq = HostRun.objects.values_list("next_event_seq", flat=True).get(pk=host_run_id)
        HostRunEvent.objects.create(
            host_run_id=host_run_id,
            seq=seq,
            at=clock.now(),
            level=level,
            # NUL is stripped: host text may carry one and PostgreSQL cannot store it.
            message=redact(message).replace("\x00", "")[:4000],
            msp_only=msp_only,
        )
