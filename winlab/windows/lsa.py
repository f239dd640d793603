"""LSA user rights and privileges per SID (LsaAddAccountRights / Remove / Enumerate semantics)."""

from __future__ import annotations

from collections.abc import Iterable

from winlab.windows import sids
from winlab.windows.context import HostContext
from winlab.windows.errors import (
    STATUS_ACCESS_DENIED,
    STATUS_NO_MORE_ENTRIES,
    STATUS_NO_SUCH_PRIVILEGE,
    STATUS_OBJECT_NAME_NOT_FOUND,
    NtStatusError,
)
from winlab.windows.tokens import Token

PRIVILEGES = frozenset(
    {
        "SeAssignPrimaryTokenPrivilege",
        "SeAuditPrivilege",
        "SeBackupPrivilege",
        "SeChangeNotifyPrivilege",
        "SeCreateGlobalPrivilege",
        "SeCreatePagefilePrivilege",
        "SeCreatePermanentPrivilege",
        "SeCreateSymbolicLinkPrivilege",
        "SeCreateTokenPrivilege",
        "SeDebugPrivilege",
        "SeDelegateSessionUserImpersonatePrivilege",
        "SeEnableDelegationPrivilege",
        "SeImpersonatePrivilege",
        "SeIncreaseBasePriorityPrivilege",
        "SeIncreaseQuotaPrivilege",
        "SeIncreaseWorkingSetPrivilege",
        "SeLoadDriverPrivilege",
        "SeLockMemoryPrivilege",
        "SeMachineAccountPrivilege",
        "SeManageVolumePrivilege",
        "SeProfileSingleProcessPrivilege",
        "SeRelabelPrivilege",
        "SeRemoteShutdownPrivilege",
        "SeRestorePrivilege",
        "SeSecurityPrivilege",
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
LOGON_RIGHTS = frozenset(
    {
        "SeBatchLogonRight",
        "SeDenyBatchLogonRight",
        "SeDenyInteractiveLogonRight",
        "SeDenyNetworkLogonRight",
        "SeDenyRemoteInteractiveLogonRight",
        "SeDenyServiceLogonRight",
        "SeInteractiveLogonRight",
        "SeNetworkLogonRight",
        "SeRemoteInteractiveLogonRight",
        "SeServiceLogonRight",
    }
)
ALL_RIGHTS = PRIVILEGES | LOGON_RIGHTS

_BA, _BU, _BO, _WD = sids.ADMINISTRATORS, sids.USERS, sids.BACKUP_OPERATORS, sids.EVERYONE
_LS, _NS, _SVC = sids.LOCAL_SERVICE, sids.NETWORK_SERVICE, sids.SERVICE

# Default assignments of a Windows Server member server / standalone server.
DEFAULT_RIGHTS: dict[str, tuple[str, ...]] = {
    "SeNetworkLogonRight": (_WD, _BA, _BU, _BO),
    "SeInteractiveLogonRight": (_BA, _BU, _BO),
    "SeRemoteInteractiveLogonRight": (_BA, sids.REMOTE_DESKTOP_USERS),
    "SeBatchLogonRight": (_BA, _BO, sids.PERFORMANCE_LOG_USERS),
    "SeServiceLogonRight": (sids.ALL_SERVICES,),
    "SeDenyNetworkLogonRight": (),
    "SeDenyServiceLogonRight": (),
    "SeBackupPrivilege": (_BA, _BO),
    "SeRestorePrivilege": (_BA, _BO),
    "SeTakeOwnershipPrivilege": (_BA,),
    "SeSecurityPrivilege": (_BA,),
    "SeDebugPrivilege": (_BA,),
    "SeSystemtimePrivilege": (_LS, _BA),
    "SeTimeZonePrivilege": (_LS, _BA),
    "SeShutdownPrivilege": (_BA, _BO),
    "SeRemoteShutdownPrivilege": (_BA,),
    "SeIncreaseQuotaPrivilege": (_LS, _NS, _BA),
    "SeAssignPrimaryTokenPrivilege": (_LS, _NS),
    "SeAuditPrivilege": (_LS, _NS),
    "SeChangeNotifyPrivilege": (_WD, _LS, _NS, _BA, _BU, _BO),
    "SeImpersonatePrivilege": (_LS, _NS, _BA, _SVC),
    "SeCreateGlobalPrivilege": (_LS, _NS, _BA, _SVC),
    "SeIncreaseWorkingSetPrivilege": (_BU,),
    "SeSystemProfilePrivilege": (_BA,),
    "SeProfileSingleProcessPrivilege": (_BA,),
    "SeIncreaseBasePriorityPrivilege": (_BA,),
    "SeLoadDriverPrivilege": (_BA,),
    "SeCreatePagefilePrivilege": (_BA,),
    "SeUndockPrivilege": (_BA,),
    "SeManageVolumePrivilege": (_BA,),
    "SeSystemEnvironmentPrivilege": (_BA,),
    "SeCreateSymbolicLinkPrivilege": (_BA,),
    "SeTcbPrivilege": (),
    "SeCreateTokenPrivilege": (),
}


class Lsa:
    """Who holds which right. Changes are per SID and additive, like the LSA API."""

    def __init__(self, ctx: HostContext) -> None:
        self.ctx = ctx
        self._holders: dict[str, list[str]] = {right: list(h) for right, h in DEFAULT_RIGHTS.items()}

    @staticmethod
    def _open_policy(token: Token | None) -> None:
        """LsaOpenPolicy(POLICY_ALL_ACCESS) needs an administrator."""
        if token is not None and not token.is_admin:
            raise NtStatusError(STATUS_ACCESS_DENIED)

    @staticmethod
    def _validate(rights: Iterable[str]) -> list[str]:
        out = list(rights)
        for right in out:
            if right not in ALL_RIGHTS:
                raise NtStatusError(STATUS_NO_SUCH_PRIVILEGE, right)
        return out

    def add_account_rights(self, sid: str, rights: Iterable[str], token: Token | None = None) -> list[str]:
        """LsaAddAccountRights; returns the rights that were actually added (none -> no mutation)."""
        self._open_policy(token)
        added = []
        for right in self._validate(rights):
            holders = self._holders.setdefault(right, [])
            if sid not in holders:
                holders.append(sid)
                added.append(right)
        if added:
            self.ctx.mutated("lsa.add_rights", f"{sid}:{','.join(added)}")
        return added

    def remove_account_rights(
        self, sid: str, rights: Iterable[str], token: Token | None = None, *, all_rights: bool = False
    ) -> list[str]:
        """LsaRemoveAccountRights; returns the rights that were actually removed."""
        self._open_policy(token)
        wanted = list(ALL_RIGHTS) if all_rights else self._validate(rights)
        removed = []
        for right in sorted(wanted):
            holders = self._holders.get(right, [])
            if sid in holders:
                holders.remove(sid)
                removed.append(right)
        if removed:
            self.ctx.mutated("lsa.remove_rights", f"{sid}:{','.join(removed)}")
        return removed

    def enumerate_account_rights(self, sid: str, token: Token | None = None) -> list[str]:
        """LsaEnumerateAccountRights: direct assignments only; none -> STATUS_OBJECT_NAME_NOT_FOUND."""
        self._open_policy(token)
        rights = sorted(r for r, holders in self._holders.items() if sid in holders)
        if not rights:
            raise NtStatusError(STATUS_OBJECT_NAME_NOT_FOUND, sid)
        return rights

    def enumerate_accounts_with_right(self, right: str, token: Token | None = None) -> list[str]:
        """LsaEnumerateAccountsWithUserRight; an empty list is STATUS_NO_MORE_ENTRIES."""
        self._open_policy(token)
        self._validate([right])
        holders = list(self._holders.get(right, []))
        if not holders:
            raise NtStatusError(STATUS_NO_MORE_ENTRIES, right)
        return holders

    # --- internal reads/writes (no token; used by logon, services and Group Policy) -----------
    def holders(self, right: str) -> list[str]:
        return list(self._holders.get(right, []))

    def rights_of(self, sid_set: Iterable[str]) -> set[str]:
        wanted = set(sid_set)
        return {right for right, holders in self._holders.items() if wanted.intersection(holders)}

    def set_holders(self, right: str, holders: Iterable[str], *, source: str = "lsa.set_holders") -> bool:
        """Replace a right's holder list (what a GPO does); False when nothing changed."""
        self._validate([right])
        new = list(dict.fromkeys(holders))
        if set(self._holders.get(right, [])) == set(new):
            return False
        self._holders[right] = new
        self.ctx.mutated(source, right)
        return True

    def state(self) -> dict[str, list[str]]:
        return {right: sorted(h) for right, h in sorted(self._holders.items()) if h}
