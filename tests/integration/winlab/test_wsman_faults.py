"""SOAP faults with Windows' codes, operation timeouts, shell expiry, and a server that survives bad input."""

from __future__ import annotations

import base64
import socket

import pytest
import xmltodict
from winrm.exceptions import WSManFaultError

from tests.integration.winlab.conftest import Lab

pytestmark = pytest.mark.winlab

CMD_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"


def _message(protocol, action: str, *, resource_uri: str = CMD_URI, shell_id: str | None = None, body=None) -> str:
    req = {"env:Envelope": protocol.build_wsman_header(action=action, resource_uri=resource_uri, shell_id=shell_id)}
    req["env:Envelope"]["env:Body"] = body or {}
    return xmltodict.unparse(req)


def _still_serves(protocol) -> None:
    shell_id = protocol.open_shell()
    command_id = protocol.run_command(shell_id, "hostname")
    assert protocol.get_command_output(shell_id, command_id)[2] == 0
    protocol.cleanup_command(shell_id, command_id)
    protocol.close_shell(shell_id, close_session=False)


def test_unknown_shell_gives_invalid_selectors_fault(lab: Lab) -> None:
    protocol = lab.protocol("ALPHA")
    with pytest.raises(WSManFaultError) as info:
        protocol.run_command("11111111-2222-3333-4444-555555555555", "hostname")
    assert info.value.wsman_fault_code == 2150858843
    assert info.value.fault_subcode == "w:InvalidSelectors"
    _still_serves(protocol)


def test_idle_shell_expires_when_the_clock_moves(lab: Lab) -> None:
    protocol = lab.protocol("ALPHA")
    shell_id = protocol.open_shell()
    lab.clock.advance(7200)
    with pytest.raises(WSManFaultError) as info:
        protocol.run_command(shell_id, "hostname")
    assert info.value.wsman_fault_code == 2150858843


def test_shell_used_within_its_idle_timeout_survives(lab: Lab) -> None:
    protocol = lab.protocol("ALPHA")
    shell_id = protocol.open_shell()
    lab.clock.advance(7000)
    command_id = protocol.run_command(shell_id, "hostname")
    lab.clock.advance(7000)
    assert protocol.get_command_output(shell_id, command_id)[0] == b"ALPHA\r\n"
    protocol.close_shell(shell_id)


def test_operation_timeout_fault_is_retried_by_pywinrm(lab: Lab, charlie) -> None:
    charlie.faults.receive_timeouts = 2
    before = charlie.counters.faults_returned
    result = lab.session("CHARLIE").run_cmd("hostname")
    assert result.std_out == b"CHARLIE\r\n"
    assert charlie.counters.faults_returned - before == 2


def test_long_running_command_times_out_receives_then_finishes(lab: Lab) -> None:
    host = lab.host("ALPHA")
    protocol = lab.protocol("ALPHA", operation_timeout_sec=1, read_timeout_sec=5)
    shell_id = protocol.open_shell()
    encoded = base64.b64encode(b"s\x00l\x00o\x00w\x00 \x001\x00.\x003\x00").decode()
    command_id = protocol.run_command(shell_id, f"powershell -encodedcommand {encoded}")
    before = host.counters.faults_returned
    assert protocol.get_command_output(shell_id, command_id) == (b"finished\r\n", b"", 0)
    assert host.counters.faults_returned - before >= 1
    protocol.close_shell(shell_id)


@pytest.mark.parametrize(
    ("payload", "code", "subcode"),
    [
        ("<s:Envelope><unclosed>", 2150858819, "w:SchemaValidationError"),
        (
            '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
            '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope">&lol2;</s:Envelope>',
            2150858819,
            "w:SchemaValidationError",
        ),
        ("<" + "a" * (600 * 1024) + "/>", 2150858817, "w:EncodingLimit"),
    ],
    ids=["malformed", "xml-bomb", "oversized"],
)
def test_bad_xml_gets_a_fault_and_the_connection_keeps_serving(lab: Lab, payload: str, code: int, subcode: str) -> None:
    protocol = lab.protocol("ALPHA")
    _still_serves(protocol)
    with pytest.raises(WSManFaultError) as info:
        protocol.send_message(payload)
    assert (info.value.wsman_fault_code, info.value.fault_subcode) == (code, subcode)
    _still_serves(protocol)


def test_unknown_action_gets_action_not_supported(lab: Lab) -> None:
    protocol = lab.protocol("ALPHA")
    with pytest.raises(WSManFaultError) as info:
        protocol.send_message(_message(protocol, "http://schemas.xmlsoap.org/ws/2004/09/transfer/Get"))
    assert info.value.fault_subcode == "a:ActionNotSupported"
    assert info.value.wsman_fault_code == 2150858771
    _still_serves(protocol)


def test_unknown_resource_uri_gets_a_fault(lab: Lab) -> None:
    protocol = lab.protocol("ALPHA")
    with pytest.raises(WSManFaultError) as info:
        protocol.send_message(
            _message(
                protocol,
                "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create",
                resource_uri="http://schemas.microsoft.com/wbem/wsman/1/wmi/root/cimv2/Win32_Service",
                body={"rsp:Shell": {"rsp:InputStreams": "stdin"}},
            )
        )
    assert info.value.wsman_fault_code == 2150858752
    _still_serves(protocol)


def test_bad_base64_on_stdin_gets_a_fault(lab: Lab) -> None:
    protocol = lab.protocol("ALPHA")
    shell_id = protocol.open_shell()
    command_id = protocol.run_command(shell_id, "hostname")
    body = {
        "rsp:Send": {
            "rsp:Stream": {
                "@xmlns:rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
                "@Name": "stdin",
                "@CommandId": command_id,
                "#text": "!!!not base64!!!",
            }
        }
    }
    with pytest.raises(WSManFaultError) as info:
        protocol.send_message(
            _message(
                protocol, "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Send", shell_id=shell_id, body=body
            )
        )
    assert info.value.wsman_fault_code == 87
    assert protocol.get_command_output(shell_id, command_id)[0] == b"ALPHA\r\n"
    protocol.close_shell(shell_id)


def test_garbage_http_gets_400_and_the_listener_keeps_serving(lab: Lab) -> None:
    host = lab.host("ALPHA")
    with socket.create_connection((host.address, host.http_port)) as sock:
        sock.sendall(b"\x16\x03\x01 this is not http\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400")
    with socket.create_connection((host.address, host.http_port)) as sock:
        sock.sendall(b"POST /wsman HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 413")
    assert lab.session("ALPHA").run_cmd("hostname").status_code == 0


def test_unauthenticated_request_gets_401_with_content_length(lab: Lab) -> None:
    host = lab.host("ALPHA")
    with socket.create_connection((host.address, host.http_port)) as sock:
        sock.sendall(b"POST /wsman HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        reply = sock.recv(1000)
    assert reply.startswith(b"HTTP/1.1 401")
    assert b"WWW-Authenticate: Negotiate\r\n" in reply
    assert b"Content-Length: 0\r\n" in reply
