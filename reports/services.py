"""Writes of the reports app: signed reports and daily compliance snapshots."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from lockdown import clock
from reports import documents, signing
from reports.models import ComplianceSnapshot, Report, ReportFormat, ReportStatus
from reports.selectors import report_data, report_servers
from servers.assessment import coverage_aggregates
from servers.audit import Actor, audit_record
from servers.choices import ServerStatus
from servers.models import Customer, Server
from servers.tenancy import Action, Scope, require, scope_for_user

logger = logging.getLogger(__name__)
SYSTEM_SCOPE = Scope(user_id=None, msp_role="admin")
# A report is built in memory; beyond these, ask for one customer at a time.
MAX_SERVERS = {ReportFormat.PDF: 200, ReportFormat.CSV: 2000}


class ReportRefused(ValueError):
    """The report cannot be made as asked; the message says why and what to do instead."""


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "report"


Enqueue = Callable[[int], None]


def _default_enqueue(report_id: int) -> None:
    from reports.tasks import build_report

    build_report.delay(report_id)


_enqueue: Enqueue = _default_enqueue


def set_enqueue(function: Enqueue | None) -> None:
    """Tests replace how reports reach the broker (e.g. build inline); None restores Celery."""
    global _enqueue
    _enqueue = function or _default_enqueue


def report_request(
    *,
    scope: Scope,
    actor: Actor,
    customer: Customer | None,
    fmt: ReportFormat,
    period_start: datetime,
    period_end: datetime,
    tz_name: str = "UTC",
    scheduled: bool = False,
    enqueue: bool = True,
) -> Report:
    """Check the request and record a queued report; a worker builds it once the record is committed.

    Fleet-wide reports are for MSP users only. The checks that need no rendering happen here, so
    the person asking learns at once that a report cannot be made."""
    if customer is None:
        if not scope.is_msp:
            raise ReportRefused("Choose one of your customers.")
        require(scope, Action.VIEW)
    else:
        require(scope, Action.VIEW, customer)
    if period_end <= period_start:
        raise ReportRefused("The period must end after it starts.")
    count = report_servers(scope=scope, customer=customer).count()
    if count > MAX_SERVERS[fmt]:
        raise ReportRefused(
            f"{count} servers is more than a {fmt.label} report holds ({MAX_SERVERS[fmt]}); choose one customer."
        )
    now = clock.now()
    stamp = timezone.localtime(now, ZoneInfo("UTC")).strftime("%Y%m%d-%H%M%S")
    label = customer.name if customer is not None else "whole fleet"
    report = Report.objects.create(
        customer=customer,
        customer_name=customer.name if customer else "",
        format=fmt,
        period_start=period_start,
        period_end=period_end,
        created_by=actor.user,
        created_by_name=actor.label,
        created_at=now,
        filename=f"compliance-{_slug(label)}-{stamp}.{fmt.value}",
        content=b"",
        evidence=b"",
        signing_key=signing.installation_key(),
        server_count=count,
        status=ReportStatus.QUEUED,
        tz_name=tz_name,
        scheduled=scheduled,
    )
    if enqueue:
        transaction.on_commit(lambda: _enqueue(report.pk))
    return report


def _build_scope(report: Report) -> Scope:
    """The requester's scope *now* (a right revoked since the request stops the build); schedules and
    commands act with the system's MSP-wide scope, limited to the report's customer by the report."""
    from django.contrib.auth import get_user_model

    if report.created_by_id is None:
        return SYSTEM_SCOPE
    user = get_user_model().objects.get(pk=report.created_by_id)
    if not user.is_active:
        raise ReportRefused("The person who asked for this report can no longer sign in.")
    return scope_for_user(user)


def report_build(report_id: int) -> str:
    """The worker's side: claim the queued report (a guarded update, so a redelivered message or a
    second worker does nothing), render, sign and store it; any failure is recorded on the report.

    A report left `building` by a worker that died is claimed again after the task's time limit."""
    now = clock.now()
    stuck = now - timedelta(seconds=int(getattr(settings, "CELERY_TASK_TIME_LIMIT", 2100)))
    claimed = (
        Report.objects.filter(pk=report_id)
        .filter(Q(status=ReportStatus.QUEUED) | Q(status=ReportStatus.BUILDING, started_at__lt=stuck))
        .update(status=ReportStatus.BUILDING, started_at=now, progress=0, progress_note="Starting", error="")
    )
    if claimed != 1:
        return "done already"
    report = Report.objects.select_related("customer", "signing_key").get(pk=report_id)
    try:
        _render_and_sign(report, _build_scope(report))
    except Exception as error:  # any failure must end the report, not leave it building
        # The message shown is ours (ReportRefused) or the error's class only: a library's message
        # could quote data, and the traceback goes to the log, never to the page.
        message = str(error) if isinstance(error, (ReportRefused, PermissionDenied)) else type(error).__name__
        logger.exception("report %s failed", report_id)
        Report.objects.filter(pk=report_id).update(
            status=ReportStatus.FAILED,
            error=f"The report could not be built: {message or 'not allowed'}"[:500],
            finished_at=clock.now(),
            progress_note="",
        )
        return ReportStatus.FAILED
    return ReportStatus.READY


def _progress(report_id: int, percent: int, note: str) -> None:
    Report.objects.filter(pk=report_id, status=ReportStatus.BUILDING).update(progress=percent, progress_note=note)


def _render_and_sign(report: Report, scope: Scope) -> None:
    customer = report.customer
    fmt = ReportFormat(report.format)
    if customer is None:
        if not scope.is_msp:
            raise ReportRefused("Fleet reports are for MSP users only.")
        require(scope, Action.VIEW)
    else:
        require(scope, Action.VIEW, customer)
    key = report.signing_key
    _progress(report.pk, 5, "Gathering the servers' results")
    data = report_data(
        scope=scope,
        customer=customer,
        period_start=report.period_start,
        period_end=report.period_end,
        generated_by=report.created_by_name or "system",
        tz=ZoneInfo(report.tz_name),
        tz_name=report.tz_name,
        key_id=key.key_id,
    )
    total = max(1, len(data.servers))

    def rendering(done: int) -> None:
        # 10-90 % while the servers are rendered; written every tenth of the way, not per server.
        step = max(1, total // 10)
        if done % step == 0 or done == total:
            _progress(report.pk, 10 + 80 * done // total, f"Rendering server {done} of {total}")

    _progress(report.pk, 10, "Rendering")
    body = documents.render_pdf(data, progress=rendering) if fmt == ReportFormat.PDF else documents.render_csv(data)
    evidence = documents.render_evidence(data)
    _progress(report.pk, 95, "Signing")
    sha256, evidence_sha256 = signing.sha256_hex(body), signing.sha256_hex(evidence)
    manifest = signing.sign_manifest(
        key,
        {
            "signed_at": data.generated_at.isoformat(),
            "report": {
                "id": report.pk,
                "filename": report.filename,
                "format": fmt.value,
                "sha256": sha256,
                "customer": customer.name if customer else None,
                "period_start": report.period_start.isoformat(),
                "period_end": report.period_end.isoformat(),
                "profile_versions": data.profile_versions,
                "servers": len(data.servers),
            },
            "evidence": {"filename": report.evidence_filename, "sha256": evidence_sha256},
        },
    )
    # A PDF carries its signature as a comment after %%EOF too (readers ignore it); a CSV does not:
    # every line of it is a row to a spreadsheet, so its signature is only the separate .sig file.
    content = body + signing.embedded_line(manifest, pdf=True) if fmt == ReportFormat.PDF else body
    with transaction.atomic():
        updated = Report.objects.filter(pk=report.pk, status=ReportStatus.BUILDING).update(
            content=content,
            sha256=sha256,
            evidence=evidence,
            evidence_sha256=evidence_sha256,
            signature=signing.canonical(manifest).decode("ascii"),
            server_count=len(data.servers),
            compliance_pct=data.average_pct,
            coverage_text=data.coverage.text[:120],
            status=ReportStatus.READY,
            progress=100,
            progress_note="",
            finished_at=clock.now(),
        )
        if updated != 1:
            return  # reclaimed by another worker after the time limit: its result stands
        audit_record(
            actor=Actor(user=report.created_by) if report.created_by_id else Actor.system(report.created_by_name),
            action="report.create",
            obj=report,
            customer=customer,
            changes={
                "format": fmt.value,
                "period": [report.period_start.isoformat(), report.period_end.isoformat()],
                "servers": len(data.servers),
                "sha256": sha256,
                "key_id": key.key_id,
                "scheduled": report.scheduled,
            },
        )


def report_create(
    *,
    scope: Scope,
    actor: Actor,
    customer: Customer | None,
    fmt: ReportFormat,
    period_start: datetime,
    period_end: datetime,
    tz_name: str = "UTC",
) -> Report:
    """Request and build one report now, in this process (commands, tests); pages use report_request."""
    report = report_request(
        scope=scope,
        actor=actor,
        customer=customer,
        fmt=fmt,
        period_start=period_start,
        period_end=period_end,
        tz_name=tz_name,
        enqueue=False,
    )
    report_build(report.pk)
    report.refresh_from_db()
    if report.status != ReportStatus.READY:
        raise ReportRefused(report.error or "The report could not be built.")
    return report


def compliance_snapshot_take(*, day: date | None = None) -> int:
    """Write (or rewrite) each customer's figures for `day` (today, UTC): two queries in all."""
    now = clock.now()
    day = day or timezone.localdate(now, ZoneInfo("UTC"))
    rows = (
        Server.objects.order_by()
        .values("customer_id")
        .annotate(
            **coverage_aggregates(),
            **{s.value: Count("id", filter=Q(status=s.value)) for s in ServerStatus},
        )
    )
    snapshots = []
    for row in rows:
        counts: dict[str, Any] = dict(row)
        snapshots.append(
            ComplianceSnapshot(
                day=day,
                customer_id=counts["customer_id"],
                servers_total=counts["cov_total"],
                compliant=counts[ServerStatus.COMPLIANT.value],
                drifted=counts[ServerStatus.DRIFTED.value],
                failing=counts[ServerStatus.FAILING.value],
                unreachable=counts[ServerStatus.UNREACHABLE.value],
                never_verified=counts[ServerStatus.NEVER_VERIFIED.value],
                not_assessed=counts[ServerStatus.NOT_ASSESSED.value],
                verified=counts["cov_assessed"],
                pct_sum=counts["cov_pct_sum"] or 0.0,
                taken_at=now,
            )
        )
    fields = [
        "servers_total", "compliant", "drifted", "failing", "unreachable", "never_verified", "not_assessed", "verified"
    ]  # fmt: skip
    ComplianceSnapshot.objects.bulk_create(
        snapshots,
        batch_size=500,
        update_conflicts=True,
        unique_fields=["day", "customer"],
        update_fields=[*fields, "pct_sum", "taken_at"],
    )
    return len(snapshots)
