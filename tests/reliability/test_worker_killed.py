"""kill -9 of a worker in the middle of a harden: the reaper ends the run, the host stays recoverable."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jobs import services
from jobs.choices import HostRunState, JobKind, JobState
from jobs.models import ChangeRecord, HostRun, HostRunEvent
from lockdown import clock
from tests.reliability.conftest import healthy_specs, job_done, open_runs, start_job, wait_until
from winlab.windows.state import state_diff

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.winlab, pytest.mark.slow]


def test_a_worker_killed_mid_harden_leaves_a_failed_run_and_a_host_that_can_be_verified_and_rolled_back(
    fleet, workers
) -> None:
    lab_fleet = fleet(healthy_specs(1, prefix="KILL"))
    name = "KILL001"
    server = lab_fleet.server(name)
    host = lab_fleet.lab.host(name)
    first = workers.start()
    assert job_done(start_job(JobKind.VERIFY, [server]), 60).state == JobState.SUCCEEDED
    with host.binding.lock:
        baseline = host.model.to_state_dict()
    mutations = host.model.mutations

    # Every WinRM request now takes a second: the apply's shell, command and stdin take several.
    lab_fleet.lab.fault(name, latency=1.0)
    harden = start_job(JobKind.HARDEN, [server])
    run = HostRun.objects.get(job=harden)
    wait_until(
        lambda: HostRunEvent.objects.filter(
            host_run=run, message__startswith="Hardening: the host is read first"
        ).exists(),
        timeout=30,
        what="the harden to reach its apply",
        every=0.02,
    )
    first.kill()
    lab_fleet.lab.fault(name, clear=True)
    run.refresh_from_db()
    assert run.state == HostRunState.RUNNING  # nobody is left to end it
    assert run.heartbeat_at is not None

    # Before the heartbeat timeout the reaper leaves it alone; past it, the run is failed.
    assert services.sweep()["reaped"] == 0
    with clock.frozen(run.heartbeat_at + services.HEARTBEAT_TIMEOUT + timedelta(seconds=1)):
        assert services.sweep()["reaped"] == 1
    run.refresh_from_db()
    assert run.state == HostRunState.FAILED
    assert run.error_kind == "worker_lost"
    assert "verify it" in run.error_message
    assert HostRunEvent.objects.filter(host_run=run, level="error", message__contains="reaper").exists()
    harden.refresh_from_db()
    assert harden.state == JobState.FAILED
    assert open_runs() == 0
    assert host.model.mutations == mutations  # killed before its command ran: the host was not touched

    # A new worker: the host is not locked any more; verify, roll back, harden and roll back again.
    workers.start()
    verify = job_done(start_job(JobKind.VERIFY, [server]), 60)
    assert verify.state == JobState.SUCCEEDED
    assert HostRun.objects.get(job=verify).summary.get("drift", 0) > 0
    # No ChangeRecord, but a run that ended without its result: the rollback reads the host's journal
    # (empty here: the command never ran) instead of answering "Nothing to roll back".
    nothing = job_done(start_job(JobKind.ROLLBACK, [server]), 60)
    assert nothing.state == JobState.SUCCEEDED
    assert not HostRunEvent.objects.filter(host_run__job=nothing, message__startswith="Nothing to roll back").exists()
    assert HostRunEvent.objects.filter(
        host_run__job=nothing, message__startswith="Recovered and undid 0 changes from the host's journal"
    ).exists()
    run.refresh_from_db()
    assert run.journal_recovered
    with host.binding.lock:
        assert state_diff(baseline, host.model.to_state_dict()) == []

    hardened = job_done(start_job(JobKind.HARDEN, [server]), 60)
    assert hardened.state == JobState.SUCCEEDED
    assert HostRun.objects.get(job=hardened).changes_made > 0
    rolled = job_done(start_job(JobKind.ROLLBACK, [server]), 60)
    assert rolled.state == JobState.SUCCEEDED
    assert not ChangeRecord.objects.filter(server=server, rolled_back_at__isnull=True).exists()
    with host.binding.lock:
        assert state_diff(baseline, host.model.to_state_dict()) == []
    assert open_runs() == 0


def test_changes_an_apply_made_before_its_worker_died_are_rolled_back(fleet, workers) -> None:
    """The agent journals each change on the host; the rollback recovers the lost run's changes from it."""
    lab_fleet = fleet(healthy_specs(1, prefix="KILL"))
    name = "KILL001"
    server = lab_fleet.server(name)
    host = lab_fleet.lab.host(name)
    first = workers.start()
    assert job_done(start_job(JobKind.VERIFY, [server]), 60).state == JobState.SUCCEEDED
    with host.binding.lock:
        baseline = host.model.to_state_dict()
    mutations = host.model.mutations
    # The host applies at once, but its result is released only after the modelled ~10 s x 0.5 of restarts.
    host.binding.time_scale = 0.5
    harden = start_job(JobKind.HARDEN, [server])
    wait_until(lambda: host.model.mutations > mutations, timeout=30, what="the host to apply", every=0.02)
    first.kill()
    host.binding.time_scale = 0.0
    run = HostRun.objects.get(job=harden)
    assert run.heartbeat_at is not None
    with clock.frozen(run.heartbeat_at + services.HEARTBEAT_TIMEOUT + timedelta(seconds=1)):
        assert services.sweep()["reaped"] == 1
    run.refresh_from_db()
    assert run.error_kind == "worker_lost"
    assert not ChangeRecord.objects.filter(host_run=run).exists()  # the result never reached the database
    workers.start()
    rollback = job_done(start_job(JobKind.ROLLBACK, [server]), 60)
    assert rollback.state == JobState.SUCCEEDED
    assert HostRunEvent.objects.filter(host_run__job=rollback, message__contains="host's journal").exists()
    run.refresh_from_db()
    assert run.journal_recovered
    with host.binding.lock:
        assert state_diff(baseline, host.model.to_state_dict()) == []
