"""One vocabulary for profile and waiver pages, with the colours the badges use (always with words)."""

from __future__ import annotations

from django.db import models

from lockdown.rules.vocabulary import Risk


class WaiverKind(models.TextChoices):
    """What an approved record permits: not enforcing one rule (a waiver), or applying rules that conflict
    with the auditors' controls (an exception: only the integrated-authentication rights, as one unit)."""

    WAIVER = "waiver", "Waiver"
    EXCEPTION = "exception", "Exception"


class WaiverStatus(models.TextChoices):
    """Derived from the waiver's dates and the clock; never stored."""

    PENDING = "pending", "Pending approval"
    ACTIVE = "active", "Active"
    EXPIRED = "expired", "Expired"
    REVOKED = "revoked", "Revoked"


WAIVER_STATUS_COLOURS = {
    WaiverStatus.PENDING: "blue",
    WaiverStatus.ACTIVE: "orange",
    WaiverStatus.EXPIRED: "grey",
    WaiverStatus.REVOKED: "grey",
}

RISK_COLOURS = {Risk.LOW: "grey", Risk.MEDIUM: "orange", Risk.HIGH: "red"}
RISK_LABELS = {Risk.LOW: "Low risk", Risk.MEDIUM: "Medium risk", Risk.HIGH: "High risk"}


class ExportFormat(models.TextChoices):
    YAML = "yaml", "YAML"
    JSON = "json", "JSON"
