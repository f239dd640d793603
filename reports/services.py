"""Writes of the reports app: signed reports and daily compliance snapshots."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from lockdown import clock
from reports import documents, signing
from reports.models import ComplianceSnapshot, Report, ReportFormat
from reports.selectors import report_data, report_servers
from servers.assessment import coverage_aggregates
from servers.audit import Actor, audit_record
from servers.choices import ServerStatus
from servers.models import Customer, Server
from servers.tenancy import Action, Scope, require

# A report is built in memory; beyond these, ask for one customer at a time.
MAX_SERVERS = {ReportFormat.PDF: 200, ReportFormat.CSV: 2000}


class ReportRefused(ValueError):
    """The report cannot be made as asked; the message says why and what to do instead."""


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "report"


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
    """Render, sign and store one report; fleet-wide reports are for MSP users only."""
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
    key = signing.installation_key()
    data = report_data(
        scope=scope,
        customer=customer,
        period_start=period_start,
        period_end=period_end,
        generated_by=actor.label,
        tz=ZoneInfo(tz_name),
        tz_name=tz_name,
        key_id=key.key_id,
    )
    body = documents.render_pdf(data) if fmt == ReportFormat.PDF else documents.render_csv(data)
    evidence = documents.render_evidence(data)
    stamp = timezone.localtime(data.generated_at, ZoneInfo("UTC")).strftime("%Y%m%d-%H%M%S")
    filename = f"compliance-{_slug(data.scope_label)}-{stamp}.{fmt.value}"
    with transaction.atomic():
        report = Report.objects.create(
            customer=customer,
            customer_name=customer.name if customer else "",
            format=fmt,
            period_start=period_start,
            period_end=period_end,
            created_by=actor.user,
            created_by_name=actor.label,
            created_at=data.generated_at,
            filename=filename,
            content=b"",
            sha256=signing.sha256_hex(body),
            evidence=evidence,
            evidence_sha256=signing.sha256_hex(evidence),
            signature="",
            signing_key=key,
            server_count=len(data.servers),
            compliance_pct=data.average_pct,
        )
        manifest = signing.sign_manifest(
            key,
            {
                "signed_at": data.generated_at.isoformat(),
                "report": {
                    "id": report.pk,
                    "filename": filename,
                    "format": fmt.value,
                    "sha256": report.sha256,
                    "customer": customer.name if customer else None,
                    "period_start": period_start.isoformat(),
                    "period_end": period_end.isoformat(),
                    "profile_versions": data.profile_versions,
                    "servers": len(data.servers),
                },
                "evidence": {"filename": report.evidence_filename, "sha256": report.evidence_sha256},
            },
        )
        report.content = body + signing.embedded_line(manifest, pdf=fmt == ReportFormat.PDF)
        report.signature = signing.canonical(manifest).decode("ascii")
        report.save(update_fields=["content", "signature"])
        audit_record(
            actor=actor,
            action="report.create",
            obj=report,
            customer=customer,
            changes={
                "format": fmt.value,
                "period": [period_start.isoformat(), period_end.isoformat()],
                "servers": len(data.servers),
                "sha256": report.sha256,
                "key_id": key.key_id,
            },
        )
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
