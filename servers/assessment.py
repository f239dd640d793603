"""What a compliance figure may count: one definition for every page, report and snapshot.

A server is in exactly one of three states:
- **not assessed**: never verified, or its last run could not read the host (unreachable, the
  credential was rejected, PowerShell 2.0, ...). `cause_for` names the cause and the remedy.
- **stale**: its results were read, but a rollback, a failed harden or a profile change came
  after them (`Server.results_stale_reason`); its next verify makes it assessed again.
- **assessed**: the rest. Only these are averaged, and every average is shown beside its
  coverage ("96.2 % over 16 of 20 servers; 3 not assessed, 1 stale"), so a fleet that could
  not be read never looks compliant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db.models import Count, Q, Sum

from servers.choices import CONNECT_ERROR_KINDS as _CONNECT_KINDS
from servers.choices import ServerStatus, StaleReason

if TYPE_CHECKING:
    from servers.models import Server

NOT_ASSESSED_STATUSES = frozenset({ServerStatus.NEVER_VERIFIED, ServerStatus.UNREACHABLE, ServerStatus.NOT_ASSESSED})

NEVER_VERIFIED = ("never verified", "press Verify on the server page (nothing is changed)")
CONNECT_FAILED = ("could not connect to the host", "your MSP sees the details and can fix it")
UNKNOWN = ("the last run could not read the host", "open the server's latest job for the error")
CAUSES: dict[str, tuple[str, str]] = {
    "unsupported_powershell": (
        "requires WMF 5.1 (the host runs an older PowerShell)",
        "install Windows Management Framework 5.1 on the host, then verify again",
    ),
    "authentication_failed": (
        "the credential was rejected",
        "check the WinRM account and its password, then have an MSP admin replace the credential",
    ),
    "not_elevated": (
        "the WinRM account is not an administrator on the host",
        "use an account in the host's Administrators group",
    ),
    "unreachable": ("the host did not answer", "check that it is running and that its WinRM port is open from here"),
    "timeout": ("the host did not answer in time", "check the host and its network, then verify again"),
    "tls_verification_failed": (
        "the host's TLS certificate was not trusted",
        "check the server's TLS verification (CA bundle or pinned fingerprint)",
    ),
    "insecure_configuration": (
        "the connection settings were refused as insecure",
        "use HTTPS with certificate verification for Basic authentication",
    ),
    "outside_management_networks": (
        "the address is outside the customer's management networks",
        "correct the address or the customer's management networks",
    ),
    "protocol_error": ("the host's WinRM answer could not be read", "open the server's latest job for the error"),
    "no_credential": ("no WinRM credential is bound", "an MSP admin must bind one (edit the server)"),
    "credential_unbound": (
        "the connection settings changed since the credential was bound",
        "an MSP admin must bind it again (edit the server and save)",
    ),
    "no_profile": ("no lockdown profile applies", "assign a profile to the customer or the server"),
}
# RunFailed kinds that mean the host could not be read (others, like a rotation refused, say nothing about it).
NOT_ASSESSED_RUN_FAILURES = frozenset({"no_credential", "credential_unbound", "no_profile", "agent_error"})


def not_assessed_q(prefix: str = "") -> Q:
    """`prefix` ("servers__") reaches the servers through a relation (a customer's servers)."""
    return Q(**{f"{prefix}status__in": sorted(NOT_ASSESSED_STATUSES)}) | Q(**{f"{prefix}compliance_pct__isnull": True})


def stale_q(prefix: str = "") -> Q:
    return ~not_assessed_q(prefix) & ~Q(**{f"{prefix}results_stale_reason": ""})


def assessed_q(prefix: str = "") -> Q:
    """The servers an average may count."""
    return ~not_assessed_q(prefix) & Q(**{f"{prefix}results_stale_reason": ""})


def coverage_aggregates(prefix: str = "") -> dict[str, Any]:
    """Aggregates for `.annotate()`/`.aggregate()`: total, assessed, stale and the assessed percentages' sum
    (`Coverage.from_row` reads them)."""
    distinct = bool(prefix)
    return {
        "cov_total": Count(f"{prefix}id", distinct=distinct),
        "cov_assessed": Count(f"{prefix}id", filter=assessed_q(prefix), distinct=distinct),
        "cov_stale": Count(f"{prefix}id", filter=stale_q(prefix), distinct=distinct),
        "cov_pct_sum": Sum(f"{prefix}compliance_pct", filter=assessed_q(prefix)),
    }


@dataclass(frozen=True)
class Coverage:
    """An average and what it stands on: `assessed` of `total` servers; the rest not assessed or stale."""

    total: int = 0
    assessed: int = 0
    stale: int = 0
    pct_sum: float = 0.0

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Coverage:
        return cls(
            total=row["cov_total"] or 0,
            assessed=row["cov_assessed"] or 0,
            stale=row["cov_stale"] or 0,
            pct_sum=row["cov_pct_sum"] or 0.0,
        )

    def __add__(self, other: Coverage) -> Coverage:
        return Coverage(
            self.total + other.total,
            self.assessed + other.assessed,
            self.stale + other.stale,
            self.pct_sum + other.pct_sum,
        )

    @property
    def not_assessed(self) -> int:
        return self.total - self.assessed - self.stale

    @property
    def average_pct(self) -> float | None:
        return self.pct_sum / self.assessed if self.assessed else None

    @property
    def sentence(self) -> str:
        """ "over 16 of 20 servers; 3 not assessed, 1 stale" (the average is shown beside it)."""
        noun = "server" if self.total == 1 else "servers"
        text = f"over {self.assessed} of {self.total} {noun}"
        rest = [f"{n} {label}" for n, label in ((self.not_assessed, "not assessed"), (self.stale, "stale")) if n]
        return text + ("; " + ", ".join(rest) if rest else "")

    @property
    def text(self) -> str:
        """ "96.2 % over 16 of 20 servers; 4 not assessed", or "not measured; 0 of 2 servers assessed"."""
        if self.average_pct is None:
            noun = "server" if self.total == 1 else "servers"
            return f"not measured: 0 of {self.total} {noun} assessed" + (f" ({self.stale} stale)" if self.stale else "")
        return f"{self.average_pct:.1f} % {self.sentence}"


@dataclass(frozen=True)
class Assessment:
    """One server's state for the figures, with the cause and remedy when it is not assessed or stale."""

    state: str  # "assessed", "stale" or "not_assessed"
    cause: str = ""
    remedy: str = ""
    since: datetime | None = None

    @property
    def assessed(self) -> bool:
        return self.state == "assessed"

    @property
    def stale(self) -> bool:
        return self.state == "stale"

    @property
    def not_assessed(self) -> bool:
        return self.state == "not_assessed"

    @property
    def label(self) -> str:
        return {"assessed": "", "stale": "Stale", "not_assessed": "Not assessed"}[self.state]


def cause_for(kind: str, *, msp: bool) -> tuple[str, str]:
    """(cause, remedy) of a run error kind; customer-scoped users read one sentence for connection failures."""
    if not msp and kind in _CONNECT_KINDS:
        return CONNECT_FAILED
    return CAUSES.get(kind, UNKNOWN)


def assessment_of(server: Server, *, msp: bool) -> Assessment:
    """The state `assessed_q`/`stale_q` give this server, in words (no query)."""
    if server.status == ServerStatus.NEVER_VERIFIED or (server.compliance_pct is None and not server.not_assessed_kind):
        return Assessment("not_assessed", *NEVER_VERIFIED)
    if server.status in NOT_ASSESSED_STATUSES or server.compliance_pct is None:
        return Assessment("not_assessed", *cause_for(server.not_assessed_kind or server.status, msp=msp))
    if server.results_stale_reason:
        return Assessment(
            "stale",
            str(StaleReason(server.results_stale_reason).label),
            "verify the server to read its state now",
            server.results_stale_since,
        )
    return Assessment("assessed")
