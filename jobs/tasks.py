"""Celery tasks: a few lines each. The runner and services hold the logic and the state."""

from __future__ import annotations

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
