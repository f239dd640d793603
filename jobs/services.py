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
from django.db.models import Count, Q
from django.utils import timezone

from jobs.choices import ACTIVE_JOB_STATES, MUTATING_KINDS, HostRunState, JobKind, JobState
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

    def validate(self) -> None:
        if not 0 <= self.failure_threshold_pct <= 100:
            raise JobRefused("The failure threshold is a percentage between 0 and 100.")
        if not 1 <= self.max_in_flight <= 500:
            raise JobRefused("Hosts in flight must be between 1 and 500.")
        if self.not_before and self.not_after and self.not_after <= self.not_before:
            raise JobRefused("The window must end after it starts.")
        if self.canary_size > 10_000:
            raise JobRefused("The canary wave is too large.")


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
) -> Job:
    """Create a job and its host runs; refuse if a host is locked by another mutating job.

    Permission is checked per server's customer. The lock is the database's partial unique
    constraint on HostRun, so two simultaneous requests cannot both pass.
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
    ordered = sorted(servers, key=lambda server: (server.customer.name, server.name))
    try:
        with transaction.atomic():
            job = Job.objects.create(
                kind=kind,
                state=JobState.SCHEDULED if options.not_before and options.not_before > now else JobState.RUNNING,
                requested_by=actor.user,
                requested_by_name=actor.label,
                description=description[:300],
                dry_run=options.dry_run,
                canary_size=options.canary_size,
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
                        wave=0 if (options.canary_size == 0 or index < options.canary_size) else 1,
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
                    "canary_size": options.canary_size,
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
        if job is None or job.state not in ACTIVE_JOB_STATES:
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
    """Release the next wave when the current one is done, or stop at the failure threshold."""
    while True:
        in_wave = job.host_runs.filter(wave__lte=job.current_wave)
        counts = in_wave.aggregate(
            total=Count("id"),
            open=Count("id", filter=Q(state__in=[HostRunState.QUEUED, HostRunState.RUNNING])),
            failed=Count("id", filter=Q(state__in=[HostRunState.FAILED, HostRunState.ROLLED_BACK])),
        )
        if counts["open"]:
            return
        later = job.host_runs.filter(wave__gt=job.current_wave).exists()
        if not later:
            return
        done = counts["total"] or 1
        failure_pct = 100.0 * counts["failed"] / done
        if failure_pct > job.failure_threshold_pct:
            job.state = JobState.STOPPED
            job.stop_reason = (
                f"Wave {job.current_wave + 1}: {counts['failed']} of {counts['total']} hosts failed "
                f"({failure_pct:.0f} % > {job.failure_threshold_pct} %); the remaining hosts were not started."
            )
            job.finished_at = now
            job.save(update_fields=["state", "stop_reason", "finished_at"])
            job.host_runs.filter(state=HostRunState.QUEUED).update(
                state=HostRunState.CANCELLED, finished_at=now, error_kind="stopped", error_message=job.stop_reason
            )
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
    if job.state not in ACTIVE_JOB_STATES:
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


def job_cancel(*, scope: Scope, actor: Actor, job: Job) -> None:
    """Request cancellation: queued runs are cancelled now, running ones between phases."""
    customer_ids = set(job.host_runs.values_list("customer_id", flat=True))
    for customer_id in customer_ids:
        if customer_id is not None:
            require(scope, action_for(JobKind(job.kind)), customer_id)
    now = clock.now()
    with transaction.atomic():
        Job.objects.filter(pk=job.pk, cancel_requested_at__isnull=True).update(cancel_requested_at=now)
        audit_record(actor=actor, action="job.cancel", obj=job)
    job_dispatch(job.pk)


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
