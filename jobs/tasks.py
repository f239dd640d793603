"""Celery tasks: a few lines each. The runner and services hold the logic and the state."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from jobs import runner, services


@shared_task(acks_late=True, ignore_result=True, name="jobs.run_host_run")
def run_host_run(host_run_id: int) -> str:
    """Run one HostRun. A redelivered message finds the run already claimed and does nothing."""
    return runner.run_host(host_run_id)


@shared_task(ignore_result=True, name="jobs.sweep")
def sweep() -> dict[str, int]:
    """Every 30 s: reap dead runs, open maintenance windows, re-send unclaimed runs."""
    return services.sweep()


@shared_task(ignore_result=True, name="jobs.scheduled_verify")
def scheduled_verify(customer_id: int) -> int | None:
    """Beat's periodic verify of one customer (see jobs.schedules)."""
    from jobs.schedules import scheduled_verify as start

    job = start(customer_id)
    return job.pk if job is not None else None


@shared_task(bind=True, acks_late=True, ignore_result=True, name="jobs.deliver_webhook", max_retries=None)
def deliver_webhook(self: Any, delivery_id: int) -> bool:
    """One webhook attempt; retried with exponential backoff up to FLEET_WEBHOOK_MAX_RETRIES times."""
    from django.conf import settings

    from jobs import webhooks

    limit = int(getattr(settings, "FLEET_WEBHOOK_MAX_RETRIES", 6))
    try:
        return webhooks.webhook_deliver(delivery_id)
    except webhooks.WebhookError as error:
        final = error.permanent or self.request.retries >= limit
        webhooks.delivery_failed(delivery_id, error.message, final=final)
        if final:
            return False
        raise self.retry(countdown=webhooks.backoff_seconds(self.request.retries)) from None
