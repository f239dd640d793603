"""A running fleet of emulated Windows + MailEnable hosts: WinRM, mail ports, state, faults.

`Lab` is what `python -m winlab serve` runs and what tests start in-process:

>>> with Lab(hosts=3, seed=7, lab_dir=tmp, clock=ManualClock(), time_scale=0.0) as lab:
...     entry = lab.inventory()["hosts"][0]            # address, ports, Administrator's password, CA
...     lab.fault("ME001", deny=r"C:\\Windows\\System32\\cmd.exe")
...     lab.state("ME001")["counters"]["mutations"]

Each host gets the deterministic spec `fleet_specs(n, seed)` gives it, its own loopback address
(127.77.x.y; 127.0.0.1 with distinct ports where only that exists), HTTP (NTLM + encryption) and
HTTPS (lab CA) WinRM listeners, a generated password for its built-in Administrator (and for the
extra local administrator `fleetadmin` where the spec has one), and SMTP/POP/IMAP listeners that
answer while the services run. With `persist=True` each host's state is saved to
`<lab_dir>/state/<NAME>.json` after every change and at stop, and loaded at the next start.
"""

from __future__ import annotations

import json
import logging
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from winlab.agent.primitives import MAIL_PORTS
from winlab.agent.shell import AgentShellHost, HostBinding
from winlab.mail import DEFAULT_PORTS, PROTOCOLS, MailEndpoint, MailPorts, Protocol
from winlab.persist import restore, snapshot, write_private_json
from winlab.windows import sids
from winlab.windows.clock import DEFAULT_EPOCH, Clock
from winlab.windows.errors import ERROR_ACCESS_DENIED, Win32Error
from winlab.windows.factory import LOCAL_ADMIN, HostSpec, build_host, fleet_specs
from winlab.windows.host import WindowsHost
from winlab.windows.lsa import DEFAULT_RIGHTS
from winlab.windows.policy import GroupPolicyObject
from winlab.windows.tokens import LogonType
from winlab.wsman import Fleet, ShellHost, loopback_address
from winlab.wsman import HostSpec as WsmanHostSpec
from winlab.wsman import Principal as WsmanPrincipal
from winlab.wsman.server import HostServer
from winlab.wsman.tls import LabAuthority

log = logging.getLogger(__name__)
ADMINISTRATOR: Final = "Administrator"
GPO_NAME: Final = "winlab-fault"
# "--timeout": every Receive answers w:TimedOut until cleared (pywinrm retries; the run deadline ends it).
TIMEOUT_RECEIVES: Final = 1_000_000


class RealtimeClock:
    """Model time that follows real time and can be pushed ahead by modelled costs.

    `now()` is the epoch plus the real seconds since start, or further ahead when modelled work
    (`advance`) moved it there; real time then catches up with it. Timers (GPO refresh, service
    settling, MTA polls) therefore fire on their own while a fleet is served.
    """

    def __init__(self, start: float = DEFAULT_EPOCH) -> None:
        self._start = start
        self._t0 = time.monotonic()
        self._floor = start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return max(self._start + time.monotonic() - self._t0, self._floor)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time only moves forward")
        with self._lock:
            self._floor = max(self._start + time.monotonic() - self._t0, self._floor) + seconds


def _password() -> str:
    # Meets the complexity policy of every modelled host (upper, lower, digit, symbol; length >= 7).
    return f"Wl{secrets.token_urlsafe(12)}-7a"


def prepare_winrm_accounts(model: WindowsHost) -> dict[str, str]:
    """What the lab does to a built host before serving it: generated passwords for its WinRM accounts
    (the built-in Administrator, and `fleetadmin` where the spec has it, in Remote Management Users).

    Not counted as mutations (the host is still being built). Returns {user: password}.
    """
    accounts = {ADMINISTRATOR: _password()}
    if LOCAL_ADMIN.lower() in model.accounts.users:
        accounts[LOCAL_ADMIN] = _password()
    model.ctx.building = True
    try:
        for user, password in accounts.items():
            model.accounts.set_password(user, password)
        model.admin_username, model.admin_password = ADMINISTRATOR, accounts[ADMINISTRATOR]
        if LOCAL_ADMIN in accounts:
            # The MSP's own WinRM account: a local administrator that may use WinRM (Remote Management
            # Users), so under UAC remote restrictions it reaches PowerShell with a filtered token.
            group = model.accounts.groups["remote management users"]
            group.members.append(model.accounts.user(LOCAL_ADMIN).sid)
    finally:
        model.ctx.building = False
    return accounts


@dataclass
class LabHost:
    """One host of the lab: the model, its WinRM server, its mail ports and its accounts."""

    spec: HostSpec
    model: WindowsHost
    binding: HostBinding
    address: str
    winrm_accounts: dict[str, str]
    mail: MailEndpoint
    server: HostServer | None = None
    down: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name


class Lab:
    """N emulated hosts in one process (see the module docstring)."""

    def __init__(
        self,
        specs: list[HostSpec] | None = None,
        *,
        hosts: int = 0,
        seed: int = 0,
        store_files: int = 30,
        lab_dir: Path | None = None,
        clock: Clock | None = None,
        time_scale: float = 1.0,
        winrm_ports: tuple[int, int] = (0, 0),
        mail_ports: dict[str, int] | None = None,
        persist: bool = False,
        reset: bool = False,
        first_address: int = 0,
    ) -> None:
        self.specs = specs if specs is not None else fleet_specs(hosts, seed, store_files=store_files)
        self.seed = seed
        self.clock: Clock = clock or RealtimeClock()
        self.time_scale = time_scale
        self.winrm_ports = winrm_ports
        self.mail_port_numbers = dict(mail_ports) if mail_ports is not None else dict(DEFAULT_PORTS)
        self.persist = persist
        self.reset = reset
        self.first_address = first_address
        self.lab_dir = lab_dir
        self.hosts: dict[str, LabHost] = {}
        self.fleet: Fleet | None = None
        self.mail = MailPorts()
        self._authority: LabAuthority | None = None
        self._save_lock = threading.Lock()

    # --- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        if self.lab_dir is not None:
            self.lab_dir.mkdir(parents=True, exist_ok=True)
        for index, spec in enumerate(self.specs):
            self.hosts[spec.name.upper()] = self._build(index, spec)
        wsman_specs = [self._wsman_spec(h) for h in self.hosts.values()]
        self.fleet = Fleet(wsman_specs, self.lab_dir, clock=self.clock, shell_host_factory=self._shell_host)
        self.fleet.start()
        self.lab_dir = self.fleet.lab_dir
        self._authority = LabAuthority(self.lab_dir)  # the fleet's CA (ca.pem), reused for the SMTP certificates
        for lab_host in self.hosts.values():
            lab_host.server = self.fleet.host(lab_host.name)
            if lab_host.server.address != lab_host.address:
                # No 127.77.x.y here: the WinRM server fell back to 127.0.0.1; the mail ports follow, on free ports.
                lab_host.address = lab_host.server.address
                lab_host.mail.address = lab_host.address
                lab_host.mail.ports = dict.fromkeys(PROTOCOLS, 0)
            lab_host.mail.configure_smtp(lab_host.spec.smtp, self._authority)
            self.mail.add(lab_host.mail)
        self.mail.start()
        for lab_host in self.hosts.values():
            # The ports the listeners really got (0 = a free one): the host's own probes see them too.
            for protocol, number in lab_host.mail.ports.items():
                if number:
                    lab_host.binding.mail_ports[number] = protocol
        if self.persist:
            for lab_host in self.hosts.values():
                self.save(lab_host.name)

    def stop(self) -> None:
        if self.persist:
            for lab_host in self.hosts.values():
                try:
                    self.save(lab_host.name)
                except OSError:
                    log.exception("saving %s failed", lab_host.name)
        self.mail.stop()
        if self.fleet is not None:
            self.fleet.stop()
            self.fleet = None

    def __enter__(self) -> Lab:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- building -----------------------------------------------------------------------------------
    def _state_path(self, name: str) -> Path | None:
        return self.lab_dir / "state" / f"{name.upper()}.json" if self.lab_dir is not None else None

    def _build(self, index: int, spec: HostSpec) -> LabHost:
        model = build_host(spec, self.clock)
        saved: dict[str, Any] | None = None
        path = self._state_path(spec.name)
        if self.persist and not self.reset and path is not None and path.exists():
            saved = json.loads(path.read_text(encoding="utf-8"))
        accounts = prepare_winrm_accounts(model)
        if saved is not None:
            try:
                restore(model, saved)
                for user in accounts:
                    accounts[user] = model.accounts.user(user).password
                model.admin_password = accounts[ADMINISTRATOR]
            except (ValueError, KeyError, Win32Error):
                log.exception("%s: saved state unusable, starting clean", spec.name)
        # The host's own view of its mail ports (tcp_probe on 127.0.0.1): MailEnable's standard ports and the
        # lab's high ones (the Server records, and so the health probes, carry the lab's).
        host_ports: dict[int, Protocol] = {
            **MAIL_PORTS,
            **{self.mail_port_numbers[proto]: proto for proto in PROTOCOLS if self.mail_port_numbers.get(proto)},
        }
        binding = HostBinding(host=model, passwords=accounts, time_scale=self.time_scale, mail_ports=host_ports)
        binding.on_change = lambda name=spec.name: self._changed(name)
        address = loopback_address(self.first_address + index)
        ports = {p: self.mail_port_numbers.get(p, 0) for p in PROTOCOLS}
        lab_host = LabHost(
            spec=spec,
            model=model,
            binding=binding,
            address=address,
            winrm_accounts=accounts,
            mail=MailEndpoint(spec.name, model, binding.lock, address, ports, down=lambda: False),
        )
        lab_host.mail.down = lambda: lab_host.down
        return lab_host

    def _wsman_spec(self, lab_host: LabHost) -> WsmanHostSpec:
        model = lab_host.model
        denied = set()
        for user, password in lab_host.winrm_accounts.items():
            # WinRM's RootSDDL lets Administrators and Remote Management Users in; anyone else gets "Access is denied".
            token = model.logon(user, password, LogonType.NETWORK)
            if not {sids.ADMINISTRATORS, sids.REMOTE_MANAGEMENT_USERS} & token.groups:
                denied.add(user)
        return WsmanHostSpec(
            lab_host.name,
            lab_host.address,
            http_port=self.winrm_ports[0],
            https_port=self.winrm_ports[1],
            accounts=dict(lab_host.winrm_accounts),
            denied_users=frozenset(denied),
            os_version=model.os.version,
        )

    def _shell_host(self, spec: WsmanHostSpec, user: WsmanPrincipal) -> ShellHost:
        lab_host = self.hosts[spec.name.upper()]
        return AgentShellHost(lab_host.binding, user, spec.os_version)

    # --- access -------------------------------------------------------------------------------------
    def host(self, name: str) -> LabHost:
        return self.hosts[name.upper()]

    def server(self, name: str) -> HostServer:
        server = self.host(name).server
        if server is None:
            raise RuntimeError("the lab is not started")
        return server

    @property
    def ca_path(self) -> Path:
        if self.fleet is None:
            raise RuntimeError("the lab is not started")
        return self.fleet.ca_path

    def _changed(self, name: str) -> None:
        if self.persist:
            self.save(name)
        self.mail.reconcile(name)

    def save(self, name: str) -> None:
        path = self._state_path(name)
        if path is None:
            return
        lab_host = self.host(name)
        with lab_host.binding.lock:
            data = snapshot(lab_host.model)
        with self._save_lock:
            write_private_json(path, data)

    def inventory(self) -> dict[str, Any]:
        """What `serve` writes to --inventory: how to reach every host, and what it runs."""
        hosts = []
        for lab_host in self.hosts.values():
            server = self.server(lab_host.name)
            model = lab_host.model
            install = model.mailenable.install
            entry: dict[str, Any] = {
                "name": lab_host.name,
                "address": server.address,
                "winrm": {"http_port": server.http_port, "https_port": server.https_port},
                "username": ADMINISTRATOR,
                "password": lab_host.winrm_accounts[ADMINISTRATOR],
                "ca_path": str(self.ca_path),
                "os": {"key": model.os.key, "caption": model.os.product_name, "build": model.os.build},
                "powershell": model.powershell_version,
                "mailenable": {
                    "version": install.version,
                    "edition": install.edition.value,
                    "program_dir": install.program_dir,
                    "sql": install.sql,
                    "hardened_by_meinstaller": lab_host.spec.hardened_by_meinstaller,
                },
                "webmail": model.iis.webmail() if model.iis is not None else None,
                "mail_ports": dict(lab_host.mail.ports),
                "domain_member": model.domain_member,
                "other_accounts": [
                    {"username": user, "password": pw, "note": "local administrator, filtered by UAC remotely"}
                    for user, pw in lab_host.winrm_accounts.items()
                    if user != ADMINISTRATOR
                ],
            }
            hosts.append(entry)
        return {"lab_dir": str(self.lab_dir), "ca_path": str(self.ca_path), "hosts": hosts}

    # --- state and faults ---------------------------------------------------------------------------
    def state(self, name: str) -> dict[str, Any]:
        """The host's whole state (`to_state_dict`) plus model and WinRM counters and its faults."""
        lab_host = self.host(name)
        server = self.server(name)
        with lab_host.binding.lock:
            state = lab_host.model.to_state_dict()
            model = lab_host.model
            counters: dict[str, Any] = {
                "mutations": model.mutations,
                "work": model.work,
                "clock": model.ctx.clock.now(),
                "policy_refreshes": model.policy.refreshes,
                "boots": model.boots,
            }
            faults: dict[str, object] = {
                "files": sorted(model.fs.tree.faults),
                "registry": sorted(model.registry.tree.faults),
                "gpos": [g.name for g in model.policy.gpos],
            }
        snap = server.counters.snapshot()
        counters.update({f"winrm_{k}": v for k, v in vars(snap).items()})
        counters.update(
            requests=snap.requests, encrypted_requests=snap.encrypted_requests, auth_failures=snap.auth_failures
        )
        wsman_faults = server.faults
        faults.update(
            latency_s=wsman_faults.latency_s,
            reject_logins=wsman_faults.reject_logins,
            receive_timeouts=wsman_faults.receive_timeouts,
            drop_connections=wsman_faults.drop_connections,
            down=lab_host.down,
        )
        state["counters"] = counters
        state["faults"] = faults
        state["mail_ports"] = {p: (lab_host.mail.ports[p], p in lab_host.mail.servers) for p in PROTOCOLS}
        state["smtp"] = self.smtp_state(name)
        return state

    def smtp_state(self, name: str) -> dict[str, Any]:
        """The host's SMTP settings, whether STARTTLS is offered and the certificate it presents."""
        mail = self.host(name).mail
        cert = mail.smtp_certificate
        return {
            **mail.smtp.as_dict(),
            "starttls": mail.smtp_tls is not None,
            "certificate": None if cert is None else {"path": str(cert.cert_path), "sha256": cert.sha256},
        }

    def configure_smtp(self, name: str, **changes: Any) -> dict[str, Any]:
        """Change one host's SMTP settings (`SmtpSettings` fields: relay, auth_mode, certificate_days,
        certificate_name); the certificate is reissued to match. Returns `smtp_state`. Not saved with
        the host's state (a restarted lab has the spec's settings again)."""
        if self._authority is None:
            raise RuntimeError("the lab is not started")
        mail = self.host(name).mail
        mail.configure_smtp(replace(mail.smtp, **changes), self._authority)
        return self.smtp_state(name)

    def fault(
        self,
        name: str,
        *,
        latency: float | None = None,
        auth_failure: bool = False,
        timeout: bool = False,
        drop: int = 0,
        deny: str | None = None,
        gpo_revert: str | None = None,
        gpo_refresh_in: float = 0.5,
        down: bool | None = None,
        clear: bool = False,
    ) -> None:
        """Inject faults into one host (see `winlab fault --help`); `clear` removes them all first."""
        lab_host = self.host(name)
        server = self.server(name)
        if clear:
            server.faults.clear()
            with lab_host.binding.lock:
                lab_host.model.fs.tree.faults.clear()
                lab_host.model.registry.tree.faults.clear()
                lab_host.model.policy.unlink(GPO_NAME)
            if lab_host.down:
                self.set_down(name, False)
        if latency is not None:
            server.faults.latency_s = latency
        if auth_failure:
            server.faults.reject_logins = True
        if timeout:
            server.faults.receive_timeouts = TIMEOUT_RECEIVES
        if drop:
            server.faults.drop_connections = drop
        if deny is not None:
            with lab_host.binding.lock:
                if deny.upper().startswith("HKLM"):
                    lab_host.model.registry.inject_fault(deny, ERROR_ACCESS_DENIED)
                else:
                    lab_host.model.fs.inject_fault(deny, ERROR_ACCESS_DENIED)
        if gpo_revert is not None:
            if gpo_revert not in DEFAULT_RIGHTS:
                raise ValueError(f"no default assignment known for {gpo_revert}")
            # A domain GPO that defines the right with Windows' default holders: its next background refresh
            # (due `gpo_refresh_in` seconds of model time from now) takes away every local grant.
            gpo = GroupPolicyObject(GPO_NAME, {gpo_revert: DEFAULT_RIGHTS[gpo_revert]})
            with lab_host.binding.lock:
                lab_host.model.policy.unlink(GPO_NAME)
                lab_host.model.policy.link(gpo, refresh_in=gpo_refresh_in)
        if down is not None:
            self.set_down(name, down)
        self.mail.reconcile(name)

    def reboot(self, name: str) -> dict[str, Any]:
        """Restart the host's Windows (`WindowsHost.reboot`): WinRM connections are cut and its shells
        are gone (as on a real restart), every service stops, the Auto ones start again as at boot.

        Returns the boot report: `stopped`, `started` {service: Win32 code}, `failed`, `delayed`.
        """
        lab_host = self.host(name)
        server = self.server(name)
        was_down = lab_host.down
        if self.fleet is not None and not was_down:
            self.fleet.set_down(name, True)
        try:
            with lab_host.binding.lock:
                server.service.shells.clear()
                report = lab_host.model.reboot()
        finally:
            if self.fleet is not None and not was_down:
                self.fleet.set_down(name, False)
        self._changed(name)
        return report.as_dict()

    def set_down(self, name: str, down: bool = True) -> None:
        """Host down: WinRM listeners closed and connections cut, mail ports closed; up: reopened."""
        lab_host = self.host(name)
        lab_host.down = down
        if self.fleet is not None:
            self.fleet.set_down(name, down)
        self.mail.reconcile(name)

    def advance(self, seconds: float) -> None:
        """Move the shared model clock (ManualClock labs) and let every host's timers fire."""
        self.clock.advance(seconds)
        for lab_host in self.hosts.values():
            with lab_host.binding.lock:
                lab_host.model.run_due()
        self.mail.reconcile()

    def with_specs(self, **changes: Any) -> list[HostSpec]:
        """The lab's specs with fields replaced (helper for tests building variants)."""
        return [replace(s, **changes) for s in self.specs]


def free_loopback(address: str) -> bool:
    """Whether `address` can be bound here (Linux routes all of 127/8 to lo; others may not)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.bind((address, 0))
        return True
    except OSError:
        return False
    finally:
        probe.close()
