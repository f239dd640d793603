"""Pages for password rotation, a customer's verify schedule and alert settings, and the alerts list."""

from __future__ import annotations

from datetime import time
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.core.validators import validate_email
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from jobs.alerts import alert_acknowledge, alert_settings_save
from jobs.choices import ALERT_KIND_COLOURS, AlertKind, JobKind
from jobs.models import Alert, AlertSettings, ServiceAccountSecret, VerifySchedule
from jobs.schedules import ScheduleInvalid, schedule_save
from jobs.selectors import alert_list as alert_list_query
from jobs.services import JobRefused, job_create
from jobs.webhooks import WebhookTargetRefused
from servers.audit import Actor
from servers.maintenance import WEEKDAY_CHOICES, crontab_days, crontab_label, days_from_crontab
from servers.models import Customer, Server
from servers.tenancy import Action, request_scope, require, scoped_get


# --- Password rotation ---------------------------------------------------------------------------
@require_http_methods(["GET", "POST"])
def server_rotate_password(request: HttpRequest, server_id: int) -> HttpResponse:
    """Preview (which services will restart) → confirm → the live job page."""
    scope = request_scope(request)
    server = scoped_get(scope, Server.objects.select_related("customer"), pk=server_id)
    require(scope, Action.HARDEN, server.customer_id)
    if request.method == "POST":
        try:
            job = job_create(
                scope=scope,
                actor=Actor.from_request(request),
                kind=JobKind.ROTATE_PASSWORD,
                servers=[server],
                description=f"Rotate the IME_SYSTEM password of {server.name}",
            )
        except JobRefused as refused:
            messages.error(request, str(refused))
            return redirect("server_rotate_password", server_id=server.pk)
        return redirect("job_detail", job_id=job.pk)
    secret = ServiceAccountSecret.objects.filter(server=server).values("set_at", "rotated_at").first()
    return render(request, "jobs/server_rotate_password.html", {"server": server, "secret": secret})


# --- Verify schedule -------------------------------------------------------------------------------
class ScheduleForm(forms.Form):
    """Days by name (Monday first, as the maintenance window) and a time of day; saved as a UTC crontab."""

    enabled = forms.BooleanField(required=False, label="Verify this customer's servers on a schedule")
    days = forms.TypedMultipleChoiceField(
        choices=WEEKDAY_CHOICES, coerce=int, widget=forms.CheckboxSelectMultiple, label="On these days"
    )
    at = forms.TimeField(
        label="At (UTC)", widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"), initial=time(2, 0)
    )

    @classmethod
    def initial_for(cls, schedule: VerifySchedule | None) -> dict[str, object]:
        """The form's values for a stored crontab; a time that is not one hour and minute is left empty."""
        if schedule is None:
            return {"enabled": True, "days": [str(day) for day in range(7)]}
        try:
            days = sorted(days_from_crontab(schedule.day_of_week))
        except ValidationError:
            days = list(range(7))
        at = (
            time(int(schedule.hour), int(schedule.minute))
            if schedule.hour.isdigit() and schedule.minute.isdigit()
            else None
        )
        return {"enabled": schedule.enabled, "days": [str(day) for day in days], "at": at}

    def crontab(self) -> tuple[str, str, str]:
        """(minute, hour, day_of_week) of the cleaned form; days as names ('mon,fri'), never numbers."""
        at: time = self.cleaned_data["at"]
        return str(at.minute), str(at.hour), crontab_days(set(self.cleaned_data["days"]))


@require_http_methods(["GET", "POST"])
def customer_schedule(request: HttpRequest, customer_id: int) -> HttpResponse:
    scope = request_scope(request)
    customer = scoped_get(scope, Customer.objects.all(), customer_field="", pk=customer_id)
    require(scope, Action.EDIT_SERVERS, customer.pk)
    current = VerifySchedule.objects.filter(customer=customer).first()
    initial = ScheduleForm.initial_for(current)
    form = ScheduleForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            schedule_save(
                scope=scope,
                actor=Actor.from_request(request),
                customer=customer,
                enabled=form.cleaned_data["enabled"],
                **dict(zip(("minute", "hour", "day_of_week"), form.crontab(), strict=True)),
            )
        except ScheduleInvalid as invalid:
            form.add_error(None, str(invalid))
        else:
            messages.success(request, "Schedule saved.")
            return redirect("customer_schedule", customer_id=customer.pk)
    status = 400 if request.method == "POST" else 200
    return render(
        request,
        "jobs/customer_schedule.html",
        {
            "customer": customer,
            "form": form,
            "schedule": current,
            "schedule_label": crontab_label(minute=current.minute, hour=current.hour, day_of_week=current.day_of_week)
            if current
            else "",
        },
        status=status,
    )


# --- Alert settings --------------------------------------------------------------------------------
class AlertSettingsForm(forms.Form):
    email_recipients = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}), label="Email recipients (one per line)"
    )
    webhook_url = forms.URLField(required=False, max_length=500, label="Webhook URL", assume_scheme="https")
    webhook_secret = forms.CharField(
        required=False,
        max_length=200,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        label="Webhook secret (signs each request; leave empty to keep the stored one)",
    )
    auto_remediate = forms.BooleanField(
        required=False, label="Harden automatically when a scheduled verify finds drift (recorded in the audit log)"
    )
    webhook_allow_http = forms.BooleanField(
        required=False,
        label="Allow a plain http:// webhook URL (MSP admins only; alerts then travel unencrypted)",
    )

    def __init__(self, *args: Any, may_allow_http: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not may_allow_http:
            del self.fields["webhook_allow_http"]

    def clean_email_recipients(self) -> list[str]:
        recipients = [line.strip() for line in self.cleaned_data["email_recipients"].splitlines() if line.strip()]
        for address in recipients:
            try:
                validate_email(address)
            except ValidationError:
                raise ValidationError(f"{address} is not an email address.") from None
        if len(recipients) > 50:
            raise ValidationError("At most 50 recipients.")
        return recipients


@require_http_methods(["GET", "POST"])
@sensitive_post_parameters("webhook_secret")
def customer_alert_settings(request: HttpRequest, customer_id: int) -> HttpResponse:
    scope = request_scope(request)
    customer = scoped_get(scope, Customer.objects.all(), customer_field="", pk=customer_id)
    require(scope, Action.HARDEN, customer.pk)
    config = AlertSettings.objects.filter(customer=customer).first()
    initial = (
        {
            "email_recipients": config.email_recipients,
            "webhook_url": config.webhook_url,
            "auto_remediate": config.auto_remediate,
            "webhook_allow_http": config.webhook_allow_http,
        }
        if config
        else {}
    )
    may_allow_http = scope.can(Action.MANAGE_CUSTOMERS)
    form = AlertSettingsForm(request.POST or None, initial=initial, may_allow_http=may_allow_http)
    if request.method == "POST" and form.is_valid():
        url = form.cleaned_data["webhook_url"]
        secret = form.cleaned_data["webhook_secret"] or None
        if url and not secret and not (config and config.webhook_secret_encrypted):
            form.add_error("webhook_secret", "A webhook needs a secret to sign its requests.")
        else:
            try:
                alert_settings_save(
                    scope=scope,
                    actor=Actor.from_request(request),
                    customer=customer,
                    email_recipients=form.cleaned_data["email_recipients"],
                    webhook_url=url,
                    webhook_secret=secret,
                    auto_remediate=form.cleaned_data["auto_remediate"],
                    webhook_allow_http=form.cleaned_data["webhook_allow_http"] if may_allow_http else None,
                )
            except WebhookTargetRefused as refused:
                form.add_error("webhook_url", refused.message)
            else:
                messages.success(request, "Alert settings saved.")
                return redirect("customer_alert_settings", customer_id=customer.pk)
    status = 400 if request.method == "POST" else 200
    context = {"customer": customer, "form": form, "has_secret": bool(config and config.webhook_secret_encrypted)}
    return render(request, "jobs/customer_alert_settings.html", context, status=status)


# --- Alerts ----------------------------------------------------------------------------------------
@require_GET
def alert_list(request: HttpRequest) -> HttpResponse:
    scope = request_scope(request)
    show = request.GET.get("show", "open")
    page = Paginator(alert_list_query(scope=scope, show=show), 50).get_page(request.GET.get("page"))
    return render(
        request,
        "jobs/alert_list.html",
        {
            "page": page,
            "show": show,
            "colours": {k.value: v for k, v in ALERT_KIND_COLOURS.items()},
            "kinds": AlertKind.choices,
            "can_ack": scope.can(Action.EDIT_SERVERS),
        },
    )


@require_POST
def alert_acknowledge_view(request: HttpRequest, alert_id: int) -> HttpResponse:
    scope = request_scope(request)
    alert = scoped_get(scope, Alert.objects.select_related("customer"), pk=alert_id)
    require(scope, Action.EDIT_SERVERS, alert.customer_id)
    if alert_acknowledge(scope=scope, actor=Actor.from_request(request), alert=alert):
        messages.success(request, "Alert acknowledged.")
    return redirect("alert_list")
