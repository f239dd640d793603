"""Local accounts (the SAM): users, local groups, name<->SID lookup like LookupAccountName.

Writes mirror ADSI WinNT:// (Create('User'), SetPassword, SetInfo, group.Add) and need an
administrator token (an enabled Administrators SID); a UAC-filtered token gets access denied.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from winlab.windows import sids
from winlab.windows.context import HostContext
from winlab.windows.errors import (
    ERROR_ACCESS_DENIED,
    ERROR_ALIAS_EXISTS,
    ERROR_INVALID_MEMBER,
    ERROR_MEMBER_IN_ALIAS,
    ERROR_MEMBER_NOT_IN_ALIAS,
    ERROR_NO_SUCH_ALIAS,
    ERROR_NONE_MAPPED,
    NERR_PASSWORD_TOO_SHORT,
    NERR_USER_EXISTS,
    NERR_USER_NOT_FOUND,
    Win32Error,
)
from winlab.windows.sids import AccountName, SidType
from winlab.windows.tokens import Token

# ADS_USER_FLAG_ENUM values.
UF_SCRIPT = 0x1
UF_ACCOUNTDISABLE = 0x2
UF_PASSWD_CANT_CHANGE = 0x40
UF_NORMAL_ACCOUNT = 0x200
UF_DONT_EXPIRE_PASSWD = 0x10000
ADS_UF_DONT_EXPIRE_PASSWD = UF_DONT_EXPIRE_PASSWD
ADS_UF_PASSWD_CANT_CHANGE = UF_PASSWD_CANT_CHANGE

BUILTIN_ALIASES: dict[str, tuple[str, str]] = {
    sids.ADMINISTRATORS: ("Administrators", "Administrators have complete and unrestricted access to the computer"),
    sids.USERS: ("Users", "Users are prevented from making accidental or intentional system-wide changes"),
    sids.GUESTS: ("Guests", "Guests have the same access as members of the Users group by default"),
    sids.POWER_USERS: ("Power Users", "Power Users are included for backwards compatibility"),
    sids.BACKUP_OPERATORS: ("Backup Operators", "Backup Operators can override security restrictions"),
    sids.REMOTE_DESKTOP_USERS: ("Remote Desktop Users", "Members in this group are granted the right to logon"),
    sids.PERFORMANCE_LOG_USERS: ("Performance Log Users", "Members of this group may schedule logging"),
    sids.IIS_IUSRS: ("IIS_IUSRS", "Built-in group used by Internet Information Services."),
    sids.REMOTE_MANAGEMENT_USERS: ("Remote Management Users", "Members of this group can access WMI resources"),
}


def _hash(password: str) -> str:
    return hashlib.sha256(password.encode("utf-8")).hexdigest()


@dataclass
class LocalUser:
    """A SAM user. ``flags`` is the ADSI UserFlags value; disabled = UF_ACCOUNTDISABLE set."""

    name: str
    sid: str
    password: str
    flags: int = UF_SCRIPT | UF_NORMAL_ACCOUNT
    full_name: str = ""
    description: str = ""

    @property
    def enabled(self) -> bool:
        return not self.flags & UF_ACCOUNTDISABLE

    @property
    def rid(self) -> int:
        return sids.rid_of(self.sid)


@dataclass
class LocalGroup:
    """A local group (alias), builtin (S-1-5-32-x) or of the machine domain. Members are SIDs, in order."""

    name: str
    sid: str
    description: str = ""
    members: list[str] = field(default_factory=list)

    @property
    def builtin(self) -> bool:
        return self.sid.startswith("S-1-5-32-")


@dataclass
class DomainAccount:
    """An account of the AD domain a member server trusts (only what lookups and logons need)."""

    name: str
    sid: str
    sid_type: SidType = SidType.USER
    password: str = ""
    groups: tuple[str, ...] = ()


@dataclass
class DomainInfo:
    """Membership of an AD domain: NetBIOS name, domain SID, known accounts."""

    name: str
    sid: str
    accounts: dict[str, DomainAccount] = field(default_factory=dict)

    def add(
        self, name: str, rid: int, *, sid_type: SidType = SidType.USER, password: str = "", groups: tuple[str, ...] = ()
    ) -> DomainAccount:
        account = DomainAccount(name, f"{self.sid}-{rid}", sid_type, password, groups)
        self.accounts[name.lower()] = account
        return account


@dataclass
class PasswordPolicy:
    """Local password policy (secedit SECURITYPOLICY): minimum length and complexity."""

    minimum_length: int = 0
    complexity: bool = True

    def accepts(self, password: str, user_name: str) -> bool:
        if len(password) < self.minimum_length:
            return False
        if not self.complexity:
            return True
        classes = sum(
            (
                any(c.islower() for c in password),
                any(c.isupper() for c in password),
                any(c.isdigit() for c in password),
                any(not c.isalnum() for c in password),
            )
        )
        return classes >= 3 and (len(user_name) < 3 or user_name.lower() not in password.lower())


class Accounts:
    """The local SAM of one machine plus the lookups LookupAccountName/LookupAccountSid do."""

    def __init__(self, ctx: HostContext, machine_name: str, machine_sid: str) -> None:
        self.ctx = ctx
        self.machine_name = machine_name.upper()
        self.machine_sid = machine_sid
        self.users: dict[str, LocalUser] = {}
        self.groups: dict[str, LocalGroup] = {}
        self.domain: DomainInfo | None = None
        self.policy = PasswordPolicy()
        self.service_names: set[str] = set()
        self._next_rid = 1000
        for sid, (name, description) in BUILTIN_ALIASES.items():
            self.groups[name.lower()] = LocalGroup(name, sid, description)
        self.groups["users"].members += [sids.AUTHENTICATED_USERS, sids.INTERACTIVE]
        # "None" is the machine domain's only global group; every local user has it as primary group.
        self.none_group_sid = f"{machine_sid}-513"

    # --- helpers ------------------------------------------------------------------------
    def _require_admin(self, token: Token | None) -> None:
        if token is not None and not token.is_admin:
            raise Win32Error(ERROR_ACCESS_DENIED)

    def _allocate_rid(self) -> int:
        rid = self._next_rid
        self._next_rid += 1
        return rid

    def user(self, name: str) -> LocalUser:
        user = self.users.get(name.lower())
        if user is None:
            raise Win32Error(NERR_USER_NOT_FOUND, name)
        return user

    def group(self, name: str) -> LocalGroup:
        group = self.groups.get(name.lower())
        if group is None:
            raise Win32Error(ERROR_NO_SUCH_ALIAS, name)
        return group

    def user_by_sid(self, sid: str) -> LocalUser | None:
        return next((u for u in self.users.values() if u.sid == sid), None)

    def group_by_sid(self, sid: str) -> LocalGroup | None:
        return next((g for g in self.groups.values() if g.sid == sid), None)

    # --- lookups ------------------------------------------------------------------------
    def lookup_name(self, name: str) -> AccountName:
        """LookupAccountName: HOST\\x, .\\x (as the service manager accepts it), BUILTIN\\x, NT AUTHORITY\\x, x."""
        raw = name.strip()
        if "\\" in raw:
            domain, _, short = raw.partition("\\")
        else:
            domain, short = "", raw
        d = domain.upper()
        low = short.lower()
        if not domain or d in ("NT AUTHORITY", "NT SERVICE", "APPLICATION PACKAGE AUTHORITY"):
            for sid, (wk_domain, wk_name, wk_type) in sids.WELL_KNOWN.items():
                if wk_name.lower() == low and (not domain or wk_domain.upper() == d):
                    return AccountName(sid, wk_domain, wk_name, wk_type)
            if d == "NT SERVICE" and low in {s.lower() for s in self.service_names}:
                canonical = next(s for s in self.service_names if s.lower() == low)
                return AccountName(sids.service_sid(canonical), "NT SERVICE", canonical, SidType.WELL_KNOWN_GROUP)
        if not domain or d == "BUILTIN":
            group = self.groups.get(low)
            if group is not None and group.builtin:
                return AccountName(group.sid, "BUILTIN", group.name, SidType.ALIAS)
        if not domain or d in (".", self.machine_name):
            user = self.users.get(low)
            if user is not None:
                return AccountName(user.sid, self.machine_name, user.name, SidType.USER)
            group = self.groups.get(low)
            if group is not None and not group.builtin:
                return AccountName(group.sid, self.machine_name, group.name, SidType.ALIAS)
            if low == "none":
                return AccountName(self.none_group_sid, self.machine_name, "None", SidType.GROUP)
        if self.domain is not None and (not domain or d == self.domain.name.upper()):
            account = self.domain.accounts.get(low)
            if account is not None:
                return AccountName(account.sid, self.domain.name, account.name, account.sid_type)
        raise Win32Error(ERROR_NONE_MAPPED, name)

    def lookup_sid(self, sid: str) -> AccountName:
        """LookupAccountSid; orphaned SIDs raise ERROR_NONE_MAPPED."""
        if sid in sids.WELL_KNOWN:
            d, n, t = sids.WELL_KNOWN[sid]
            return AccountName(sid, d, n, t)
        for s in self.service_names:
            if sids.service_sid(s) == sid:
                return AccountName(sid, "NT SERVICE", s, SidType.WELL_KNOWN_GROUP)
        group = self.group_by_sid(sid)
        if group is not None:
            return AccountName(sid, "BUILTIN" if group.builtin else self.machine_name, group.name, SidType.ALIAS)
        user = self.user_by_sid(sid)
        if user is not None:
            return AccountName(sid, self.machine_name, user.name, SidType.USER)
        if sid == self.none_group_sid:
            return AccountName(sid, self.machine_name, "None", SidType.GROUP)
        if self.domain is not None:
            for account in self.domain.accounts.values():
                if account.sid == sid:
                    return AccountName(sid, self.domain.name, account.name, account.sid_type)
        raise Win32Error(ERROR_NONE_MAPPED, sid)

    def to_sid(self, name_or_sid: str) -> str:
        return name_or_sid.upper() if sids.is_sid(name_or_sid) else self.lookup_name(name_or_sid).sid

    # --- users --------------------------------------------------------------------------
    def create_user(
        self,
        name: str,
        password: str,
        token: Token | None = None,
        *,
        flags: int = UF_SCRIPT | UF_NORMAL_ACCOUNT,
        description: str = "",
        full_name: str = "",
        rid: int | None = None,
    ) -> LocalUser:
        """ADSI Create('User') + SetPassword + SetInfo (NetUserAdd)."""
        self._require_admin(token)
        if name.lower() in self.users or name.lower() in self.groups:
            raise Win32Error(NERR_USER_EXISTS, name)
        if not self.policy.accepts(password, name):
            raise Win32Error(NERR_PASSWORD_TOO_SHORT, name)
        sid = f"{self.machine_sid}-{rid if rid is not None else self._allocate_rid()}"
        user = LocalUser(name, sid, password, flags | UF_NORMAL_ACCOUNT, full_name, description)
        self.users[name.lower()] = user
        self.ctx.mutated("accounts.create_user", name)
        return user

    def add_builtin_user(self, name: str, rid: int, *, flags: int, password: str = "") -> LocalUser:
        """Build-time: a built-in account (Guest, DefaultAccount, ...) with a fixed RID and no policy check."""
        user = LocalUser(name, f"{self.machine_sid}-{rid}", password, flags | UF_NORMAL_ACCOUNT)
        self.users[name.lower()] = user
        return user

    def delete_user(self, name: str, token: Token | None = None) -> None:
        self._require_admin(token)
        user = self.user(name)
        del self.users[name.lower()]
        for group in self.groups.values():
            if user.sid in group.members:
                group.members.remove(user.sid)
        self.ctx.mutated("accounts.delete_user", name)

    def set_password(self, name: str, password: str, token: Token | None = None) -> None:
        """SetPassword: always a change (Windows cannot tell a same-password reset from a new one)."""
        self._require_admin(token)
        user = self.user(name)
        if not self.policy.accepts(password, name):
            raise Win32Error(NERR_PASSWORD_TOO_SHORT, name)
        user.password = password
        self.ctx.mutated("accounts.set_password", name)

    def set_flags(self, name: str, flags: int, token: Token | None = None) -> bool:
        """UserFlags = flags; SetInfo. Returns False (no mutation) when unchanged."""
        self._require_admin(token)
        user = self.user(name)
        flags |= UF_NORMAL_ACCOUNT
        if user.flags == flags:
            return False
        user.flags = flags
        self.ctx.mutated("accounts.set_flags", name)
        return True

    def check_password(self, name: str, password: str) -> bool:
        user = self.users.get(name.lower())
        return user is not None and user.password == password

    def password_hash(self, name: str) -> str:
        return _hash(self.user(name).password)

    # --- groups -------------------------------------------------------------------------
    def create_group(self, name: str, token: Token | None = None, *, description: str = "") -> LocalGroup:
        self._require_admin(token)
        if name.lower() in self.groups:
            raise Win32Error(ERROR_ALIAS_EXISTS, name)
        if name.lower() in self.users:
            raise Win32Error(NERR_USER_EXISTS, name)
        group = LocalGroup(name, f"{self.machine_sid}-{self._allocate_rid()}", description)
        self.groups[name.lower()] = group
        self.ctx.mutated("accounts.create_group", name)
        return group

    def delete_group(self, name: str, token: Token | None = None) -> None:
        self._require_admin(token)
        group = self.group(name)
        if group.builtin:
            raise Win32Error(ERROR_ACCESS_DENIED, name)
        del self.groups[name.lower()]
        self.ctx.mutated("accounts.delete_group", name)

    def add_member(self, group_name: str, member_sid: str, token: Token | None = None) -> None:
        """group.Add(WinNT://<SID>): ERROR_MEMBER_IN_ALIAS when already a member; local groups cannot nest."""
        self._require_admin(token)
        group = self.group(group_name)
        if member_sid in group.members:
            raise Win32Error(ERROR_MEMBER_IN_ALIAS, group_name)
        if self.group_by_sid(member_sid) is not None:
            raise Win32Error(ERROR_INVALID_MEMBER, group_name)
        group.members.append(member_sid)
        self.ctx.mutated("accounts.add_member", f"{group_name}:{member_sid}")

    def remove_member(self, group_name: str, member_sid: str, token: Token | None = None) -> None:
        self._require_admin(token)
        group = self.group(group_name)
        if member_sid not in group.members:
            raise Win32Error(ERROR_MEMBER_NOT_IN_ALIAS, group_name)
        group.members.remove(member_sid)
        self.ctx.mutated("accounts.remove_member", f"{group_name}:{member_sid}")

    def aliases_of(self, token_sids: set[str]) -> set[str]:
        """Local groups (aliases) any of ``token_sids`` belongs to (one level: aliases do not nest)."""
        return {g.sid for g in self.groups.values() if token_sids.intersection(g.members)}
