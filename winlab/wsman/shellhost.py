"""What a WinRM shell runs against: the seam where the emulated Windows plugs in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from winlab.wsman.spec import HostSpec

StreamName = Literal["stdout", "stderr"]


@dataclass(frozen=True)
class Principal:
    """An authenticated local account: `domain` is the host's computer name."""

    domain: str
    username: str

    def __str__(self) -> str:
        return f"{self.domain}\\{self.username}"


@dataclass(frozen=True)
class OutputChunk:
    """Output a long-running command emits `after_s` seconds (real time) after it starts."""

    after_s: float
    stream: StreamName
    data: str | bytes


@dataclass(frozen=True)
class PowerShellResult:
    """The outcome of one `powershell.exe` run.

    Text (`str`) is encoded in the shell's code page the way a console program's output would be; `bytes`
    go out untouched. `chunks` are streamed first, over time; `stdout`/`stderr` and the exit code follow at
    `runtime_s` seconds after the start (never before the last chunk).
    """

    stdout: str | bytes = ""
    stderr: str | bytes = ""
    exit_code: int = 0
    runtime_s: float = 0.0
    chunks: tuple[OutputChunk, ...] = ()


class ShellHost(Protocol):
    """The Windows behind one shell, seen by one authenticated user."""

    @property
    def hostname(self) -> str: ...

    @property
    def os_version(self) -> str: ...

    @property
    def user(self) -> Principal: ...

    def run_powershell(self, script: str, stdin: bytes, codepage: int) -> PowerShellResult:
        """Run a PowerShell script (already decoded from -EncodedCommand) with what arrived on stdin."""
        ...


ShellHostFactory = Callable[[HostSpec, Principal], ShellHost]


def clixml_error(message: str) -> str:
    """stderr as powershell.exe writes an error record for a remote (redirected) caller."""
    escaped = (
        message.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("\r", "_x000D_")
        .replace("\n", "_x000A_")
    )
    return (
        "#< CLIXML\r\n"
        '<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
        f'<S S="Error">{escaped}_x000D__x000A_</S></Objs>'
    )


@dataclass(frozen=True)
class BasicShellHost:
    """A host with no PowerShell model: cmd built-ins work, every script is refused with an error.

    Used until the emulated Windows is plugged in; it never pretends a script succeeded.
    """

    hostname: str
    os_version: str
    user: Principal

    def run_powershell(self, script: str, stdin: bytes, codepage: int) -> PowerShellResult:
        first_line = script.strip().splitlines()[0][:80] if script.strip() else ""
        return PowerShellResult(
            stderr=clixml_error(f"winlab cannot interpret this PowerShell script: {first_line}"),
            exit_code=1,
        )


def basic_shell_host(spec: HostSpec, user: Principal) -> ShellHost:
    """The default ShellHostFactory."""
    return BasicShellHost(hostname=spec.name, os_version=spec.os_version, user=user)
