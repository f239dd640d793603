"""The small host descriptor a fleet is started from."""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field


class CbtMode(enum.Enum):
    """WinRM's `CbtHardeningLevel` for NTLM over HTTPS.

    RELAXED (Windows' default) checks channel bindings when the client sends them and accepts clients
    that send none; STRICT refuses clients that send none (or all zeros).
    """

    RELAXED = "relaxed"
    STRICT = "strict"


@dataclass(frozen=True)
class HostSpec:
    """One simulated Windows host as the WinRM listener sees it.

    - `name`: the NetBIOS computer name (what `hostname` prints, the domain part of `HOST\\user`).
    - `address`: a loopback address; each host should get its own (127.77.x.y). If it cannot be bound
      the fleet falls back to 127.0.0.1 with an ephemeral port (read the real one from the server).
    - `http_port` / `https_port`: None = no such listener; 0 = any free port.
    - `accounts`: local accounts allowed to log on over WinRM, {username: password}.
    - `basic_enabled`: WinRM `Service/Auth/Basic`; Basic is only ever accepted over HTTPS.
    - `cbt`: channel-binding hardening for NTLM over HTTPS.
    - `denied_users`: accounts that authenticate but are not allowed to use WinRM (not in Administrators /
      Remote Management Users): their requests get the access-denied fault (code 5).
    - `os_version`: what `ver` reports, e.g. "10.0.20348" (Server 2022).
    """

    name: str
    address: str = "127.0.0.1"
    http_port: int | None = 5985
    https_port: int | None = None
    accounts: Mapping[str, str] = field(default_factory=dict)
    basic_enabled: bool = False
    cbt: CbtMode = CbtMode.RELAXED
    denied_users: frozenset[str] = frozenset()
    os_version: str = "10.0.20348"

    def __post_init__(self) -> None:
        if not ipaddress.ip_address(self.address).is_loopback:
            raise ValueError(f"winlab only listens on loopback addresses, not {self.address!r}")
        if not self.name or any(c in self.name for c in '\\/:*?"<>| '):
            raise ValueError(f"invalid computer name {self.name!r}")
        for user in self.accounts:
            if not user or any(c in user for c in '\\/:;|=,+*?<>[]"@\r\n'):
                raise ValueError(f"invalid account name {user!r}")


def loopback_address(index: int) -> str:
    """The conventional address of the index-th host of a fleet: 127.77.0.1, 127.77.0.2, … 127.77.1.1 …"""
    if not 0 <= index < 254 * 256:
        raise ValueError("host index out of range")
    return f"127.77.{index // 254}.{index % 254 + 1}"
