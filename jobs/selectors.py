"""Reads of jobs and results, always through the tenancy scope."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Count, Min, Q, QuerySet, Value
from django.http import Http404

from jobs.choices import FINISHED_RUN_STATES, HostRunState, JobState
from jobs.models import Alert, HostRun, HostRunEvent, Job, ServerCompliance
from jobs.templatetags.job_tags import status_label
from lockdown.assignment import judged_versions
from lockdown.rules.wording import in_words, is_registry_rule
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


LOG_PAGE = 500  # log lines per answer: the live log page's poll and the API's GET /jobs/{id}/log/


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
    # drifted checks harden never changes (verify-only: each outcome's expected.remedy says how to fix it by hand)
    fix_by_hand: list[dict[str, Any]] = field(default_factory=list)
    errors: int = 0
    needs_input: int = 0


def harden_changes(outcome: dict[str, Any]) -> bool:
    """Whether a harden would act on this stored outcome: drift on a check it may change (no remedy by hand)."""
    expected = outcome.get("expected")
    return outcome.get("status") == "drift" and not (isinstance(expected, dict) and expected.get("remedy"))


def harden_preview(server: Server) -> HardenPreview:
    compliance = ServerCompliance.objects.filter(server=server).first()
    if compliance is None:
        return HardenPreview(verified=False)
    drift = [o for o in compliance.outcomes if harden_changes(o)]
    return HardenPreview(
        verified=True,
        would_change=drift,
        high_risk=[o for o in drift if o.get("risk") == "high"],
        fix_by_hand=[o for o in compliance.outcomes if o.get("status") == "drift" and not harden_changes(o)],
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
            if harden_changes(outcome):
                changes += 1
                if outcome.get("risk") == "high":
                    high[outcome["rule_id"]] = high.get(outcome["rule_id"], 0) + 1
    return FleetPreview(
        servers=servers, never_verified=len(servers) - len(compliances), changes=changes, high_risk_rules=high
    )


@dataclass
class RuleRow:
    """One (rule, target) of the server page: latest outcome in words, evidence and history."""

    outcome: dict[str, Any]
    changes: list[Any] = field(default_factory=list)  # the newest CHANGES_PER_ROW; the download has them all
    history: list[Any] = field(default_factory=list)
    changes_total: int = 0
    expected: str = ""  # the sentences with masks and SIDs named; the raw ones stay in the evidence
    observed: str = ""
    reason: str = ""
    controls: list[Any] = field(default_factory=list)  # the rule's control references, as the version stores them


@dataclass
class CauseGroup:
    """Rows of one section that share a status and a reason: one root cause, shown once."""

    key: str
    status: str
    reason: str
    rows: list[RuleRow]  # the rows shown (a sample unless the filter asks for them all)
    total: int  # rows of the section with this cause that pass the filter


@dataclass
class SectionRows:
    name: str
    counts: dict[str, int]  # every row of the section, whatever the filter
    groups: list[CauseGroup]
    shown: int  # rows that pass the filter
    open: bool


@dataclass
class RootCause:
    """A reason shared by problems across the page ("IME_SYSTEM does not exist", 123 rules in 4 sections)."""

    key: str
    status: str
    reason: str
    count: int
    sections: list[str]


@dataclass(frozen=True)
class ComplianceFilter:
    """The server page's filter: problems only or everything, a search, one root cause."""

    show: str = "all"  # "all" | "problems"
    q: str = ""
    cause: str = ""

    SHOWS = ("all", "problems")

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> ComplianceFilter:
        show = query.get("show", "all")
        cause = query.get("cause", "")
        return cls(
            show=show if show in cls.SHOWS else "all",
            q=" ".join(query.get("q", "").split())[:200],
            cause=cause if _CAUSE_KEY.fullmatch(cause) else "",
        )

    @property
    def active(self) -> bool:
        return self.show != "all" or bool(self.q) or bool(self.cause)

    def admits(self, row: RuleRow, key: str) -> bool:
        status = row.outcome["status"]
        if self.show == "problems" and status not in PROBLEM_STATUSES:
            return False
        if self.cause and key != self.cause:
            return False
        if self.q:
            needle = self.q.casefold()
            haystack = (
                row.outcome["rule_id"],
                row.outcome["target"],
                row.outcome["section"],
                row.expected,
                row.observed,
                row.reason,
                status_label(status),
            )
            return any(needle in str(text).casefold() for text in haystack)
        return True


@dataclass
class CompliancePage:
    compliance: ServerCompliance | None
    sections: list[SectionRows]
    causes: list[RootCause]  # problems only, most rows first
    counts: dict[str, int]  # every outcome of the server by status
    total: int
    shown: int
    filter: ComplianceFilter


HISTORY_LIMIT = 3000
CHANGES_PER_ROW = 5  # change records shown per rule on the server page (the CSV download has every one)
PROBLEM_STATUSES = ("error", "drift", "needs_input")
# Order of the groups in a section: what needs action first, then what is fine, then what does not apply.
STATUS_ORDER = ("error", "drift", "needs_input", "waived", "compliant", "not_applicable")
SAMPLE_ROWS = 3  # rows shown of a root cause before "show all N"
OPEN_AT_MOST = 10  # unfiltered, the sections with problems are open when the server has this many or fewer
_CAUSE_KEY = re.compile(r"[0-9a-f]{12}")


def cause_key(status: str, reason: str) -> str:
    """A short stable id of (status, reason) for the page's `?cause=` link."""
    return hashlib.sha256(f"{status}\0{reason}".encode()).hexdigest()[:12]


def server_compliance_page(server: Server, page_filter: ComplianceFilter | None = None) -> CompliancePage:
    """The latest outcomes grouped by the guide's sections and, inside each, by root cause; in words, with
    evidence and history, filtered by `page_filter`.

    Four queries whatever the number of rules: compliance, the version that judged it (for the rules'
    controls), change records, history rows.
    """
    from jobs.models import ChangeRecord, RuleResult

    page_filter = page_filter or ComplianceFilter()
    compliance = ServerCompliance.objects.filter(server=server).select_related("host_run").first()
    if compliance is None:
        return CompliancePage(None, [], [], {}, 0, 0, page_filter)
    changes: dict[tuple[str, str], list[Any]] = {}
    for change in (
        ChangeRecord.objects.filter(server=server)
        .select_related("host_run")
        .order_by("-created_at", "-seq")[:HISTORY_LIMIT]
    ):
        changes.setdefault((change.rule_id, change.target), []).append(change)
    judged = judged_versions([compliance.profile_label]).get(compliance.profile_label)
    controls = {rule["id"]: rule.get("controls") or [] for rule in (judged.rules if judged else [])}
    history: dict[tuple[str, str], list[Any]] = {}
    for result in RuleResult.objects.filter(server=server).only(
        "rule_id", "target", "status", "created_at", "host_run_id", "snapshot", "observed_text"
    )[:HISTORY_LIMIT]:
        history.setdefault((result.rule_id, result.target), []).append(result)

    counts: dict[str, int] = {}
    by_section: dict[str, dict[str, list[RuleRow]]] = {}
    section_counts: dict[str, dict[str, int]] = {}
    causes: dict[str, RootCause] = {}
    shown = 0
    for outcome in compliance.outcomes:
        key = (outcome["rule_id"], outcome["target"])
        status = str(outcome["status"])
        registry = is_registry_rule(str(outcome["rule_id"]))
        row_changes = changes.get(key, [])
        row = RuleRow(
            outcome=outcome,
            changes=row_changes[:CHANGES_PER_ROW],
            history=history.get(key, [])[:20],
            changes_total=len(row_changes),
            expected=in_words(outcome.get("expected_text"), registry=registry),
            observed=in_words(outcome.get("observed_text"), registry=registry),
            reason=in_words(outcome.get("reason"), registry=registry),
            controls=controls.get(str(outcome["rule_id"]), []),
        )
        section = str(outcome["section"])
        counts[status] = counts.get(status, 0) + 1
        per_section = section_counts.setdefault(section, {})
        per_section[status] = per_section.get(status, 0) + 1
        groups = by_section.setdefault(section, {})
        group_key = cause_key(status, row.reason)
        if status in PROBLEM_STATUSES:
            cause = causes.setdefault(group_key, RootCause(group_key, status, row.reason, 0, []))
            cause.count += 1
            if section not in cause.sections:
                cause.sections.append(section)
        if page_filter.admits(row, group_key):
            groups.setdefault(group_key, []).append(row)
            shown += 1
    problems = sum(n for status, n in counts.items() if status in PROBLEM_STATUSES)
    all_rows = bool(page_filter.q or page_filter.cause)
    sections: list[SectionRows] = []
    for name, per_section in section_counts.items():
        grouped = by_section.get(name, {})
        ordered = sorted(grouped.items(), key=lambda item: STATUS_ORDER.index(str(item[1][0].outcome["status"])))
        cause_groups = [
            CauseGroup(
                key=group_key,
                status=str(rows[0].outcome["status"]),
                reason=rows[0].reason,
                rows=rows if all_rows else rows[:SAMPLE_ROWS],
                total=len(rows),
            )
            for group_key, rows in ordered
        ]
        section_shown = sum(group.total for group in cause_groups)
        has_problems = any(per_section.get(status) for status in PROBLEM_STATUSES)
        is_open = section_shown > 0 and (page_filter.active or (has_problems and problems <= OPEN_AT_MOST))
        sections.append(SectionRows(name, per_section, cause_groups, section_shown, is_open))
    return CompliancePage(
        compliance=compliance,
        sections=sections,
        causes=sorted(causes.values(), key=lambda cause: (-cause.count, STATUS_ORDER.index(cause.status))),
        counts=counts,
        total=len(compliance.outcomes),
        shown=shown,
        filter=page_filter,
    )


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
