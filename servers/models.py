"""Inventory models: customers (the unit of tenancy), who may see them, and their servers."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q

from servers.choices import AuthMethod, Declared, Role, ServerStatus, StaleReason, TLSVerify, WinRMScheme
from servers.crypto import decrypt_secret, encrypt_secret
from servers.maintenance import Window, current_or_next_window
from servers.secret_fields import EncryptedTextField


class Customer(models.Model):
    """An MSP's client: every server, credential and report belongs to exactly one."""

    name = models.CharField(max_length=120, unique=True)
    notes = models.TextField(blank=True)
    # The profile version its servers follow unless a server has its own (None: the built-in's latest).
    default_profile_version = models.ForeignKey(
        "lockdown.ProfileVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="default_for_customers"
    )
    # lockdown.assignment: the MSP default does not reach this customer's servers.
    block_inheritance = models.BooleanField(
        "Block the MSP default",
        default=False,
        help_text="Servers of this customer without a profile of their own, a tag's or the customer's follow the "
        "built-in profile instead of the MSP default.",
    )
    # When the customer allows changes that interrupt mail (service restarts, store ACL resets).
    maintenance_days = models.CharField(
        max_length=20,
        blank=True,
        help_text="Weekdays of the maintenance window, 0 = Monday … 6 = Sunday, e.g. 5,6; empty = every day",
    )
    maintenance_start = models.TimeField(
        null=True, blank=True, help_text="Start of the maintenance window (local time); empty = no window"
    )
    maintenance_hours = models.PositiveSmallIntegerField(default=4, help_text="Length of the window in hours")
    maintenance_timezone = models.CharField(max_length=64, default="UTC")
    # remote.networks: WinRM and mail-port checks reach only addresses inside these (empty: the
    # installation's FLEET_MANAGEMENT_NETWORKS; both empty: any address). Set by MSP admins.
    management_networks = models.TextField(
        blank=True, help_text="One IP network per line (e.g. 10.20.0.0/16): the only addresses the worker connects to"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering: ClassVar = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def networks(self) -> tuple[str, ...]:
        """The management networks in force for this customer's servers (empty: any address)."""
        own = tuple(line.strip() for line in self.management_networks.splitlines() if line.strip())
        return own or tuple(getattr(settings, "FLEET_MANAGEMENT_NETWORKS", ()))

    def maintenance_window(self, now: datetime) -> Window | None:
        """The maintenance window open at `now` or the next one; None if the customer has none."""
        if self.maintenance_start is None:
            return None
        return current_or_next_window(
            days=self.maintenance_days,
            start=self.maintenance_start,
            hours=self.maintenance_hours,
            tz_name=self.maintenance_timezone,
            now=now,
        )


class Membership(models.Model):
    """What a user may see and do: MSP-wide (customer empty) or for one customer.

    The permission table lives in `servers.tenancy`; a customer-scoped membership can be an
    operator or a viewer, never an admin (a constraint enforces it).
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["user", "customer"], name="membership_unique_user_customer"),
            models.UniqueConstraint(
                fields=["user"], condition=Q(customer__isnull=True), name="membership_one_msp_role_per_user"
            ),
            models.CheckConstraint(
                condition=Q(customer__isnull=True) | ~Q(role=Role.ADMIN), name="membership_customer_role_not_admin"
            ),
        ]

    def __str__(self) -> str:
        scope = self.customer.name if self.customer_id and self.customer else "MSP"
        return f"{self.user} · {scope} {self.role}"


class Credential(models.Model):
    """A WinRM account, reusable across one customer's servers.

    DANGER: `secret_encrypted` holds a Fernet token of an administrator password. It is
    write-only from every page: set it with `set_secret`, read it only in `remote/`.
    """

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="credentials")
    name = models.CharField(max_length=120)
    username = models.CharField(max_length=256)
    secret_encrypted = EncryptedTextField(editable=False)
    auth = models.CharField(max_length=8, choices=AuthMethod.choices, default=AuthMethod.NTLM)
    created_at = models.DateTimeField(auto_now_add=True)
    secret_changed_at = models.DateTimeField(null=True, blank=True)

    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset({"secret_encrypted"})

    class Meta:
        ordering: ClassVar = ["customer__name", "name"]
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["customer", "name"], name="credential_unique_name_per_customer"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.username})"

    def set_secret(self, plaintext: str) -> None:
        self.secret_encrypted = encrypt_secret(plaintext)

    def reveal_secret(self) -> str:
        """Decrypt the password. Only the WinRM transport may call this."""
        return decrypt_secret(self.secret_encrypted)


class Tag(models.Model):
    """A free label on servers (e.g. "plesk", "eu-west"), for filtering and bulk jobs."""

    name = models.SlugField(max_length=60, unique=True)

    class Meta:
        ordering: ClassVar = ["name"]

    def __str__(self) -> str:
        return self.name


class Server(models.Model):
    """A managed MailEnable server and how to reach it over WinRM."""

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="servers")
    name = models.CharField(max_length=120)
    address = models.CharField(max_length=253, help_text="DNS name or IP address of the host")
    winrm_scheme = models.CharField(max_length=5, choices=WinRMScheme.choices, default=WinRMScheme.HTTPS)
    winrm_port = models.PositiveIntegerField(default=5986)
    tls_verify = models.CharField(max_length=10, choices=TLSVerify.choices, default=TLSVerify.SYSTEM)
    tls_ca_bundle = models.TextField(blank=True, help_text="PEM certificates trusted for this server")
    tls_fingerprint = models.CharField(max_length=95, blank=True, help_text="SHA-256 of the certificate (hex)")
    smtp_port = models.PositiveIntegerField(default=25)
    pop_port = models.PositiveIntegerField(default=110)
    imap_port = models.PositiveIntegerField(default=143)
    webmail_url = models.URLField(blank=True)
    admin_url = models.URLField(blank=True)
    web_self_signed = models.BooleanField(
        "Self-signed certificate on webmail / web admin",
        default=False,
        help_text="The webmail and web admin sites use a self-signed certificate: the health check accepts it "
        "(over TLS 1.2 or newer) instead of failing the page.",
    )
    credential = models.ForeignKey(Credential, null=True, blank=True, on_delete=models.PROTECT, related_name="servers")
    # servers.binding: the digest of the connection settings an MSP admin bound the credential to;
    # the worker sends the credential only while the settings still match it.
    credential_binding = models.CharField(max_length=64, blank=True, editable=False)
    tags = models.ManyToManyField(Tag, blank=True, related_name="servers")
    notes = models.TextField(blank=True)
    sql_integrated = models.CharField(
        "SQL Server in integrated mode", max_length=8, choices=Declared.choices, default=Declared.UNKNOWN
    )
    integrated_auth = models.CharField(
        "Integrated authentication", max_length=8, choices=Declared.choices, default=Declared.UNKNOWN
    )
    # Declaring integrated_auth=yes grants IME_SYSTEM SYSTEM-equivalent rights: who accepted that, and when.
    integrated_auth_acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    integrated_auth_acknowledged_at = models.DateTimeField(null=True, blank=True)
    # A pinned profile version for this server (None: its customer's default).
    profile_version = models.ForeignKey(
        "lockdown.ProfileVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="assigned_servers"
    )
    # lockdown.assignment: no tag's, customer's or MSP default reaches this server.
    block_inheritance = models.BooleanField(
        "Block inherited profiles",
        default=False,
        help_text="Without a pin, this server follows the built-in profile whatever its tags, its customer or the "
        "MSP default say.",
    )
    # Discovered facts (written by discover jobs; untrusted host output, validated on the way in).
    facts = models.JSONField(default=dict, blank=True)
    facts_updated_at = models.DateTimeField(null=True, blank=True)
    # Denormalised compliance summary (written by verify jobs).
    status = models.CharField(max_length=16, choices=ServerStatus.choices, default=ServerStatus.NEVER_VERIFIED)
    compliance_pct = models.FloatField(null=True, blank=True)
    compliance_counts = models.JSONField(default=dict, blank=True)
    last_verified_at = models.DateTimeField(null=True, blank=True)
    # Why the last run could not read the host (a RemoteError/RunFailed kind; blank once a verify stores
    # results): servers.assessment turns it into a cause and a remedy.
    not_assessed_kind = models.CharField(max_length=40, blank=True)
    # Set when something changed the host or its profile after the stored results were read.
    results_stale_reason = models.CharField(max_length=16, choices=StaleReason.choices, blank=True)
    results_stale_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering: ClassVar = ["customer__name", "name"]
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["customer", "name"], name="server_unique_name_per_customer"),
            models.CheckConstraint(condition=Q(winrm_port__gte=1, winrm_port__lte=65535), name="server_winrm_port"),
            models.CheckConstraint(condition=Q(smtp_port__gte=1, smtp_port__lte=65535), name="server_smtp_port"),
            models.CheckConstraint(condition=Q(pop_port__gte=1, pop_port__lte=65535), name="server_pop_port"),
            models.CheckConstraint(condition=Q(imap_port__gte=1, imap_port__lte=65535), name="server_imap_port"),
        ]
        indexes: ClassVar = [
            models.Index(fields=["status"], name="server_status_idx"),
            models.Index(fields=["name"], name="server_name_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def tls_insecure(self) -> bool:
        """HTTPS without certificate verification: shown as a warning wherever it appears."""
        return self.winrm_scheme == WinRMScheme.HTTPS and self.tls_verify == TLSVerify.OFF

    @property
    def endpoint(self) -> str:
        return f"{self.winrm_scheme}://{self.address}:{self.winrm_port}/wsman"


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    """Append-only: bulk updates and deletes are refused."""

    def update(self, **kwargs: Any) -> int:
        raise PermissionError("audit events are append-only")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise PermissionError("audit events are append-only")


class AuditEvent(models.Model):
    """Who did what, when, from where, to which object: a field diff, never a secret.

    Rows are only ever inserted (`servers.audit.audit_record`); `save()` of an existing row
    and deletes raise. The actor's and customer's names are copied so history survives
    their deletion.
    """

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    # No database constraint and DO_NOTHING: deleting a user or customer must not touch
    # (update) audit rows; the copied names keep the history readable.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_name = models.CharField(max_length=150, blank=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    customer = models.ForeignKey(
        Customer, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    customer_name = models.CharField(max_length=120, blank=True)
    changes = models.JSONField(default=dict, blank=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering: ClassVar = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_name} {self.action} {self.object_repr}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise PermissionError("audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise PermissionError("audit events are append-only")


class AccountSecurity(models.Model):
    """Per-user security state: a generated password must be replaced at the next log-in."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="account_security")
    must_change_password = models.BooleanField(default=False)
    password_changed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"account security of {self.user_id}"


class ServerImport(models.Model):
    """A CSV import run in the background (audit: 10,000 rows took 50 s in one request): its progress
    and row errors are a page of its own. All rows are validated before any is created, and the servers
    are created in one transaction with the final state, so a redelivered task never half-imports."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        VALIDATING = "validating", "Checking rows"
        CREATING = "creating", "Creating servers"
        SUCCEEDED = "succeeded", "Imported"
        FAILED = "failed", "Nothing imported"

    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    filename = models.CharField(max_length=200)
    # The CSV text until the import finishes (it never holds a secret: the CSV has no secret column).
    content = models.TextField(blank=True)
    state = models.CharField(max_length=12, choices=State.choices, default=State.QUEUED)
    total_rows = models.PositiveIntegerField(default=0)
    processed_rows = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True)

    class Meta:
        ordering: ClassVar = ["-created_at"]

    def __str__(self) -> str:
        return f"import {self.pk} ({self.filename}, {self.state})"

    @property
    def is_active(self) -> bool:
        return self.state in {self.State.QUEUED, self.State.VALIDATING, self.State.CREATING}

    @property
    def percent(self) -> int:
        if self.state == self.State.SUCCEEDED:
            return 100
        return int(100 * self.processed_rows / self.total_rows) if self.total_rows else 0
