"""Logons: check password, account state and logon right, then build the token (with UAC filtering).

UAC remote restrictions: a network logon of a *local* account that is in Administrators but is
not the built-in Administrator (RID 500) gets a filtered token unless
``HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Policies\\System\\LocalAccountTokenFilterPolicy``
is 1 (or EnableLUA is 0). Domain accounts are never filtered remotely.
"""

from __future__ import annotations

from winlab.windows import sids
from winlab.windows.accounts import Accounts
from winlab.windows.errors import (
    ERROR_ACCOUNT_DISABLED,
    ERROR_LOGON_FAILURE,
    ERROR_LOGON_TYPE_NOT_GRANTED,
    Win32Error,
)
from winlab.windows.lsa import PRIVILEGES, Lsa
from winlab.windows.registry import Registry
from winlab.windows.tokens import DEFAULT_ENABLED, FILTERED_TOKEN_PRIVILEGES, LOGON_TYPE_SID, LogonType, Token

UAC_POLICY_KEY = "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Policies\\System"

LOGON_RIGHT: dict[LogonType, tuple[str, str]] = {
    LogonType.INTERACTIVE: ("SeInteractiveLogonRight", "SeDenyInteractiveLogonRight"),
    LogonType.NETWORK: ("SeNetworkLogonRight", "SeDenyNetworkLogonRight"),
    LogonType.BATCH: ("SeBatchLogonRight", "SeDenyBatchLogonRight"),
    LogonType.SERVICE: ("SeServiceLogonRight", "SeDenyServiceLogonRight"),
}


class Authority:
    """LogonUser for this machine, reading the SAM, the LSA and the UAC policy from the registry."""

    def __init__(self, accounts: Accounts, lsa: Lsa, registry: Registry) -> None:
        self.accounts = accounts
        self.lsa = lsa
        self.registry = registry

    # --- UAC ----------------------------------------------------------------------------
    def _uac_value(self, name: str, default: int) -> int:
        if not self.registry.exists(UAC_POLICY_KEY):
            return default
        value = self.registry.open(UAC_POLICY_KEY).get(name, default)
        return value if isinstance(value, int) else default

    def remote_uac_filtering(self) -> bool:
        """True when local admins (other than RID 500) get filtered tokens over the network."""
        return self._uac_value("EnableLUA", 1) == 1 and self._uac_value("LocalAccountTokenFilterPolicy", 0) != 1

    # --- tokens -------------------------------------------------------------------------
    def _token(
        self,
        user_sid: str,
        account: str,
        extra_groups: set[str],
        logon_type: LogonType,
        *,
        local: bool,
        filtered: bool,
    ) -> Token:
        base = {user_sid, sids.EVERYONE, sids.AUTHENTICATED_USERS} | extra_groups
        if logon_type in LOGON_TYPE_SID:
            base.add(LOGON_TYPE_SID[logon_type])
        if logon_type in (LogonType.INTERACTIVE, LogonType.SERVICE, LogonType.BATCH):
            base.add(sids.LOCAL)
        groups = (base | self.accounts.aliases_of(base)) - {user_sid}
        held = frozenset(self.lsa.rights_of(groups | {user_sid}) & PRIVILEGES)
        deny_only: frozenset[str] = frozenset()
        admin = sids.ADMINISTRATORS in groups
        if filtered and admin:
            groups = groups - {sids.ADMINISTRATORS}
            deny_only = frozenset({sids.ADMINISTRATORS})
            held = held & FILTERED_TOKEN_PRIVILEGES
        return Token(
            user=user_sid,
            account=account,
            groups=frozenset(groups),
            privileges_held=held,
            logon_type=logon_type,
            deny_only=deny_only,
            elevated=admin and not filtered,
            privileges_enabled=set(held & DEFAULT_ENABLED),
            local_account=local,
        )

    def check_logon_right(self, token_sids: set[str], logon_type: LogonType) -> bool:
        right, deny_right = LOGON_RIGHT[logon_type]
        holders = set(self.lsa.holders(right))
        denied = set(self.lsa.holders(deny_right))
        return bool(token_sids & holders) and not token_sids & denied

    def logon(
        self, username: str, password: str, logon_type: LogonType = LogonType.NETWORK, *, elevate: bool = False
    ) -> Token:
        """LogonUser: ERROR_LOGON_FAILURE for an unknown user or bad password, ERROR_ACCOUNT_DISABLED,
        ERROR_LOGON_TYPE_NOT_GRANTED when no SID of the token holds the logon right (or one is denied it).

        ``elevate`` asks for the full token of an interactive admin ("Run as administrator").
        """
        try:
            name = self.accounts.lookup_name(username)
        except Win32Error:
            raise Win32Error(ERROR_LOGON_FAILURE, username) from None
        domain = self.accounts.domain
        if name.domain.upper() == self.accounts.machine_name:
            user = self.accounts.user_by_sid(name.sid)
            if user is None or user.password != password:
                raise Win32Error(ERROR_LOGON_FAILURE, username)
            if not user.enabled:
                raise Win32Error(ERROR_ACCOUNT_DISABLED, username)
            extra = {self.accounts.none_group_sid}
            local = True
            builtin_admin = user.rid == 500
        elif domain is not None and name.domain.upper() == domain.name.upper():
            account = domain.accounts[name.name.lower()]
            if account.sid_type is not sids.SidType.USER or account.password != password:
                raise Win32Error(ERROR_LOGON_FAILURE, username)
            extra = set(account.groups) | {f"{domain.sid}-513"}
            local = False
            builtin_admin = False
        else:
            raise Win32Error(ERROR_LOGON_FAILURE, username)
        if logon_type is LogonType.NETWORK:
            filtered = local and not builtin_admin and self.remote_uac_filtering()
        elif logon_type is LogonType.INTERACTIVE:
            filtered = local and not builtin_admin and not elevate and self._uac_value("EnableLUA", 1) == 1
        else:
            filtered = False
        token = self._token(name.sid, name.qualified, extra, logon_type, local=local, filtered=filtered)
        if not self.check_logon_right(set(token.sids) | set(token.deny_only), logon_type):
            raise Win32Error(ERROR_LOGON_TYPE_NOT_GRANTED, username)
        return token

    def system_token(self) -> Token:
        """LocalSystem: Administrators enabled, every privilege held."""
        groups = frozenset({sids.ADMINISTRATORS, sids.EVERYONE, sids.AUTHENTICATED_USERS, sids.LOCAL})
        return Token(
            user=sids.LOCAL_SYSTEM,
            account="NT AUTHORITY\\SYSTEM",
            groups=groups,
            privileges_held=PRIVILEGES,
            logon_type=LogonType.SYSTEM,
            elevated=True,
            privileges_enabled=set(DEFAULT_ENABLED | {"SeTcbPrivilege", "SeAuditPrivilege"}),
            local_account=True,
        )

    def builtin_service_token(self, sid: str) -> Token:
        """NETWORK SERVICE or LOCAL SERVICE, as the service manager logs them on."""
        name = self.accounts.lookup_sid(sid).qualified
        return self._token(sid, name, {sids.SERVICE}, LogonType.SERVICE, local=True, filtered=False)

    def virtual_account_token(self, start_name: str) -> Token:
        """NT SERVICE\\<name>: the service SID as user; NT SERVICE\\ALL SERVICES holds its logon right."""
        account = self.accounts.lookup_name(start_name)
        token = self._token(
            account.sid,
            account.qualified,
            {sids.SERVICE, sids.ALL_SERVICES},
            LogonType.SERVICE,
            local=True,
            filtered=False,
        )
        if not self.check_logon_right(set(token.sids), LogonType.SERVICE):
            raise Win32Error(ERROR_LOGON_TYPE_NOT_GRANTED, start_name)
        return token
