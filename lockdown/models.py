"""Profiles (an MSP-wide library of rule sets), their immutable versions, where they are assigned, and waivers."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q

from lockdown.choices import WaiverKind, WaiverStatus
from lockdown.rules.exceptions import EXCEPTION_KEY
from lockdown.rules.vocabulary import WaiverScope


class Profile(models.Model):
    """A named rule set in the MSP-wide library; its content lives in immutable versions.

    Profiles hold no tenant data. The built-in profile (`builtin=True`) is loaded from the
    shipped YAML by `builtin_profile_sync` and cannot be edited here: clone it instead.
    """

    slug = models.SlugField(max_length=63, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    builtin = models.BooleanField(default=False, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering: ClassVar = ["-builtin", "name"]

    def __str__(self) -> str:
        return self.name


class ProfileVersionQuerySet(models.QuerySet["ProfileVersion"]):
    """Versions are immutable: bulk updates are refused."""

    def update(self, **kwargs: Any) -> int:
        raise PermissionError("profile versions are immutable; create a new version")


class ProfileVersion(models.Model):
    """One immutable, validated state of a profile: its rules and notes as JSON.

    `content_hash` is the sha256 of the canonical JSON of {notes, rules}
    (`lockdown.exchange.content_hash`); a profile never holds two versions with the same
    content. Saving an existing row raises: editing makes a new version.
    """

    profile = models.ForeignKey(Profile, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    rules = models.JSONField()
    notes = models.JSONField(
        default=list, blank=True, help_text="Where the profile deliberately differs from the guide"
    )
    content_hash = models.CharField(max_length=64)
    change_note = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ProfileVersionQuerySet.as_manager()

    class Meta:
        ordering: ClassVar = ["profile__name", "-number"]
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["profile", "number"], name="profileversion_unique_number"),
            models.UniqueConstraint(fields=["profile", "content_hash"], name="profileversion_unique_content"),
            models.CheckConstraint(condition=Q(number__gte=1), name="profileversion_number_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.profile.name} v{self.number}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise PermissionError("profile versions are immutable; create a new version")
        super().save(*args, **kwargs)

    @property
    def label(self) -> str:
        return f"{self.profile.slug} v{self.number}"


class FleetDefault(models.Model):
    """The MSP default: the version every server follows that nothing more specific assigns (one row, pk 1;
    none, or no version: the built-in profile's latest). `lockdown.assignment` resolves the hierarchy."""

    version = models.ForeignKey(
        ProfileVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="fleet_default_for"
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"MSP default: {self.version or 'the built-in profile'}"


class TagAssignment(models.Model):
    """A server group by tag: every server with `tag` (of `customer` only, when set) follows `version`, unless
    it is excluded here, pinned, or blocks inheritance. A customer's own tag assignment wins over an MSP-wide
    one; between two tags of one server the lower `precedence` wins (then the tag's name)."""

    tag = models.ForeignKey("servers.Tag", on_delete=models.CASCADE, related_name="profile_assignments")
    customer = models.ForeignKey(
        "servers.Customer", null=True, blank=True, on_delete=models.CASCADE, related_name="tag_assignments"
    )
    version = models.ForeignKey(ProfileVersion, on_delete=models.PROTECT, related_name="tag_assignments")
    precedence = models.PositiveIntegerField(default=100, help_text="Lower wins when a server has two assigned tags")
    excluded_servers = models.ManyToManyField(
        "servers.Server", blank=True, related_name="excluded_from_tag_assignments"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering: ClassVar = ["precedence", "tag__name", "id"]
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["tag"], condition=Q(customer__isnull=True), name="tagassignment_one_fleet_wide"
            ),
            models.UniqueConstraint(fields=["tag", "customer"], name="tagassignment_one_per_customer"),
        ]

    def __str__(self) -> str:
        where = f" of {self.customer}" if self.customer_id is not None else ""
        return f"tag {self.tag}{where} → {self.version}"


class Waiver(models.Model):
    """An accepted deviation, for one server or one whole customer: a waiver or an exception.

    A *waiver* (kind `waiver`) accepts that one rule is not enforced: its results are `waived`.
    An *exception* (kind `exception`, rule id `lockdown.rules.exceptions.EXCEPTION_KEY`) permits
    the guide's integrated-authentication rights, which conflict with CIS/STIG controls, on a
    server declared to use integrated authentication; `conflicts` records those controls as
    they stood at proposal time, so the record survives profile changes.

    Keyed by rule id, so it survives new profile versions. It applies only while approved,
    not revoked and not expired (judged with `lockdown.clock`). Exactly one of `server` and
    `customer` is set (a check constraint enforces it); `owner_customer` is the tenant.
    """

    kind = models.CharField(max_length=12, choices=WaiverKind.choices, default=WaiverKind.WAIVER)
    rule_id = models.CharField(max_length=120)
    conflicts = models.JSONField(
        default=list, blank=True, help_text="Exceptions: the CIS/STIG controls the permitted rules conflict with"
    )
    server = models.ForeignKey(
        "servers.Server", null=True, blank=True, on_delete=models.CASCADE, related_name="waivers"
    )
    customer = models.ForeignKey(
        "servers.Customer", null=True, blank=True, on_delete=models.CASCADE, related_name="waivers"
    )
    justification = models.TextField(max_length=2000)
    proposed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="waivers_proposed"
    )
    proposed_at = models.DateTimeField()
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="waivers_approved"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="waivers_revoked"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering: ClassVar = ["-proposed_at", "-id"]
        constraints: ClassVar = [
            models.CheckConstraint(
                condition=(Q(server__isnull=False) & Q(customer__isnull=True))
                | (Q(server__isnull=True) & Q(customer__isnull=False)),
                name="waiver_server_xor_customer",
            ),
            # An exception is only ever the integrated-authentication rights; a waiver never is.
            models.CheckConstraint(
                condition=(Q(kind=WaiverKind.EXCEPTION) & Q(rule_id=EXCEPTION_KEY))
                | (Q(kind=WaiverKind.WAIVER) & ~Q(rule_id=EXCEPTION_KEY)),
                name="waiver_exception_key",
            ),
        ]
        indexes: ClassVar = [models.Index(fields=["rule_id"], name="waiver_rule_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display().lower()} {self.rule_id} for {self.subject}"

    @property
    def is_exception(self) -> bool:
        return self.kind == WaiverKind.EXCEPTION

    @property
    def scope(self) -> WaiverScope:
        return WaiverScope.SERVER if self.server_id is not None else WaiverScope.CUSTOMER

    @property
    def subject(self) -> str:
        return str(self.server) if self.server_id is not None else str(self.customer)

    @property
    def owner_customer_id(self) -> int:
        if self.server_id is not None:
            assert self.server is not None
            return self.server.customer_id
        assert self.customer_id is not None
        return self.customer_id

    def status_at(self, now: datetime) -> WaiverStatus:
        if self.revoked_at is not None:
            return WaiverStatus.REVOKED
        if now >= self.expires_at:
            return WaiverStatus.EXPIRED
        if self.approved_at is None:
            return WaiverStatus.PENDING
        return WaiverStatus.ACTIVE


class AdvisoryDocumentQuerySet(models.QuerySet["AdvisoryDocument"]):
    """Imported advisory files are history: bulk updates are refused."""

    def update(self, **kwargs: Any) -> int:
        raise PermissionError("advisory imports are immutable; import a new file")


class AdvisoryDocument(models.Model):
    """One imported MailEnable advisory file (`lockdown.rules.advisories.AdvisoryFile`), validated, as JSON.

    The newest row (highest id) is the set in force (`lockdown.advisory_store.current_advisories`); older rows
    are the history. `content_hash` is the sha256 of the document's canonical JSON; importing the content
    already in force creates nothing. `builtin` rows come from the shipped `lockdown/advisories/mailenable.yaml`
    (loaded on migrate); `updated` is the file's own date, which decides whether a shipped file may replace
    the one in force. Saving an existing row raises.
    """

    document = models.JSONField()
    content_hash = models.CharField(max_length=64)
    updated = models.DateField(help_text="The file's own 'updated' date")
    source_name = models.CharField(max_length=200, blank=True)
    builtin = models.BooleanField(default=False)
    imported_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    imported_at = models.DateTimeField()

    objects = AdvisoryDocumentQuerySet.as_manager()

    class Meta:
        ordering: ClassVar = ["-id"]

    def __str__(self) -> str:
        return f"advisories of {self.updated.isoformat()} ({self.source_name or 'import'})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise PermissionError("advisory imports are immutable; import a new file")
        super().save(*args, **kwargs)
