"""winlab's WinRM server: real WS-Management over HTTP/HTTPS with NTLM (pyspnego) and message encryption.

Start hosts with `Fleet`; plug the emulated Windows in through a `ShellHostFactory`.
"""

from winlab.wsman.clock import Clock, ManualClock, SystemClock
from winlab.wsman.counters import HostCounters, HostFaults
from winlab.wsman.fleet import Fleet
from winlab.wsman.server import HostServer
from winlab.wsman.shellhost import (
    BasicShellHost,
    OutputChunk,
    PowerShellResult,
    Principal,
    ShellHost,
    ShellHostFactory,
    basic_shell_host,
    clixml_error,
)
from winlab.wsman.spec import CbtMode, HostSpec, loopback_address

__all__ = [
    "BasicShellHost",
    "CbtMode",
    "Clock",
    "Fleet",
    "HostCounters",
    "HostFaults",
    "HostServer",
    "HostSpec",
    "ManualClock",
    "OutputChunk",
    "PowerShellResult",
    "Principal",
    "ShellHost",
    "ShellHostFactory",
    "SystemClock",
    "basic_shell_host",
    "clixml_error",
    "loopback_address",
]
