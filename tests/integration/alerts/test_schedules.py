"""Periodic verify per customer (django-celery-beat), and the cost of years of daily verifies."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db.models import Count
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from jobs.choices import JobKind
from jobs.models import Job, RuleResult, VerifySchedule
from jobs.schedules import ScheduleInvalid, schedule_save, scheduled_verify
from jobs.services import job_create
from lockdown import clock
from servers.audit import Actor
from servers.models import AuditEvent, Server
from servers.tenancy import Scope
from tests.factories import CustomerFactory, ProfileVersionFactory, ServerFactory, sample_rule, stored_rules

pytestmark = pytest.mark.django_db
MSP = Scope(user_id=None, msp_role="admin")
ACTOR = Actor.system("test")


def test_saving_a_schedule_creates_and_updates_the_periodic_task(tenant_a):
    customer = tenant_a.customer
    schedule_save(scope=MSP, actor=ACTOR, customer=customer, enabled=True, minute="30", hour="3", day_of_week="*")
    task = PeriodicTask.objects.get(name=f"verify-customer-{customer.pk}")
    assert task.task == "jobs.scheduled_verify"
    assert json.loads(task.args) == [customer.pk]
    assert task.enabled
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("30", "3", "*")
    assert str(task.crontab.timezone) == "UTC"
    schedule_save(scope=MSP, actor=ACTOR, customer=customer, enabled=False, minute="0", hour="1", day_of_week="1")
    assert PeriodicTask.objects.filter(name__startswith="verify-customer-").count() == 1
    task.refresh_from_db()
    assert not task.enabled
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("0", "1", "1")
    assert VerifySchedule.objects.get(customer=customer).periodic_task == task
    assert AuditEvent.objects.filter(action="customer.verify_schedule").count() == 2


def test_a_bad_crontab_is_refused():
    customer = CustomerFactory(name="Cron Ltd")
    with pytest.raises(ScheduleInvalid, match="hour"):
        schedule_save(scope=MSP, actor=ACTOR, customer=customer, enabled=True, minute="0", hour="25", day_of_week="*")
    assert not PeriodicTask.objects.filter(name__startswith="verify-customer-").exists()


def test_the_schedule_page_saves_for_an_operator(client, make_role_user, tenant_a):
    client.force_login(make_role_user("msp_operator"))
    url = reverse("customer_schedule", kwargs={"customer_id": tenant_a.customer.pk})
    # Days are ticked by name, Monday = 0 as in the maintenance window; stored as crontab names.
    response = client.post(url, {"enabled": "on", "days": ["0", "1", "2", "3", "4"], "at": "04:15"})
    assert response.status_code == 302
    saved = VerifySchedule.objects.get(customer=tenant_a.customer)
    assert (saved.minute, saved.hour, saved.day_of_week) == ("15", "4", "mon,tue,wed,thu,fri")
    task = PeriodicTask.objects.get(name__startswith="verify-customer-")
    assert task.crontab.day_of_week == "mon,tue,wed,thu,fri"
    page = client.get(url).content.decode()
    assert "Now: Monday to Friday at 04:15 UTC." in page
    assert page.count('name="days"') == 7  # seven day checkboxes
    ticked = [
        chunk for chunk in page.split("<input")[1:] if 'name="days"' in chunk and "checked" in chunk.split(">")[0]
    ]
    assert len(ticked) == 5
    assert 'value="5"' not in "".join(ticked)
    assert 'value="6"' not in "".join(ticked)

    response = client.post(url, {"enabled": "on", "days": ["6"], "at": "23:00"})
    saved.refresh_from_db()
    assert saved.day_of_week == "sun"
    assert "Now: Sunday at 23:00 UTC." in client.get(url).content.decode()
    assert client.post(url, {"enabled": "on", "at": "23:00"}).status_code == 400  # no day ticked


def test_the_beat_task_starts_a_verify_of_the_customers_servers(tenant_a, sent):
    schedule_save(
        scope=MSP, actor=ACTOR, customer=tenant_a.customer, enabled=True, minute="0", hour="2", day_of_week="*"
    )
    job = scheduled_verify(tenant_a.customer.pk)
    assert job is not None
    assert job.kind == JobKind.VERIFY
    assert list(job.host_runs.values_list("server_id", flat=True)) == [tenant_a.server.pk]
    assert job.requested_by_name == "schedule"
    VerifySchedule.objects.filter(customer=tenant_a.customer).update(enabled=False)
    assert scheduled_verify(tenant_a.customer.pk) is None


def test_a_year_of_unchanged_daily_verifies_writes_weekly_snapshots_not_daily_rows(
    inline, django_capture_on_commit_callbacks
):
    rules = stored_rules([sample_rule(), sample_rule("user_right.ime_system.batch_logon", right="SeBatchLogonRight")])
    version = ProfileVersionFactory(rules=rules)
    customer = CustomerFactory(name="Year Ltd", default_profile_version=version)
    server: Server = ServerFactory(customer=customer, name="mx-year")  # type: ignore[assignment]
    start = clock.now().replace(hour=2, minute=0, second=0, microsecond=0)
    for day in range(365):
        with clock.frozen(start + timedelta(days=day)), django_capture_on_commit_callbacks(execute=True):
            job_create(scope=MSP, actor=ACTOR, kind=JobKind.VERIFY, servers=[server])
    assert Job.objects.filter(kind=JobKind.VERIFY).count() == 365
    per_rule = dict(
        RuleResult.objects.filter(server=server)
        .values_list("rule_id")
        .annotate(n=Count("id"))
        .values_list("rule_id", "n")
    )
    assert len(per_rule) == 2
    # The first verify, then one snapshot every 7 days: 1 + 364 // 7 = 53 rows per rule, not 365.
    assert set(per_rule.values()) == {1 + 364 // 7}
    assert RuleResult.objects.filter(server=server, snapshot=True).count() == 2 * (364 // 7)
