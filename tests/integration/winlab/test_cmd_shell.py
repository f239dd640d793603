"""What the cmd shell answers: built-ins, powershell.exe dispatch, refusals, code pages, stdin, big output."""

from __future__ import annotations

import base64

import pytest

from tests.integration.winlab.conftest import Lab

pytestmark = pytest.mark.winlab


def test_hostname_whoami_and_ver_answer_like_cmd(lab: Lab) -> None:
    session = lab.session("ALPHA")
    assert session.run_cmd("hostname").std_out == b"ALPHA\r\n"
    assert session.run_cmd("whoami").std_out == b"alpha\\administrator\r\n"
    assert session.run_cmd("ver").std_out == b"\r\nMicrosoft Windows [Version 10.0.20348]\r\n"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("echo hello  world", b"hello  world\r\n"),
        ("echo.", b"\r\n"),
        ("echo", b"ECHO is on.\r\n"),
        ("echo %COMPUTERNAME%", b"ALPHA\r\n"),
        ("echo %NOPE%", b"%NOPE%\r\n"),
    ],
)
def test_echo_prints_like_cmd(lab: Lab, line: str, expected: bytes) -> None:
    assert lab.session("ALPHA").run_cmd(line).std_out == expected


def test_unknown_program_is_not_recognized_with_exit_code_1(lab: Lab) -> None:
    result = lab.session("ALPHA").run_cmd("frobnicate", ["/x"])
    assert result.status_code == 1
    assert result.std_out == b""
    assert result.std_err == (
        b"'frobnicate' is not recognized as an internal or external command,\r\noperable program or batch file.\r\n"
    )


def test_command_line_over_8191_characters_is_too_long(lab: Lab) -> None:
    result = lab.session("ALPHA").run_ps("say " + "a" * 3100)
    assert (result.status_code, result.std_err) == (1, b"The command line is too long.\r\n")


def test_powershell_encoded_command_reaches_the_host_hook(lab: Lab) -> None:
    result = lab.session("ALPHA").run_ps("say hi from ps")
    assert (result.status_code, result.std_out) == (0, b"hi from ps\r\n")


@pytest.mark.parametrize(
    "flags", ["-NoProfile -NonInteractive -EncodedCommand", "-nop -e", "-ExecutionPolicy Bypass -enc"]
)
def test_powershell_flag_spellings_are_understood(lab: Lab, flags: str) -> None:
    encoded = base64.b64encode("say ok".encode("utf-16-le")).decode()
    result = lab.session("ALPHA").run_cmd(f"powershell.exe {flags} {encoded}")
    assert (result.status_code, result.std_out) == (0, b"ok\r\n")


def test_script_winlab_cannot_interpret_fails_with_a_clixml_error(lab: Lab) -> None:
    protocol = lab.protocol("ALPHA")
    shell_id = protocol.open_shell()
    encoded = base64.b64encode("Get-Service MEPOPS".encode("utf-16-le")).decode()
    command_id = protocol.run_command(shell_id, f"powershell -encodedcommand {encoded}")
    stdout, stderr, code = protocol.get_command_output(shell_id, command_id)
    protocol.cleanup_command(shell_id, command_id)
    protocol.close_shell(shell_id)
    assert code == 1
    assert stdout == b""
    assert stderr.startswith(b"#< CLIXML\r\n")
    assert b'<S S="Error">' in stderr


def _run(lab: Lab, host: str, command: str, codepage: int) -> bytes:
    protocol = lab.protocol(host)
    shell_id = protocol.open_shell(codepage=codepage)
    command_id = protocol.run_command(shell_id, command)
    stdout, _, _ = protocol.get_command_output(shell_id, command_id)
    protocol.cleanup_command(shell_id, command_id)
    protocol.close_shell(shell_id)
    return stdout


def test_non_ascii_output_is_mangled_in_437_and_right_in_65001(lab: Lab) -> None:
    assert _run(lab, "ALPHA", "echo Jürgen", 437) == b"J\x81rgen\r\n"
    assert _run(lab, "ALPHA", "echo Jürgen", 65001) == "Jürgen\r\n".encode()
    assert _run(lab, "KÖLN", "hostname", 437).decode("utf-8", "replace") != "KÖLN\r\n"
    assert _run(lab, "KÖLN", "hostname", 65001).decode("utf-8") == "KÖLN\r\n"


def test_stdin_sent_in_chunks_reaches_the_script(lab: Lab) -> None:
    protocol = lab.protocol("ALPHA")
    shell_id = protocol.open_shell(codepage=65001)
    encoded = base64.b64encode("upper-stdin".encode("utf-16-le")).decode()
    command_id = protocol.run_command(shell_id, f"powershell -encodedcommand {encoded}", console_mode_stdin=False)
    protocol.send_command_input(shell_id, command_id, b"first chunk, ")
    protocol.send_command_input(shell_id, command_id, b"second chunk", end=True)
    assert protocol.get_command_output(shell_id, command_id) == (b"FIRST CHUNK, SECOND CHUNK", b"", 0)
    protocol.cleanup_command(shell_id, command_id)
    protocol.close_shell(shell_id)


def test_large_output_arrives_whole_over_several_receives(lab: Lab) -> None:
    host = lab.host("ALPHA")
    before = host.counters.soap_requests
    result = lab.session("ALPHA").run_ps("big 300000")
    assert result.std_out == b"x" * 300000
    receives = host.counters.soap_requests - before - 4  # Create, Command, Signal, Delete
    assert receives >= 3


def test_streamed_output_comes_in_order_over_time(lab: Lab) -> None:
    result = lab.session("ALPHA").run_ps("stream")
    assert result.std_out == b"line 0\r\nline 1\r\nline 2\r\n"


def test_ctrl_c_stops_a_long_running_command(lab: Lab) -> None:
    protocol = lab.protocol("ALPHA", operation_timeout_sec=1, read_timeout_sec=5)
    shell_id = protocol.open_shell()
    encoded = base64.b64encode("slow 30".encode("utf-16-le")).decode()
    command_id = protocol.run_command(shell_id, f"powershell -encodedcommand {encoded}")
    req = {
        "env:Envelope": protocol.build_wsman_header(
            resource_uri="http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd",
            action="http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Signal",
            shell_id=shell_id,
        )
    }
    req["env:Envelope"]["env:Body"] = {
        "rsp:Signal": {
            "@CommandId": command_id,
            "rsp:Code": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/ctrl_c",
        }
    }
    import xmltodict

    protocol.send_message(xmltodict.unparse(req))
    stdout, _, code = protocol.get_command_output(shell_id, command_id)
    assert (stdout, code) == (b"", -1073741510)
    protocol.close_shell(shell_id)
