"""One vocabulary for the inventory, with the colours the pages use for badges."""

from __future__ import annotations

from django.db import models


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    OPERATOR = "operator", "Operator"
    VIEWER = "viewer", "Viewer"


class AuthMethod(models.TextChoices):
    NTLM = "ntlm", "NTLM (message encryption)"
    BASIC = "basic", "Basic (HTTPS with certificate verification only)"


class WinRMScheme(models.TextChoices):
    HTTP = "http", "HTTP (5985, NTLM-encrypted)"
    HTTPS = "https", "HTTPS (5986)"


class TLSVerify(models.TextChoices):
    SYSTEM = "system", "System CAs"
    CA_BUNDLE = "ca_bundle", "CA bundle"
    PINNED = "pinned", "Pinned certificate fingerprint"
    OFF = "off", "Off (insecure)"


class Declared(models.TextChoices):
    """An operator-declared fact that discovery cannot read reliably."""

    YES = "yes", "Yes"
    NO = "no", "No"
    UNKNOWN = "unknown", "Unknown"


class ServerStatus(models.TextChoices):
    """Derived from the latest results and runs. `failing` means the host was read and some of its
    checks could not be read or applied; a host that could not be read at all is `unreachable` or
    `not_assessed` (servers.assessment gives the cause and the remedy), never `failing`."""

    COMPLIANT = "compliant", "Compliant"
    DRIFTED = "drifted", "Drifted"
    FAILING = "failing", "Failing"
    UNREACHABLE = "unreachable", "Unreachable"
    NOT_ASSESSED = "not_assessed", "Not assessed"
    NEVER_VERIFIED = "never_verified", "Never verified"


SERVER_STATUS_COLOURS = {
    ServerStatus.COMPLIANT: "green",
    ServerStatus.DRIFTED: "orange",
    ServerStatus.FAILING: "red",
    ServerStatus.UNREACHABLE: "grey",
    ServerStatus.NOT_ASSESSED: "grey",
    ServerStatus.NEVER_VERIFIED: "blue",
}


class StaleReason(models.TextChoices):
    """Why a server's stored results may no longer describe the host (cleared by its next verify)."""

    ROLLBACK = "rollback", "a rollback changed the host after these results were read"
    HARDEN_FAILED = "harden_failed", "a harden did not complete, so the host may have changed"
    PROFILE_CHANGED = "profile_changed", "the server is now judged by another profile version"


# Run errors that say how a connection failed: customer-scoped users read one sentence for any of
# them (jobs.choices.CONNECT_FAILED, servers.assessment), the MSP the detail.
CONNECT_ERROR_KINDS = frozenset(
    {
        "unreachable",
        "timeout",
        "tls_verification_failed",
        "authentication_failed",
        "protocol_error",
        "insecure_configuration",
        "outside_management_networks",
        "mail_ports",
    }
)
