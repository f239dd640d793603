"""The service control manager: identities, start modes, and starts that fail for model reasons.

A start logs the account on as a service (bad password, disabled account or a missing
SeServiceLogonRight -> 1069), creates the process (binary not readable+executable -> 5),
loads its DLLs (-> 1067), and after a settling delay checks what the running service needs
(queues and logs it writes, registry it reads, its database): if that fails the service stops
with 1067. Every check is an access check against the real security descriptors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from winlab.windows import security as sec
from winlab.windows import sids
from winlab.windows.accounts import Accounts
from winlab.windows.auth import Authority
from winlab.windows.context import HostContext
from winlab.windows.errors import (
    ERROR_ACCESS_DENIED,
    ERROR_CIRCULAR_DEPENDENCY,
    ERROR_PROCESS_ABORTED,
    ERROR_SERVICE_ALREADY_RUNNING,
    ERROR_SERVICE_DEPENDENCY_DELETED,
    ERROR_SERVICE_DEPENDENCY_FAIL,
    ERROR_SERVICE_DISABLED,
    ERROR_SERVICE_DOES_NOT_EXIST,
    ERROR_SERVICE_LOGON_FAILED,
    ERROR_SERVICE_NOT_ACTIVE,
    ERROR_SUCCESS,
    Win32Error,
)
from winlab.windows.filesystem import FileSystem
from winlab.windows.registry import Registry
from winlab.windows.sids import SidType
from winlab.windows.tokens import LogonType, Token

SETTLE_SECONDS = 5.0
# "started after other auto-start services are started plus a short delay of approximately two minutes"
# (MS-SCMR 2.2.33 SERVICE_DELAYED_AUTO_START_INFO,
# https://learn.microsoft.com/openspecs/windows_protocols/ms-scmr/805b8296-863d-4d1e-8ae8-f639adf8c6cb).
DELAYED_AUTO_START_SECONDS = 120.0
SERVICES_KEY = "HKLM\\SYSTEM\\CurrentControlSet\\Services"
LOCAL_SYSTEM_NAMES = {"localsystem", ".\\localsystem", "nt authority\\system"}
BUILTIN_SERVICE_ACCOUNTS = {
    "nt authority\\networkservice": sids.NETWORK_SERVICE,
    "nt authority\\network service": sids.NETWORK_SERVICE,
    "nt authority\\localservice": sids.LOCAL_SERVICE,
    "nt authority\\local service": sids.LOCAL_SERVICE,
}

# Win32_Service.Change / StartService ReturnValue codes.
WMI_SUCCESS = 0
WMI_ACCESS_DENIED = 2
WMI_INVALID_PARAMETER = 21
WMI_INVALID_SERVICE_ACCOUNT = 22

RuntimeCheck = Callable[[Token], str | None]


class StartMode(StrEnum):
    AUTO = "Auto"
    MANUAL = "Manual"
    DISABLED = "Disabled"


class ServiceState(StrEnum):
    RUNNING = "Running"
    STOPPED = "Stopped"


START_MODE_NAMES = {
    "auto": StartMode.AUTO,
    "automatic": StartMode.AUTO,
    "manual": StartMode.MANUAL,
    "disabled": StartMode.DISABLED,
}


@dataclass
class ServiceNeeds:
    """What a service needs: DLLs it loads (read+execute), folders it writes, keys it reads, extra checks."""

    images: tuple[str, ...] = ()
    write_dirs: tuple[str, ...] = ()
    read_dirs: tuple[str, ...] = ()
    registry_read: tuple[str, ...] = ()
    checks: tuple[RuntimeCheck, ...] = ()


@dataclass
class Service:
    """One Win32 service as Win32_Service shows it, plus why it last failed."""

    name: str
    display_name: str
    binary_path: str
    start_name: str = "LocalSystem"
    password: str = ""
    start_mode: StartMode = StartMode.AUTO
    delayed_auto: bool = False
    state: ServiceState = ServiceState.STOPPED
    exit_code: int = 0
    description: str = ""
    needs: ServiceNeeds = field(default_factory=ServiceNeeds)
    started_at: float | None = None
    last_error: int = 0
    last_reason: str = ""
    token: Token | None = None
    # lpDependencies: services that must run before this one (DependOnService in the SCM database).
    depends_on: tuple[str, ...] = ()

    @property
    def path_name(self) -> str:
        return f'"{self.binary_path}"'

    @property
    def running(self) -> bool:
        return self.state is ServiceState.RUNNING


class ServiceManager:
    """Services of one host. Mutating calls take the caller's token (administrators only)."""

    def __init__(
        self, ctx: HostContext, accounts: Accounts, authority: Authority, fs: FileSystem, registry: Registry
    ) -> None:
        self.ctx = ctx
        self.accounts = accounts
        self.authority = authority
        self.fs = fs
        self.registry = registry
        self._services: dict[str, Service] = {}

    # --- inventory ----------------------------------------------------------------------
    def install(self, service: Service) -> Service:
        self._services[service.name.lower()] = service
        self.accounts.service_names.add(service.name)
        self._sync_registry(service)
        return service

    def names(self) -> list[str]:
        return sorted((s.name for s in self._services.values()), key=str.lower)

    def exists(self, name: str) -> bool:
        return name.lower() in self._services

    def get(self, name: str) -> Service:
        """The service (settled: a service whose runtime checks failed is already Stopped)."""
        self.ctx.run_due()
        svc = self._services.get(name.lower())
        if svc is None:
            raise Win32Error(ERROR_SERVICE_DOES_NOT_EXIST, name)
        return svc

    def all(self) -> list[Service]:
        self.ctx.run_due()
        return [self._services[k] for k in sorted(self._services)]

    def account_sid(self, name: str) -> str:
        """The SID of a service's StartName (LocalSystem = S-1-5-18)."""
        return self._start_name_sid(self.get(name).start_name)

    def _start_name_sid(self, start_name: str) -> str:
        low = start_name.lower()
        if low in LOCAL_SYSTEM_NAMES:
            return sids.LOCAL_SYSTEM
        if low in BUILTIN_SERVICE_ACCOUNTS:
            return BUILTIN_SERVICE_ACCOUNTS[low]
        return self.accounts.lookup_name(start_name).sid

    # --- configuration ------------------------------------------------------------------
    def change(
        self,
        name: str,
        token: Token | None,
        *,
        start_name: str | None = None,
        password: str | None = None,
        start_mode: str | None = None,
        delayed_auto: bool | None = None,
    ) -> int:
        """Win32_Service.Change: 0 success, 2 access denied, 21 invalid parameter, 22 invalid account.

        The account is not given SeServiceLogonRight (only services.msc does that), and the password
        is not checked here: both only show at the next start.
        """
        svc = self.get(name)
        if token is not None and not token.is_admin:
            return WMI_ACCESS_DENIED
        new_name, new_password = svc.start_name, svc.password
        if start_name is not None:
            low = start_name.lower()
            if low in LOCAL_SYSTEM_NAMES:
                new_name, new_password = "LocalSystem", ""
            elif low in BUILTIN_SERVICE_ACCOUNTS:
                new_name, new_password = start_name, ""
            else:
                try:
                    account = self.accounts.lookup_name(start_name)
                except Win32Error:
                    return WMI_INVALID_SERVICE_ACCOUNT
                virtual = account.domain.upper() == "NT SERVICE" and account.name.lower() == svc.name.lower()
                if account.sid_type is not SidType.USER and not virtual:
                    return WMI_INVALID_SERVICE_ACCOUNT
                same_account = self._safe_sid(svc.start_name) == account.sid
                new_name = svc.start_name if same_account else start_name
                if password is not None:
                    new_password = password
                elif not same_account:
                    new_password = ""
        elif password is not None:
            new_password = password
        new_mode, new_delayed = svc.start_mode, svc.delayed_auto
        if start_mode is not None:
            mode = START_MODE_NAMES.get(start_mode.lower())
            if mode is None:
                return WMI_INVALID_PARAMETER
            new_mode = mode
        if delayed_auto is not None:
            new_delayed = delayed_auto
        before = (svc.start_name, svc.password, svc.start_mode, svc.delayed_auto)
        after = (new_name, new_password, new_mode, new_delayed)
        if before != after:
            svc.start_name, svc.password, svc.start_mode, svc.delayed_auto = after
            self.ctx.mutated("services.change", svc.name)
            self._sync_registry(svc)
        return WMI_SUCCESS

    def _sync_registry(self, svc: Service) -> None:
        """The SCM database is HKLM\\SYSTEM\\CurrentControlSet\\Services\\<name>; keep it in step (not counted)."""
        with self.ctx.quiet():
            key = self.registry.create_key(f"{SERVICES_KEY}\\{svc.name}")
            key.set_value("ImagePath", svc.path_name, "REG_EXPAND_SZ")
            key.set_value("DisplayName", svc.display_name)
            key.set_value("ObjectName", svc.start_name)
            start = {StartMode.AUTO: 2, StartMode.MANUAL: 3, StartMode.DISABLED: 4}[svc.start_mode]
            key.set_value("Start", start, "REG_DWORD")
            if svc.delayed_auto:
                key.set_value("DelayedAutostart", 1, "REG_DWORD")
            elif key.get("DelayedAutostart") is not None:
                key.delete_value("DelayedAutostart")
            if svc.depends_on:
                key.set_value("DependOnService", tuple(svc.depends_on), "REG_MULTI_SZ")

    def _safe_sid(self, start_name: str) -> str | None:
        try:
            return self._start_name_sid(start_name)
        except Win32Error:
            return None

    # --- control ------------------------------------------------------------------------
    def _logon(self, svc: Service) -> Token:
        low = svc.start_name.lower()
        if low in LOCAL_SYSTEM_NAMES:
            token = self.authority.system_token()
        elif low in BUILTIN_SERVICE_ACCOUNTS:
            token = self.authority.builtin_service_token(BUILTIN_SERVICE_ACCOUNTS[low])
        elif low.startswith("nt service\\"):
            token = self.authority.virtual_account_token(svc.start_name)
        else:
            token = self.authority.logon(svc.start_name, svc.password, LogonType.SERVICE)
        token.groups = token.groups | {sids.service_sid(svc.name)}
        return token

    def _fail(self, svc: Service, code: int, reason: str) -> int:
        svc.last_error = code
        svc.last_reason = reason
        return code

    def start(self, name: str, token: Token | None = None) -> int:
        """StartService: returns a Win32 error code (0 when the service is running, for now)."""
        try:
            svc = self.get(name)
        except Win32Error as exc:
            return exc.code
        if token is not None and not token.is_admin:
            return ERROR_ACCESS_DENIED
        if svc.running:
            return ERROR_SERVICE_ALREADY_RUNNING
        if svc.start_mode is StartMode.DISABLED:
            return self._fail(svc, ERROR_SERVICE_DISABLED, "disabled")
        try:
            svc_token = self._logon(svc)
        except Win32Error as exc:
            # Event 7038 (bad password / disabled) or 7041 (logon type not granted).
            return self._fail(svc, ERROR_SERVICE_LOGON_FAILED, f"logon failed: {exc.code} {exc.message}")
        if not self.fs.can(svc.binary_path, svc_token, sec.FILE_READ_EXECUTE):
            return self._fail(svc, ERROR_ACCESS_DENIED, f"cannot execute {svc.binary_path}")
        for image in svc.needs.images:
            if self.fs.exists(image) and not self.fs.can(image, svc_token, sec.FILE_READ_EXECUTE):
                return self._fail(svc, ERROR_PROCESS_ABORTED, f"cannot load {image}")
        svc.state = ServiceState.RUNNING
        svc.exit_code = 0
        svc.started_at = self.ctx.clock.now()
        svc.token = svc_token
        svc.last_error, svc.last_reason = ERROR_SUCCESS, ""
        self.ctx.mutated("services.start", svc.name)
        self.ctx.cancel(f"settle:{svc.name.lower()}")
        self.ctx.schedule(svc.started_at + SETTLE_SECONDS, f"settle:{svc.name.lower()}", lambda _due: self._settle(svc))
        return ERROR_SUCCESS

    def runtime_problem(self, svc: Service, token: Token) -> str | None:
        """Why a running service with this token cannot work, or None."""
        rw = sec.FILE_GENERIC_READ | sec.FILE_GENERIC_WRITE | sec.FILE_DELETE_CHILD
        for folder in svc.needs.write_dirs:
            if self.fs.exists(folder) and not self.fs.can(folder, token, rw):
                return f"cannot write {folder}"
        for folder in svc.needs.read_dirs:
            if self.fs.exists(folder) and not self.fs.can(folder, token, sec.FILE_GENERIC_READ):
                return f"cannot read {folder}"
        for key in svc.needs.registry_read:
            if self.registry.exists(key) and not self.registry.can(key, token, sec.KEY_READ):
                return f"cannot read {key}"
        for check in svc.needs.checks:
            problem = check(token)
            if problem:
                return problem
        return None

    def _settle(self, svc: Service) -> None:
        if not svc.running or svc.token is None:
            return
        problem = self.runtime_problem(svc, svc.token)
        if problem:
            svc.state = ServiceState.STOPPED
            svc.exit_code = ERROR_PROCESS_ABORTED
            svc.token = None
            self._fail(svc, ERROR_PROCESS_ABORTED, problem)
            self.ctx.mutated("services.crashed", svc.name)

    def stop(self, name: str, token: Token | None = None) -> int:
        try:
            svc = self.get(name)
        except Win32Error as exc:
            return exc.code
        if token is not None and not token.is_admin:
            return ERROR_ACCESS_DENIED
        if not svc.running:
            return ERROR_SERVICE_NOT_ACTIVE
        svc.state = ServiceState.STOPPED
        svc.token = None
        svc.exit_code = 0
        self.ctx.cancel(f"settle:{svc.name.lower()}")
        self.ctx.mutated("services.stop", svc.name)
        return ERROR_SUCCESS

    def restart(self, name: str, token: Token | None = None) -> int:
        """Restart-Service: a stop, then a start (the start's Win32 code is returned).

        "The Restart-Service cmdlet sends a stop message and then a start message to the Windows Service
        Controller for a specified service. If a service was already stopped, it is started without
        notifying you of an error." (Restart-Service, Microsoft.PowerShell.Management,
        https://learn.microsoft.com/powershell/module/microsoft.powershell.management/restart-service).
        The start is ServiceController.Start, which throws InvalidOperationException wrapping the
        StartService error (https://learn.microsoft.com/dotnet/api/system.serviceprocess.servicecontroller.start):
        a Disabled service gives 1058 ERROR_SERVICE_DISABLED, so a running service whose start mode is
        Disabled is stopped by the restart and stays stopped.
        """
        code = self.stop(name, token)
        if code not in (ERROR_SUCCESS, ERROR_SERVICE_NOT_ACTIVE):
            return code
        return self.start(name, token)

    # --- shutdown and boot ---------------------------------------------------------------
    def shutdown(self) -> list[str]:
        """System shutdown: every running service is stopped (SERVICE_CONTROL_SHUTDOWN); returns their names."""
        stopped = []
        for svc in self.all():
            self.ctx.cancel(f"settle:{svc.name.lower()}")
            if svc.running and self.stop(svc.name) == ERROR_SUCCESS:
                stopped.append(svc.name)
        self.ctx.cancel("boot:delayed-auto")
        return stopped

    def boot(self) -> BootReport:
        """What the SCM does at system boot (every service is expected to be stopped).

        "During system boot, the SCM starts all auto-start services and the services on which they
        depend. For example, if an auto-start service depends on a demand-start service, the
        demand-start service is also started automatically." (Automatically Starting Services,
        https://learn.microsoft.com/windows/win32/services/automatically-starting-services). The model
        has no load-order groups or tags, so the order is: dependencies first, then by service name.
        Each start logs the account on with the password the SCM stores for that service (not the
        account's current one: "When you change the password on a service account, update the password
        stored by the SCM", https://learn.microsoft.com/windows/win32/ad/changing-the-password-on-a-serviceampaposs-user-account),
        so a changed password gives 1069. A dependency that fails makes its dependents fail with 1068.
        Manual and Disabled services that no auto-start service depends on stay stopped. Delayed
        auto-start services are started one at a time, honouring dependencies, DELAYED_AUTO_START_SECONDS
        after the others (SERVICE_DELAYED_AUTO_START_INFO,
        https://learn.microsoft.com/windows/win32/api/winsvc/ns-winsvc-service_delayed_auto_start_info).
        """
        report = BootReport()
        auto = [s for s in self.all() if s.start_mode is StartMode.AUTO]
        for svc in auto:
            if not svc.delayed_auto:
                self._boot_start(svc.name, report, ())
        delayed = [s.name for s in auto if s.delayed_auto]
        report.delayed = delayed
        if delayed:
            due = self.ctx.clock.now() + DELAYED_AUTO_START_SECONDS

            def start_delayed(_due: float) -> None:
                for name in delayed:
                    self._boot_start(name, report, ())

            self.ctx.schedule(due, "boot:delayed-auto", start_delayed)
        return report

    def _boot_start(self, name: str, report: BootReport, chain: tuple[str, ...]) -> int:
        """Start ``name`` after its dependencies; every attempt's code lands in ``report.started``."""
        key = name.lower()
        if key in report.started:
            return report.started[key][1]
        if key in chain:
            return ERROR_CIRCULAR_DEPENDENCY
        svc = self._services.get(key)
        if svc is None:
            return ERROR_SERVICE_DEPENDENCY_DELETED
        for dep in svc.depends_on:
            code = self._boot_start(dep, report, (*chain, key))
            if code not in (ERROR_SUCCESS, ERROR_SERVICE_ALREADY_RUNNING):
                report.started[key] = (svc.name, ERROR_SERVICE_DEPENDENCY_FAIL)
                return self._fail(svc, ERROR_SERVICE_DEPENDENCY_FAIL, f"dependency {dep} failed: {code}")
        code = self.start(svc.name)
        report.started[key] = (svc.name, code)
        return code

    def state(self) -> dict[str, dict[str, object]]:
        out: dict[str, dict[str, object]] = {}
        for svc in self.all():
            out[svc.name] = {
                "display_name": svc.display_name,
                "path_name": svc.path_name,
                "start_name": svc.start_name,
                "start_name_sid": self._safe_sid(svc.start_name),
                "has_password": bool(svc.password),
                "start_mode": svc.start_mode.value,
                "delayed_auto": svc.delayed_auto,
                "state": svc.state.value,
            }
            if svc.depends_on:
                out[svc.name]["depends_on"] = list(svc.depends_on)
        return out


@dataclass
class BootReport:
    """The SCM's boot: each start attempted, in order, with its Win32 code (0 = running)."""

    stopped: list[str] = field(default_factory=list)
    # lower-cased name -> (service name, Win32 code); dict order is the start order.
    started: dict[str, tuple[str, int]] = field(default_factory=dict)
    delayed: list[str] = field(default_factory=list)

    @property
    def codes(self) -> dict[str, int]:
        return {name: code for name, code in self.started.values()}

    @property
    def failed(self) -> dict[str, int]:
        return {name: code for name, code in self.started.values() if code != ERROR_SUCCESS}

    def as_dict(self) -> dict[str, object]:
        return {"stopped": list(self.stopped), "started": self.codes, "failed": self.failed, "delayed": self.delayed}
