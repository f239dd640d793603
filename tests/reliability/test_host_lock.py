"""One mutating job per host: a second harden is refused with a clear message, never run beside the first."""

from __future__ import annotations

import subprocess
import sys
import threading
from itertools import combinations

import pytest
from django.db import connection

from jobs.choices import HostRunState, JobKind, JobState
from jobs.models import HostRun, Job
from jobs.services import JobRefused
from tests.reliability.conftest import ROOT, healthy_specs, job_done, open_runs, start_job, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.winlab, pytest.mark.slow]


def _never_overlapping(server_id: int) -> None:
    """No two mutating runs of the host were ever running at the same time."""
    spans = list(
        HostRun.objects.filter(server_id=server_id, mutating=True, started_at__isnull=False).values_list(
            "started_at", "finished_at"
        )
    )
    for (start_a, end_a), (start_b, end_b) in combinations(spans, 2):
        assert None not in (start_a, end_a, start_b, end_b)
        assert end_a <= start_b or end_b <= start_a  # type: ignore[operator]


def test_a_second_harden_of_the_same_host_is_refused_until_the_first_ends(fleet, workers) -> None:
    server = fleet(healthy_specs(1, prefix="LOCK")).server("LOCK001")
    first = start_job(JobKind.HARDEN, [server])  # no worker yet: it stays queued and holds the lock
    with pytest.raises(JobRefused, match=rf"Not started: LOCK001 is being changed by job #{first.pk}\. Wait"):
        start_job(JobKind.HARDEN, [server])
    with pytest.raises(JobRefused, match="being changed by job"):
        start_job(JobKind.ROLLBACK, [server])
    assert Job.objects.count() == 1

    workers.start()
    assert job_done(first, 60).state == JobState.SUCCEEDED
    second = job_done(start_job(JobKind.HARDEN, [server]), 60)  # the lock went with the first run
    assert second.state == JobState.SUCCEEDED
    _never_overlapping(server.pk)


def test_two_simultaneous_requests_from_two_threads_start_exactly_one_job(fleet, workers) -> None:
    server = fleet(healthy_specs(1, prefix="LOCK")).server("LOCK001")
    workers.start()
    barrier = threading.Barrier(2, timeout=10)
    outcomes: list[object] = []

    def request() -> None:
        try:
            barrier.wait()
            outcomes.append(start_job(JobKind.HARDEN, [server]))
        except JobRefused as refused:
            outcomes.append(refused)
        finally:
            connection.close()

    threads = [threading.Thread(target=request) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    jobs = [o for o in outcomes if isinstance(o, Job)]
    refusals = [o for o in outcomes if isinstance(o, JobRefused)]
    assert len(jobs) == 1, outcomes
    assert len(refusals) == 1, outcomes
    assert str(refusals[0]) == (
        f"Not started: LOCK001 is being changed by job #{jobs[0].pk}. Wait for it to finish or cancel it."
    )
    assert job_done(jobs[0], 60).state == JobState.SUCCEEDED
    assert HostRun.objects.filter(server=server, mutating=True).count() == 1
    _never_overlapping(server.pk)


def test_two_simultaneous_run_job_processes_start_exactly_one_job(fleet, workers) -> None:
    server = fleet(healthy_specs(1, prefix="LOCK")).server("LOCK001")
    workers.start()
    env = workers.child_env()
    command = [sys.executable, "manage.py", "run_job", "harden", "--server", "LOCK001"]
    processes = [
        subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=60)
            results.append((process.returncode, out, err))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    started = [r for r in results if r[0] == 0]
    refused = [r for r in results if r[0] != 0]
    assert len(started) == 1, results
    assert len(refused) == 1, results
    job = Job.objects.get()
    assert f"job #{job.pk}: Harden of 1 servers" in started[0][1]
    assert f"Not started: LOCK001 is being changed by job #{job.pk}" in refused[0][2]
    assert job_done(job, 60).state == JobState.SUCCEEDED
    wait_until(lambda: open_runs() == 0, timeout=10, what="no open runs")
    assert HostRun.objects.get(server=server).state == HostRunState.SUCCEEDED
    _never_overlapping(server.pk)
