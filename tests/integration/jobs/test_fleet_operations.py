"""Fleet operations (issue 12): canary choice, not-assessed hosts on a verify, pause and continue,
retry failed, typed confirmation, progress, and the apply's phases in the live log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jobs import runner, selectors
from jobs.choices import CanaryOrder, HostRunState, JobKind, JobState
from jobs.models import HostRun, HostRunEvent, Job
from jobs.services import (
    JobOptions,
    JobRefused,
    job_cancel,
    job_continue,
    job_create,
    job_retry_servers,
    typed_confirmation_needed,
)
from lockdown import clock
from lockdown.agent import AGENT_VERSION
from lockdown.engine.program import Program, Step
from remote.errors import AuthenticationFailed, UnsupportedPowerShell
from servers.audit import Actor
from servers.models import AuditEvent
from servers.tenancy import Scope, scope_for_user
from tests.factories import ServerFactory

pytestmark = pytest.mark.django_db
MSP = Scope(user_id=None, msp_role="admin")
ACTOR = Actor.system("test")


def _job(kind, servers, options=None, scope=MSP, actor=ACTOR, **kwargs):
    return job_create(scope=scope, actor=actor, kind=kind, servers=servers, options=options, **kwargs)


def _fleet(tenant, n):
    return [ServerFactory(customer=tenant.customer, name=f"mx-{i:02d}") for i in range(n)]


class FailingHosts:
    """The scripted agent, except that the named servers' addresses raise `error`."""

    def __init__(self, agent, addresses, error):
        self.agent, self.addresses, self.error = agent, set(addresses), error

    def __call__(self, conn, request, *, on_program=None):
        if conn.address in self.addresses:
            raise self.error
        return self.agent(conn, request)


def _runs(job):
    return {run.server_name: run for run in HostRun.objects.filter(job=job)}


# --- canary: not assessed, healthy first, chosen -----------------------------------------------
@pytest.mark.parametrize(
    "error", [UnsupportedPowerShell("requires WMF 5.1", host="x"), AuthenticationFailed("401", host="x")]
)
def test_a_verify_canary_does_not_count_hosts_that_cannot_be_assessed(
    inline, tenant_a, django_capture_on_commit_callbacks, error
):
    servers = _fleet(tenant_a, 4)
    runner.set_agent_call(FailingHosts(inline, [servers[0].address], error))
    with django_capture_on_commit_callbacks(execute=True):
        job = _job(JobKind.VERIFY, servers, JobOptions(canary_size=1, failure_threshold_pct=0))
    job.refresh_from_db()
    assert job.state == JobState.FAILED  # finished: the first host failed, the canary did not stop the rest
    runs = _runs(job)
    assert runs["mx-00"].error_kind == error.kind
    assert all(runs[f"mx-0{i}"].state == HostRunState.SUCCEEDED for i in (1, 2, 3))


def test_a_verify_canary_stop_counts_only_the_hosts_it_assessed(inline, tenant_a, django_capture_on_commit_callbacks):
    from remote.errors import AgentFailed

    servers = _fleet(tenant_a, 4)
    host = FailingHosts(inline, [servers[1].address], AgentFailed("bad output", host="x"))
    unassessable = FailingHosts(host, [servers[0].address], UnsupportedPowerShell("requires WMF 5.1", host="x"))
    runner.set_agent_call(unassessable)
    with django_capture_on_commit_callbacks(execute=True):
        job = _job(JobKind.VERIFY, servers, JobOptions(canary_size=3, failure_threshold_pct=40))
    job.refresh_from_db()
    assert job.state == JobState.STOPPED  # 1 of the 2 assessed hosts failed: 50 % > 40 %
    assert "1 of 2 hosts failed (50 % > 40 %); 1 more could not be assessed (not counted)" in job.stop_reason


def test_a_harden_canary_still_counts_a_host_it_could_not_reach(inline, tenant_a, django_capture_on_commit_callbacks):
    servers = _fleet(tenant_a, 3)
    runner.set_agent_call(FailingHosts(inline, [servers[0].address], AuthenticationFailed("401", host="x")))
    with django_capture_on_commit_callbacks(execute=True):
        job = _job(JobKind.HARDEN, servers, JobOptions(dry_run=True, canary_size=1, failure_threshold_pct=0))
    job.refresh_from_db()
    assert job.state == JobState.STOPPED
    assert "1 of 1 hosts failed" in job.stop_reason


def test_healthy_first_puts_hosts_whose_last_verify_succeeded_in_the_canary(
    inline, tenant_a, django_capture_on_commit_callbacks
):
    servers = _fleet(tenant_a, 3)
    # mx-00 and mx-01 had a failed last verify (mx-01 succeeded before that), mx-02 a good one
    runner.set_agent_call(FailingHosts(inline, [], UnsupportedPowerShell("x", host="x")))
    with django_capture_on_commit_callbacks(execute=True):
        _job(JobKind.VERIFY, [servers[1], servers[2]])
    runner.set_agent_call(
        FailingHosts(inline, [servers[0].address, servers[1].address], UnsupportedPowerShell("x", host="x"))
    )
    with django_capture_on_commit_callbacks(execute=True):
        _job(JobKind.VERIFY, servers[:2])
    runner.set_agent_call(inline)
    job = _job(JobKind.HARDEN, servers, JobOptions(canary_size=1, canary_healthy_first=True))
    assert job.canary_order == CanaryOrder.HEALTHY_FIRST
    assert {name: run.wave for name, run in _runs(job).items()} == {"mx-00": 1, "mx-01": 1, "mx-02": 0}


def test_without_healthy_first_the_canary_is_the_first_by_name(tenant_a):
    servers = _fleet(tenant_a, 3)
    job = _job(JobKind.HARDEN, servers, JobOptions(canary_size=1))
    assert {name: run.wave for name, run in _runs(job).items()} == {"mx-00": 0, "mx-01": 1, "mx-02": 1}


def test_the_operator_chooses_the_canary_hosts(tenant_a):
    servers = _fleet(tenant_a, 4)
    job = _job(JobKind.HARDEN, servers, JobOptions(canary_size=1, canary_server_ids=(servers[3].pk, servers[2].pk)))
    assert (job.canary_size, job.canary_order) == (2, CanaryOrder.CHOSEN)
    assert {name: run.wave for name, run in _runs(job).items()} == {"mx-00": 1, "mx-01": 1, "mx-02": 0, "mx-03": 0}
    event = AuditEvent.objects.get(action="job.harden")
    assert event.changes["canary_servers"] == ["mx-02", "mx-03"]


def test_canary_hosts_must_be_among_the_jobs_servers(tenant_a, tenant_b):
    servers = _fleet(tenant_a, 2)
    with pytest.raises(JobRefused, match="among the job's servers"):
        _job(JobKind.HARDEN, servers, JobOptions(canary_server_ids=(tenant_b.server.pk,)))
    assert not Job.objects.exists()


# --- pause, continue, cancel -------------------------------------------------------------------
def test_pause_after_the_canary_waits_until_continue(inline, tenant_a, django_capture_on_commit_callbacks):
    servers = _fleet(tenant_a, 4)
    with django_capture_on_commit_callbacks(execute=True):
        job = _job(JobKind.VERIFY, servers, JobOptions(canary_size=1, pause_after_canary=True))
    job.refresh_from_db()
    assert job.state == JobState.PAUSED
    assert [r.state for r in HostRun.objects.filter(job=job, wave=1)] == [HostRunState.QUEUED] * 3
    assert len(inline.calls) >= 1
    calls = len(inline.calls)
    from jobs.services import sweep

    sweep()  # the sweeper leaves a paused job alone
    assert len(inline.calls) == calls
    with django_capture_on_commit_callbacks(execute=True):
        job_continue(scope=MSP, actor=ACTOR, job=job)
    job.refresh_from_db()
    assert job.state == JobState.SUCCEEDED
    assert HostRun.objects.filter(job=job, state=HostRunState.SUCCEEDED).count() == 4
    assert AuditEvent.objects.filter(action="job.continue").count() == 1


def test_a_canary_that_fails_stops_even_with_a_pause(inline, tenant_a, django_capture_on_commit_callbacks):
    servers = _fleet(tenant_a, 3)
    runner.set_agent_call(FailingHosts(inline, [servers[0].address], AuthenticationFailed("401", host="x")))
    with django_capture_on_commit_callbacks(execute=True):
        job = _job(
            JobKind.HARDEN,
            servers,
            JobOptions(dry_run=True, canary_size=1, failure_threshold_pct=0, pause_after_canary=True),
        )
    job.refresh_from_db()
    assert job.state == JobState.STOPPED


def test_continue_after_a_canary_stop_starts_the_stopped_hosts(inline, tenant_a, django_capture_on_commit_callbacks):
    servers = _fleet(tenant_a, 3)
    runner.set_agent_call(FailingHosts(inline, [servers[0].address], AuthenticationFailed("401", host="x")))
    with django_capture_on_commit_callbacks(execute=True):
        job = _job(JobKind.HARDEN, servers, JobOptions(dry_run=True, canary_size=1, failure_threshold_pct=0))
    job.refresh_from_db()
    assert job.state == JobState.STOPPED
    with django_capture_on_commit_callbacks(execute=True):
        job_continue(scope=MSP, actor=ACTOR, job=job)
    job.refresh_from_db()
    runs = _runs(job)
    assert runs["mx-01"].state == runs["mx-02"].state == HostRunState.SUCCEEDED
    assert runs["mx-00"].state == HostRunState.FAILED  # the canary's own failure stays as it was
    assert job.state == JobState.FAILED
    assert job.stop_reason == ""


def test_continue_is_refused_unless_paused_or_stopped(sent, tenant_a, django_capture_on_commit_callbacks):
    servers = _fleet(tenant_a, 2)
    job = _job(JobKind.HARDEN, servers, JobOptions(canary_size=1))
    with pytest.raises(JobRefused, match="Only a job paused"):
        job_continue(scope=MSP, actor=ACTOR, job=job)
    Job.objects.filter(pk=job.pk).update(state=JobState.SUCCEEDED)
    with pytest.raises(JobRefused):
        job_continue(scope=MSP, actor=ACTOR, job=job)


def test_continue_is_refused_when_another_job_took_a_stopped_host(inline, tenant_a, django_capture_on_commit_callbacks):
    servers = _fleet(tenant_a, 2)
    runner.set_agent_call(FailingHosts(inline, [servers[0].address], AuthenticationFailed("401", host="x")))
    with django_capture_on_commit_callbacks(execute=True):
        job = _job(JobKind.HARDEN, servers, JobOptions(dry_run=True, canary_size=1, failure_threshold_pct=0))
    job.refresh_from_db()
    assert job.state == JobState.STOPPED
    _job(JobKind.ROLLBACK, [servers[1]])  # queued (nothing dispatched outside on_commit)
    with pytest.raises(JobRefused, match="being changed by another job"):
        job_continue(scope=MSP, actor=ACTOR, job=job)
    job.refresh_from_db()
    assert job.state == JobState.STOPPED


def test_cancel_of_a_paused_job_cancels_its_waiting_hosts(inline, tenant_a, django_capture_on_commit_callbacks):
    servers = _fleet(tenant_a, 3)
    with django_capture_on_commit_callbacks(execute=True):
        job = _job(JobKind.VERIFY, servers, JobOptions(canary_size=1, pause_after_canary=True))
    job_cancel(scope=MSP, actor=ACTOR, job=job)
    job.refresh_from_db()
    assert job.state == JobState.CANCELLED
    assert HostRun.objects.filter(job=job, state=HostRunState.CANCELLED).count() == 2


def test_pause_needs_a_canary(tenant_a):
    with pytest.raises(JobRefused, match="needs a canary"):
        _job(JobKind.HARDEN, _fleet(tenant_a, 2), JobOptions(pause_after_canary=True))


def test_a_customer_operator_cannot_continue_a_fleet_job_with_other_customers(
    carol, tenant_a, tenant_b, inline, django_capture_on_commit_callbacks
):
    from django.core.exceptions import PermissionDenied

    with django_capture_on_commit_callbacks(execute=True):
        job = _job(
            JobKind.VERIFY, [tenant_a.server, tenant_b.server], JobOptions(canary_size=1, pause_after_canary=True)
        )
    job.refresh_from_db()
    assert job.state == JobState.PAUSED
    with pytest.raises(PermissionDenied):
        job_continue(scope=scope_for_user(carol), actor=Actor(user=carol), job=job)
    job.refresh_from_db()
    assert job.state == JobState.PAUSED


# --- retry failed ------------------------------------------------------------------------------
def test_retry_servers_are_the_failed_hosts_the_reader_sees(
    carol, tenant_a, tenant_b, inline, django_capture_on_commit_callbacks
):
    failing = [tenant_a.server.address, tenant_b.server.address]
    ok = ServerFactory(customer=tenant_a.customer, name="mx-ok")
    runner.set_agent_call(FailingHosts(inline, failing, AuthenticationFailed("401", host="x")))
    with django_capture_on_commit_callbacks(execute=True):
        job = _job(JobKind.VERIFY, [tenant_a.server, tenant_b.server, ok])
    assert {s.pk for s in job_retry_servers(scope=MSP, job=job)} == {tenant_a.server.pk, tenant_b.server.pk}
    assert [s.pk for s in job_retry_servers(scope=scope_for_user(carol), job=job)] == [tenant_a.server.pk]


# --- typed confirmation ------------------------------------------------------------------------
def test_a_person_must_type_the_phrase_to_harden_more_than_the_limit(settings, alice, tenant_a):
    settings.FLEET_CONFIRM_TYPED_ABOVE = 2
    servers = _fleet(tenant_a, 3)
    person = Actor(user=alice)
    assert typed_confirmation_needed(JobKind.HARDEN, 3) == "harden 3 servers"
    assert typed_confirmation_needed(JobKind.HARDEN, 2) is None
    assert typed_confirmation_needed(JobKind.HARDEN, 3, dry_run=True) is None
    assert typed_confirmation_needed(JobKind.VERIFY, 30) is None
    with pytest.raises(JobRefused, match="harden 3 servers"):
        _job(JobKind.HARDEN, servers, actor=person)
    with pytest.raises(JobRefused):
        _job(JobKind.HARDEN, servers, actor=person, typed_confirmation="harden 2 servers")
    assert not Job.objects.exists()
    _job(JobKind.HARDEN, servers, JobOptions(dry_run=True), actor=person)  # a dry run changes nothing
    Job.objects.all().delete()
    _job(JobKind.HARDEN, servers, actor=person, typed_confirmation=" Harden 3 servers ")
    assert Job.objects.count() == 1


def test_rollback_of_more_than_the_limit_needs_its_phrase(settings, alice, tenant_a):
    settings.FLEET_CONFIRM_TYPED_ABOVE = 1
    servers = _fleet(tenant_a, 2)
    with pytest.raises(JobRefused, match="roll back 2 servers"):
        _job(JobKind.ROLLBACK, servers, actor=Actor(user=alice))


# --- progress ----------------------------------------------------------------------------------
def test_progress_counts_done_elapsed_and_an_eta(tenant_a):
    start = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    with clock.frozen(start):
        job = _job(JobKind.VERIFY, _fleet(tenant_a, 4))
    runs = list(HostRun.objects.filter(job=job).order_by("server_name"))
    HostRun.objects.filter(pk=runs[0].pk).update(state=HostRunState.SUCCEEDED, started_at=start, finished_at=start)
    HostRun.objects.filter(pk=runs[1].pk).update(state=HostRunState.FAILED, started_at=start + timedelta(seconds=30))
    HostRun.objects.filter(pk=runs[2].pk).update(state=HostRunState.RUNNING, started_at=start + timedelta(seconds=50))
    visible = selectors.job_host_runs(scope=MSP, job=job)
    counts = {HostRunState.SUCCEEDED: 1, HostRunState.FAILED: 1, HostRunState.RUNNING: 1, HostRunState.QUEUED: 1}
    progress = selectors.job_progress(runs=visible, job=job, counts=counts, now=start + timedelta(seconds=60))
    assert (progress.done, progress.total, progress.percent) == (2, 4, 50)
    assert (progress.elapsed_s, progress.eta_s) == (60, 60)
    assert (progress.elapsed, progress.eta) == ("1 min 00 s", "1 min 00 s")
    Job.objects.filter(pk=job.pk).update(state=JobState.PAUSED)
    job.refresh_from_db()
    paused = selectors.job_progress(runs=visible, job=job, counts=counts, now=start + timedelta(seconds=90))
    assert (paused.elapsed_s, paused.eta_s) == (90, None)


def test_progress_before_any_host_started_has_no_elapsed_time(tenant_a):
    job = _job(JobKind.VERIFY, _fleet(tenant_a, 2))
    progress = selectors.job_progress(
        runs=selectors.job_host_runs(scope=MSP, job=job), job=job, counts={"queued": 2}, now=clock.now()
    )
    assert (progress.done, progress.total, progress.elapsed, progress.eta) == (0, 2, "", "")


def test_duration_text():
    assert [selectors.duration_text(s) for s in (5, 65, 3725)] == ["5 s", "1 min 05 s", "1 h 02 min"]


# --- phases of an apply in the live log --------------------------------------------------------
def _program(job_id, *ops, undo=0):
    # Only the ops and the undo list matter to the log line: built without each primitive's arguments.
    steps = [Step.model_construct(id=f"s{n}", op=op, args={}) for n, op in enumerate(ops)]
    on_failure = [Step.model_construct(id=f"u{n}", op="dacl_write", args={}) for n in range(undo)]
    on_failure.append(Step.model_construct(id="z0", op="sd_read", args={}))  # a re-read after the undo
    return Program.model_construct(
        agent_version=AGENT_VERSION, job_id=job_id, mode="apply", steps=steps, on_failure=on_failure
    )


def test_phase_text_says_reading_changing_or_clearing_the_journal():
    assert runner.phase_text(_program("1.1", "sd_read", "service_get")).startswith("Reading the host: 2 reads")
    changing = runner.phase_text(_program("1.1", "service_get", "dacl_write", "service_control", undo=3))
    assert changing.startswith("Changing the host: 2 change and restart steps")
    assert "3 undo steps" in changing
    assert runner.phase_text(_program("1.1", "journal_delete")).startswith("Clearing the host's change journal")


def test_an_apply_logs_each_phase_before_the_host_runs_it(inline, tenant_a, django_capture_on_commit_callbacks):
    seen: list[list[str]] = []

    def host(conn, request, *, on_program=None):
        if on_program is not None:
            for ops in (("sd_read",), ("dacl_write", "service_control")):
                on_program(_program(request.job_id, *ops))
                seen.append(list(HostRunEvent.objects.order_by("id").values_list("message", flat=True)))
        return inline(conn, request)

    runner.set_agent_call(host)
    with django_capture_on_commit_callbacks(execute=True):
        _job(JobKind.HARDEN, [tenant_a.server])
    assert len(seen) == 2
    assert seen[0][-1].startswith("Reading the host")
    assert seen[1][-1].startswith("Changing the host")


def test_a_verify_logs_no_phases(inline, tenant_a, django_capture_on_commit_callbacks):
    told: list[object] = []

    def host(conn, request, *, on_program=None):
        told.append(on_program)
        return inline(conn, request)

    runner.set_agent_call(host)
    with django_capture_on_commit_callbacks(execute=True):
        _job(JobKind.VERIFY, [tenant_a.server])
    assert told
    assert all(t is None for t in told)
