"""winlab runs Fleet Lockdown's agent v2: the executor and its primitives, over the emulated Windows.

`AgentShellHost` plugs into the WinRM server (`winlab.wsman`) as its `ShellHost`; `run_program`
(`executor.py`) runs one `Program` as a given token, mirroring the PowerShell executor one to one;
`PRIMITIVES` (`primitives.py`) does what each PowerShell primitive does, over the model. Nothing
here decides anything about hardening: those decisions are the engine's (`lockdown.engine`),
shared with production.
"""

from winlab.agent.executor import run_program
from winlab.agent.primitives import PRIMITIVES
from winlab.agent.shell import AgentShellHost, HostBinding, is_bootstrap

__all__ = ["PRIMITIVES", "AgentShellHost", "HostBinding", "is_bootstrap", "run_program"]
