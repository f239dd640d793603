"""SMTP / POP / IMAP answer with MailEnable's banners only while their services run in the model."""

from __future__ import annotations

import socket

import pytest

from tests.integration.winlab_agent.conftest import name_of
from winlab.lab import Lab

pytestmark = pytest.mark.winlab


def _exchange(address: str, port: int, lines: list[bytes]) -> bytes:
    with socket.create_connection((address, port), timeout=5) as conn:
        conn.settimeout(5)
        data = conn.recv(4096)
        for line in lines:
            conn.sendall(line + b"\r\n")
            data += conn.recv(4096)
        return data


@pytest.mark.parametrize(
    ("protocol", "service", "lines", "expected"),
    [
        ("smtp", "MESMTPCS", [b"EHLO client", b"QUIT"], [b"220 ", b"ESMTP MailEnable Service", b"250-", b"221 "]),
        ("pop", "MEPOPS", [b"CAPA", b"QUIT"], [b"+OK Welcome to MailEnable POP3 Server", b"USER", b"+OK"]),
        ("imap", "MEIMAPS", [b"a1 CAPABILITY", b"a2 LOGOUT"], [b"Welcome to MailEnable", b"a1 OK", b"* BYE"]),
    ],
)
def test_port_answers_only_while_its_service_runs(
    lab: Lab, protocol: str, service: str, lines: list[bytes], expected: list[bytes]
) -> None:
    host = lab.host(name_of("spare"))
    port = host.mail.ports[protocol]  # type: ignore[index]
    reply = _exchange(host.address, port, lines)
    assert all(part in reply for part in expected), reply
    with host.binding.lock:
        assert host.model.services.stop(service) == 0
    lab.mail.reconcile(host.name)
    try:
        with pytest.raises((ConnectionRefusedError, ConnectionResetError)):
            _exchange(host.address, port, lines)
    finally:
        with host.binding.lock:
            assert host.model.services.start(service) == 0
        lab.mail.reconcile(host.name)
    assert b"Welcome" in _exchange(host.address, port, []) or b"220 " in _exchange(host.address, port, [])


def test_every_host_has_its_own_address(lab: Lab) -> None:
    addresses = [h["address"] for h in lab.inventory()["hosts"]]
    assert len(set(addresses)) == len(addresses) or all(a == "127.0.0.1" for a in addresses)
    assert all(a.startswith("127.") for a in addresses)
