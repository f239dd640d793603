"""Reads for the dashboard, the customer pages and the reports: one query per figure, whatever the fleet size."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from typing import Any, cast

from django.db.models import BooleanField, Case, Count, ExpressionWrapper, F, Q, QuerySet, Sum, Value, When
from django.utils import timezone

from jobs.models import Job
from lockdown import clock
from lockdown.choices import WaiverKind, WaiverStatus
from lockdown.control_rollup import Rollup, controls_rollup
from lockdown.models import Waiver
from lockdown.selectors import exception_conflict_ids
from reports.models import ComplianceSnapshot, Report
from servers.assessment import (
    Assessment,
    Coverage,
    assessed_q,
    assessment_of,
    coverage_aggregates,
    not_assessed_q,
    stale_q,
)
from servers.choices import SERVER_STATUS_COLOURS, ServerStatus
from servers.models import Customer, Server
from servers.tenancy import Scope

EXPIRING_WITHIN = timedelta(days=14)
SEVERITY = [ServerStatus.FAILING, ServerStatus.NOT_ASSESSED, ServerStatus.UNREACHABLE, ServerStatus.DRIFTED]


@dataclass
class StatusCount:
    status: ServerStatus
    count: int

    @property
    def colour(self) -> str:
        return SERVER_STATUS_COLOURS[self.status]

    @property
    def label(self) -> str:
        return str(self.status.label)


@dataclass
class CustomerSummary:
    """Compliance of one customer's servers now: counts by status, and the average with its coverage."""

    customer_id: int
    name: str
    total: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    coverage: Coverage = field(default_factory=Coverage)

    @property
    def average_pct(self) -> float | None:
        return self.coverage.average_pct

    @property
    def compliant(self) -> int:
        return self.counts.get(ServerStatus.COMPLIANT, 0)

    @property
    def attention(self) -> int:
        return sum(self.counts.get(s, 0) for s in SEVERITY)


@dataclass
class FleetSummary:
    """Servers by status and average compliance (of the assessed servers), overall and per customer."""

    customers: list[CustomerSummary]

    @property
    def total(self) -> int:
        return sum(c.total for c in self.customers)

    @property
    def coverage(self) -> Coverage:
        return sum((c.coverage for c in self.customers), Coverage())

    @property
    def average_pct(self) -> float | None:
        return self.coverage.average_pct

    @property
    def status_counts(self) -> list[StatusCount]:
        return [StatusCount(s, sum(c.counts.get(s, 0) for c in self.customers)) for s in ServerStatus]


def fleet_summary(*, scope: Scope, customer_id: int | None = None) -> FleetSummary:
    """One aggregate query (customer × status), so it costs the same for 3 or 10,000 servers."""
    servers = scope.filter(Server.objects.all())
    if customer_id is not None:
        servers = servers.filter(customer_id=customer_id)
    rows = servers.order_by().values("customer_id", "customer__name", "status").annotate(**coverage_aggregates())
    by_customer: dict[int, CustomerSummary] = {}
    for typed in rows:
        row = cast(dict[str, Any], typed)  # the stubs type values() without the **annotate() keys
        summary = by_customer.setdefault(row["customer_id"], CustomerSummary(row["customer_id"], row["customer__name"]))
        summary.total += row["cov_total"]
        summary.counts[row["status"]] = summary.counts.get(row["status"], 0) + row["cov_total"]
        summary.coverage += Coverage.from_row(row)
    ordered = sorted(by_customer.values(), key=lambda c: (c.average_pct is None, c.average_pct or 0.0, c.name))
    return FleetSummary(customers=ordered)


@dataclass(frozen=True)
class CauseCount:
    """How many servers could not be assessed for one cause, and what to do about it."""

    cause: str
    remedy: str
    count: int


def not_assessed_causes(*, scope: Scope, customer_id: int | None = None) -> list[CauseCount]:
    """Servers not assessed, grouped by cause (one query, whatever the fleet size); the most frequent first."""
    servers = scope.filter(Server.objects.all()).filter(not_assessed_q())
    if customer_id is not None:
        servers = servers.filter(customer_id=customer_id)
    rows = (
        servers.order_by()
        .values("status", "not_assessed_kind")
        .annotate(no_figure=ExpressionWrapper(Q(compliance_pct__isnull=True), output_field=BooleanField()))
        .values("status", "not_assessed_kind", "no_figure")
        .annotate(n=Count("id"))
    )
    by_cause: dict[tuple[str, str], int] = {}
    for row in rows:
        # The same words as the server's own page (servers.assessment), from a stand-in with the grouped fields.
        stand_in = Server(
            status=row["status"],
            not_assessed_kind=row["not_assessed_kind"],
            compliance_pct=None if row["no_figure"] else 0.0,
        )
        found = assessment_of(stand_in, msp=scope.is_msp)
        by_cause[(found.cause, found.remedy)] = by_cause.get((found.cause, found.remedy), 0) + row["n"]
    return [
        CauseCount(cause, remedy, n) for (cause, remedy), n in sorted(by_cause.items(), key=lambda i: (-i[1], i[0]))
    ]


@dataclass(frozen=True)
class TrendPoint:
    day: date
    average_pct: float | None
    servers: int
    compliant: int
    live: bool = False


def _daily_points(snapshots: QuerySet[ComplianceSnapshot]) -> list[TrendPoint]:
    """One point per day, summed over the customers' snapshots (one query)."""
    return [
        TrendPoint(
            day=row["day"],
            average_pct=(row["pct_sum"] / row["verified"]) if row["verified"] else None,
            servers=row["servers"],
            compliant=row["compliant"],
        )
        for row in snapshots.order_by("day")
        .values("day")
        .annotate(
            pct_sum=Sum("pct_sum"), verified=Sum("verified"), servers=Sum("servers_total"), compliant=Sum("compliant")
        )
    ]


def compliance_trend(
    *, scope: Scope, summary: FleetSummary, customer_id: int | None = None, days: int = 30, tz: tzinfo | None = None
) -> list[TrendPoint]:
    """Daily points from `ComplianceSnapshot` (one query), ending with today's live figure."""
    today = timezone.localdate(clock.now(), tz)
    first_day = today - timedelta(days=days - 1)
    snapshots = scope.filter(ComplianceSnapshot.objects.filter(day__gte=first_day, day__lt=today))
    if customer_id is not None:
        snapshots = snapshots.filter(customer_id=customer_id)
    points = _daily_points(snapshots)
    points.append(
        TrendPoint(
            day=today,
            average_pct=summary.average_pct,
            servers=summary.total,
            compliant=sum(c.compliant for c in summary.customers),
            live=True,
        )
    )
    return points


def server_trend(*, server: Server, days: int = 30, tz: tzinfo | None = None) -> list[TrendPoint]:
    """One point per day with a reading: the server's compliance as its last run of that day recorded it
    (verify, harden or rollback; one query). `servers`/`compliant` describe that one server."""
    from jobs.models import HostRun

    today = timezone.localdate(clock.now(), tz)
    since = timezone.make_aware(datetime.combine(today - timedelta(days=days - 1), datetime.min.time()), tz)
    last_of_day: dict[date, float] = {}
    for finished_at, pct in (
        HostRun.objects.filter(server=server, compliance_pct__isnull=False, finished_at__isnull=False)
        .filter(finished_at__gte=since)
        .order_by("finished_at", "id")
        .values_list("finished_at", "compliance_pct")
    ):
        if pct is not None:
            last_of_day[timezone.localdate(finished_at, tz)] = pct
    return [
        TrendPoint(day=day, average_pct=pct, servers=1, compliant=int(pct >= 100.0))
        for day, pct in sorted(last_of_day.items())
    ]


def worst_servers(*, scope: Scope, customer_id: int | None = None, limit: int = 10) -> list[Server]:
    """Servers that could not be assessed first, then failing and drifted ones, lowest compliance first
    (one query); a stale server is listed too (its figure is not known now)."""
    servers = scope.filter(Server.objects.select_related("customer")).filter(Q(status__in=SEVERITY) | stale_q())
    if customer_id is not None:
        servers = servers.filter(customer_id=customer_id)
    assessed = Case(When(assessed_q(), then=Value(1)), default=Value(0))
    return list(servers.order_by(assessed, F("compliance_pct").asc(nulls_first=True), "name")[:limit])


def recent_jobs(*, scope: Scope, limit: int = 8) -> list[Job]:
    from jobs.selectors import job_list

    return list(job_list(scope=scope)[:limit])


def expiring_waivers(*, scope: Scope, customer_id: int | None = None, limit: int = 10) -> list[Waiver]:
    """Approved, unrevoked waivers that end within EXPIRING_WITHIN (one query)."""
    from lockdown.selectors import visible_waivers

    now = clock.now()
    waivers = visible_waivers(scope=scope).filter(
        kind=WaiverKind.WAIVER,  # exceptions have their own panel, shown until they expire
        approved_at__isnull=False,
        revoked_at__isnull=True,
        expires_at__gt=now,
        expires_at__lte=now + EXPIRING_WITHIN,
    )
    if customer_id is not None:
        waivers = waivers.filter(Q(customer_id=customer_id) | Q(server__customer_id=customer_id))
    return list(waivers.order_by("expires_at", "id")[:limit])


@dataclass
class AlertsPanel:
    """Open alerts (neither acknowledged nor resolved), newest first."""

    items: list[Any] = field(default_factory=list)
    total: int = 0

    @property
    def available(self) -> bool:
        return True


def open_alerts(*, scope: Scope, limit: int = 8) -> AlertsPanel:
    """At most `limit` open alerts the user may see (one query); `total` > limit says more are waiting."""
    from jobs.selectors import alert_list

    items = list(alert_list(scope=scope, show="open")[: limit + 1])
    return AlertsPanel(items=items[:limit], total=len(items))


def visible_reports(*, scope: Scope, customer_id: int | None = None) -> QuerySet[Report]:
    """Reports the user may download: fleet reports only for MSP users (scope.filter drops customer=None)."""
    reports = scope.filter(Report.objects.all()).select_related("signing_key").defer("content", "evidence")
    if customer_id is not None:
        reports = reports.filter(customer_id=customer_id)
    return reports.order_by("-created_at", "-id")


def report_customers(*, scope: Scope) -> QuerySet[Customer]:
    return scope.filter(Customer.objects.all(), customer_field="").order_by("name")


# --- Report content -------------------------------------------------------------------------
@dataclass
class ReportServer:
    server: Server
    outcomes: list[dict[str, Any]]
    verified_at: datetime | None
    profile_label: str
    assessment: Assessment

    @property
    def figure(self) -> float | None:
        """The server's percentage where it counts (assessed now), else None."""
        return self.server.compliance_pct if self.assessment.assessed else None

    @property
    def assessment_text(self) -> str:
        """ "" when assessed; "Not assessed: requires WMF 5.1 - install ..." or "Stale: ..." otherwise."""
        if self.assessment.assessed:
            return ""
        return f"{self.assessment.label}: {self.assessment.cause} - {self.assessment.remedy}"


@dataclass
class ReportData:
    """What one report states, gathered in a handful of queries."""

    scope_label: str
    customer: Customer | None
    period_start: datetime
    period_end: datetime
    generated_at: datetime
    generated_by: str
    tz: tzinfo
    tz_name: str
    key_id: str
    servers: list[ReportServer]
    waivers: list[dict[str, Any]]
    changes: list[Any]
    profile_versions: list[str]
    # Exceptions (the integrated-authentication rights permitted) in force at some time in the period.
    exceptions: list[dict[str, Any]] = field(default_factory=list)
    # "A change" is one ChangeRecord: one (rule, target) a harden wrote, as the preview, the dry run,
    # the harden and the rollback count them (tests/integration/jobs/test_change_counts_reconcile.py).
    changes_made: int = 0
    changes_rolled_back: int = 0
    # The executive summary's chart: daily points over the period (ComplianceSnapshot), then now.
    trend: list[TrendPoint] = field(default_factory=list)
    # rule id -> its description (the built-in profile and the profile versions the servers follow).
    rule_titles: dict[str, str] = field(default_factory=dict)
    # Compliance by framework and control over the report's servers (lockdown.control_rollup).
    controls: Rollup | None = None

    @property
    def status_counts(self) -> list[tuple[str, int]]:
        counts = {s: 0 for s in ServerStatus}
        for item in self.servers:
            counts[ServerStatus(item.server.status)] += 1
        return [(str(s.label), n) for s, n in counts.items()]

    @property
    def coverage(self) -> Coverage:
        figures = [i.figure for i in self.servers if i.figure is not None]
        stale = sum(1 for i in self.servers if i.assessment.stale)
        return Coverage(total=len(self.servers), assessed=len(figures), stale=stale, pct_sum=sum(figures))

    @property
    def average_pct(self) -> float | None:
        return self.coverage.average_pct

    @property
    def change_count(self) -> int:
        return len(self.changes)

    @property
    def customer_rows(self) -> list[tuple[str, Coverage]]:
        """Compliance by customer, with the same definitions as the fleet figure; the lowest first."""
        by_customer: dict[str, Coverage] = {}
        for item in self.servers:
            figure = item.figure
            one = Coverage(
                total=1,
                assessed=1 if figure is not None else 0,
                stale=1 if item.assessment.stale else 0,
                pct_sum=figure or 0.0,
            )
            name = item.server.customer.name
            by_customer[name] = by_customer.get(name, Coverage()) + one
        return sorted(by_customer.items(), key=lambda r: (r[1].average_pct is None, r[1].average_pct or 0.0, r[0]))

    @property
    def not_assessed_causes(self) -> list[tuple[str, int]]:
        """("requires WMF 5.1", 2), ...: why the servers outside the average are outside it."""
        counts: dict[str, int] = {}
        for item in self.servers:
            if not item.assessment.assessed:
                key = f"{item.assessment.label.lower()}: {item.assessment.cause}"
                counts[key] = counts.get(key, 0) + 1
        return sorted(counts.items(), key=lambda c: (-c[1], c[0]))

    def top_failing_rules(self, limit: int = 10) -> list[tuple[str, str, int]]:
        """(rule id, title, servers failing it) over the assessed servers: drift or error, not waived."""
        failing: dict[str, set[int]] = {}
        for item in self.servers:
            if not item.assessment.assessed:
                continue  # an old reading is not a failure now
            for o in item.outcomes:
                if o.get("status") in FAILING_OUTCOMES:
                    failing.setdefault(str(o.get("rule_id")), set()).add(item.server.pk)
        ranked = sorted(failing.items(), key=lambda r: (-len(r[1]), r[0]))[:limit]
        return [(rule_id, self.rule_titles.get(rule_id, ""), len(ids)) for rule_id, ids in ranked]

    @property
    def open_exceptions(self) -> list[dict[str, Any]]:
        """The exceptions in force when the report was made."""
        return [e for e in self.exceptions if e["active"]]

    @property
    def open_waivers(self) -> list[dict[str, Any]]:
        """The waivers in force when the report was made (the open exceptions)."""
        return [w for w in self.waivers if w["active"]]


CHANGES_LIMIT = 5000
FAILING_OUTCOMES = frozenset({"drift", "error"})


def report_trend(
    *, scope: Scope, customer: Customer | None, period_start: datetime, period_end: datetime, live: Coverage, tz: tzinfo
) -> list[TrendPoint]:
    """The period's daily points (one query, summed over customers), and today's live figure when the
    period reaches today."""
    today = timezone.localdate(clock.now(), tz)
    first = timezone.localdate(period_start, tz)
    last = timezone.localdate(period_end, tz)
    snapshots = scope.filter(ComplianceSnapshot.objects.filter(day__gte=first, day__lte=last, day__lt=today))
    if customer is not None:
        snapshots = snapshots.filter(customer=customer)
    points = _daily_points(snapshots)
    if last >= today:
        points.append(TrendPoint(day=today, average_pct=live.average_pct, servers=live.total, compliant=0, live=True))
    return points


def rule_titles(servers: list[Server]) -> dict[str, str]:
    """Rule id -> description: the built-in profile's, overlaid by the versions these servers follow
    (one query)."""
    from lockdown.models import ProfileVersion
    from lockdown.rules.builtin import load_builtin_profile

    titles = {rule.id: rule.description for rule in load_builtin_profile().rules}
    from lockdown.assignment import effective_for

    followed = effective_for(Server.objects.filter(pk__in=[s.pk for s in servers]))
    version_ids = {e.resolved.version_id for e in followed.values() if e.resolved.version_id is not None}
    if version_ids:
        for rules in ProfileVersion.objects.filter(pk__in=version_ids).values_list("rules", flat=True):
            for rule in rules if isinstance(rules, list) else []:
                if isinstance(rule, dict) and rule.get("id") and rule.get("description"):
                    titles[str(rule["id"])] = str(rule["description"])
    return titles


def report_servers(*, scope: Scope, customer: Customer | None) -> QuerySet[Server]:
    servers = scope.filter(Server.objects.select_related("customer", "compliance"))
    if customer is not None:
        servers = servers.filter(customer=customer)
    return servers.order_by("customer__name", "name")


def report_data(
    *,
    scope: Scope,
    customer: Customer | None,
    period_start: datetime,
    period_end: datetime,
    generated_by: str,
    tz: tzinfo,
    tz_name: str,
    key_id: str,
) -> ReportData:
    from jobs.models import ChangeRecord, RuleResult

    servers = report_servers(scope=scope, customer=customer)
    items = []
    labels: set[str] = set()
    for server in servers:
        compliance = getattr(server, "compliance", None)
        if compliance is not None:
            labels.add(compliance.profile_label)
        items.append(
            ReportServer(
                server=server,
                outcomes=list(compliance.outcomes) if compliance is not None else [],
                verified_at=compliance.verified_at if compliance is not None else None,
                profile_label=compliance.profile_label if compliance is not None else "",
                assessment=assessment_of(server, msp=scope.is_msp),
            )
        )
    # Waivers and exceptions in force at some time in the period (one query; split by kind below).
    waivers = Waiver.objects.select_related("server__customer", "customer", "approved_by", "proposed_by").filter(
        approved_at__isnull=False, approved_at__lte=period_end, expires_at__gte=period_start
    )
    waivers = waivers.exclude(revoked_at__lt=period_start)
    if customer is not None:
        waivers = waivers.filter(Q(customer=customer) | Q(server__customer=customer))
    now = clock.now()
    waiver_rows: list[dict[str, Any]] = []
    exception_rows: list[dict[str, Any]] = []
    for w in waivers.order_by("rule_id", "id"):
        row: dict[str, Any] = {
            "rule_id": w.rule_id,
            "subject": f"server {w.server.name}" if w.server is not None else f"customer {w.customer}",
            "status": str(w.status_at(now).label),
            "justification": w.justification,
            "approved_by": w.approved_by.get_username() if w.approved_by else "",
            "approved_at": w.approved_at,
            "expires_at": w.expires_at,
            "active": w.status_at(now) == WaiverStatus.ACTIVE,
        }
        if w.kind == WaiverKind.EXCEPTION:
            row["proposed_by"] = w.proposed_by.get_username() if w.proposed_by else ""
            row["proposed_at"] = w.proposed_at
            row["revoked_at"] = w.revoked_at
            row["conflicts"] = list(w.conflicts)
            row["conflicts_text"] = exception_conflict_ids(w.conflicts)
            exception_rows.append(row)
        else:
            waiver_rows.append(row)
    changes = list(
        RuleResult.objects.filter(
            server__in=servers.values("pk"), created_at__gte=period_start, created_at__lte=period_end, snapshot=False
        )
        .annotate(server_name=F("server__name"))
        .only("rule_id", "target", "status", "action", "observed_text", "created_at")
        .order_by("created_at", "id")[:CHANGES_LIMIT]
    )
    made = ChangeRecord.objects.filter(
        server__in=servers.values("pk"), created_at__gte=period_start, created_at__lte=period_end
    ).aggregate(total=Count("id"), rolled_back=Count("id", filter=Q(rolled_back_at__isnull=False)))
    data = ReportData(
        changes_made=made["total"],
        changes_rolled_back=made["rolled_back"],
        scope_label=customer.name if customer is not None else "whole fleet",
        customer=customer,
        period_start=period_start,
        period_end=period_end,
        generated_at=now,
        generated_by=generated_by,
        tz=tz,
        tz_name=tz_name,
        key_id=key_id,
        servers=items,
        waivers=waiver_rows,
        exceptions=exception_rows,
        changes=changes,
        profile_versions=sorted(labels),
        rule_titles=rule_titles([i.server for i in items]),
        controls=controls_rollup(servers),
    )
    data.trend = report_trend(
        scope=scope, customer=customer, period_start=period_start, period_end=period_end, live=data.coverage, tz=tz
    )
    return data
