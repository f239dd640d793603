"""Periodic verify per customer: a `VerifySchedule` row kept in step with a django-celery-beat task.

Beat (DatabaseScheduler) reads `PeriodicTask` + `CrontabSchedule`; `schedule_save` creates or
updates both in the same transaction as the customer's schedule, so what the page shows is what
beat runs. The task is `jobs.scheduled_verify(customer_id)`, which starts one verify job over the
customer's servers as the system (audited like any job).
"""

from __future__ import annotations

import json

from django.core.exceptions import ValidationError
from django.db import transaction
from django_celery_beat.models import CrontabSchedule, PeriodicTask
from django_celery_beat.validators import day_of_week_validator, hour_validator, minute_validator

from jobs.choices import JobKind
from jobs.models import Job, VerifySchedule
from lockdown import clock
from servers.audit import Actor, audit_record
from servers.models import Customer, Server
from servers.tenancy import Action, Scope, require

TASK_NAME = "jobs.scheduled_verify"
SYSTEM_SCOPE = Scope(user_id=None, msp_role="admin")


class ScheduleInvalid(ValueError):
    """A crontab field is not valid; the message says which."""


def periodic_task_name(customer: Customer) -> str:
    return f"verify-customer-{customer.pk}"


def _validate(minute: str, hour: str, day_of_week: str) -> None:
    for label, value, validator in (
        ("minute", minute, minute_validator),
        ("hour", hour, hour_validator),
        ("day of week", day_of_week, day_of_week_validator),
    ):
        try:
            validator(value)
        except (ValidationError, ValueError):
            raise ScheduleInvalid(f"The {label} field {value!r} is not a valid crontab value.") from None


def schedule_save(
    *, scope: Scope, actor: Actor, customer: Customer, enabled: bool, minute: str, hour: str, day_of_week: str
) -> VerifySchedule:
    """Create or update the customer's schedule and its beat task (UTC crontab), audited."""
    require(scope, Action.EDIT_SERVERS, customer.pk)
    minute, hour, day_of_week = minute.strip(), hour.strip(), day_of_week.strip()
    _validate(minute, hour, day_of_week)
    with transaction.atomic():
        schedule, _ = VerifySchedule.objects.select_for_update().get_or_create(customer=customer)
        before = {"enabled": schedule.enabled, "cron": f"{schedule.minute} {schedule.hour} * * {schedule.day_of_week}"}
        crontab, _ = CrontabSchedule.objects.get_or_create(
            minute=minute, hour=hour, day_of_week=day_of_week, day_of_month="*", month_of_year="*", timezone="UTC"
        )
        task = schedule.periodic_task
        if task is None:
            task = PeriodicTask.objects.filter(name=periodic_task_name(customer)).first()
        if task is None:
            task = PeriodicTask(name=periodic_task_name(customer), task=TASK_NAME)
        task.crontab = crontab
        task.interval = None
        task.task = TASK_NAME
        task.args = json.dumps([customer.pk])
        task.enabled = enabled
        task.description = f"Periodic verify of {customer.name}'s servers"
        task.save()
        schedule.periodic_task = task
        schedule.enabled, schedule.minute, schedule.hour, schedule.day_of_week = enabled, minute, hour, day_of_week
        schedule.save()
        after = {"enabled": enabled, "cron": f"{minute} {hour} * * {day_of_week}"}
        changes = {k: [before[k], after[k]] for k in after if before[k] != after[k]}
        audit_record(actor=actor, action="customer.verify_schedule", obj=customer, changes=changes)
    return schedule


def scheduled_verify(customer_id: int) -> Job | None:
    """What beat runs: one verify job over the customer's servers, started by the system."""
    from jobs.services import JobRefused, job_create

    schedule = VerifySchedule.objects.select_related("customer").filter(customer_id=customer_id).first()
    if schedule is None or not schedule.enabled:
        return None
    servers = list(Server.objects.select_related("customer").filter(customer_id=customer_id))
    VerifySchedule.objects.filter(pk=schedule.pk).update(last_run_at=clock.now())
    if not servers:
        return None
    try:
        return job_create(
            scope=SYSTEM_SCOPE,
            actor=Actor.system("schedule"),
            kind=JobKind.VERIFY,
            servers=servers,
            description=f"Scheduled verify of {schedule.customer.name}",
        )
    except JobRefused:
        return None
