"""One fleet for the whole session: real WinRM listeners on loopback, driven by unmodified pywinrm/pypsrp."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import winrm

from winlab.wsman import (
    BasicShellHost,
    CbtMode,
    Fleet,
    HostServer,
    HostSpec,
    ManualClock,
    OutputChunk,
    PowerShellResult,
    Principal,
    ShellHost,
)

PASSWORDS = {
    "ALPHA": "Alpha-Pass1",
    "BRAVO": "Bravo-Pass2",
    "CHARLIE": "Charlie-Pass3",
    "KÖLN": "Köln-Pass5",
}
DEPLOY_PASSWORD = "d3ploy:with:colons"  # a ':' must not break the NTLM account file
VIEWER_PASSWORD = "Viewer-Pass4"


@dataclass(frozen=True)
class ScriptedHost:
    """A stand-in for the emulated Windows: a few scripts with known output, everything else refused."""

    hostname: str
    os_version: str
    user: Principal

    def run_powershell(self, script: str, stdin: bytes, codepage: int) -> PowerShellResult:
        command, _, arg = script.strip().partition(" ")
        if command == "big":
            return PowerShellResult(stdout=b"x" * int(arg))
        if command == "slow":
            return PowerShellResult(stdout="finished\r\n", runtime_s=float(arg))
        if command == "stream":
            chunks = tuple(OutputChunk(0.2 * i, "stdout", f"line {i}\r\n") for i in range(3))
            return PowerShellResult(chunks=chunks, runtime_s=0.5)
        if command == "upper-stdin":
            return PowerShellResult(stdout=stdin.upper())
        if command == "say":
            return PowerShellResult(stdout=arg + "\r\n")
        return BasicShellHost(self.hostname, self.os_version, self.user).run_powershell(script, stdin, codepage)


def scripted_host(spec: HostSpec, user: Principal) -> ShellHost:
    return ScriptedHost(spec.name, spec.os_version, user)


@dataclass
class Lab:
    fleet: Fleet
    clock: ManualClock
    lab_dir: Path

    def host(self, name: str) -> HostServer:
        return self.fleet.host(name)

    def endpoint(self, name: str, scheme: str = "http") -> str:
        return self.fleet.host(name).endpoint(scheme)

    def session(self, name: str, username: str = ".\\Administrator", password: str | None = None, **kw: object):
        kw.setdefault("proxy", None)  # never let an environment proxy see loopback traffic
        kw.setdefault("ca_trust_path", None)
        return winrm.Session(
            self.endpoint(name, str(kw.pop("scheme", "http"))),
            auth=(username, password if password is not None else PASSWORDS[name]),
            transport=str(kw.pop("transport", "ntlm")),
            **kw,
        )

    def protocol(self, name: str, username: str = ".\\Administrator", **kw: object) -> winrm.protocol.Protocol:
        kw.setdefault("proxy", None)
        kw.setdefault("ca_trust_path", None)
        return winrm.protocol.Protocol(
            self.endpoint(name),
            transport="ntlm",
            username=username,
            password=str(kw.pop("password", PASSWORDS[name])),
            **kw,
        )


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab_dir = tmp_path_factory.mktemp("winlab")
    clock = ManualClock()
    specs = [
        HostSpec(
            "ALPHA",
            "127.77.0.1",
            http_port=0,
            https_port=0,
            accounts={"Administrator": PASSWORDS["ALPHA"], "deploy": DEPLOY_PASSWORD, "viewer": VIEWER_PASSWORD},
            basic_enabled=True,
            cbt=CbtMode.RELAXED,
            denied_users=frozenset({"viewer"}),
        ),
        HostSpec(
            "BRAVO",
            "127.77.0.2",
            http_port=0,
            https_port=0,
            accounts={"Administrator": PASSWORDS["BRAVO"]},
            basic_enabled=False,
            cbt=CbtMode.STRICT,
        ),
        HostSpec("CHARLIE", "127.77.0.3", http_port=0, accounts={"Administrator": PASSWORDS["CHARLIE"]}),
        HostSpec("KÖLN", "127.77.0.4", http_port=0, accounts={"Administrator": PASSWORDS["KÖLN"]}),
    ]
    with Fleet(specs, lab_dir, clock=clock, shell_host_factory=scripted_host) as fleet:
        yield Lab(fleet, clock, lab_dir)


@pytest.fixture
def charlie(lab: Lab) -> Iterator[HostServer]:
    """The host whose faults tests change; every fault is cleared (and the host brought up) afterwards."""
    host = lab.host("CHARLIE")
    try:
        yield host
    finally:
        host.faults.clear()
        lab.fleet.set_down("CHARLIE", False)


@dataclass
class TcpRecorder:
    """A transparent TCP proxy that keeps every byte it forwards in either direction."""

    upstream: tuple[str, int]
    port: int = 0
    seen: bytearray = field(default_factory=bytearray)
    _server: socket.socket | None = None

    def start(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        assert self._server is not None
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                self.seen.extend(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()


@pytest.fixture
def recorder(lab: Lab) -> Iterator[TcpRecorder]:
    host = lab.host("ALPHA")
    assert host.http_port is not None
    proxy = TcpRecorder((host.address, host.http_port))
    proxy.start()
    yield proxy
    proxy.close()
