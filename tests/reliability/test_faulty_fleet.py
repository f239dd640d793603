"""50 winlab hosts, 10 % of them faulty: each host ends the way its fault says; the canary stops a wave."""

from __future__ import annotations

from dataclasses import replace

import pytest

from jobs.choices import HostRunState, JobKind, JobState
from jobs.models import HostRun
from servers.models import Server
from tests.reliability.conftest import HEALTHY_TEMPLATES, healthy_specs, job_done, open_runs, start_job

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.winlab, pytest.mark.slow]

# Names sort before the healthy "HL..." hosts, so a canary wave takes the faulty ones first.
FAULTY = {
    "FAUTH1": ("failed", "authentication_failed"),
    "FAUTH2": ("failed", "authentication_failed"),
    "FDOWN1": ("failed", "unreachable"),
    "FGPO1": ("rolled_back", "health_check_failed"),
    "FTIME1": ("failed", "timeout"),
}


@pytest.fixture
def faulty_fleet(fleet):
    names = [name for name in FAULTY if name != "FGPO1"]
    specs = [replace(HEALTHY_TEMPLATES[i], name=name, seed=100 + i) for i, name in enumerate(names)]
    lab_fleet = fleet([*specs, *healthy_specs(45)])
    lab = lab_fleet.lab
    lab.fault("FAUTH1", auth_failure=True)
    lab.fault("FAUTH2", auth_failure=True)
    lab.fault("FDOWN1", down=True)
    lab.fault("FTIME1", timeout=True)
    # A domain GPO whose next refresh (due 0.5 s of model time from now, i.e. during the apply's service
    # restarts) takes SeServiceLogonRight away again. Its host gets a lab (a ManualClock) of its own: on the
    # shared clock every other host's modelled work would make the refresh fall due before this host's apply.
    gpo_fleet = fleet([replace(HEALTHY_TEMPLATES[0], name="FGPO1", seed=200)])
    gpo_fleet.lab.fault("FGPO1", gpo_revert="SeServiceLogonRight", gpo_refresh_in=0.5)
    lab_fleet.servers.update(gpo_fleet.servers)
    return lab_fleet


def test_a_harden_of_fifty_hosts_ends_each_host_the_way_its_fault_says(faulty_fleet, workers) -> None:
    assert len(faulty_fleet.servers) == 50
    workers.start(concurrency=8)
    job = job_done(start_job(JobKind.HARDEN, faulty_fleet.all(), max_in_flight=50), 150)
    assert job.state == JobState.FAILED
    runs = {run.server_name: run for run in HostRun.objects.filter(job=job)}
    outcomes = {name: (run.state, run.error_kind) for name, run in runs.items()}
    expected = {name: FAULTY.get(name, (HostRunState.SUCCEEDED, "")) for name in runs}
    assert outcomes == expected
    gpo = runs["FGPO1"]
    assert "[Win32 error 1069]" in gpo.error_message
    assert "rolled back" in gpo.error_message
    for name in FAULTY:
        assert runs[name].error_message, name  # every failure says why
    statuses = dict(Server.objects.filter(name__in=["FDOWN1", "FTIME1", "FAUTH1"]).values_list("name", "status"))
    # A rejected credential is "not assessed" (issue 12), never "failing"
    assert statuses == {"FDOWN1": "unreachable", "FTIME1": "unreachable", "FAUTH1": "not_assessed"}
    assert all(runs[name].changes_made > 0 for name in runs if name.startswith("HL"))
    assert open_runs() == 0


def test_the_canary_wave_stops_the_job_when_its_hosts_fail(faulty_fleet, workers) -> None:
    workers.start(concurrency=8)
    chosen = [faulty_fleet.server("FAUTH1"), faulty_fleet.server("FDOWN1")]
    chosen += [faulty_fleet.server(f"HL{i:03d}") for i in range(1, 9)]
    job = job_done(start_job(JobKind.HARDEN, chosen, canary_size=2, failure_threshold_pct=20, max_in_flight=10), 60)
    assert job.state == JobState.STOPPED
    assert job.stop_reason.startswith("Wave 1: 2 of 2 hosts failed (100 % > 20 %)")
    runs = {run.server_name: run for run in HostRun.objects.filter(job=job)}
    assert {name for name, run in runs.items() if run.wave == 0} == {"FAUTH1", "FDOWN1"}
    assert (runs["FAUTH1"].error_kind, runs["FDOWN1"].error_kind) == ("authentication_failed", "unreachable")
    rest = [run for run in runs.values() if run.wave == 1]
    assert len(rest) == 8
    assert {(run.state, run.error_kind) for run in rest} == {(HostRunState.CANCELLED, "stopped")}
    assert all(run.started_at is None for run in rest)  # no healthy host was touched
    assert all(faulty_fleet.lab.host(run.server_name).model.mutations == 0 for run in rest)
    assert open_runs() == 0
