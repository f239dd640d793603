"""remote/: the only package that imports pywinrm (a test enforces it).

Public API: `HostConnection` (+ `Scheme`, `AuthMethod`, `TlsVerify`), `run_agent(conn, request)`
and the `RemoteError` family. No Django: callers pass plain dataclasses.
"""

from remote.connection import AuthMethod, HostConnection, Scheme, TlsVerify
from remote.errors import (
    AgentFailed,
    AuthenticationFailed,
    InsecureConfiguration,
    NotElevated,
    OutputTooLarge,
    OutsideManagementNetworks,
    ProtocolError,
    RemoteError,
    RemoteTimeout,
    TlsVerificationFailed,
    Unreachable,
    UnsupportedPowerShell,
)
from remote.transport import CommandOutput, run_agent

__all__ = [
    "AgentFailed",
    "AuthMethod",
    "AuthenticationFailed",
    "CommandOutput",
    "HostConnection",
    "InsecureConfiguration",
    "NotElevated",
    "OutputTooLarge",
    "OutsideManagementNetworks",
    "ProtocolError",
    "RemoteError",
    "RemoteTimeout",
    "Scheme",
    "TlsVerificationFailed",
    "TlsVerify",
    "Unreachable",
    "UnsupportedPowerShell",
    "run_agent",
]
