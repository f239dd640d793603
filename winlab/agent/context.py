"""One agent invocation against one emulated host: the caller's token, the request, what changed.

The agent's PowerShell runs as the WinRM user; so does winlab's agent: every model call here
takes the authenticated user's token, so what Windows would refuse (a filtered token, a file
the token may not rewrite, an injected fault) is refused by the model, never by a flag.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final

from lockdown.rules.contract import AgentRequest, ChangeRecord, RotationReport
from lockdown.rules.observed import Ace, ObservedItem
from lockdown.rules.plan import PlanItem
from lockdown.rules.vocabulary import AceFlag, AceType, PreflightCheck, RuleAction, TargetKind
from winlab.agent.journal import write_journal
from winlab.windows import security as sec
from winlab.windows import sids
from winlab.windows.errors import ERROR_NONE_MAPPED, Win32Error
from winlab.windows.host import WindowsHost
from winlab.windows.services import ServiceState
from winlab.windows.sql import SqlError
from winlab.windows.tokens import Token

# What the file handlers enable around Get-Acl / Set-Acl, like Ansible's PrivilegeEnabler in win_acl:
# SeRestore writes the DACL of TrustedInstaller-owned System32 files without taking ownership.
FILE_PRIVILEGES: Final = ("SeBackupPrivilege", "SeRestorePrivilege", "SeTakeOwnershipPrivilege")
# Restart-Service waits for the service to report Stopped before starting it again (modelled time).
STOP_WAIT_SECONDS: Final = 1.0
# Start-Sleep before the health check; longer than the model's settling delay (services.SETTLE_SECONDS).
HEALTH_SETTLE_SECONDS: Final = 6.0

_FLAG_NAMES: Final = (
    (sec.AceFlags.OI, AceFlag.OBJECT_INHERIT),
    (sec.AceFlags.CI, AceFlag.CONTAINER_INHERIT),
    (sec.AceFlags.NP, AceFlag.NO_PROPAGATE),
    (sec.AceFlags.IO, AceFlag.INHERIT_ONLY),
)
SEARCH_CHECKS: Final = frozenset({PreflightCheck.WINDOWS_SEARCH_STOPPED, PreflightCheck.INDEXING_SERVICE_STOPPED})


class ItemError(Exception):
    """A failure of one plan item (the others continue): its text is what the item reports."""


def error_text(exc: BaseException) -> str:
    """What PowerShell's error record would carry: Windows' message and the Win32 / SQL number."""
    if isinstance(exc, Win32Error):
        where = f" ({exc.target})" if exc.target else ""
        return f"{exc.message} [Win32 error {exc.code}]{where}"
    if isinstance(exc, SqlError):
        return f"Msg {exc.number}: {exc.message}"
    return str(exc)


def ace_flags_to_model(flags: Sequence[AceFlag]) -> sec.AceFlags:
    out = sec.AceFlags.NONE
    for bit, name in _FLAG_NAMES:
        if name in flags:
            out |= bit
    return out


def observed_ace(ace: sec.Ace) -> Ace:
    """A model ACE as the agent reports it: raw mask, flags by name, the inherited bit apart."""
    return Ace(
        sid=ace.sid,
        type=AceType.DENY if ace.type is sec.AceType.DENY else AceType.ALLOW,
        mask=ace.mask,
        inherited=ace.inherited,
        flags=[name for bit, name in _FLAG_NAMES if ace.flags & bit],
    )


def dumps(data: object) -> str:
    """The JSON form of a non-ACL snapshot in a ChangeRecord (sorted, compact)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


@dataclass
class AgentRun:
    """State of one invocation: the token, the request, the changes in order, services to restart."""

    host: WindowsHost
    token: Token
    request: AgentRequest
    changes: list[ChangeRecord] = field(default_factory=list)
    restart: list[str] = field(default_factory=list)
    created_accounts: set[str] = field(default_factory=set)
    search_states: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    rotation: RotationReport | None = None
    _search_stopped: bool = False

    @property
    def service_password(self) -> str | None:
        secret = self.request.service_password
        return secret.get_secret_value() if secret is not None else None

    @property
    def previous_service_password(self) -> str | None:
        secret = self.request.previous_service_password
        return secret.get_secret_value() if secret is not None else None

    # --- principals ---------------------------------------------------------------------------
    def resolve(self, name: str | None, sid: str | None = None) -> str | None:
        """LookupAccountName (the SID now), or None when the account does not exist."""
        if name is None:
            return sid
        if sids.is_sid(name):
            return name.upper()
        try:
            return self.host.accounts.lookup_name(name).sid
        except Win32Error as exc:
            if exc.code == ERROR_NONE_MAPPED:
                return None
            raise

    def group_sids(self, sid: str) -> list[str]:
        """Local groups the account is a member of (what the agent reads with ADSI)."""
        return sorted(self.host.accounts.aliases_of({sid}))

    # --- changes ------------------------------------------------------------------------------
    def record(
        self, item: PlanItem, kind: TargetKind, before: str | None, after: str | None, *, created: bool = False
    ) -> ChangeRecord:
        change = ChangeRecord(
            rule_id=item.rule_id,
            target=item.target,
            target_kind=kind,
            sequence=len(self.changes),
            before=before,
            after=after,
            created_object=created,
            job_id=self.request.job_id,
        )
        self.changes.append(change)
        # Journal on the host before anything else happens (common.ps1 Add-FleetChange does the same).
        write_journal(self.host, self.token, self.request.job_id, self.changes)
        return change

    @contextmanager
    def file_privileges(self) -> Iterator[None]:
        """Enable SeBackup/SeRestore/SeTakeOwnership for a block, restoring the previous state after."""
        held = [p for p in FILE_PRIVILEGES if p in self.token.privileges_held]
        with self.token.privileges(*held):
            yield

    def before_first_change(self) -> None:
        """Pre-flight: stop Windows Search / the Indexing Service before the first change of the run."""
        if self._search_stopped:
            return
        self._search_stopped = True
        plan = self.request.plan
        if plan is None:
            return
        for item in plan.items:
            if item.status is not None or item.preflight_check not in SEARCH_CHECKS:
                continue
            services = self.host.services
            if not services.exists(item.target):
                continue
            before = services.get(item.target).state.value
            if services.get(item.target).running:
                services.stop(item.target, self.token)
            self.search_states[item.target.lower()] = (before, services.get(item.target).state.value)

    def restore_search(self) -> None:
        """Start what the pre-flight stopped (the state before the job is restored)."""
        for name, (before, _during) in self.search_states.items():
            if before == ServiceState.RUNNING.value and not self.host.services.get(name).running:
                self.host.services.start(name, self.token)

    def tick(self) -> None:
        """Let modelled time act between steps (policy refreshes, services settling)."""
        self.host.run_due()


def failed_item(item: PlanItem, message: str, *, action: RuleAction = RuleAction.NONE) -> ObservedItem:
    return ObservedItem(rule_id=item.rule_id, target=item.target, error=message[:4096], action=action)
