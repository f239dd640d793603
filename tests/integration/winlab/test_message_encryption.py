"""NTLM over HTTP: every message after the handshake is sealed; plaintext is refused."""

from __future__ import annotations

import pytest
import winrm
from winrm.exceptions import InvalidCredentialsError

from tests.integration.winlab.conftest import PASSWORDS, Lab, TcpRecorder

pytestmark = pytest.mark.winlab


def test_plaintext_soap_over_ntlm_http_is_refused(lab: Lab) -> None:
    host = lab.host("ALPHA")
    before = host.counters.snapshot()
    with pytest.raises(InvalidCredentialsError):
        lab.session("ALPHA", message_encryption="never").run_cmd("whoami")
    assert host.counters.plaintext_refused == before.plaintext_refused + 1
    assert host.counters.shells_created == before.shells_created


def test_wire_carries_no_plaintext_envelope_when_encrypted(lab: Lab, recorder: TcpRecorder) -> None:
    session = winrm.Session(
        f"http://127.0.0.1:{recorder.port}/wsman",
        auth=(".\\Administrator", PASSWORDS["ALPHA"]),
        transport="ntlm",
        proxy=None,
    )
    result = session.run_cmd("echo", ["secret-marker-42"])
    assert result.std_out == b"secret-marker-42\r\n"
    wire = bytes(recorder.seen)
    assert b"multipart/encrypted" in wire
    assert b"Envelope" not in wire
    assert b"secret-marker-42" not in wire


def test_run_ps_takes_eight_requests_and_every_soap_request_is_encrypted(lab: Lab) -> None:
    host = lab.host("CHARLIE")
    before = host.counters.snapshot()
    lab.session("CHARLIE").run_ps("say hello")
    after = host.counters.snapshot()
    assert after.requests - before.requests == 8
    assert after.soap_requests - before.soap_requests == 5
    assert after.encrypted_requests - before.encrypted_requests == 5
    assert after.ntlm_logins - before.ntlm_logins == 1


def test_one_handshake_serves_several_shells_with_low_level_protocol(lab: Lab) -> None:
    host = lab.host("CHARLIE")
    before = host.counters.snapshot()
    protocol = lab.protocol("CHARLIE")
    for _ in range(2):
        shell_id = protocol.open_shell()
        command_id = protocol.run_command(shell_id, "hostname")
        assert protocol.get_command_output(shell_id, command_id) == (b"CHARLIE\r\n", b"", 0)
        protocol.cleanup_command(shell_id, command_id)
        protocol.close_shell(shell_id, close_session=False)
    protocol.transport.close_session()
    assert host.counters.ntlm_logins - before.ntlm_logins == 1
    assert host.counters.connections - before.connections == 1
