"""The `ShellHost` that runs Fleet Lockdown's agent on an emulated host, for the WinRM server.

`powershell.exe -EncodedCommand <bootstrap>` is recognised by the exact bootstrap text (SHA-256 of
`bootstrap_script()`), and the agent on stdin (base64 of gzip, inflated as the bootstrap does) by
`agent_sha256()` of the uncompressed script. winlab cannot interpret any
other PowerShell: everything else is refused with the CLIXML error powershell.exe would print and
exit code 1, never answered with a made-up success. What the bootstrap does itself is mirrored
exactly: on PowerShell 2.0 (2008 R2 without WMF 5.1) it answers `unsupported_powershell` with the
request's own agent_version/job_id/mode and exits 3, before looking at the agent.

The run acts as the authenticated user: the host logs them on (network logon, so UAC remote
restrictions apply) and every model call takes that token. Modelled time spent (ACL propagation,
service restarts, settling) becomes the command's `runtime_s` (times `time_scale`), so the WinRM
server releases the output that much later in real time.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import json
import re
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from pydantic import ValidationError

from lockdown.agent import AGENT_VERSION, agent_sha256, bootstrap_script, format_agent_output
from lockdown.engine.program import ProgramResult
from winlab.agent.executor import EXIT_PROGRAM_ERROR, run_program
from winlab.agent.primitives import MAIL_PORTS
from winlab.mail import Protocol
from winlab.windows.errors import Win32Error
from winlab.windows.host import WindowsHost
from winlab.windows.tokens import LogonType
from winlab.wsman.shellhost import PowerShellResult, Principal, clixml_error

EXIT_UNSUPPORTED_POWERSHELL: Final = 3
EXIT_POWERSHELL_ERROR: Final = 1
_BOOTSTRAP_SHA256: Final = hashlib.sha256(bootstrap_script().encode("utf-8")).hexdigest()


@dataclass
class HostBinding:
    """One emulated host behind a WinRM listener.

    `passwords` are the WinRM accounts' passwords (what NTLM checked; the run logs the user on with
    it). `lock` serialises the model between the WinRM loop and the control surface. `on_change`
    runs after a command that changed the host's state (persisting it, re-checking mail ports).
    """

    host: WindowsHost
    passwords: dict[str, str]
    lock: threading.RLock = field(default_factory=threading.RLock)
    time_scale: float = 1.0
    mail_ports: dict[int, Protocol] = field(default_factory=lambda: dict(MAIL_PORTS))
    on_change: Callable[[], None] | None = None

    def password_of(self, username: str) -> str | None:
        wanted = username.rsplit("\\", 1)[-1].lower()
        return next((pw for user, pw in self.passwords.items() if user.lower() == wanted), None)


def is_bootstrap(script: str) -> bool:
    """Whether `script` (decoded from -EncodedCommand) is exactly this release's bootstrap."""
    return hashlib.sha256(script.encode("utf-8")).hexdigest() == _BOOTSTRAP_SHA256


def _refuse(message: str) -> PowerShellResult:
    return PowerShellResult(stderr=clixml_error(message), exit_code=EXIT_POWERSHELL_ERROR)


def _stdin_lines(stdin: bytes) -> list[str]:
    """`@($input | ForEach-Object { "$_".Trim() } | Where-Object { $_ })`."""
    return [line.strip() for line in stdin.decode("ascii", errors="replace").splitlines() if line.strip()]


# What bootstrap.ps1's Read-FleetLine can throw on a bad line (FromBase64String, GZipStream).
_DECODE_ERRORS: Final = (binascii.Error, ValueError, OSError, EOFError, zlib.error)


def _decode(line: str) -> str:
    """bootstrap.ps1's Read-FleetLine: FromBase64String, GZipStream(Decompress), StreamReader(UTF8).

    StreamReader replaces invalid UTF-8 rather than throwing, hence errors="replace".
    """
    return gzip.decompress(base64.b64decode(line, validate=True)).decode("utf-8", errors="replace")


def _ps2_answer(lines: list[str], version: str) -> PowerShellResult:
    """bootstrap.ps1's PowerShell < 5.1 branch, character for character."""
    request = ""
    if len(lines) >= 2:
        try:
            request = _decode(lines[1])
        except _DECODE_ERRORS as exc:
            return _refuse(f"Read-FleetLine : {exc}")
    head = ""
    for key in ("agent_version", "job_id", "mode"):
        match = re.search('"' + key + r'":"((?:[^"\\]|\\.)*)"', request)
        head += '"' + key + '":"' + (match.group(1) if match else "") + '",'
    document = (
        "{"
        + head
        + '"error":{"code":"unsupported_powershell","message":"requires WMF 5.1 (found PowerShell '
        + version
        + ')"}}'
    )
    body = base64.b64encode(document.encode("utf-8")).decode("ascii")
    stdout = f"FLEET-LOCKDOWN-RESULT-BEGIN\r\n{body}\r\nFLEET-LOCKDOWN-RESULT-END\r\n"
    return PowerShellResult(stdout=stdout, exit_code=EXIT_UNSUPPORTED_POWERSHELL)


def _bootstrap_catch(request_json: str, message: str) -> PowerShellResult:
    """bootstrap.ps1's catch block: an agent_error result built from the program's head, exit 2."""
    try:
        head = json.loads(request_json)
        result = ProgramResult.model_validate(
            {
                "agent_version": head.get("agent_version"),
                "job_id": head.get("job_id"),
                "mode": head.get("mode"),
                "error": {"code": "agent_error", "message": ("bootstrap: " + message)[:4096]},
            }
        )
    except (ValueError, AttributeError, ValidationError):
        # ConvertFrom-Json itself throws inside the catch block: powershell.exe prints the record, exits 1.
        return _refuse("ConvertFrom-Json : Invalid JSON primitive: " + request_json[:40])
    return PowerShellResult(stdout=format_agent_output(result), exit_code=EXIT_PROGRAM_ERROR)


@dataclass
class AgentShellHost:
    """A shell on one emulated host, as one authenticated user (see the module docstring)."""

    binding: HostBinding
    user: Principal
    os_version: str

    @property
    def hostname(self) -> str:
        return self.binding.host.name

    def run_powershell(self, script: str, stdin: bytes, codepage: int) -> PowerShellResult:
        if not is_bootstrap(script):
            first = script.strip().splitlines()[0][:80] if script.strip() else ""
            return _refuse(
                f"winlab cannot interpret this PowerShell script (only the Fleet Lockdown bootstrap): {first}"
            )
        with self.binding.lock:
            host = self.binding.host
            clock = host.ctx.clock
            started, mutations = clock.now(), host.mutations
            result = self._run_bootstrap(host, stdin)
            elapsed = max(0.0, clock.now() - started)
            changed = host.mutations != mutations
        if changed and self.binding.on_change is not None:
            self.binding.on_change()
        return PowerShellResult(
            stdout=result.stdout,
            stderr=result.stderr,
            exit_code=result.exit_code,
            runtime_s=elapsed * self.binding.time_scale,
        )

    def _run_bootstrap(self, host: WindowsHost, stdin: bytes) -> PowerShellResult:
        lines = _stdin_lines(stdin)
        version = host.powershell_version
        major, _, rest = version.partition(".")
        minor = rest.partition(".")[0]
        if (int(major), int(minor or 0)) < (5, 1):
            return _ps2_answer(lines, ".".join(version.split(".")[:2]))
        request_json = ""
        try:
            if len(lines) >= 2:
                request_json = _decode(lines[1])
            agent = _decode(lines[0]) if lines else ""
        except _DECODE_ERRORS as exc:
            return _bootstrap_catch(request_json, f"Read-FleetLine: {exc}")
        if hashlib.sha256(agent.encode("utf-8")).hexdigest() != agent_sha256():
            return _refuse(
                "winlab cannot interpret this agent: its SHA-256 is not agent_sha256() of the Fleet Lockdown "
                f"agent {AGENT_VERSION} (a modified or different agent was sent)"
            )
        password = self.binding.password_of(self.user.username)
        if password is None:
            return _refuse(f"winlab has no logon session for {self.user}")
        try:
            token = host.logon(self.user.username, password, LogonType.NETWORK)
        except Win32Error as exc:
            return _refuse(f"{self.user}: {exc.message}")
        result, exit_code = run_program(
            host, token, request_json, agent_version=AGENT_VERSION, mail_ports=self.binding.mail_ports
        )
        return PowerShellResult(stdout=format_agent_output(result), exit_code=exit_code)
