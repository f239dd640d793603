"""Celery tasks of the reports app: thin, they call a service."""

from __future__ import annotations

from celery import shared_task

from reports.services import compliance_snapshot_take


@shared_task(name="reports.compliance_snapshot", ignore_result=True)
def compliance_snapshot() -> int:
    """Record today's compliance per customer (beat runs it hourly; the last run of a day stands)."""
    return compliance_snapshot_take()
