"""A winlab WinRM fleet whose shells recognise exactly our bootstrap and answer like the executor would.

`AgentTestHost` tests the transport (`remote.transport.run_program`), not the Windows model: it
accepts only the exact bootstrap command (by SHA-256), decodes the stdin payload, checks the agent
script's hash against `agent_sha256()`, validates the `Program`, and answers a canned
`ProgramResult` (every step ok with an empty result) between the markers. Anything else gets the
CLIXML error a real powershell.exe would print. Each host's behaviour is chosen by its name. The
emulated Windows behind the same WinRM server is tested in tests/integration/winlab_agent.
"""

from __future__ import annotations

import hashlib
import random
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lockdown.agent import (
    AGENT_VERSION,
    RESULT_BEGIN,
    RESULT_END,
    agent_sha256,
    bootstrap_script,
    format_agent_output,
    split_stdin,
)
from lockdown.engine.observe import read_steps
from lockdown.engine.program import Program, ProgramError, ProgramResult, Step, StepResult
from lockdown.rules.builtin import load_builtin_profile
from lockdown.rules.compile import compile_plan
from remote import HostConnection, Scheme, TlsVerify
from tests.unit.lockdown.factories import facts_2022
from winlab.wsman import (
    BasicShellHost,
    CbtMode,
    Fleet,
    HostServer,
    HostSpec,
    ManualClock,
    PowerShellResult,
    Principal,
    ShellHost,
)

ADMIN_PASSWORD = "Adm1n-Secret-Pw!"
VIEWER_PASSWORD = "V1ewer-Secret-Pw!"
SERVICE_PASSWORD = "Svc-P4ssw0rd-Never-Shown#"
BOOTSTRAP_SHA = hashlib.sha256(bootstrap_script().encode("utf-8")).hexdigest()

# name → what the fake agent does
BEHAVIOURS = {
    "AGENT01": "ok",
    "NOADMIN": "not_elevated",  # the agent's structured error, echoing the service password
    "GARBAGE": "garbage",
    "HUGE": "huge",
    "OLDPS": "unsupported",
    "CRASH": "crash",
}


@dataclass
class Received:
    """What a test host saw: the programs it decoded and the raw stdin size."""

    programs: list[Program] = field(default_factory=list)
    stdin_sizes: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


RECEIVED: dict[str, Received] = {name: Received() for name in BEHAVIOURS}


def _refuse(message: str) -> PowerShellResult:
    from winlab.wsman import clixml_error

    return PowerShellResult(stderr=clixml_error(message), exit_code=1)


def canned_result(program: Program, **overrides: object) -> ProgramResult:
    steps = [StepResult(id=s.id, op=s.op, status="ok", result={}) for s in program.steps]
    data: dict[str, object] = {
        "agent_version": program.agent_version,
        "mode": program.mode,
        "job_id": program.job_id,
        "program_version": program.program_version,
        "steps": steps,
    }
    data.update(overrides)
    return ProgramResult.model_validate(data)


@dataclass(frozen=True)
class AgentTestHost:
    hostname: str
    os_version: str
    user: Principal

    def run_powershell(self, script: str, stdin: bytes, codepage: int) -> PowerShellResult:
        if hashlib.sha256(script.encode("utf-8")).hexdigest() != BOOTSTRAP_SHA:
            return BasicShellHost(self.hostname, self.os_version, self.user).run_powershell(script, stdin, codepage)
        if codepage != 65001:
            return _refuse(f"expected code page 65001, got {codepage}")
        agent, program_json = split_stdin(stdin)
        if hashlib.sha256(agent.encode("utf-8")).hexdigest() != agent_sha256():
            return _refuse("the agent script's hash does not match agent_sha256()")
        program = Program.model_validate_json(program_json)
        seen = RECEIVED[self.hostname]
        with seen.lock:
            seen.programs.append(program)
            seen.stdin_sizes.append(len(stdin))
        behaviour = BEHAVIOURS[self.hostname]
        if behaviour == "not_elevated":
            leaked = next(iter(program.secret_values()), "")
            error = ProgramError(code="not_elevated", message=f"token is filtered by UAC (pw {leaked})")
            return PowerShellResult(
                stdout=format_agent_output(canned_result(program, error=error, steps=[])), exit_code=2
            )
        if behaviour == "garbage":
            return PowerShellResult(stdout=f"{RESULT_BEGIN}\r\nthis is !! not base64\r\n{RESULT_END}\r\n", exit_code=0)
        if behaviour == "huge":
            return PowerShellResult(stdout=b"A" * (17 * 1024 * 1024), exit_code=0)
        if behaviour == "unsupported":
            error = ProgramError(code="unsupported_powershell", message="requires WMF 5.1 (found PowerShell 2.0)")
            return PowerShellResult(
                stdout=format_agent_output(canned_result(program, error=error, steps=[])), exit_code=3
            )
        if behaviour == "crash":
            return _refuse("The term 'Get-Nothing' is not recognized as the name of a cmdlet")
        return PowerShellResult(stdout=b"some noise\r\n" + format_agent_output(canned_result(program)), exit_code=0)


def agent_test_host(spec: HostSpec, user: Principal) -> ShellHost:
    return AgentTestHost(spec.name, spec.os_version, user)


@dataclass
class AgentLab:
    fleet: Fleet
    lab_dir: Path

    def host(self, name: str) -> HostServer:
        return self.fleet.host(name)

    def conn(self, name: str = "AGENT01", scheme: str = "http", **kw: object) -> HostConnection:
        server = self.host(name)
        port = server.http_port if scheme == "http" else server.https_port
        values: dict[str, object] = {
            "address": server.address,
            "port": port,
            "scheme": Scheme(scheme),
            "username": ".\\Administrator",
            "password": ADMIN_PASSWORD,
            "tls_verify": TlsVerify.CA_BUNDLE,
            "ca_bundle_pem": self.fleet.ca_path.read_text(encoding="ascii"),
            "connect_timeout_s": 5.0,
            "operation_timeout_s": 5,
            "run_timeout_s": 30.0,
            "retry_attempts": 1,
        }
        values.update(kw)
        return HostConnection(**values)

    def cert_sha256(self, name: str) -> str:
        pem = (self.lab_dir / "certs" / f"{name}.pem").read_text(encoding="ascii")
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


@pytest.fixture(scope="session")
def agent_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentLab]:
    lab_dir = tmp_path_factory.mktemp("remote-lab")
    specs = [
        HostSpec(
            name,
            f"127.77.9.{index + 1}",
            http_port=0,
            https_port=0 if name == "AGENT01" else None,
            accounts={"Administrator": ADMIN_PASSWORD, "viewer": VIEWER_PASSWORD},
            denied_users=frozenset({"viewer"}),
            basic_enabled=True,
            cbt=CbtMode.RELAXED,
        )
        for index, name in enumerate(BEHAVIOURS)
    ]
    with Fleet(specs, lab_dir, clock=ManualClock(), shell_host_factory=agent_test_host) as fleet:
        yield AgentLab(fleet, lab_dir)


@pytest.fixture
def agent01(agent_lab: AgentLab) -> Iterator[HostServer]:
    """AGENT01 with faults cleared and the host up again afterwards."""
    host = agent_lab.host("AGENT01")
    try:
        yield host
    finally:
        host.faults.clear()
        agent_lab.fleet.set_down("AGENT01", False)


def plan():
    return compile_plan(load_builtin_profile(), facts_2022())


def verify_program(job_id: str = "job-verify-1") -> Program:
    """What the engine sends for a verify of the built-in profile (the host step and every read)."""
    steps = [Step(id="host", op="host_info"), *read_steps(plan(), "r").steps]
    return Program(agent_version=AGENT_VERSION, mode="verify", job_id=job_id, steps=steps)


def apply_program(job_id: str = "job-apply-1") -> Program:
    data = {**verify_program(job_id).model_dump(), "mode": "apply", "secrets": {"SERVICE_PASSWORD": SERVICE_PASSWORD}}
    return Program.model_validate(data)


def big_program(steps: int = 4000) -> Program:
    # stdin is gzipped: random paths and SIDs keep the payload several chunks long anyway.
    rng = random.Random(5)
    sddl = "O:S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464D:PAI(A;;0x1200a9;;;BU)" * 2
    writes = []
    for i in range(steps):
        sid = "S-1-5-21-" + "-".join(str(rng.getrandbits(32)) for _ in range(4))
        path = f"C:\\Windows\\System32\\{rng.getrandbits(128):032x}{rng.getrandbits(128):032x}.exe"
        args = {
            "kind": "path",
            "path": path,
            "object": "file",
            "sddl": f"D:PAI(D;;0x200a9;;;{sid})",
            "expected": sddl + f"(A;;0x1200a9;;;{sid})",
            "take_ownership": True,
        }
        writes.append(Step(id=f"u{i}", op="dacl_write", args=args))
    return Program(agent_version=AGENT_VERSION, mode="rollback", job_id="job-rollback-1", steps=writes)
