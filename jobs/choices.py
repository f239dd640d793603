"""The jobs vocabulary, with colours for badges. Rule statuses come from lockdown.rules."""

from __future__ import annotations

from django.db import models

from servers.choices import CONNECT_ERROR_KINDS as CONNECT_ERROR_KINDS  # the one list (servers/assessment.py too)


class JobKind(models.TextChoices):
    DISCOVER = "discover", "Discover (test connection)"
    VERIFY = "verify", "Verify"
    HARDEN = "harden", "Harden"
    ROLLBACK = "rollback", "Roll back"
    ROTATE_PASSWORD = "rotate_password", "Rotate service password"
    SELFTEST = "selftest", "Agent self-test (read-only)"


# Jobs that change a host: at most one of these per host at a time (a database constraint).
MUTATING_KINDS = frozenset({JobKind.HARDEN, JobKind.ROLLBACK, JobKind.ROTATE_PASSWORD})


class JobState(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled (waiting for the maintenance window)"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Finished with failures"
    STOPPED = "stopped", "Stopped by the canary threshold"
    PAUSED = "paused", "Paused for approval after the canary"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_JOB_STATES = frozenset({JobState.SCHEDULED, JobState.RUNNING})
# A job an operator may still act on: cancel it, or (paused, stopped) continue it.
OPEN_JOB_STATES = ACTIVE_JOB_STATES | {JobState.PAUSED}


class CanaryOrder(models.TextChoices):
    FIRST = "first", "First hosts by customer and name"
    HEALTHY_FIRST = "healthy_first", "Healthy first (hosts whose last verify succeeded)"
    CHOSEN = "chosen", "Chosen by the operator"


# Why a host run could not assess the host at all (nothing was read or changed): on a verify these
# say nothing about the job's own safety, so they do not count as canary failures. Narrower than what
# servers.assessment shows as "not assessed": a timeout, a protocol or agent error may be the job's own
# fault, and a canary is there to catch exactly that.
NOT_ASSESSED_KINDS = frozenset(
    {
        "unsupported_powershell",
        "not_elevated",
        "authentication_failed",
        "no_credential",
        "credential_unbound",
        "unreachable",
        "tls_verification_failed",
        "outside_management_networks",
        "insecure_configuration",
    }
)


class HostRunState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    ROLLED_BACK = "rolled_back", "Rolled back"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_RUN_STATES = frozenset({HostRunState.QUEUED, HostRunState.RUNNING})
FINISHED_RUN_STATES = frozenset(
    {HostRunState.SUCCEEDED, HostRunState.FAILED, HostRunState.ROLLED_BACK, HostRunState.CANCELLED}
)

RUN_STATE_COLOURS = {
    HostRunState.QUEUED: "blue",
    HostRunState.RUNNING: "blue",
    HostRunState.SUCCEEDED: "green",
    HostRunState.FAILED: "red",
    HostRunState.ROLLED_BACK: "orange",
    HostRunState.CANCELLED: "grey",
}
JOB_STATE_COLOURS = {
    JobState.SCHEDULED: "blue",
    JobState.RUNNING: "blue",
    JobState.SUCCEEDED: "green",
    JobState.FAILED: "red",
    JobState.STOPPED: "orange",
    JobState.PAUSED: "orange",
    JobState.CANCELLED: "grey",
}
RULE_STATUS_COLOURS = {
    "compliant": "green",
    "drift": "orange",
    "error": "red",
    "not_applicable": "grey",
    "needs_input": "blue",
    "waived": "grey",
}


class EventLevel(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    ERROR = "error", "Error"


class AlertKind(models.TextChoices):
    DRIFT = "drift", "Compliance dropped"
    STATUS = "status", "Server status worsened"


ALERT_KIND_COLOURS = {AlertKind.DRIFT: "orange", AlertKind.STATUS: "red"}


class DeliveryChannel(models.TextChoices):
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Webhook"


class DeliveryState(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


# Run errors that say how a connection failed (which port is closed, filtered, speaks TLS or WinRM):
# customer-scoped users read CONNECT_FAILED instead, so the product is no port scanner for them.
CONNECT_FAILED = "Could not connect to the host. The MSP sees the details."
