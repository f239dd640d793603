"""Access tokens: who a caller is (user + groups), and privileges held vs enabled.

A WinRM network logon gets privileges *disabled*; the caller must enable them for an
operation (like Ansible's PrivilegeEnabler). A UAC-filtered token keeps Administrators only
as a deny-only SID and loses most privileges.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum

from winlab.windows import sids
from winlab.windows.errors import ERROR_NOT_ALL_ASSIGNED, Win32Error


class LogonType(StrEnum):
    """How the token was obtained; it decides the logon SID and which logon right is needed."""

    INTERACTIVE = "interactive"
    NETWORK = "network"
    BATCH = "batch"
    SERVICE = "service"
    SYSTEM = "system"


LOGON_TYPE_SID: dict[LogonType, str] = {
    LogonType.INTERACTIVE: sids.INTERACTIVE,
    LogonType.NETWORK: sids.NETWORK,
    LogonType.BATCH: sids.BATCH,
    LogonType.SERVICE: sids.SERVICE,
}

# Privileges enabled by default in a fresh token (what whoami /priv shows as Enabled).
DEFAULT_ENABLED = frozenset({"SeChangeNotifyPrivilege", "SeImpersonatePrivilege", "SeCreateGlobalPrivilege"})

# A UAC-filtered (or standard user) token keeps only these privileges.
FILTERED_TOKEN_PRIVILEGES = frozenset(
    {
        "SeChangeNotifyPrivilege",
        "SeShutdownPrivilege",
        "SeUndockPrivilege",
        "SeIncreaseWorkingSetPrivilege",
        "SeTimeZonePrivilege",
    }
)


@dataclass
class Token:
    """A logon token. ``groups`` are enabled group SIDs; ``deny_only`` match deny ACEs only."""

    user: str
    account: str
    groups: frozenset[str]
    privileges_held: frozenset[str]
    logon_type: LogonType
    deny_only: frozenset[str] = frozenset()
    elevated: bool = False
    privileges_enabled: set[str] = field(default_factory=set)
    local_account: bool = True

    @property
    def sids(self) -> frozenset[str]:
        """The SIDs that allow ACEs can match: the user and its enabled groups."""
        return self.groups | {self.user}

    @property
    def is_admin(self) -> bool:
        """True when Administrators is an *enabled* group (an elevated or unfiltered admin), or SYSTEM."""
        return sids.ADMINISTRATORS in self.groups or self.user == sids.LOCAL_SYSTEM

    def has_enabled(self, privilege: str) -> bool:
        return privilege in self.privileges_enabled and privilege in self.privileges_held

    def enable(self, *privileges: str) -> None:
        """AdjustTokenPrivileges: enables what is held; raises ERROR_NOT_ALL_ASSIGNED for any not held."""
        missing = [p for p in privileges if p not in self.privileges_held]
        self.privileges_enabled.update(p for p in privileges if p in self.privileges_held)
        if missing:
            raise Win32Error(ERROR_NOT_ALL_ASSIGNED, ", ".join(missing))

    def disable(self, *privileges: str) -> None:
        self.privileges_enabled.difference_update(privileges)

    @contextmanager
    def privileges(self, *privileges: str) -> Iterator[None]:
        """Enable privileges for a block and restore the previous state afterwards (PrivilegeEnabler)."""
        before = set(self.privileges_enabled)
        try:
            self.enable(*privileges)
            yield
        finally:
            self.privileges_enabled = before
