"""Cancellation over a real worker: queued runs never start, running ones stop between phases."""

from __future__ import annotations

import pytest

from jobs.choices import HostRunState, JobKind, JobState
from jobs.models import HostRun, HostRunEvent
from jobs.services import job_cancel
from tests.reliability.conftest import ACTOR, MSP, healthy_specs, job_done, open_runs, start_job, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.winlab, pytest.mark.slow]
HOSTS = 6


def test_cancelling_a_harden_mid_job_stops_every_host_before_it_changes_anything(fleet, workers) -> None:
    lab_fleet = fleet(healthy_specs(HOSTS, prefix="CAN"))
    lab = lab_fleet.lab
    for name in lab_fleet.servers:
        lab.fault(name, latency=0.2)  # the discover every fresh host needs first takes ~2 s
    workers.start()
    job = start_job(JobKind.HARDEN, lab_fleet.all(), max_in_flight=2)
    wait_until(
        lambda: HostRunEvent.objects.filter(host_run__job=job, message__startswith="Connecting").count() == 2,
        timeout=30,
        what="two hosts to start",
        every=0.02,
    )
    job_cancel(scope=MSP, actor=ACTOR, job=job)

    job = job_done(job, 60)
    assert job.state == JobState.CANCELLED
    runs = list(HostRun.objects.filter(job=job))
    assert {run.state for run in runs} == {HostRunState.CANCELLED}
    started = [run for run in runs if run.started_at is not None]
    never = [run for run in runs if run.started_at is None]
    assert len(started) == 2  # no host started after the request
    assert {run.error_message for run in never} == {"Cancelled before it started."}
    assert {run.error_message for run in started} == {"Cancelled by request."}
    for name in lab_fleet.servers:
        assert lab.host(name).model.mutations == 0, name  # stopped after discover, before the apply
    assert open_runs() == 0
