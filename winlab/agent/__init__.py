"""winlab runs Fleet Lockdown's agent: the bootstrap + agent contract in Python, against the emulated Windows.

`AgentShellHost` plugs into the WinRM server (`winlab.wsman`) as its `ShellHost`; `run_request`
runs one validated `AgentRequest` against a `WindowsHost` as a given token; `HANDLERS` maps each
(mode, rule type) to the Python handler that mirrors the PowerShell one.
"""

from winlab.agent.handlers import HANDLERS, ROLLBACK_HANDLERS, conformance_table
from winlab.agent.runner import run_request
from winlab.agent.shell import AgentShellHost, HostBinding, is_bootstrap

__all__ = [
    "HANDLERS",
    "ROLLBACK_HANDLERS",
    "AgentShellHost",
    "HostBinding",
    "conformance_table",
    "is_bootstrap",
    "run_request",
]
