"""Jobs and what they leave behind. The database is the source of truth for every run.

A `Job` fans out into one `HostRun` per server. The runner (`jobs.runner`) owns the state
machine; Celery only carries "run HostRun n" messages, and a sweeper re-sends what no worker
claimed, so a broker that loses messages loses no work.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q

from jobs.choices import (
    OPEN_JOB_STATES,
    AlertKind,
    CanaryOrder,
    DeliveryChannel,
    DeliveryState,
    EventLevel,
    HostRunState,
    JobKind,
    JobState,
)
from servers.models import Customer, Server
from servers.secret_fields import EncryptedTextField


class Job(models.Model):
    """One request by a person (or a schedule): a kind, its targets and its options.

    Options are explicit columns so they are recorded exactly as chosen (and audited):
    dry run, canary wave size, the failure threshold that stops the job, the maximum of hosts
    in flight, and the start of the maintenance window.
    """

    kind = models.CharField(max_length=16, choices=JobKind.choices)
    state = models.CharField(max_length=16, choices=JobState.choices, default=JobState.RUNNING)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_by_name = models.CharField(max_length=150, blank=True)
    description = models.CharField(max_length=300, blank=True)
    dry_run = models.BooleanField(default=False)
    canary_size = models.PositiveIntegerField(default=0, help_text="Hosts in the first wave; 0 = no canary")
    canary_order = models.CharField(
        max_length=16,
        choices=CanaryOrder.choices,
        default=CanaryOrder.FIRST,
        help_text="How the canary hosts were chosen",
    )
    pause_after_canary = models.BooleanField(
        default=False, help_text="Wait for an operator's approval after the canary wave before the rest"
    )
    failure_threshold_pct = models.PositiveIntegerField(default=20)
    max_in_flight = models.PositiveIntegerField(default=20)
    not_before = models.DateTimeField(null=True, blank=True, help_text="Maintenance window start")
    not_after = models.DateTimeField(
        null=True, blank=True, help_text="Maintenance window end: hosts not started by then are cancelled"
    )
    reset_adopted_password = models.BooleanField(
        default=False, help_text="Harden: reset the password of an adopted IME_SYSTEM (cannot be rolled back)"
    )
    current_wave = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    stop_reason = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering: ClassVar = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"

    @property
    def is_active(self) -> bool:
        return self.state in (JobState.SCHEDULED, JobState.RUNNING)

    @property
    def is_open(self) -> bool:
        """Still to be acted on: running, scheduled, or paused for approval."""
        return self.state in OPEN_JOB_STATES


class HostRun(models.Model):
    """One job on one server: its state, timing, error and compliance summary.

    Keeps the server's and customer's names, so results outlive a deleted server. The partial
    unique constraint is the per-host lock: at most one queued or running *mutating* run per
    server, enforced by the database, whatever the number of web processes or workers.
    """

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="host_runs")
    server = models.ForeignKey(Server, null=True, blank=True, on_delete=models.SET_NULL, related_name="host_runs")
    server_name = models.CharField(max_length=120)
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    customer_name = models.CharField(max_length=120)
    state = models.CharField(max_length=16, choices=HostRunState.choices, default=HostRunState.QUEUED)
    mutating = models.BooleanField(default=False)
    wave = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error_kind = models.CharField(max_length=40, blank=True)
    error_message = models.TextField(blank=True)
    summary = models.JSONField(default=dict, blank=True)
    compliance_pct = models.FloatField(null=True, blank=True)
    changes_made = models.PositiveIntegerField(default=0)
    journal_recovered = models.BooleanField(
        default=False,
        help_text="A later rollback undid this run's changes from the host's journal (its result was lost)",
    )
    next_event_seq = models.PositiveIntegerField(default=0)

    class Meta:
        ordering: ClassVar = ["job_id", "wave", "server_name"]
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["server"],
                condition=Q(mutating=True, state__in=[HostRunState.QUEUED, HostRunState.RUNNING]),
                name="hostrun_one_active_mutating_run_per_server",
            ),
        ]
        indexes: ClassVar = [
            models.Index(fields=["state", "dispatched_at"], name="hostrun_state_dispatch_idx"),
            models.Index(fields=["server", "-id"], name="hostrun_server_recent_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.server_name} in job #{self.job_id}"

    @property
    def is_finished(self) -> bool:
        return self.state not in (HostRunState.QUEUED, HostRunState.RUNNING)


class HostRunEvent(models.Model):
    """One log line of a host run, in order. The live log page reads rows after a cursor (`id`)."""

    host_run = models.ForeignKey(HostRun, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    at = models.DateTimeField()
    level = models.CharField(max_length=8, choices=EventLevel.choices, default=EventLevel.INFO)
    message = models.TextField()
    # The detail of a failed connection: shown to the MSP only (customer-scoped users read one
    # "could not connect" line, so the log cannot be used to tell closed ports from open ones).
    msp_only = models.BooleanField(default=False)

    class Meta:
        ordering: ClassVar = ["id"]
        constraints: ClassVar = [models.UniqueConstraint(fields=["host_run", "seq"], name="hostrunevent_unique_seq")]

    def __str__(self) -> str:
        return f"[{self.level}] {self.message[:60]}"


class ServerCompliance(models.Model):
    """The latest verified outcomes of one server (one row, rewritten per verify).

    `outcomes` is the list of `RuleOutcome` dicts; reading a server page is one query. History
    lives in `RuleResult`, written only when an outcome changes (plus periodic snapshots).
    """

    server = models.OneToOneField(Server, on_delete=models.CASCADE, related_name="compliance")
    host_run = models.ForeignKey(HostRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    verified_at = models.DateTimeField()
    profile_label = models.CharField(max_length=120, blank=True)
    outcomes = models.JSONField(default=list)
    summary = models.JSONField(default=dict)
    last_snapshot_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"compliance of {self.server_id} at {self.verified_at:%Y-%m-%d %H:%M}"


class RuleResult(models.Model):
    """History of one (rule id, resolved target) on one server: written when it changes.

    `[SYSTEM32]\\cmd.exe` on x64 gives two keys (System32 and SysWOW64). The pure counterpart
    in lockdown.rules is `RuleOutcome`; this row is its stored, dated form.
    """

    server = models.ForeignKey(Server, null=True, blank=True, on_delete=models.CASCADE, related_name="rule_results")
    host_run = models.ForeignKey(HostRun, on_delete=models.CASCADE, related_name="rule_results")
    rule_id = models.CharField(max_length=200)
    target = models.CharField(max_length=1024)
    section = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16)
    action = models.CharField(max_length=16, default="none")
    expected_text = models.TextField(blank=True)
    observed_text = models.TextField(blank=True)
    reason = models.TextField(blank=True)
    snapshot = models.BooleanField(default=False, help_text="Written as a periodic snapshot, not a change")
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering: ClassVar = ["-created_at", "-id"]
        indexes: ClassVar = [models.Index(fields=["server", "rule_id", "-created_at"], name="ruleresult_history_idx")]

    def __str__(self) -> str:
        return f"{self.rule_id} {self.target}: {self.status}"


class ChangeRecord(models.Model):
    """One change this tool made on a host, in order: the evidence and what rollback undoes.

    `data` is the agent's `ChangeRecord` (rule, target, kind, before/after as SDDL or JSON).
    `baseline` marks the state recorded before the first harden (or an adopted hardening).
    """

    server = models.ForeignKey(Server, null=True, blank=True, on_delete=models.CASCADE, related_name="changes")
    host_run = models.ForeignKey(HostRun, on_delete=models.CASCADE, related_name="changes")
    seq = models.PositiveIntegerField()
    rule_id = models.CharField(max_length=200)
    target = models.CharField(max_length=1024)
    target_kind = models.CharField(max_length=40)
    before = models.TextField(blank=True)
    after = models.TextField(blank=True)
    created_object = models.BooleanField(default=False)
    created_at = models.DateTimeField()
    rolled_back_at = models.DateTimeField(null=True, blank=True)
    rolled_back_by = models.ForeignKey(HostRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering: ClassVar = ["server_id", "host_run_id", "seq"]

    def __str__(self) -> str:
        return f"{self.rule_id} {self.target} (#{self.seq})"

    def as_contract(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "target": self.target,
            "target_kind": self.target_kind,
            "sequence": self.seq,
            "before": self.before or None,
            "after": self.after or None,
            "created_object": self.created_object,
            "job_id": f"{self.host_run.job_id}.{self.host_run_id}",
        }


class ServiceAccountSecret(models.Model):
    """The generated IME_SYSTEM password of one server.

    DANGER: a Fernet token of a service-account password. Sent to the host only inside the
    encrypted WinRM channel; never rendered, logged or put in an event.
    """

    server = models.OneToOneField(Server, on_delete=models.CASCADE, related_name="service_account")
    password_encrypted = EncryptedTextField()
    # DANGER: a rotation's new password while the host has not confirmed it (kept so a worker that dies
    # mid-rotation leaves both candidates); promoted to password_encrypted on success, cleared on failure.
    pending_password_encrypted = EncryptedTextField(blank=True)
    set_at = models.DateTimeField(null=True, blank=True, help_text="When a harden last set it on the host")
    rotated_at = models.DateTimeField(null=True, blank=True, help_text="When a rotation last changed it")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"service account of server {self.server_id}"


class VerifySchedule(models.Model):
    """A customer's periodic verify: a crontab (UTC) that beat runs through a django-celery-beat task.

    `periodic_task` is kept in step by `jobs.schedules.schedule_save`; never edit it directly.
    """

    customer = models.OneToOneField(Customer, on_delete=models.CASCADE, related_name="verify_schedule")
    enabled = models.BooleanField(default=True)
    minute = models.CharField(max_length=64, default="0")
    hour = models.CharField(max_length=64, default="2")
    day_of_week = models.CharField(max_length=64, default="*")
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_run_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"verify schedule of {self.customer_id}"


class AlertSettings(models.Model):
    """Where a customer's alerts go, and whether drift starts a harden on its own.

    DANGER: `webhook_secret_encrypted` is a Fernet token of the HMAC key; write-only in pages.
    """

    customer = models.OneToOneField(Customer, on_delete=models.CASCADE, related_name="alert_settings")
    email_recipients = models.TextField(blank=True, help_text="One address per line")
    webhook_url = models.URLField(max_length=500, blank=True)
    webhook_secret_encrypted = EncryptedTextField(blank=True)
    # Plain http:// for this customer's webhook: only an MSP admin may turn it on (jobs.alerts).
    webhook_allow_http = models.BooleanField(default=False)
    auto_remediate = models.BooleanField(
        default=False, help_text="Start a harden job when a scheduled verify finds drift (off by default)"
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"alert settings of {self.customer_id}"

    @property
    def recipients(self) -> list[str]:
        return [line.strip() for line in self.email_recipients.splitlines() if line.strip()]


class Alert(models.Model):
    """Compliance dropped on one server: raised once per drop (not per verify while it persists).

    Open while neither acknowledged by a person nor resolved by a verify that saw the server recover.
    """

    server = models.ForeignKey(Server, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts")
    server_name = models.CharField(max_length=120)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="alerts")
    host_run = models.ForeignKey(HostRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    kind = models.CharField(max_length=16, choices=AlertKind.choices)
    message = models.TextField()
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(db_index=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    remediation_job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Set by the first verify that shows the server recovered (jobs.alerts.alerts_resolve_recovered).
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by_run = models.ForeignKey(HostRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering: ClassVar = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} on {self.server_name}"


class AlertDelivery(models.Model):
    """One attempt series to send an alert to one target (an email batch or a webhook URL)."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=16, choices=DeliveryChannel.choices)
    target = models.CharField(max_length=500)
    state = models.CharField(max_length=16, choices=DeliveryState.choices, default=DeliveryState.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering: ClassVar = ["alert_id", "id"]

    def __str__(self) -> str:
        return f"{self.channel} for alert {self.alert_id}: {self.state}"
