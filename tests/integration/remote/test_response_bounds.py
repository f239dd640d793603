"""What the worker reads from, and where it connects for, a host it does not trust.

- Audit (security-audit-2026-12, lower findings): "a 50 MB WinRM response is read whole before the
  cap applies". Each HTTP response body is now read through `MAX_RESPONSE_BYTES` (and a declared
  Content-Length over it is refused unread).
- Audit ("port scanner", follow-up): the management-network check resolved the name, then requests
  resolved it again to connect (DNS rebinding). The run now connects to the address the check vetted.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

import remote.transport as transport
from remote import HostConnection, OutputTooLarge, Scheme, TlsVerificationFailed, Unreachable
from remote.transport import _HostAdapter, run_program
from tests.integration.remote.conftest import AgentLab, verify_program

MIB = 1024 * 1024


class _Body(BaseHTTPRequestHandler):
    """POST answers: `/endless` streams until the client hangs up, `/declared` claims 100 MiB,
    `/small` is 10 bytes. `sent` counts the body bytes written."""

    sent = 0
    hosts: list[str] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).hosts.append(self.headers.get("Host", ""))
        if self.path == "/small":
            self._head({"Content-Length": "10"})
            self.wfile.write(b"0123456789")
            return
        if self.path == "/declared":
            self._head({"Content-Length": str(100 * MIB)})
            self._stream()
            return
        self._head({"Connection": "close"})
        self._stream()

    def _head(self, headers: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/soap+xml")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _stream(self) -> None:
        block = b"x" * (64 * 1024)
        try:
            for _ in range(64 * MIB // len(block)):
                self.wfile.write(block)
                type(self).sent += len(block)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def body_server() -> Iterator[str]:
    _Body.sent = 0
    _Body.hosts = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Body)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _session(address: str = "127.0.0.1", connect_to: str | None = None) -> requests.Session:
    conn = HostConnection(address=address, scheme=Scheme.HTTP, username="u", password="p", run_timeout_s=30.0)
    session = requests.Session()
    session.mount("http://", _HostAdapter(conn, time.monotonic() + 30, time.monotonic, connect_to))
    return session


def test_a_body_past_the_cap_is_refused_while_streaming(body_server: str, monkeypatch) -> None:
    monkeypatch.setattr(transport, "MAX_RESPONSE_BYTES", 1 * MIB)
    with pytest.raises(OutputTooLarge, match="over 1 MiB"):
        _session().post(body_server + "/endless", data=b"<s/>")
    time.sleep(0.2)
    # The server offered 64 MiB; the client stopped near the cap (socket buffers hold a few MiB).
    assert _Body.sent < 16 * MIB


def test_a_declared_length_past_the_cap_is_refused_unread(body_server: str, monkeypatch) -> None:
    monkeypatch.setattr(transport, "MAX_RESPONSE_BYTES", 1 * MIB)
    streamed: list[int] = []
    real_stream = transport._CappedBody.stream

    def stream(self, *args, **kwargs):
        streamed.append(1)
        return real_stream(self, *args, **kwargs)

    monkeypatch.setattr(transport._CappedBody, "stream", stream)
    with pytest.raises(OutputTooLarge):
        _session().post(body_server + "/declared", data=b"<s/>")
    assert streamed == []  # refused on the header, before any of the body was read


def test_a_pinned_adapter_connects_to_the_vetted_address_and_keeps_the_name(body_server: str) -> None:
    port = body_server.rsplit(":", 1)[1]
    # `pinned.invalid` resolves nowhere (RFC 6761): only the vetted address can have been used.
    response = _session("pinned.invalid", connect_to="127.0.0.1").post(f"http://pinned.invalid:{port}/small", data=b"x")
    assert response.content == b"0123456789"
    assert _Body.hosts == [f"pinned.invalid:{port}"]


def test_a_body_under_the_cap_is_read_whole(body_server: str) -> None:
    assert _session().post(body_server + "/small", data=b"<s/>").content == b"0123456789"


REBINDING = ("agent01.rebind.test", "agent01", "impostor.rebind.test")


@pytest.fixture
def rebinding_name(monkeypatch) -> list[str]:
    """Each name in REBINDING answers 127.77.9.1 (AGENT01) once, then nothing (a rebinding name
    would answer another address); IP literals resolve as usual. Returns the lookups, in order."""
    real = socket.getaddrinfo
    looked_up: list[str] = []

    def getaddrinfo(host, port, *args, **kwargs):
        if host in REBINDING:
            looked_up.append(host)
            if looked_up.count(host) > 1:
                raise socket.gaierror(socket.EAI_NONAME, "rebound")
            return real("127.77.9.1", port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return looked_up


@pytest.mark.winlab
def test_https_to_the_vetted_address_checks_the_certificate_against_the_name(
    agent_lab: AgentLab, agent01, rebinding_name
) -> None:
    # AGENT01's certificate names "AGENT01"/"agent01" and 127.77.9.1 (winlab/wsman/tls.py).
    conn = agent_lab.conn(address="agent01", scheme="https", management_networks=("127.77.9.0/24",))
    assert run_program(conn, verify_program("job-pinned-tls")).error is None
    # The same address under a name the certificate does not carry is refused: SNI and the name
    # check use the server's name, not the pinned IP (which the certificate would have matched).
    impostor = agent_lab.conn(address="impostor.rebind.test", scheme="https", management_networks=("127.77.9.0/24",))
    with pytest.raises(TlsVerificationFailed):
        run_program(impostor, verify_program("job-impostor"))
    assert rebinding_name == ["agent01", "impostor.rebind.test"]


@pytest.mark.winlab
def test_the_run_connects_to_the_address_the_network_check_vetted(agent_lab: AgentLab, agent01, rebinding_name) -> None:
    conn = agent_lab.conn(address="agent01.rebind.test", management_networks=("127.77.9.0/24",))
    result = run_program(conn, verify_program("job-pinned"))
    assert result.error is None
    assert rebinding_name == ["agent01.rebind.test"]  # resolved once, for the check


@pytest.mark.winlab
def test_without_management_networks_the_name_is_resolved_by_the_connection(
    agent_lab: AgentLab, agent01, rebinding_name
) -> None:
    # No networks: nothing was vetted, nothing is pinned; the connection resolves the name itself
    # (here: the second lookup fails, as a rebound name would point elsewhere).
    conn = agent_lab.conn(address="agent01.rebind.test", management_networks=())
    rebinding_name.append("agent01.rebind.test")  # as if it had been looked up once before
    with pytest.raises(Unreachable):
        run_program(conn, verify_program("job-unpinned"))
