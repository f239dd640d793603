"""The stdin payload and the result markers, as remote/ and the test hosts use them."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json

import pytest

from lockdown.agent import (
    AGENT_VERSION,
    RESULT_BEGIN,
    RESULT_END,
    AgentOutputError,
    agent_script,
    agent_sha256,
    build_stdin,
    format_agent_output,
    parse_agent_output,
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
