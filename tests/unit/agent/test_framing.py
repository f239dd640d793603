"""The stdin payload and the result markers, as remote/ and the test hosts use them."""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import json
from importlib import resources

import pytest

from lockdown.agent import (
    AGENT_FILES,
    AGENT_VERSION,
    MAX_BOOTSTRAP_BYTES,
    RESULT_BEGIN,
    RESULT_END,
    AgentOutputError,
    agent_script,
    agent_sha256,
    bootstrap_script,
    build_stdin,
    decode_stdin_line,
    encode_stdin_line,
    encoded_bootstrap,
    format_agent_output,
    parse_agent_output,
    ps1_files,
    read_ps1,
    split_stdin,
)
from lockdown.engine.program import Program, ProgramResult, Step

BAD_STEPS = b'{"steps": 5}'


def _program(**kw) -> Program:
    return Program(agent_version=AGENT_VERSION, mode="discover", job_id="j-1", steps=[Step(id="host", op="host_info")],
                   **kw)  # fmt: skip


def test_stdin_is_two_base64_gzip_lines_agent_then_program() -> None:
    payload = build_stdin(_program(secrets={"SERVICE_PASSWORD": "s3cret!Pw"}))
    lines = payload.split(b"\n")
    assert lines[-1] == b""
    assert len(lines) == 3
    assert gzip.decompress(base64.b64decode(lines[0])).decode("utf-8") == agent_script()
    sent = json.loads(gzip.decompress(base64.b64decode(lines[1])).decode("utf-8"))
    assert Program.model_validate(sent).secret_values() == ["s3cret!Pw"]
    assert "s3cret!Pw" not in repr(_program(secrets={"SERVICE_PASSWORD": "s3cret!Pw"}))
    assert sent["secrets"] == {"SERVICE_PASSWORD": "s3cret!Pw"}  # the one place the secret travels
    assert split_stdin(payload)[0] == agent_script()
    assert build_stdin(_program(secrets={"SERVICE_PASSWORD": "s3cret!Pw"})) == payload  # deterministic


def test_the_compressed_agent_is_much_smaller_than_plain_base64() -> None:
    plain = len(base64.b64encode(agent_script().encode("utf-8")))
    assert len(build_stdin(_program()).split(b"\n")[0]) < plain // 2


def test_stdin_that_is_not_gzip_is_refused() -> None:
    plain = base64.b64encode(agent_script().encode()) + b"\n" + base64.b64encode(b"{}") + b"\n"
    with pytest.raises(AgentOutputError, match="gzip"):
        split_stdin(plain)


def test_agent_hash_is_the_hash_of_what_is_sent() -> None:
    assert agent_sha256() == hashlib.sha256(agent_script().encode("utf-8")).hexdigest()


def test_result_round_trips_through_the_markers_with_noise_around() -> None:
    result = ProgramResult(agent_version=AGENT_VERSION, mode="verify", job_id="j-1", aborted_at=None)
    stdout = b"WARNING: noise\r\n" + format_agent_output(result) + b"more noise\r\n"
    assert parse_agent_output(stdout) == result


@pytest.mark.parametrize(
    ("stdout", "message"),
    [
        (b"nothing here", "no result block"),
        (f"{RESULT_END}\r\n{RESULT_BEGIN}\r\n".encode(), "out of order"),
        (f"{RESULT_BEGIN}\r\n!!notbase64\r\n{RESULT_END}\r\n".encode(), "not base64"),
        (f"{RESULT_BEGIN}\r\n{base64.b64encode(BAD_STEPS).decode()}\r\n{RESULT_END}\r\n".encode(), "contract"),
    ],
)
def test_malformed_output_is_refused_without_quoting_it(stdout: bytes, message: str) -> None:
    with pytest.raises(AgentOutputError, match=message) as caught:
        parse_agent_output(stdout)
    assert "notbase64" not in str(caught.value)


def test_two_result_blocks_are_refused() -> None:
    block = format_agent_output(ProgramResult(agent_version=AGENT_VERSION, mode="verify", job_id="j-1"))
    with pytest.raises(AgentOutputError, match="more than one"):
        parse_agent_output(block + block)


# --- the command line and the stdin lines, byte for byte ---------------------------------------


def _shipped(name: str) -> str:
    return resources.files("lockdown.agent").joinpath(name).read_text(encoding="utf-8")


def test_ps1_files_are_the_bootstrap_the_agent_parts_in_order_and_the_onboarding_script() -> None:
    assert ps1_files() == (
        "bootstrap.ps1",
        "primitives.ps1",
        "executor.ps1",
        "onboarding/Enable-FleetLockdownWinRM.ps1",
    )
    assert read_ps1("bootstrap.ps1") == _shipped("bootstrap.ps1")


def test_encoded_bootstrap_is_base64_of_utf16le_of_the_bootstrap() -> None:
    encoded = encoded_bootstrap()
    assert base64.b64decode(encoded, validate=True).decode("utf-16-le") == _shipped("bootstrap.ps1")
    assert bootstrap_script() == _shipped("bootstrap.ps1")
    # the -EncodedCommand argument is one line below cmd.exe's 8191 characters
    assert len(_shipped("bootstrap.ps1").encode("utf-8")) < MAX_BOOTSTRAP_BYTES
    assert len(encoded) < 8191


def test_agent_script_is_the_primitives_then_the_executor_each_ended_by_one_lf() -> None:
    primitives, executor = (_shipped(name).rstrip("\n") for name in AGENT_FILES)
    assert agent_script() == primitives + "\n\n" + executor + "\n"


def test_a_stdin_line_is_base64_of_gzip_level_9_with_mtime_0() -> None:
    text = "Ünïcode agent ✓\n" * 50
    line = encode_stdin_line(text)
    raw = base64.b64decode(line, validate=True)
    assert raw[:3] == b"\x1f\x8b\x08"
    assert raw[4:8] == b"\0\0\0\0"  # mtime 0: the same payload every time
    assert raw[8] == 2  # XFL 2: maximum compression
    assert gzip.decompress(raw).decode("utf-8") == text
    assert line == base64.b64encode(gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0))
    assert decode_stdin_line(line) == text
    assert decode_stdin_line(line.decode("ascii")) == text


@pytest.mark.parametrize("junk", [b"!", b" ", b"\n", b"*"])
def test_a_stdin_line_with_characters_outside_base64_is_refused(junk: bytes) -> None:
    line = encode_stdin_line("agent")
    with pytest.raises(binascii.Error):
        decode_stdin_line(line[:8] + junk + line[8:])


def test_a_stdin_line_that_is_gzip_of_something_not_utf8_is_refused() -> None:
    with pytest.raises(UnicodeDecodeError):
        decode_stdin_line(base64.b64encode(gzip.compress(b"\xff\xfe\xfa", mtime=0)))


def test_the_agent_line_is_the_first_line_of_every_payload() -> None:
    assert build_stdin(_program()).split(b"\n")[0] == encode_stdin_line(agent_script())


def test_split_stdin_returns_the_agent_and_the_program_json() -> None:
    program = _program(secrets={"SERVICE_PASSWORD": "pw"})
    agent, sent = split_stdin(build_stdin(program))
    assert agent == agent_script()
    assert sent == program.to_stdin_json()


def test_split_stdin_ignores_crlf_blank_lines_and_surrounding_spaces() -> None:
    one, two = encode_stdin_line("first"), encode_stdin_line("second")
    assert split_stdin(b"\r\n  " + one + b"  \r\n\r\n\t" + two + b"\r\n \r\n") == ("first", "second")


@pytest.mark.parametrize("count", [0, 1, 3])
def test_split_stdin_wants_exactly_two_lines(count: int) -> None:
    payload = b"".join(encode_stdin_line(f"line {n}") + b"\n" for n in range(count))
    with pytest.raises(AgentOutputError, match=f"^expected 2 stdin lines, got {count}$"):
        split_stdin(payload)


@pytest.mark.parametrize(
    "second",
    [b"!!!!", base64.b64encode(b"not gzip at all"), base64.b64encode(gzip.compress(b"\xff\xfe", mtime=0)),
     base64.b64encode(gzip.compress(b"{}", mtime=0))[:12]],
)  # fmt: skip
def test_split_stdin_refuses_a_line_that_is_not_base64_of_gzip_of_utf8(second: bytes) -> None:
    with pytest.raises(AgentOutputError, match=r"^stdin is not base64 of gzip of UTF-8$"):
        split_stdin(encode_stdin_line("agent") + b"\n" + second + b"\n")


def test_split_stdin_refuses_a_bad_first_line_too() -> None:
    with pytest.raises(AgentOutputError, match="gzip"):
        split_stdin(b"!!!!\n" + encode_stdin_line("program") + b"\n")


# --- the result block ------------------------------------------------------------------------------


def _result() -> ProgramResult:
    return ProgramResult(agent_version=AGENT_VERSION, mode="verify", job_id="j-1", vars={"SID_1": "S-1-5-18"})


def test_format_agent_output_is_the_markers_around_base64_of_the_json_with_crlf() -> None:
    result = _result()
    body = base64.b64encode(result.model_dump_json().encode("utf-8"))
    expected = b"FLEET-LOCKDOWN-RESULT-BEGIN\r\n" + body + b"\r\nFLEET-LOCKDOWN-RESULT-END\r\n"
    assert format_agent_output(result) == expected


def test_a_result_with_non_ascii_text_round_trips() -> None:
    result = _result().model_copy(update={"mode": "vérifier ✓"})
    assert parse_agent_output(format_agent_output(result)) == result


def test_a_result_body_wrapped_over_several_lines_is_joined() -> None:
    body = base64.b64encode(_result().model_dump_json().encode("utf-8")).decode()
    wrapped = "\n".join(body[i : i + 40] for i in range(0, len(body), 40))
    assert len(wrapped.splitlines()) > 2
    stdout = f"{RESULT_BEGIN}\n{wrapped}\n{RESULT_END}\n".encode()
    assert parse_agent_output(stdout) == _result()


def test_markers_and_body_with_spaces_and_lf_or_cr_line_ends_are_read() -> None:
    body = base64.b64encode(_result().model_dump_json().encode("utf-8")).decode()
    assert parse_agent_output(f"  {RESULT_BEGIN} \n\t{body}  \n {RESULT_END}\t".encode()) == _result()
    assert parse_agent_output(f"{RESULT_BEGIN}\r{body}\r{RESULT_END}".encode()) == _result()


def test_non_ascii_garbage_around_the_block_is_ignored() -> None:
    stdout = b"\xff\xfe caf\xc3\xa9 \x80\r\n" + format_agent_output(_result()) + b"\xe2\x9c\x93 done\r\n"
    assert parse_agent_output(stdout) == _result()


def test_a_marker_must_be_the_whole_line() -> None:
    block = format_agent_output(_result()).decode()
    with pytest.raises(AgentOutputError, match="no result block"):
        parse_agent_output(("x" + block.replace(RESULT_END, RESULT_END + "!")).encode())


@pytest.mark.parametrize(
    "stdout",
    [
        f"{RESULT_BEGIN}\r\nAAAA\r\n".encode(),
        f"AAAA\r\n{RESULT_END}\r\n".encode(),
        b"",
    ],
)
def test_a_block_missing_a_marker_is_refused(stdout: bytes) -> None:
    with pytest.raises(AgentOutputError, match=r"^the agent printed no result block$"):
        parse_agent_output(stdout)


@pytest.mark.parametrize(
    "stdout",
    [
        f"{RESULT_BEGIN}\n{RESULT_BEGIN}\nAAAA\n{RESULT_END}\n".encode(),
        f"{RESULT_BEGIN}\nAAAA\n{RESULT_END}\n{RESULT_END}\n".encode(),
    ],
)
def test_a_second_begin_or_end_marker_is_refused(stdout: bytes) -> None:
    with pytest.raises(AgentOutputError, match=r"^the agent printed more than one result block$"):
        parse_agent_output(stdout)


def test_markers_out_of_order_are_refused_with_their_message() -> None:
    with pytest.raises(AgentOutputError, match=r"^the result markers are out of order$"):
        parse_agent_output(f"{RESULT_END}\nAAAA\n{RESULT_BEGIN}\n".encode())


@pytest.mark.parametrize(
    "body",
    [
        "eyJ!" + base64.b64encode(b"{}").decode(),  # a character outside base64
        base64.b64encode(b"{}").decode()[:-1],  # bad padding
        base64.b64encode(b'{"mode": "\xff\xfe"}').decode(),  # base64 of bytes that are not UTF-8
    ],
)
def test_a_body_that_is_not_base64_of_utf8_is_refused_with_its_length_only(body: str) -> None:
    with pytest.raises(
        AgentOutputError, match=rf"^the result block \({len(body)} characters\) is not base64 of UTF-8$"
    ):
        parse_agent_output(f"{RESULT_BEGIN}\n{body}\n{RESULT_END}\n".encode())


def test_an_empty_block_is_not_a_result() -> None:
    with pytest.raises(AgentOutputError, match="contract"):
        parse_agent_output(f"{RESULT_BEGIN}\n{RESULT_END}\n".encode())


def test_a_result_off_contract_is_refused_naming_at_most_five_problems() -> None:
    bad = json.dumps({"steps": [{"id": "Bad Id", "op": "x", "status": "nope"}], "aborted_at": 5, "vars": {"A": 1},
                      "mode": "m" * 41, "job_id": ["j"], "program_version": "one"})  # fmt: skip
    stdout = f"{RESULT_BEGIN}\n{base64.b64encode(bad.encode()).decode()}\n{RESULT_END}\n".encode()
    with pytest.raises(AgentOutputError) as caught:
        parse_agent_output(stdout)
    message = str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__ is True
    expected = (
        "the result does not match the contract (7 problems: job_id: string_type; mode: string_too_long; "
        "program_version: int_parsing; steps.0.id: string_pattern_mismatch; steps.0.status: literal_error)"
    )
    assert message == expected


def test_a_result_of_another_agent_version_is_parsed_as_it_is() -> None:
    # the version is checked by the engine (driver), not by the framing: it must come through intact
    other = _result().model_copy(update={"agent_version": "1.9.0"})
    assert parse_agent_output(format_agent_output(other)).agent_version == "1.9.0"


def test_a_body_with_a_character_outside_base64_is_refused_even_if_the_rest_decodes() -> None:
    body = base64.b64encode(_result().model_dump_json().encode("utf-8")).decode()
    for junk in ("!", "*", "-"):
        spoiled = body[:8] + junk + body[8:]
        with pytest.raises(AgentOutputError, match="is not base64 of UTF-8"):
            parse_agent_output(f"{RESULT_BEGIN}\n{spoiled}\n{RESULT_END}\n".encode())


@pytest.mark.parametrize("space", ["\u00a0", "\u2003", "\u3000"])
def test_non_ascii_spaces_are_not_taken_for_whitespace_around_a_marker_or_the_body(space: str) -> None:
    # stdout is read as ASCII: a UTF-8 no-break space is not stripped, so the line is no marker
    body = base64.b64encode(_result().model_dump_json().encode("utf-8")).decode()
    with pytest.raises(AgentOutputError, match="no result block"):
        parse_agent_output(f"{RESULT_BEGIN}{space}\n{body}\n{RESULT_END}\n".encode())
    with pytest.raises(AgentOutputError, match="is not base64"):
        parse_agent_output(f"{RESULT_BEGIN}\n{body}{space}\n{RESULT_END}\n".encode())


def test_a_unicode_line_separator_does_not_split_the_block() -> None:
    body = base64.b64encode(_result().model_dump_json().encode("utf-8")).decode()
    with pytest.raises(AgentOutputError, match="no result block"):
        parse_agent_output(f"{RESULT_BEGIN}\u2028{body}\n{RESULT_END}\n".encode())


def test_non_ascii_bytes_in_the_body_are_an_agent_output_error() -> None:
    # remote/transport.py catches AgentOutputError only: a bare ValueError would escape it
    body = base64.b64encode(_result().model_dump_json().encode("utf-8"))
    stdout = RESULT_BEGIN.encode() + b"\r\n" + body[:8] + b"\xc3\xa9\xff" + body[8:] + b"\r\n" + RESULT_END.encode()
    with pytest.raises(AgentOutputError, match=r"^the result block \(\d+ characters\) is not base64 of UTF-8$"):
        parse_agent_output(stdout)


def test_agent_script_strips_only_the_line_feeds_that_end_each_file(monkeypatch: pytest.MonkeyPatch) -> None:
    # trailing spaces or an X at a file's end are code (a here-string, a last token), not a line end
    parts = {"primitives.ps1": "function X { 1 }  \n\n\n", "executor.ps1": "Invoke-X\t X"}
    monkeypatch.setattr("lockdown.agent.read_ps1", parts.__getitem__)
    assert agent_script() == "function X { 1 }  \n\nInvoke-X\t X\n"
