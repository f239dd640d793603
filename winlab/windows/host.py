"""One emulated Windows host: every subsystem, logons, health, counters and serialisable state."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from winlab.windows import security as sec
from winlab.windows.accounts import Accounts
from winlab.windows.auth import Authority
from winlab.windows.context import HostContext
from winlab.windows.defender import Defender
from winlab.windows.filesystem import FileSystem
from winlab.windows.iis import Iis
from winlab.windows.lsa import Lsa
from winlab.windows.mailenable import MailEnable
from winlab.windows.os_profiles import OsProfile
from winlab.windows.policy import GroupPolicy
from winlab.windows.registry import Registry
from winlab.windows.services import BootReport, ServiceManager
from winlab.windows.sql import SqlServer
from winlab.windows.tokens import LogonType, Token

if TYPE_CHECKING:
    from winlab.windows.factory import HostSpec

PS_ENGINE_KEYS = (
    "HKLM\\SOFTWARE\\Microsoft\\PowerShell\\3\\PowerShellEngine",
    "HKLM\\SOFTWARE\\Microsoft\\PowerShell\\1\\PowerShellEngine",
)
PROTOCOL_SERVICES = {"smtp": "MESMTPCS", "pop": "MEPOPS", "imap": "MEIMAPS"}


@dataclass
class HealthReport:
    """What the post-change health check sees: services, protocol listeners, MTA and web pages."""

    services: dict[str, str]
    protocols: dict[str, bool]
    mta: tuple[bool, str]
    webmail: tuple[bool, str]
    webadmin: tuple[bool, str]
    reasons: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.reasons


class WindowsHost:
    """A simulated Windows Server with MailEnable. Build one with :func:`winlab.windows.factory.build_host`."""

    def __init__(
        self,
        *,
        name: str,
        spec: HostSpec,
        os: OsProfile,
        ctx: HostContext,
        fs: FileSystem,
        registry: Registry,
        accounts: Accounts,
        lsa: Lsa,
        authority: Authority,
        services: ServiceManager,
        policy: GroupPolicy,
        defender: Defender,
        sql: SqlServer | None,
        mailenable: MailEnable,
        admin_username: str,
        admin_password: str,
        iis: Iis | None = None,
    ) -> None:
        self.name = name
        self.spec = spec
        self.os = os
        self.ctx = ctx
        self.fs = fs
        self.registry = registry
        self.accounts = accounts
        self.lsa = lsa
        self.authority = authority
        self.services = services
        self.policy = policy
        self.defender = defender
        self.sql = sql
        self.mailenable = mailenable
        self.admin_username = admin_username
        self.admin_password = admin_password
        self.iis = iis
        self.boots = 0

    # --- facts --------------------------------------------------------------------------
    @property
    def machine_sid(self) -> str:
        return self.accounts.machine_sid

    @property
    def domain_member(self) -> bool:
        return self.accounts.domain is not None

    @property
    def powershell_version(self) -> str:
        """$PSVersionTable.PSVersion as the registry records the newest engine."""
        for key in PS_ENGINE_KEYS:
            if self.registry.exists(key):
                value = self.registry.open(key).get("PowerShellVersion")
                if isinstance(value, str):
                    return value
        return "1.0"

    @property
    def mutations(self) -> int:
        return self.ctx.mutations

    @property
    def work(self) -> int:
        return self.ctx.work

    # --- time ---------------------------------------------------------------------------
    def run_due(self) -> None:
        """Fire timers whose time has come (policy refresh, service settling, MTA polls)."""
        self.ctx.run_due()

    def advance(self, seconds: float) -> None:
        self.ctx.clock.advance(seconds)
        self.ctx.run_due()

    # --- power --------------------------------------------------------------------------
    def reboot(self) -> BootReport:
        """Restart Windows: every service stops, then the SCM starts the Auto ones as at boot.

        See `ServiceManager.boot` for the order and the failures (each service logs on with the
        password the SCM stored for it, so an account whose password changed since gives 1069).
        Before the services, the computer's Group Policy is applied ("In addition to background
        updates, Group Policy for the computer is always updated when the system starts", Group Policy
        refresh interval for computers, https://learn.microsoft.com/previous-versions/ms813077(v=msdn.10)),
        and Schannel reads its protocol settings again (winlab.windows.iis).
        Settling (5 s) and delayed auto-start (120 s) follow on the clock: call `advance`.
        """
        self.ctx.run_due()
        stopped = self.services.shutdown()
        if self.policy.gpos:
            self.policy.refresh()
        if self.iis is not None:
            self.iis.load_schannel()
        report = self.services.boot()
        report.stopped = stopped
        self.boots += 1
        return report

    # --- logons -------------------------------------------------------------------------
    def logon(
        self, username: str, password: str, logon_type: LogonType = LogonType.NETWORK, *, elevate: bool = False
    ) -> Token:
        self.ctx.run_due()
        return self.authority.logon(username, password, logon_type, elevate=elevate)

    def admin_token(self) -> Token:
        """The WinRM account's network logon token (UAC-filtered when the host's policy says so)."""
        return self.logon(self.admin_username, self.admin_password, LogonType.NETWORK)

    def system_token(self) -> Token:
        return self.authority.system_token()

    # --- health -------------------------------------------------------------------------
    def health(self) -> HealthReport:
        self.ctx.run_due()
        me_services = [
            s
            for s in self.services.all()
            if s.binary_path.lower().startswith(self.mailenable.install.program_dir.lower() + "\\")
        ]
        states = {s.name: s.state.value for s in me_services}
        report = HealthReport(
            services=states,
            protocols={p: self.services.get(n).running for p, n in PROTOCOL_SERVICES.items()},
            mta=self.mailenable.mta_ok(),
            webmail=self.mailenable.webmail_ok(),
            webadmin=self.mailenable.webadmin_ok(),
        )
        for svc in me_services:
            if not svc.running:
                report.reasons.append(f"{svc.name} is stopped" + (f": {svc.last_reason}" if svc.last_reason else ""))
        for label, (ok, why) in (("mta", report.mta), ("webmail", report.webmail), ("webadmin", report.webadmin)):
            if not ok:
                report.reasons.append(f"{label}: {why}")
        return report

    # --- state --------------------------------------------------------------------------
    def to_state_dict(self) -> dict[str, object]:
        """Everything configurable, JSON-serialisable and deterministic (passwords only as SHA-256)."""
        self.ctx.run_due()
        fs_state = {
            node.path: {"dir": node.kind is sec.ObjectKind.DIRECTORY, "sddl": sec.to_sddl(node.sd)}
            for node in self.fs.tree.root.walk()
        }
        reg_state = {
            node.path: {
                "sddl": sec.to_sddl(node.sd),
                "values": {
                    k: [v.type, list(v.data) if isinstance(v.data, tuple) else v.data]
                    for k, v in sorted(node.values.items())
                },
            }
            for node in self.registry.tree.root.walk()
        }
        services = self.services.state()
        for name, entry in services.items():
            password = self.services.get(name).password
            entry["password_sha256"] = hashlib.sha256(password.encode()).hexdigest() if password else None
        return {
            "host": {
                "name": self.name,
                "os": self.os.key,
                "build": self.os.build,
                "machine_sid": self.machine_sid,
                "powershell": self.powershell_version,
                "domain": self.accounts.domain.name if self.accounts.domain else None,
            },
            "accounts": {
                "users": {
                    u.name: {
                        "sid": u.sid,
                        "flags": u.flags,
                        "enabled": u.enabled,
                        "password_sha256": hashlib.sha256(u.password.encode()).hexdigest(),
                    }
                    for u in sorted(self.accounts.users.values(), key=lambda u: u.sid)
                },
                "groups": {
                    g.name: {"sid": g.sid, "members": sorted(g.members)}
                    for g in sorted(self.accounts.groups.values(), key=lambda g: g.sid)
                },
            },
            "lsa": self.lsa.state(),
            "fs": fs_state,
            "file_contents": dict(sorted(self.fs.contents.items())),
            "registry": reg_state,
            "services": services,
            "sql": self.sql.state() if self.sql else None,
            "defender": self.defender.state(),
            "mailenable": self.mailenable.state(),
        }
