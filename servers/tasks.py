"""Celery tasks of the servers app: a few lines each; `servers.csv_import` holds the logic and the state."""

from __future__ import annotations

from celery import shared_task


@shared_task(acks_late=True, ignore_result=True, name="servers.run_server_import")
def run_server_import(import_id: int) -> str:
    """Check and import one uploaded CSV. A redelivered message finds it finished and does nothing."""
    from servers.csv_import import server_import_run

    return server_import_run(import_id)
