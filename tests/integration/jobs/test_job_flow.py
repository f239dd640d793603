"""Job lifecycle against a scripted agent: claims, locks, waves, sweeper, reaper, cancel."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs import runner, services
from jobs.choices import HostRunState, JobKind, JobState
from jobs.models import HostRun, HostRunEvent, RuleResult, ServerCompliance
from jobs.services import JobOptions, JobRefused, job_create
from lockdown import clock
from remote.errors import AuthenticationFailed, Unreachable
from servers.audit import Actor
from servers.models import AuditEvent, Server
from servers.tenancy import Scope, scope_for_user
from tests.factories import ServerFactory

pytestmark = pytest.mark.django_db
MSP = Scope(user_id=None, msp_role="admin")
ACTOR = Actor.system("test")


@pytest.fixture
def plain_server(db):
    """A server whose customer has no profile assigned: the built-in profile applies."""
    from tests.factories import CustomerFactory

    return ServerFactory(customer=CustomerFactory(name="Plain Ltd"), name="mx-plain")


def _job(kind, servers, options=None, scope=MSP):
    return job_create(scope=scope, actor=ACTOR, kind=kind, servers=servers, options=options)


def test_discover_stores_the_host_facts(inline, tenant_a, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        job = _job(JobKind.DISCOVER, [tenant_a.server])
    job.refresh_from_db()
    assert job.state == JobState.SUCCEEDED
    server = Server.objects.get(pk=tenant_a.server.pk)
    assert server.facts["os_build"] == 20348
    assert any("Discovered Microsoft Windows Server 2022" in e.message for e in HostRunEvent.objects.all())


def test_verify_stores_outcomes_and_only_changed_history(inline, plain_server, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        _job(JobKind.VERIFY, [plain_server])
    compliance = ServerCompliance.objects.get(server=plain_server)
    assert len(compliance.outcomes) > 100
    first_rows = RuleResult.objects.count()
    assert first_rows == len(compliance.outcomes)
    # Two discover + verify invocations the first time (no facts yet), one verify afterwards.
    assert [c.mode for c in inline.calls] == ["discover", "verify"]
    with django_capture_on_commit_callbacks(execute=True):
        _job(JobKind.VERIFY, [plain_server])
    assert [c.mode for c in inline.calls][-1] == "verify"
    assert len(inline.calls) == 3
    assert RuleResult.objects.count() == first_rows  # nothing changed: no new history rows


def test_an_observation_that_lacks_the_ace_is_drift_whatever_the_agent_claims(
    inline, plain_server, django_capture_on_commit_callbacks
):
    from lockdown.rules.observed import ObservedItem

    inline.observe = lambda item: ObservedItem(
        rule_id=item.rule_id, target=item.target, exists=True, dacl=[], compliant=True
    )
    with django_capture_on_commit_callbacks(execute=True):
        _job(JobKind.VERIFY, [plain_server])
    server = Server.objects.get(pk=plain_server.pk)
    statuses = {o["status"] for o in server.compliance.outcomes}
    denies = {o["status"] for o in server.compliance.outcomes if o["rule_id"].startswith("file_deny.")}
    assert denies
    assert "compliant" not in denies
    assert "drift" in statuses
    assert server.status in ("drifted", "failing")


def test_declared_sql_mode_reaches_the_plan(inline, plain_server, django_capture_on_commit_callbacks):
    # Regression: a str "yes" copied onto Facts without validation never matched Tristate.YES.
    Server.objects.filter(pk=plain_server.pk).update(sql_integrated="yes")
    with django_capture_on_commit_callbacks(execute=True):
        _job(JobKind.VERIFY, [plain_server])
    sql = [
        o for o in ServerCompliance.objects.get(server=plain_server).outcomes if o["rule_id"].startswith("sql_grant.")
    ]
    assert sql
    assert all(o["status"] != "needs_input" for o in sql)
    assert all(o["status"] != "not_applicable" for o in sql)


def test_nul_characters_from_the_host_are_stripped_before_storing(
    inline, plain_server, django_capture_on_commit_callbacks
):
    from lockdown.rules.observed import ObservedItem

    inline.observe = lambda item: ObservedItem(
        rule_id=item.rule_id, target=item.target, exists=True, error="bad\x00text"
    )
    with django_capture_on_commit_callbacks(execute=True):
        _job(JobKind.VERIFY, [plain_server])
    outcomes = ServerCompliance.objects.get(server=plain_server).outcomes
    assert outcomes
    assert not any("\x00" in str(o) for o in outcomes)
    assert all("\x00" not in r.observed_text + r.reason for r in RuleResult.objects.all())


def test_transport_errors_fail_the_run_and_mark_the_server(inline, tenant_a, django_capture_on_commit_callbacks):
    inline.fail_with = Unreachable("connection refused", host="mx.a.example")
    with django_capture_on_commit_callbacks(execute=True):
        job = _job(JobKind.DISCOVER, [tenant_a.server])
    run = HostRun.objects.get(job=job)
    assert run.state == HostRunState.FAILED
    assert run.error_kind == "unreachable"
    assert Server.objects.get(pk=tenant_a.server.pk).status == "unreachable"
    job.refresh_from_db()
    assert job.state == JobState.FAILED


def test_error_messages_never_carry_the_credential(inline, tenant_a, django_capture_on_commit_callbacks):
    password = tenant_a.credential.reveal_secret()
    inline.fail_with = AuthenticationFailed(f"rejected {password}", host="x").redacted([password])
    with django_capture_on_commit_callbacks(execute=True):
        job = _job(JobKind.VERIFY, [tenant_a.server])
    run = HostRun.objects.get(job=job)
    assert password not in run.error_message
    assert all(password not in e.message for e in HostRunEvent.objects.all())


def test_a_second_mutating_job_on_the_same_host_is_refused(sent, tenant_a):
    _job(JobKind.HARDEN, [tenant_a.server])
    with pytest.raises(JobRefused, match="being changed by job"):
        _job(JobKind.ROLLBACK, [tenant_a.server])
    # A verify may queue behind it.
    _job(JobKind.VERIFY, [tenant_a.server])


def test_the_database_enforces_the_host_lock_even_without_the_service(tenant_a):
    from django.db import IntegrityError

    job = _job(JobKind.HARDEN, [tenant_a.server])
    with pytest.raises(IntegrityError):
        HostRun.objects.create(job=job, server=tenant_a.server, server_name="x", customer_name="x", mutating=True)


def test_a_redelivered_message_does_nothing(agent, sent, tenant_a, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        _job(JobKind.DISCOVER, [tenant_a.server])
    run_id = sent[0]
    assert runner.run_host(run_id) == HostRunState.SUCCEEDED
    assert runner.run_host(run_id) == "skipped"
    assert len(agent.calls) == 1


def test_verify_waits_while_a_mutating_run_is_running(
    agent, sent, tenant_a, tenant_b, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        harden = _job(JobKind.HARDEN, [tenant_a.server])
    HostRun.objects.filter(job=harden).update(state=HostRunState.RUNNING, heartbeat_at=clock.now())
    with django_capture_on_commit_callbacks(execute=True):
        verify = _job(JobKind.VERIFY, [tenant_a.server])
    verify_run = HostRun.objects.get(job=verify)
    assert runner.run_host(verify_run.pk) == "skipped"
    assert HostRun.objects.get(pk=verify_run.pk).state == HostRunState.QUEUED


def test_sweeper_resends_runs_the_broker_lost(sent, tenant_a, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        _job(JobKind.VERIFY, [tenant_a.server])
    assert len(sent) == 1
    services.sweep()
    assert len(sent) == 1  # not yet: it was just sent
    with clock.frozen(timezone.now() + services.REDISPATCH_AFTER + timedelta(seconds=1)):
        services.sweep()
    assert len(sent) == 2
    assert sent[0] == sent[1]


def test_reaper_fails_runs_whose_worker_died_and_the_host_stays_recoverable(
    agent, sent, tenant_a, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        job = _job(JobKind.HARDEN, [tenant_a.server])
    HostRun.objects.filter(job=job).update(state=HostRunState.RUNNING, heartbeat_at=clock.now())
    assert services.reap_dead_runs() == 0
    with clock.frozen(timezone.now() + services.HEARTBEAT_TIMEOUT + timedelta(seconds=1)):
        assert services.reap_dead_runs() == 1
    run = HostRun.objects.get(job=job)
    assert run.state == HostRunState.FAILED
    assert run.error_kind == "worker_lost"
    job.refresh_from_db()
    assert job.state == JobState.FAILED
    # The lock is released: the host can be verified and rolled back.
    _job(JobKind.ROLLBACK, [tenant_a.server])


def test_canary_wave_stops_the_job_above_the_threshold(inline, tenant_a, django_capture_on_commit_callbacks):
    servers = [tenant_a.server] + [ServerFactory(customer=tenant_a.customer, name=f"mx-{i}") for i in range(5)]
    inline.fail_with = Unreachable("down", host="x")
    with django_capture_on_commit_callbacks(execute=True):
        job = _job(JobKind.DISCOVER, servers, JobOptions(canary_size=2, failure_threshold_pct=40))
    job.refresh_from_db()
    assert job.state == JobState.STOPPED
    assert "2 of 2 hosts failed" in job.stop_reason
    states = sorted(HostRun.objects.filter(job=job).values_list("state", flat=True))
    assert states.count(HostRunState.CANCELLED) == 4
    assert len(inline.calls) == 2


def test_canary_wave_below_threshold_releases_the_rest(inline, tenant_a, django_capture_on_commit_callbacks):
    servers = [tenant_a.server] + [ServerFactory(customer=tenant_a.customer, name=f"mx-{i}") for i in range(3)]
    with django_capture_on_commit_callbacks(execute=True):
        job = _job(JobKind.DISCOVER, servers, JobOptions(canary_size=1, failure_threshold_pct=0))
    job.refresh_from_db()
    assert job.state == JobState.SUCCEEDED
    assert HostRun.objects.filter(job=job, state=HostRunState.SUCCEEDED).count() == 4


def test_max_in_flight_caps_dispatch(sent, tenant_a, django_capture_on_commit_callbacks):
    servers = [ServerFactory(customer=tenant_a.customer, name=f"mx-{i}") for i in range(5)]
    with django_capture_on_commit_callbacks(execute=True):
        _job(JobKind.VERIFY, servers, JobOptions(max_in_flight=2))
    assert len(sent) == 2


def test_maintenance_window_holds_the_job_until_it_opens(sent, tenant_a, django_capture_on_commit_callbacks):
    start = timezone.now() + timedelta(hours=2)
    with django_capture_on_commit_callbacks(execute=True):
        job = _job(JobKind.HARDEN, [tenant_a.server], JobOptions(not_before=start))
    assert job.state == JobState.SCHEDULED
    assert sent == []
    with clock.frozen(start + timedelta(seconds=1)):
        services.sweep()
    assert len(sent) == 1
    job.refresh_from_db()
    assert job.state == JobState.RUNNING


def test_cancel_stops_queued_runs(sent, tenant_a, django_capture_on_commit_callbacks):
    servers = [ServerFactory(customer=tenant_a.customer, name=f"mx-{i}") for i in range(3)]
    with django_capture_on_commit_callbacks(execute=True):
        job = _job(JobKind.VERIFY, servers, JobOptions(max_in_flight=1))
    services.job_cancel(scope=MSP, actor=ACTOR, job=job)
    assert HostRun.objects.filter(job=job, state=HostRunState.CANCELLED).count() == 3
    assert runner.run_host(sent[0]) == "skipped"  # the message already sent finds it cancelled
    job.refresh_from_db()
    assert job.state == JobState.CANCELLED
    assert AuditEvent.objects.filter(action="job.cancel").exists()


def test_cancel_mid_run_stops_between_phases(inline, plain_server, django_capture_on_commit_callbacks):
    from jobs.models import Job

    original = inline.__call__

    def cancel_during_discover(conn, request, *, on_program=None):
        Job.objects.update(cancel_requested_at=clock.now())
        return original(conn, request)

    runner.set_agent_call(cancel_during_discover)
    with django_capture_on_commit_callbacks(execute=True):
        job = _job(JobKind.HARDEN, [plain_server])
    run = HostRun.objects.get(job=job)
    assert run.state == HostRunState.CANCELLED
    assert [c.mode for c in inline.calls] == ["discover"]  # never reached apply
    job.refresh_from_db()
    assert job.state == JobState.CANCELLED


def test_results_keep_the_server_name_after_deletion(inline, tenant_a, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        job = _job(JobKind.DISCOVER, [tenant_a.server])
    Server.objects.filter(pk=tenant_a.server.pk).delete()
    run = HostRun.objects.get(job=job)
    assert run.server_id is None
    assert run.server_name == "mx-a-01"


def test_customer_operator_cannot_start_jobs_on_another_customer(sent, carol, tenant_b):
    with pytest.raises(Exception, match="your role does not allow"):
        _job(JobKind.VERIFY, [tenant_b.server], scope=scope_for_user(carol))


def test_jobs_are_audited_with_their_options(sent, tenant_a):
    _job(JobKind.HARDEN, [tenant_a.server], JobOptions(canary_size=1, failure_threshold_pct=10, dry_run=True))
    event = AuditEvent.objects.get(action="job.harden")
    assert event.changes["dry_run"] is True
    assert event.changes["failure_threshold_pct"] == 10


def test_harden_in_the_customers_window_waits_and_is_cancelled_when_it_closes(sent, tenant_a):
    from datetime import UTC, datetime, time

    customer = tenant_a.customer
    customer.maintenance_days = ""
    customer.maintenance_start = time(1, 0)
    customer.maintenance_hours = 2
    customer.maintenance_timezone = "UTC"
    customer.save()
    monday_noon = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    with clock.frozen(monday_noon):
        not_before, not_after = services.maintenance_window_for([tenant_a.server], clock.now())
        job = _job(JobKind.HARDEN, [tenant_a.server], JobOptions(not_before=not_before, not_after=not_after))
    assert (not_before, not_after) == (datetime(2026, 12, 1, 1, 0, tzinfo=UTC), datetime(2026, 12, 1, 3, 0, tzinfo=UTC))
    assert job.state == JobState.SCHEDULED
    with clock.frozen(datetime(2026, 12, 1, 0, 59, tzinfo=UTC)):
        services.sweep()
    assert sent == []
    # The worker never picked it up (say, all busy) and the window closed: nothing starts late.
    with clock.frozen(datetime(2026, 12, 1, 3, 0, tzinfo=UTC)):
        services.sweep()
    run = HostRun.objects.get(job=job)
    assert run.state == HostRunState.CANCELLED
    assert run.error_kind == "window_closed"
    job.refresh_from_db()
    assert job.state == JobState.CANCELLED


def test_a_window_needs_one_customer_with_a_window(tenant_a, tenant_b):
    with pytest.raises(JobRefused, match="one customer"):
        services.maintenance_window_for([tenant_a.server, tenant_b.server], clock.now())
    with pytest.raises(JobRefused, match="no maintenance window"):
        services.maintenance_window_for([tenant_a.server], clock.now())


def test_harden_page_offers_the_window_and_posting_schedules_into_it(client, alice, sent, tenant_a):
    from datetime import UTC, datetime, time

    from django.urls import reverse

    customer = tenant_a.customer
    customer.maintenance_days = "5,6"
    customer.maintenance_start = time(1, 0)
    customer.maintenance_timezone = "Europe/Berlin"
    customer.save()
    client.force_login(alice)
    with clock.frozen(datetime(2026, 11, 30, 12, 0, tzinfo=UTC)):
        page = client.get(reverse("server_harden", args=[tenant_a.server.pk])).content.decode()
        assert "maintenance window" in page
        assert "Sat 2026-12-05 00:00" in page  # 01:00 in Berlin, shown in the user's time zone (UTC)
        response = client.post(reverse("server_harden", args=[tenant_a.server.pk]), {"dry_run": "0", "in_window": "1"})
    assert response.status_code == 302
    job = HostRun.objects.get(server=tenant_a.server, mutating=True).job
    assert job.state == JobState.SCHEDULED
    assert job.not_before == datetime(2026, 12, 5, 0, 0, tzinfo=UTC)
    assert job.not_after == datetime(2026, 12, 5, 4, 0, tzinfo=UTC)
    assert sent == []
