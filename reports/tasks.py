"""Celery tasks of the reports app: thin, they call a service."""

from __future__ import annotations

from celery import shared_task

from reports.services import compliance_snapshot_take


@shared_task(name="reports.compliance_snapshot", ignore_result=True)
def compliance_snapshot() -> int:
    """Record today's compliance per customer (beat runs it hourly; the last run of a day stands)."""
    return compliance_snapshot_take()


@shared_task(acks_late=True, ignore_result=True, name="reports.build_report")
def build_report(report_id: int) -> str:
    """Build one queued report. A redelivered message finds it claimed or finished and does nothing."""
    from reports.services import report_build

    return report_build(report_id)


@shared_task(ignore_result=True, name="reports.send_scheduled_reports")
def send_scheduled_reports() -> int:
    """Hourly from beat: build and e-mail the reports whose period has ended (reports.schedules)."""
    from reports.schedules import scheduled_reports_send

    return scheduled_reports_send()
