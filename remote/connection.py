"""`HostConnection`: everything needed to reach one host's WinRM listener, as a plain dataclass.

The Django side (servers/) builds one from a Server and its Credential; nothing here imports
Django. `validate()` refuses insecure or incomplete settings before any byte is sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from remote.errors import InsecureConfiguration

DEFAULT_PORTS: Final = {"http": 5985, "https": 5986}
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class Scheme(StrEnum):
    """HTTP (5985, NTLM with WinRM message encryption) or HTTPS (5986)."""

    HTTP = "http"
    HTTPS = "https"


class AuthMethod(StrEnum):
    """NTLM (HTTP or HTTPS) or Basic (HTTPS only, refused over HTTP). No CredSSP (DESIGN.md)."""

    NTLM = "ntlm"
    BASIC = "basic"


class TlsVerify(StrEnum):
    """How the server's certificate is checked over HTTPS."""

    SYSTEM = "system"  # the operating system's trusted CAs
    CA_BUNDLE = "ca_bundle"  # only the CAs in `ca_bundle_pem`
    PINNED = "pinned"  # the leaf certificate's SHA-256 must equal `pinned_sha256` (no CA check)
    OFF = "off"  # no check at all; the UI warns


def normalize_fingerprint(value: str) -> str:
    """`AB:CD:...` or `abcd...` → 64 lower-case hex digits; ValueError otherwise."""
    cleaned = re.sub(r"[\s:]", "", value).lower()
    if not _SHA256_HEX.fullmatch(cleaned):
        raise ValueError("a pinned fingerprint must be a SHA-256 (64 hex digits, colons allowed)")
    return cleaned


@dataclass(frozen=True)
class HostConnection:
    """One host's WinRM endpoint and credentials.

    DANGER: `password` is a secret in clear. It is excluded from `repr`, never logged, and
    redacted from every error `remote/` raises. Keep instances short-lived.

    Timeouts: `connect_timeout_s` for the TCP/TLS connect, `operation_timeout_s` the WinRM
    OperationTimeout of one request (a Receive waits at most this long server-side; the HTTP read
    timeout is this plus `READ_GRACE_S`), `run_timeout_s` the whole run (connect, send, every
    Receive, cleanup).
    """

    address: str
    username: str
    password: str = field(repr=False)
    scheme: Scheme = Scheme.HTTPS
    port: int | None = None
    auth: AuthMethod = AuthMethod.NTLM
    tls_verify: TlsVerify = TlsVerify.SYSTEM
    ca_bundle_pem: str | None = field(default=None, repr=False)
    pinned_sha256: str | None = None
    connect_timeout_s: float = 10.0
    operation_timeout_s: int = 20
    run_timeout_s: float = 1800.0
    retry_attempts: int = 3
    retry_backoff_s: float = 0.5
    # remote.networks: CIDRs the address must resolve inside (empty: any address)
    management_networks: tuple[str, ...] = ()

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else DEFAULT_PORTS[self.scheme.value]

    @property
    def endpoint(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.scheme.value}://{host}:{self.effective_port}/wsman"

    def validate(self) -> None:
        """Raise `InsecureConfiguration` for settings that must never reach the network."""
        if self.auth is AuthMethod.BASIC and (self.scheme is Scheme.HTTP or self.tls_verify is TlsVerify.OFF):
            # Basic carries the password itself: only to a host whose certificate was verified
            raise InsecureConfiguration(
                "Basic authentication sends the password itself: it is allowed only over HTTPS with certificate "
                "verification on",
                host=self.address,
            )
        if not self.address or any(c in self.address for c in "/@?# "):
            raise InsecureConfiguration("the host address is not a plain name or IP address", host=self.address)
        if not 0 < self.effective_port < 65536:
            raise InsecureConfiguration(f"port {self.effective_port} is out of range", host=self.address)
        if self.scheme is Scheme.HTTPS:
            if self.tls_verify is TlsVerify.CA_BUNDLE and not (self.ca_bundle_pem or "").strip():
                raise InsecureConfiguration("TLS verification 'ca_bundle' needs a CA bundle (PEM)", host=self.address)
            if self.tls_verify is TlsVerify.PINNED:
                try:
                    normalize_fingerprint(self.pinned_sha256 or "")
                except ValueError as exc:
                    raise InsecureConfiguration(str(exc), host=self.address) from None
        if self.operation_timeout_s < 1 or self.connect_timeout_s <= 0 or self.run_timeout_s <= 0:
            raise InsecureConfiguration("timeouts must be positive", host=self.address)
        if self.retry_attempts < 1:
            raise InsecureConfiguration("retry_attempts counts the first try and must be at least 1", host=self.address)
