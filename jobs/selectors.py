"""Reads of jobs and results, always through the tenancy scope."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Count, Min, Q, QuerySet, Value
from django.http import Http404

from jobs.choices import FINISHED_RUN_STATES, HostRunState, JobState
from jobs.models import Alert, HostRun, HostRunEvent, Job, ServerCompliance
from servers.models import Server
from servers.tenancy import Scope

RUN_COUNTS = {state: Count("host_runs", filter=Q(host_runs__state=state)) for state in HostRunState.values}


def job_list(*, scope: Scope, kind: str = "", state: str = "") -> QuerySet[Job]:
    jobs = Job.objects.all()
    if not scope.is_msp:
        visible = HostRun.objects.filter(customer_id__in=sorted(scope.customer_ids)).values("job_id")
        jobs = jobs.filter(pk__in=visible)
    if kind:
        jobs = jobs.filter(kind=kind)
    if state:
        jobs = jobs.filter(state=state)
    # the counts are of the user's own hosts: a fleet job does not tell a customer how big the fleet is
    mine = Q() if scope.is_msp else Q(host_runs__customer_id__in=sorted(scope.customer_ids))
    # A fleet job's description ("Harden: 20 servers") would say it too: `host_others` > 0 hides it (job_title).
    others = Count("host_runs", filter=~mine) if not scope.is_msp else Value(0)
    return jobs.annotate(
        host_total=Count("host_runs", filter=mine),
        host_failed=Count("host_runs", filter=mine & Q(host_runs__state__in=["failed", "rolled_back"])),
        host_others=others,
    ).order_by("-created_at", "-id")


def job_is_theirs(*, scope: Scope, job: Job) -> bool:
    """Every host of the job belongs to a customer the user sees (a fleet job spanning others' is not)."""
    if scope.is_msp:
        return True
    others = job.host_runs.exclude(customer_id__in=sorted(scope.customer_ids)).exclude(customer__isnull=True)
    return not others.exists()


def job_get(*, scope: Scope, job_id: int) -> Job:
    """A job the user may see: at least one of its hosts is theirs (404 otherwise)."""
    job = job_list(scope=scope).filter(pk=job_id).first()
    if job is None:
        raise Http404("not found")
    return job


def job_host_runs(*, scope: Scope, job: Job) -> QuerySet[HostRun]:
    """Only the user's own hosts of a fleet-wide job."""
    return scope.filter(HostRun.objects.filter(job=job)).order_by("wave", "customer_name", "server_name")


def job_events_after(*, scope: Scope, job: Job, after: int, limit: int = 500) -> list[HostRunEvent]:
    runs = job_host_runs(scope=scope, job=job).values("pk")
    events = HostRunEvent.objects.filter(host_run_id__in=runs, pk__gt=after)
    if not scope.is_msp:
        events = events.filter(msp_only=False)
    return list(
        events.select_related("host_run")
        .only("pk", "at", "level", "message", "host_run__server_name")
        .order_by("pk")[:limit]
    )


@dataclass(frozen=True)
class JobProgress:
    """How far a job is, over the hosts the reader sees: done of total, time elapsed, a rough ETA."""

    done: int
    total: int
    elapsed_s: int | None
    eta_s: int | None

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.total) if self.total else 0

    @property
    def elapsed(self) -> str:
        return duration_text(self.elapsed_s) if self.elapsed_s is not None else ""

    @property
    def eta(self) -> str:
        return duration_text(self.eta_s) if self.eta_s is not None else ""


def duration_text(seconds: int) -> str:
    """42 s, 3 min 05 s, 1 h 02 min."""
    if seconds < 60:
        return f"{seconds} s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def job_progress(*, runs: QuerySet[HostRun], job: Job, counts: dict[str, int], now: datetime) -> JobProgress:
    """Progress from the per-state `counts` of `runs` (the reader's hosts) and one aggregate.

    Elapsed runs from the first host's start (a job waiting for its window has not begun) to the
    job's end or now. The ETA assumes the remaining hosts take as long as the finished ones did
    on average, at the pace so far; none while paused, stopped, or before any host finished.
    """
    total = sum(counts.values())
    done = sum(n for state, n in counts.items() if state in FINISHED_RUN_STATES)
    first_start = runs.aggregate(first=Min("started_at"))["first"]
    if first_start is None:
        return JobProgress(done=done, total=total, elapsed_s=None, eta_s=None)
    end = job.finished_at if job.finished_at and not job.is_open else now
    elapsed = max(0, int((end - first_start).total_seconds()))
    eta = None
    if job.state == JobState.RUNNING and 0 < done < total:
        eta = round(elapsed * (total - done) / done)
    return JobProgress(done=done, total=total, elapsed_s=elapsed, eta_s=eta)


@dataclass
class HardenPreview:
    """What a harden would change, from the last verify."""

    verified: bool
    would_change: list[dict[str, Any]] = field(default_factory=list)
    high_risk: list[dict[str, Any]] = field(default_factory=list)
    errors: int = 0
    needs_input: int = 0


def harden_preview(server: Server) -> HardenPreview:
    compliance = ServerCompliance.objects.filter(server=server).first()
    if compliance is None:
        return HardenPreview(verified=False)
    drift = [o for o in compliance.outcomes if o.get("status") == "drift"]
    return HardenPreview(
        verified=True,
        would_change=drift,
        high_risk=[o for o in drift if o.get("risk") == "high"],
        errors=sum(1 for o in compliance.outcomes if o.get("status") == "error"),
        needs_input=sum(1 for o in compliance.outcomes if o.get("status") == "needs_input"),
    )


@dataclass
class FleetPreview:
    servers: list[Server]
    never_verified: int
    changes: int
    high_risk_rules: dict[str, int]


def fleet_preview(servers: list[Server]) -> FleetPreview:
    compliances = {c.server_id: c for c in ServerCompliance.objects.filter(server__in=servers)}
    changes = 0
    high: dict[str, int] = {}
    for compliance in compliances.values():
        for outcome in compliance.outcomes:
            if outcome.get("status") == "drift":
                changes += 1
                if outcome.get("risk") == "high":
                    high[outcome["rule_id"]] = high.get(outcome["rule_id"], 0) + 1
    return FleetPreview(
        servers=servers, never_verified=len(servers) - len(compliances), changes=changes, high_risk_rules=high
    )


@dataclass
class RuleRow:
    """One (rule, target) of the server page: latest outcome, evidence and history."""

    outcome: dict[str, Any]
    changes: list[Any] = field(default_factory=list)  # the newest CHANGES_PER_ROW; the download has them all
    history: list[Any] = field(default_factory=list)
    changes_total: int = 0


@dataclass
class SectionRows:
    name: str
    rows: list[RuleRow]
    counts: dict[str, int]


HISTORY_LIMIT = 3000
CHANGES_PER_ROW = 5  # change records shown per rule on the server page (the CSV download has every one)


def server_compliance_sections(server: Server) -> tuple[ServerCompliance | None, list[SectionRows]]:
    """The latest outcomes grouped by the guide's sections, with evidence and history.

    Three queries whatever the number of rules: compliance, change records, history rows.
    """
    from jobs.models import ChangeRecord, RuleResult

    compliance = ServerCompliance.objects.filter(server=server).select_related("host_run").first()
    if compliance is None:
        return None, []
    changes: dict[tuple[str, str], list[Any]] = {}
    for change in (
        ChangeRecord.objects.filter(server=server)
        .select_related("host_run")
        .order_by("-created_at", "-seq")[:HISTORY_LIMIT]
    ):
        changes.setdefault((change.rule_id, change.target), []).append(change)
    history: dict[tuple[str, str], list[Any]] = {}
    for result in RuleResult.objects.filter(server=server).only(
        "rule_id", "target", "status", "created_at", "host_run_id", "snapshot", "observed_text"
    )[:HISTORY_LIMIT]:
        history.setdefault((result.rule_id, result.target), []).append(result)
    sections: dict[str, SectionRows] = {}
    for outcome in compliance.outcomes:
        key = (outcome["rule_id"], outcome["target"])
        section = sections.setdefault(outcome["section"], SectionRows(outcome["section"], [], {}))
        row_changes = changes.get(key, [])
        section.rows.append(
            RuleRow(
                outcome=outcome,
                changes=row_changes[:CHANGES_PER_ROW],
                history=history.get(key, [])[:20],
                changes_total=len(row_changes),
            )
        )
        section.counts[outcome["status"]] = section.counts.get(outcome["status"], 0) + 1
    return compliance, list(sections.values())


def server_rule_outcomes(server: Server, *, status: str = "") -> list[dict[str, Any]]:
    """The server's latest outcomes (`ServerCompliance.outcomes`, the guide's order), of one status if given.

    One query whatever the number of rules: the outcomes are one JSON row. No compliance yet: none.
    """
    outcomes = ServerCompliance.objects.filter(server=server).values_list("outcomes", flat=True).first()
    rows: list[dict[str, Any]] = list(outcomes or [])
    return [row for row in rows if row.get("status") == status] if status else rows


def server_recent_runs(server: Server, limit: int = 10) -> list[HostRun]:
    return list(HostRun.objects.filter(server=server).select_related("job").order_by("-id")[:limit])


def server_change_records(server: Server) -> Iterator[Any]:
    """Every change record of the server, newest first, for the download (streamed in chunks)."""
    from jobs.models import ChangeRecord

    return (
        ChangeRecord.objects.filter(server=server)
        .select_related("host_run")
        .order_by("-created_at", "-seq")
        .iterator(chunk_size=500)
    )


def alert_list(*, scope: Scope, show: str = "open") -> QuerySet[Alert]:
    """Alerts the user may see; "open" ones are neither acknowledged nor resolved by a later verify."""
    alerts = scope.filter(Alert.objects.select_related("customer", "acknowledged_by"))
    if show != "all":
        alerts = alerts.filter(acknowledged_at__isnull=True, resolved_at__isnull=True)
    return alerts.order_by("-created_at", "-id")
