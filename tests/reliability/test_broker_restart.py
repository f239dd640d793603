"""The broker restarts mid-job and keeps nothing: the sweeper re-sends what no worker claimed."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jobs import services
from jobs.choices import HostRunState, JobKind, JobState
from jobs.models import HostRun
from lockdown import clock
from tests.reliability.conftest import Broker, healthy_specs, job_done, open_runs, start_job, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.winlab, pytest.mark.slow]
HOSTS = 6


def test_a_broker_that_lost_its_messages_loses_no_work(fleet, workers, private_redis) -> None:
    lab_fleet = fleet(healthy_specs(HOSTS, prefix="BRK"))
    url = private_redis.url
    workers.use_broker(Broker(url, {"visibility_timeout": 7200}, {"CELERY_BROKER_URL": url}))
    # Two threads: two runs execute, the other four messages wait in Redis.
    workers.start(concurrency=2)
    for name in lab_fleet.servers:
        lab_fleet.lab.fault(name, latency=0.15)
    job = start_job(JobKind.VERIFY, lab_fleet.all(), max_in_flight=HOSTS)
    assert HostRun.objects.filter(job=job, dispatched_at__isnull=True).count() == 0  # all six were sent
    wait_until(
        lambda: HostRun.objects.filter(job=job, state=HostRunState.RUNNING).count() == 2,
        timeout=30,
        what="two runs to start",
        every=0.02,
    )
    private_redis.restart()  # SIGKILL, then an empty redis-server on the same port

    # The two running runs finish (the worker's own follow-up dispatch finds nothing due);
    # the messages of the others died with the broker, so they stay queued.
    wait_until(
        lambda: (
            HostRun.objects.filter(job=job, state=HostRunState.SUCCEEDED).count() >= 2
            and not HostRun.objects.filter(job=job, state=HostRunState.RUNNING).exists()
        ),
        timeout=60,
        what="the runs that were executing to finish",
    )
    lost = list(HostRun.objects.filter(job=job, state=HostRunState.QUEUED).values_list("started_at", flat=True))
    assert lost
    assert lost == [None] * len(lost)
    for name in lab_fleet.servers:
        lab_fleet.lab.fault(name, clear=True)

    # Not yet due: a queued run is sent again only after REDISPATCH_AFTER without a claim.
    assert services.sweep()["dispatched"] == 0
    latest = max(at for at in HostRun.objects.filter(job=job).values_list("dispatched_at", flat=True) if at)
    with clock.frozen(latest + services.REDISPATCH_AFTER + timedelta(seconds=1)):
        resent = services.sweep()
    assert resent == {"reaped": 0, "dispatched": len(lost)}

    job = job_done(job, 90)
    assert job.state == JobState.SUCCEEDED
    runs = HostRun.objects.filter(job=job)
    assert sorted(runs.values_list("state", flat=True)) == [HostRunState.SUCCEEDED] * HOSTS
    assert all(attempts == 1 for attempts in runs.values_list("attempts", flat=True))  # nobody ran twice
    assert open_runs() == 0
