"""Reports, the installation's signing key, daily compliance snapshots and display preferences."""

from __future__ import annotations

import base64
import hashlib
from typing import ClassVar

from django.conf import settings
from django.db import models

from servers.secret_fields import EncryptedTextField


class SigningKey(models.Model):
    """The installation's Ed25519 key that signs every report and its evidence.

    DANGER: `private_key_encrypted` is a Fernet token (servers.crypto) of the raw private key;
    it is decrypted only in `reports.signing` to sign, and never rendered or logged. The
    public key is shown on the signing-key page so anyone can check a report offline.
    """

    name = models.CharField(max_length=40, unique=True, default="installation")
    public_key = models.CharField(max_length=64, help_text="Raw Ed25519 public key, base64")
    private_key_encrypted = EncryptedTextField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset({"private_key_encrypted"})

    def __str__(self) -> str:
        return f"signing key {self.key_id}"

    @property
    def public_key_bytes(self) -> bytes:
        return base64.b64decode(self.public_key)

    @property
    def key_id(self) -> str:
        """First 16 hex digits of the SHA-256 of the raw public key."""
        return hashlib.sha256(self.public_key_bytes).hexdigest()[:16]


class ReportFormat(models.TextChoices):
    PDF = "pdf", "PDF"
    CSV = "csv", "CSV"


class ReportStatus(models.TextChoices):
    """A report is asked for in a request and built by a worker (issue 12: 12 s blocking requests)."""

    QUEUED = "queued", "Queued"
    BUILDING = "building", "Building"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


REPORT_STATUS_COLOURS = {
    ReportStatus.QUEUED: "grey",
    ReportStatus.BUILDING: "blue",
    ReportStatus.READY: "green",
    ReportStatus.FAILED: "red",
}


class Report(models.Model):
    """One signed report: per customer (or the whole fleet when `customer` is empty).

    A request records it `queued`; a worker (`reports.services.report_build`) claims it
    (`building`, with `progress` 0-100), renders and signs it (`ready`) or records why not
    (`failed`). The file, its evidence JSON and the detached signature manifest are kept, so
    the people the report was made for can download exactly what was signed again; they are
    empty until it is ready. `customer_name` is copied so the history stays readable after a
    customer is deleted.
    """

    customer = models.ForeignKey(
        "servers.Customer", null=True, blank=True, on_delete=models.CASCADE, related_name="reports"
    )
    customer_name = models.CharField(max_length=120, blank=True)
    format = models.CharField(max_length=4, choices=ReportFormat.choices)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by_name = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(db_index=True)
    filename = models.CharField(max_length=200)
    content = models.BinaryField()
    sha256 = models.CharField(max_length=64)
    evidence = models.BinaryField()
    evidence_sha256 = models.CharField(max_length=64)
    signature = models.TextField(help_text="The detached signature manifest (JSON)")
    signing_key = models.ForeignKey(SigningKey, on_delete=models.PROTECT, related_name="reports")
    server_count = models.PositiveIntegerField(default=0)
    compliance_pct = models.FloatField(null=True, blank=True)
    coverage_text = models.CharField(
        max_length=120, blank=True, help_text='The average with its coverage: "96.2 % over 16 of 20 servers; ..."'
    )
    status = models.CharField(max_length=10, choices=ReportStatus.choices, default=ReportStatus.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0, help_text="0-100 while building")
    progress_note = models.CharField(max_length=200, blank=True)
    error = models.CharField(max_length=500, blank=True, help_text="Why the build failed, in words")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    tz_name = models.CharField(max_length=64, default="UTC", help_text="The time zone the report shows times in")
    # Made by a customer's report schedule (reports.ReportSchedule), not by a person.
    scheduled = models.BooleanField(default=False)

    class Meta:
        ordering: ClassVar = ["-created_at", "-id"]
        indexes: ClassVar = [models.Index(fields=["customer", "-created_at"], name="report_customer_recent_idx")]

    def __str__(self) -> str:
        return self.filename

    @property
    def is_active(self) -> bool:
        return self.status in {ReportStatus.QUEUED, ReportStatus.BUILDING}

    @property
    def is_ready(self) -> bool:
        return self.status == ReportStatus.READY

    @property
    def status_colour(self) -> str:
        return REPORT_STATUS_COLOURS[ReportStatus(self.status)]

    @property
    def evidence_filename(self) -> str:
        return self.filename.rsplit(".", 1)[0] + ".evidence.json"

    @property
    def signature_filename(self) -> str:
        return self.filename + ".sig"


class ComplianceSnapshot(models.Model):
    """One customer's compliance on one day: the points of the trend charts.

    Why a table and not RuleResult: RuleResult is written only when an outcome changes (plus
    weekly snapshots), so a day's fleet figure would mean replaying every (server, rule,
    target) history up to that day: rows in proportion to servers × rules per point. One row
    per customer per day (sums, so customers add up) keeps a 90-day chart to one query
    whatever the number of servers; `reports.services.compliance_snapshot_take` writes it
    (daily by beat, and idempotently whenever asked).
    """

    day = models.DateField()
    customer = models.ForeignKey("servers.Customer", on_delete=models.CASCADE, related_name="compliance_snapshots")
    servers_total = models.PositiveIntegerField(default=0)
    compliant = models.PositiveIntegerField(default=0)
    drifted = models.PositiveIntegerField(default=0)
    failing = models.PositiveIntegerField(default=0)
    unreachable = models.PositiveIntegerField(default=0)
    never_verified = models.PositiveIntegerField(default=0)
    not_assessed = models.PositiveIntegerField(default=0, help_text="Servers whose last run could not read them")
    verified = models.PositiveIntegerField(
        default=0, help_text="Servers assessed that day (servers.assessment: read, and not stale)"
    )
    pct_sum = models.FloatField(default=0.0, help_text="Sum of their percentages (average = pct_sum / verified)")
    taken_at = models.DateTimeField()

    class Meta:
        ordering: ClassVar = ["day", "customer_id"]
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["day", "customer"], name="compliancesnapshot_one_per_customer_day")
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} on {self.day}"


class UserPreference(models.Model):
    """Per-user display settings: the time zone pages and reports show times in (default UTC)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="preference")
    time_zone = models.CharField(max_length=64, default="UTC")

    def __str__(self) -> str:
        return f"preferences of {self.user_id}"


class ReportFrequency(models.TextChoices):
    MONTHLY = "monthly", "Monthly (the past calendar month, sent on the 1st)"
    WEEKLY = "weekly", "Weekly (the past Monday-Sunday, sent on Monday)"
    OFF = "off", "Off"


class ReportSchedule(models.Model):
    """A customer's report, built and e-mailed after each period (UTC): monthly unless changed.

    `last_period_end` is the end of the last period handled: beat's task claims a period by
    moving it (a guarded update), so two beats or a retried task never send a period twice.
    Edited by those who may harden the customer's servers, as its alert recipients are.
    """

    customer = models.OneToOneField("servers.Customer", on_delete=models.CASCADE, related_name="report_schedule")
    frequency = models.CharField(max_length=8, choices=ReportFrequency.choices, default=ReportFrequency.MONTHLY)
    format = models.CharField(max_length=4, choices=ReportFormat.choices, default=ReportFormat.PDF)
    recipients = models.JSONField(default=list, blank=True, help_text="E-mail addresses")
    last_period_end = models.DateTimeField(null=True, blank=True)
    last_sent_at = models.DateTimeField(null=True, blank=True)
    last_report = models.ForeignKey(Report, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    last_error = models.CharField(max_length=500, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"report schedule of {self.customer_id} ({self.frequency})"
