"""The PowerShell agent, shipped as `.ps1` files, and the Python side of its stdin/stdout framing.

Pure Python (no Django, no pywinrm): `remote/` sends what this module builds and decodes what
the host answers; winlab's test hosts use the same helpers to read the payload.

Framing (DESIGN.md, "The agent contract"):

- the command line is `powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass
  -EncodedCommand <base64(UTF-16LE(bootstrap_script()))>`;
- stdin (`build_stdin`) is exactly two ASCII lines, each ended by LF, then EOF:
  `base64(gzip(UTF-8 agent_script()))` and `base64(gzip(UTF-8 JSON of a Program))`
  (gzip with mtime 0, so the payload is deterministic; the bootstrap inflates it with .NET 2.0's
  `System.IO.Compression.GZipStream`);
- stdout carries one result block: a line `RESULT_BEGIN`, one line of base64(UTF-8 JSON of a
  `ProgramResult`), a line `RESULT_END` (`parse_agent_output`). Anything else on stdout is ignored.

The agent is the executor and its policy-free primitives (`lockdown.engine.program` is the
contract); every decision is made by the engine in Python (`lockdown.engine`). The PowerShell
cannot be executed here: it is parsed with tree-sitter-powershell and lint-checked (see
README.md); winlab implements the same primitives over its emulated Windows.
"""

from __future__ import annotations

import base64
import binascii
import functools
import gzip
import hashlib
import zlib
from importlib import resources
from typing import Final

from pydantic import ValidationError

from lockdown.engine.program import Program, ProgramResult

AGENT_VERSION: Final = "2.0.0"

RESULT_BEGIN: Final = "FLEET-LOCKDOWN-RESULT-BEGIN"
RESULT_END: Final = "FLEET-LOCKDOWN-RESULT-END"

BOOTSTRAP_FILE: Final = "bootstrap.ps1"
# Concatenated in this order into the one script the bootstrap runs: the primitives first, the
# executor (its step loop and the final call) last, because PowerShell defines a function only
# when the interpreter reaches it.
AGENT_FILES: Final = ("primitives.ps1", "executor.ps1")
ONBOARDING_FILE: Final = "onboarding/Enable-FleetLockdownWinRM.ps1"

# -EncodedCommand travels through cmd.exe, whose lines stop at 8191 characters; the bootstrap
# is kept far below that (its base64 of UTF-16LE is ~2.7x the script).
MAX_BOOTSTRAP_BYTES: Final = 2048
POWERSHELL_ARGS: Final = ("-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-EncodedCommand")


class AgentOutputError(ValueError):
    """stdout holds no well-formed result block (missing markers, bad base64, bad JSON, schema)."""


def read_ps1(name: str) -> str:
    """One shipped `.ps1` file (package-relative path), as text."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def ps1_files() -> tuple[str, ...]:
    """Every shipped `.ps1` (bootstrap, agent parts, onboarding), package-relative."""
    return (BOOTSTRAP_FILE, *AGENT_FILES, ONBOARDING_FILE)


def bootstrap_script() -> str:
    """The short script passed with -EncodedCommand; parses and runs on PowerShell 2.0."""
    return read_ps1(BOOTSTRAP_FILE)


def encoded_bootstrap() -> str:
    """base64(UTF-16LE(bootstrap)), the -EncodedCommand argument."""
    return base64.b64encode(bootstrap_script().encode("utf-16-le")).decode("ascii")


def agent_script() -> str:
    """The agent as the bootstrap receives it: the agent files joined in `AGENT_FILES` order."""
    return "\n".join(read_ps1(name).rstrip("\n") + "\n" for name in AGENT_FILES)


def agent_sha256() -> str:
    """Hex SHA-256 of the UTF-8 agent script sent on stdin (what a test host checks)."""
    return hashlib.sha256(agent_script().encode("utf-8")).hexdigest()


def encode_stdin_line(text: str) -> bytes:
    """One stdin line (without its LF): base64(gzip(UTF-8 text)), gzip mtime 0 (deterministic)."""
    return base64.b64encode(gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0))


def decode_stdin_line(line: str | bytes) -> str:
    """What the bootstrap's Read-FleetLine does: base64 -> gunzip -> UTF-8.

    Raises binascii.Error (bad base64), OSError/EOFError/zlib.error (not gzip) or UnicodeDecodeError.
    """
    return gzip.decompress(base64.b64decode(line, validate=True)).decode("utf-8")


@functools.cache
def _agent_line() -> bytes:
    """The first stdin line (the agent, compressed): the same for every invocation of this release."""
    return encode_stdin_line(agent_script())


def build_stdin(program: Program) -> bytes:
    """The stdin payload of agent v2: base64(gzip(agent)) LF base64(gzip(program JSON)) LF.

    DANGER: the program's `secrets` (service passwords) travel in it in clear (base64 and gzip are
    not encryption). Send it straight to the WinRM stream; never log or store it.
    """
    return _agent_line() + b"\n" + encode_stdin_line(program.to_stdin_json()) + b"\n"


def format_agent_output(result: ProgramResult) -> bytes:
    """A result block as the executor prints it (for winlab), CRLF line ends."""
    body = base64.b64encode(result.model_dump_json().encode("utf-8")).decode("ascii")
    return f"{RESULT_BEGIN}\r\n{body}\r\n{RESULT_END}\r\n".encode("ascii")


def parse_agent_output(stdout: bytes) -> ProgramResult:
    """Decode the one result block in `stdout` and validate it as a `ProgramResult`.

    Raises `AgentOutputError` without quoting the output (it is untrusted and may be large).
    """
    document = _result_document(stdout)
    try:
        return ProgramResult.model_validate_json(document)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['type']}" for e in exc.errors()[:5])
        count = exc.error_count()
        raise AgentOutputError(f"the result does not match the contract ({count} problems: {problems})") from None


def _result_document(stdout: bytes) -> str:
    text = stdout.decode("ascii", errors="replace")
    lines = [line.strip() for line in text.splitlines()]
    starts = [i for i, line in enumerate(lines) if line == RESULT_BEGIN]
    ends = [i for i, line in enumerate(lines) if line == RESULT_END]
    if not starts or not ends:
        raise AgentOutputError("the agent printed no result block")
    if len(starts) > 1 or len(ends) > 1:
        raise AgentOutputError("the agent printed more than one result block")
    begin, end = starts[0], ends[0]
    if end <= begin:
        raise AgentOutputError("the result markers are out of order")
    body = "".join(lines[begin + 1 : end])
    try:
        return base64.b64decode(body, validate=True).decode("utf-8")
    # ValueError too: b64decode refuses a str with non-ASCII characters (the U+FFFD of a non-ASCII byte) with it
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise AgentOutputError(f"the result block ({len(body)} characters) is not base64 of UTF-8") from exc


def split_stdin(payload: bytes) -> tuple[str, str]:
    """Inverse of `build_stdin` (for test hosts): (agent script, program JSON)."""
    lines = [line.strip() for line in payload.splitlines() if line.strip()]
    if len(lines) != 2:
        raise AgentOutputError(f"expected 2 stdin lines, got {len(lines)}")
    try:
        return decode_stdin_line(lines[0]), decode_stdin_line(lines[1])
    except (binascii.Error, OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise AgentOutputError("stdin is not base64 of gzip of UTF-8") from exc
