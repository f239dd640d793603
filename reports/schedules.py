"""Scheduled reports: a customer's report built after each period and e-mailed to its recipients.

Beat runs `reports.send_scheduled_reports` hourly; `scheduled_reports_send` finds the schedules whose
last complete period has not been handled, claims each period (a guarded update of
`last_period_end`), builds the report as the system (`reports.services`, in this worker) and mails
it with its detached signature. Periods are in UTC: a month is the past calendar month, a week the
past Monday to Sunday.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from email import encoders
from email.mime.base import MIMEBase

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction

from lockdown import clock
from reports.models import Report, ReportFormat, ReportFrequency, ReportSchedule, ReportStatus
from reports.services import SYSTEM_SCOPE, report_build, report_request
from servers.audit import Actor, audit_record
from servers.crypto import redact
from servers.models import Customer
from servers.tenancy import Action, Scope, require

logger = logging.getLogger(__name__)
MAX_RECIPIENTS = 20


def last_complete_period(frequency: str, now: datetime) -> tuple[datetime, datetime] | None:
    """[start, end) of the latest period that has ended by `now` (UTC), or None when off."""
    now = now.astimezone(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if frequency == ReportFrequency.MONTHLY:
        end = midnight.replace(day=1)
        start = (end - timedelta(days=1)).replace(day=1)
        return start, end
    if frequency == ReportFrequency.WEEKLY:
        end = midnight - timedelta(days=midnight.weekday())  # this Monday 00:00
        return end - timedelta(days=7), end
    return None


def report_schedule_save(
    *, scope: Scope, actor: Actor, customer: Customer, frequency: str, fmt: str, recipients: list[str]
) -> ReportSchedule:
    """Create or update the customer's report schedule, audited. The period under way when it is set
    is the first one sent (the periods before it are not sent after the fact)."""
    require(scope, Action.HARDEN, customer.pk)
    with transaction.atomic():
        schedule, _ = ReportSchedule.objects.select_for_update().get_or_create(customer=customer)
        before = {"frequency": schedule.frequency, "format": schedule.format, "recipients": list(schedule.recipients)}
        if frequency != schedule.frequency or schedule.last_period_end is None:
            period = last_complete_period(frequency, clock.now())
            schedule.last_period_end = period[1] if period else None
        schedule.frequency, schedule.format, schedule.recipients = frequency, fmt, recipients
        schedule.save()
        after = {"frequency": frequency, "format": fmt, "recipients": recipients}
        changes = {k: [before[k], after[k]] for k in after if before[k] != after[k]}
        audit_record(actor=actor, action="customer.report_schedule", obj=customer, customer=customer, changes=changes)
    return schedule


def scheduled_reports_send(*, now: datetime | None = None) -> int:
    """Build and mail every due report (one query to find them); returns how many were sent."""
    now = now or clock.now()
    sent = 0
    due = ReportSchedule.objects.select_related("customer").exclude(frequency=ReportFrequency.OFF).order_by("pk")
    for schedule in due:
        period = last_complete_period(schedule.frequency, now)
        if period is None or not schedule.recipients:
            continue
        if schedule.last_period_end is not None and schedule.last_period_end >= period[1]:
            continue
        claimed = (
            ReportSchedule.objects.filter(pk=schedule.pk, last_period_end=schedule.last_period_end)
            .exclude(frequency=ReportFrequency.OFF)
            .update(last_period_end=period[1])
        )
        if claimed != 1:
            continue  # another beat or worker took this period
        if _send_one(schedule, *period):
            sent += 1
    return sent


def _send_one(schedule: ReportSchedule, start: datetime, end: datetime) -> bool:
    customer = schedule.customer
    actor = Actor.system("report schedule")
    fmt = ReportFormat(schedule.format)
    try:
        report = report_request(
            scope=SYSTEM_SCOPE, actor=actor, customer=customer, fmt=fmt, period_start=start,
            period_end=end - timedelta(microseconds=1), scheduled=True, enqueue=False,
        )  # fmt: skip
        report_build(report.pk)  # in this worker: the mail needs the file
        report.refresh_from_db()
        if report.status != ReportStatus.READY:
            raise RuntimeError(report.error or "the report could not be built")
        _mail(schedule, report, start, end)
    except Exception as error:  # a failed period is recorded and not retried every hour
        message = redact(str(error))[:500] or type(error).__name__
        logger.warning("scheduled report of customer %s failed: %s", customer.pk, type(error).__name__)
        ReportSchedule.objects.filter(pk=schedule.pk).update(last_error=message)
        audit_record(
            actor=actor, action="report.schedule_failed", obj=customer, customer=customer,
            changes={"period": [start.isoformat(), end.isoformat()], "error": message},
        )  # fmt: skip
        return False
    ReportSchedule.objects.filter(pk=schedule.pk).update(last_sent_at=clock.now(), last_report=report, last_error="")
    audit_record(
        actor=actor, action="report.schedule_sent", obj=report, customer=customer,
        changes={"period": [start.isoformat(), end.isoformat()], "recipients": list(schedule.recipients),
                 "format": fmt.value, "sha256": report.sha256},
    )  # fmt: skip
    return True


def _mail(schedule: ReportSchedule, report: Report, start: datetime, end: datetime) -> None:
    last_day = (end - timedelta(days=1)).date()
    subject = f"[Fleet Lockdown] Compliance report for {report.customer_name}: {start.date()} to {last_day}"
    figure = f"{report.compliance_pct:.1f} %" if report.compliance_pct is not None else "not measured"
    body = (
        f"The {schedule.get_frequency_display().split(' (')[0].lower()} compliance report of "
        f"{report.customer_name}'s {report.server_count} servers, {start.date()} to {last_day} (UTC), is attached.\n"
        f"Average compliance of the assessed servers: {figure}; the report's first page gives the coverage.\n\n"
        f"It is signed with this installation's Ed25519 key {report.signing_key.key_id}; {report.signature_filename} "
        "is its signature. Check both on the Verify a report page of Fleet Lockdown (no account needed).\n"
    )
    message = EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, list(schedule.recipients))
    subtype = ("application", "pdf") if report.format == ReportFormat.PDF else ("text", "csv")
    message.attach(_exact_attachment(report.filename, bytes(report.content), *subtype))
    message.attach(
        _exact_attachment(report.signature_filename, report.signature.encode("ascii"), "application", "json")
    )
    message.send()


def _exact_attachment(filename: str, data: bytes, maintype: str, subtype: str) -> MIMEBase:
    """An attachment in base64, so its bytes arrive exactly as signed: Django sends a text/* attachment as
    8-bit text, and the CSV's CRLF line ends would come out as LF (a changed SHA-256)."""
    part = MIMEBase(maintype, subtype)
    part.set_payload(data)
    encoders.encode_base64(part)
    part.add_header("Content-Disposition", "attachment", filename=filename)
    return part
