"""Errors a user understands. Every failure of a host run surfaces as one `RemoteError` subclass
whose `kind` the UI maps to a sentence and a colour; `message` is already redacted."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

REDACTED = "********"
MAX_MESSAGE = 2000


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every secret replaced (longest first, so a secret containing another is caught)."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


class RemoteError(Exception):
    """A host run failed. `kind` is stable (used in events and the UI); `retryable` marks transient
    failures the transport may retry; `host` names the address."""

    kind: ClassVar[str] = "remote_error"

    def __init__(self, message: str, *, host: str = "", retryable: bool = False) -> None:
        self.message = message[:MAX_MESSAGE]
        self.host = host
        self.retryable = retryable
        super().__init__(f"{host}: {self.message}" if host else self.message)

    def redacted(self, secrets: Iterable[str | None]) -> RemoteError:
        """The same error with secrets removed from its text (returns self, mutated)."""
        self.message = redact(self.message, secrets)
        self.args = tuple(redact(str(a), secrets) for a in self.args)
        return self


class InsecureConfiguration(RemoteError):
    """Settings refused before connecting (e.g. Basic over plain HTTP, a malformed pin)."""

    kind = "insecure_configuration"


class OutsideManagementNetworks(RemoteError):
    """The host's address is not inside the customer's management networks: nothing was opened."""

    kind = "outside_management_networks"


class AuthenticationFailed(RemoteError):
    """The host rejected the credentials (HTTP 401)."""

    kind = "authentication_failed"


class NotElevated(RemoteError):
    """Authenticated, but without administrative rights (access denied, or UAC remote filtering)."""

    kind = "not_elevated"


class Unreachable(RemoteError):
    """No connection: refused, name not resolved, no route, or no answer to the connect."""

    kind = "unreachable"


class RemoteTimeout(RemoteError):
    """Connected, but the host did not answer in time (a request, or the whole run)."""

    kind = "timeout"


class TlsVerificationFailed(RemoteError):
    """The server's certificate is not trusted, or does not match the pinned fingerprint."""

    kind = "tls_verification_failed"


class ProtocolError(RemoteError):
    """The host answered something the WinRM client or the agent contract does not accept."""

    kind = "protocol_error"


class OutputTooLarge(ProtocolError):
    """The command printed more than the cap; the rest was not read."""

    kind = "output_too_large"


class AgentFailed(RemoteError):
    """The agent ran but failed as a whole; `code` is its structured error code, if any."""

    kind = "agent_error"

    def __init__(self, message: str, *, host: str = "", code: str = "agent_error") -> None:
        super().__init__(message, host=host)
        self.code = code


class UnsupportedPowerShell(AgentFailed):
    """The host runs PowerShell older than 5.1 (e.g. Server 2008 R2 without WMF 5.1)."""

    kind = "unsupported_powershell"
