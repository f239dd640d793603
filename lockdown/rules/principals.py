"""Principals: well-known SIDs, and validation of SIDs, account names and right names.

Principals are compared by SID everywhere (DESIGN.md, "The agent contract"); names only
travel so the agent can resolve them and people can read reports.
"""

from __future__ import annotations

import re
from typing import Final

EVERYONE: Final = "S-1-1-0"
AUTHENTICATED_USERS: Final = "S-1-5-11"
LOCAL_SYSTEM: Final = "S-1-5-18"
BUILTIN_ADMINISTRATORS: Final = "S-1-5-32-544"
BUILTIN_USERS: Final = "S-1-5-32-545"
TRUSTED_INSTALLER: Final = "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464"

# Groups every interactive or service logon of a local account carries in its token, so a
# grant to any of them is a grant to IME_SYSTEM. SERVICE (S-1-5-6) is deliberately left
# out: the agent judges while the service may not be running as IME_SYSTEM yet.
IMPLICIT_GROUP_SIDS: Final[frozenset[str]] = frozenset({EVERYONE, AUTHENTICATED_USERS, BUILTIN_USERS})

# S-1-<authority>-<sub>..., at most 15 sub-authorities (SID_MAX_SUB_AUTHORITIES).
_SID_RE: Final = re.compile(r"^S-1-\d{1,13}(-\d{1,10}){1,15}$")

# Local SAM names: at most 20 characters, none of  " / \ [ ] : ; | = , + * ? < > @ and no
# control characters; we further refuse leading/trailing spaces and dots-only names.
_ACCOUNT_RE: Final = re.compile(r"^[A-Za-z0-9_$][A-Za-z0-9_ .$\-]{0,19}$")

# Windows computer (NetBIOS) names: 1-15 characters.
_COMPUTER_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-_]{0,14}$")

# Every logon right and privilege constant LSA accepts (winnt.h / ntsecapi.h). A right name
# outside this set is a typo: LsaAddAccountRights would fail with 0xC0000060 on the host.
KNOWN_RIGHTS: Final[frozenset[str]] = frozenset(
    {
        "SeAssignPrimaryTokenPrivilege",
        "SeAuditPrivilege",
        "SeBackupPrivilege",
        "SeBatchLogonRight",
        "SeChangeNotifyPrivilege",
        "SeCreateGlobalPrivilege",
        "SeCreatePagefilePrivilege",
        "SeCreatePermanentPrivilege",
        "SeCreateSymbolicLinkPrivilege",
        "SeCreateTokenPrivilege",
        "SeDebugPrivilege",
        "SeDelegateSessionUserImpersonatePrivilege",
        "SeDenyBatchLogonRight",
        "SeDenyInteractiveLogonRight",
        "SeDenyNetworkLogonRight",
        "SeDenyRemoteInteractiveLogonRight",
        "SeDenyServiceLogonRight",
        "SeEnableDelegationPrivilege",
        "SeImpersonatePrivilege",
        "SeIncreaseBasePriorityPrivilege",
        "SeIncreaseQuotaPrivilege",
        "SeIncreaseWorkingSetPrivilege",
        "SeInteractiveLogonRight",
        "SeLoadDriverPrivilege",
        "SeLockMemoryPrivilege",
        "SeMachineAccountPrivilege",
        "SeManageVolumePrivilege",
        "SeNetworkLogonRight",
        "SeProfileSingleProcessPrivilege",
        "SeRelabelPrivilege",
        "SeRemoteInteractiveLogonRight",
        "SeRemoteShutdownPrivilege",
        "SeRestorePrivilege",
        "SeSecurityPrivilege",
        "SeServiceLogonRight",
        "SeShutdownPrivilege",
        "SeSyncAgentPrivilege",
        "SeSystemEnvironmentPrivilege",
        "SeSystemProfilePrivilege",
        "SeSystemtimePrivilege",
        "SeTakeOwnershipPrivilege",
        "SeTcbPrivilege",
        "SeTimeZonePrivilege",
        "SeTrustedCredManAccessPrivilege",
        "SeUndockPrivilege",
    }
)


def is_valid_sid(value: str) -> bool:
    """True for a string SID such as S-1-5-21-1-2-3-1001."""
    return bool(_SID_RE.fullmatch(value))


def is_machine_account_sid(value: str) -> bool:
    """True for a SID issued by a machine or domain authority (S-1-5-21-...), i.e. a real
    local or domain account rather than a well-known or builtin one."""
    return is_valid_sid(value) and value.startswith("S-1-5-21-")


def is_valid_account_name(value: str) -> bool:
    """True for a bare local account or group name (no domain part)."""
    return bool(_ACCOUNT_RE.fullmatch(value)) and not value.endswith((" ", "."))


def is_valid_computer_name(value: str) -> bool:
    """True for a NetBIOS computer name."""
    return bool(_COMPUTER_RE.fullmatch(value))


def qualify(*, computer_name: str, account: str) -> str:
    """`COMPUTER\\account`: lookups of unqualified names may hit a domain account of the same
    name (LookupAccountName searches the local machine, then trusted domains)."""
    return f"{computer_name}\\{account}"
