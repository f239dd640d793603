"""Issue 12: one definition of "a change", so preview, dry run, harden, rollback and reports agree.

A change is one (rule, target) in drift that a harden writes: the preview and the dry run count
drift outcomes, the harden and the rollback count ChangeRecords (the engine records one per rule
on each object it writes), and a report counts the ChangeRecords made in its period. Against a
real winlab host over WinRM, the five numbers are the same.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from jobs import runner, services
from jobs.choices import HostRunState, JobKind
from jobs.models import ChangeRecord, HostRun
from jobs.selectors import harden_preview
from jobs.services import JobOptions, job_create
from lockdown import clock
from reports.models import ReportFormat
from reports.services import report_create
from servers.audit import Actor
from servers.models import Server
from servers.tenancy import Scope
from tests.integration.jobs.conftest import lab_server
from tests.integration.winlab_agent.conftest import SPECS, start_lab

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.winlab, pytest.mark.slow]
MSP = Scope(user_id=None, msp_role="admin")


def _run(server: Server, kind: str, dry_run: bool = False) -> HostRun:
    job = job_create(
        scope=MSP,
        actor=Actor.system("test"),
        kind=kind,
        servers=[Server.objects.get(pk=server.pk)],
        options=JobOptions(dry_run=True) if dry_run else None,
    )
    return HostRun.objects.get(job=job)


def test_preview_dry_run_harden_rollback_and_report_count_the_same_changes(tmp_path):
    lab = start_lab(tmp_path, [SPECS["plesk"]])
    services.set_enqueue(runner.run_host)
    try:
        server = lab_server(lab, SPECS["plesk"].name, "Reconciled Ltd")
        started = clock.now() - timedelta(minutes=1)
        _run(server, JobKind.VERIFY)
        preview = len(harden_preview(Server.objects.get(pk=server.pk)).would_change)
        assert preview > 0
        dry = _run(server, JobKind.HARDEN, dry_run=True)
        assert f"Dry run: {preview} checks would change" in " ".join(e.message for e in dry.events.all())
        harden = _run(server, JobKind.HARDEN)
        assert harden.state == HostRunState.SUCCEEDED
        harden.refresh_from_db()
        assert harden.changes_made == preview
        assert ChangeRecord.objects.filter(host_run=harden).count() == preview
        rollback = _run(server, JobKind.ROLLBACK)
        assert f"Rolling back {preview} recorded changes" in " ".join(e.message for e in rollback.events.all())
        report = report_create(
            scope=MSP,
            actor=Actor.system("test"),
            customer=server.customer,
            fmt=ReportFormat.CSV,
            period_start=started,
            period_end=clock.now(),
        )
        summary = json.loads(bytes(report.evidence))["summary"]
        assert (summary["changes_made"], summary["changes_rolled_back"]) == (preview, preview)
    finally:
        services.set_enqueue(None)
        lab.stop()
