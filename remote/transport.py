"""The transport: one authenticated WinRM connection per host run, the bootstrap + stdin payload,
the result decoded and validated. The only module that imports pywinrm (a test enforces it).

One run (`run_agent`) is: NTLM handshake (HTTP: 3 requests, the session is then encrypted) →
Create shell (code page 65001) → Command `powershell.exe … -EncodedCommand <bootstrap>` with
`WINRS_CONSOLEMODE_STDIN=FALSE` → Send the payload in `STDIN_CHUNK_BYTES` chunks (bytes, End on
the last) → Receive until Done (capped at `MAX_OUTPUT_BYTES`, bounded by the run deadline) →
Signal terminate → Delete shell. A verify with one chunk and one Receive costs 9 HTTP requests.

Transient failures (refused/reset connection, HTTP 503, the WinRM "busy" fault) are retried
with backoff, but only while the command has not started: a started apply is never re-sent.
A retry uses a new `Protocol` (an NTLM-sealed session cannot resume on a new TCP connection).
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, cast
from urllib.parse import urlsplit
from xml.etree.ElementTree import ParseError

import requests
import winrm
from requests.adapters import HTTPAdapter
from winrm.exceptions import (
    InvalidCredentialsError,
    WinRMError,
    WinRMOperationTimeoutError,
    WinRMTransportError,
    WSManFaultError,
)

from lockdown.agent import (
    AGENT_VERSION,
    POWERSHELL_ARGS,
    RESULT_BEGIN,
    AgentOutputError,
    build_stdin,
    encoded_bootstrap,
    parse_agent_output,
)
from lockdown.engine.program import Program, ProgramResult
from lockdown.rules.contract import AgentRequest, AgentResult
from remote.clixml import parse_clixml_errors
from remote.connection import AuthMethod, HostConnection, Scheme, TlsVerify, normalize_fingerprint
from remote.errors import (
    AgentFailed,
    AuthenticationFailed,
    NotElevated,
    OutputTooLarge,
    ProtocolError,
    RemoteError,
    RemoteTimeout,
    TlsVerificationFailed,
    Unreachable,
    UnsupportedPowerShell,
    redact,
)
from remote.networks import require_inside

if TYPE_CHECKING:
    from requests.adapters import _HostParams, _PoolKwargs

log = logging.getLogger(__name__)

STDIN_CHUNK_BYTES: Final = 128 * 1024
MAX_OUTPUT_BYTES: Final = 16 * 1024 * 1024
# One HTTP response body, read in chunks and refused past this size (audit: a 50 MB response was
# read whole before the output cap applied). Receive carries output base64-encoded (4/3), plus the
# envelope; a real WinRM service sends at most MaxEnvelopeSizekb (500 KB by default) per message.
MAX_RESPONSE_BYTES: Final = MAX_OUTPUT_BYTES * 4 // 3 + 1024 * 1024
READ_GRACE_S: Final = 10.0
SHELL_CODEPAGE: Final = 65001
# WinRM fault codes: 5 access denied (authenticated, not an administrator); 170 ERROR_BUSY and
# 1726/1727 RPC failures are what a busy or restarting WinRM service answers.
ACCESS_DENIED: Final = 5
BUSY_FAULTS: Final = frozenset({170, 1726, 1727})
AGENT_EXIT_CODES: Final = {0: "ok", 2: "agent error", 3: "unsupported PowerShell"}

Clock = Callable[[], float]
Sleep = Callable[[float], None]


@dataclass(frozen=True)
class CommandOutput:
    """What one powershell.exe run left: raw stdout, raw stderr (CLIXML), exit code."""

    stdout: bytes
    stderr: bytes
    exit_code: int


class _DeadlineExceededError(Exception):
    """The whole-run deadline passed before the next request."""


class _HostAdapter(HTTPAdapter):
    """requests adapter carrying this host's TLS policy and timeouts.

    - system / ca_bundle: our own `SSLContext` (OS trust store, or only the given PEM CAs);
      requests would otherwise load certifi's bundle into every verified pool.
    - pinned: no CA check, but urllib3's `assert_fingerprint` compares the SHA-256 of the peer's
      DER certificate before any byte of the request is sent; a mismatch is an `SSLError`.
    - off: no check.
    Every request gets (connect timeout, read timeout) capped by the run deadline, and its response
    body is read in chunks and refused past `MAX_RESPONSE_BYTES`.
    `connect_to`: the address the management-network check vetted; sockets go there and nowhere
    else (the name is not resolved again), while the Host header, SNI and the certificate's name
    check keep the server's name.
    """

    def __init__(self, conn: HostConnection, deadline: float, clock: Clock, connect_to: str | None = None) -> None:
        self._host = conn.address
        self._connect_to = connect_to if connect_to != conn.address else None
        self._mode = conn.tls_verify
        self._connect_timeout = conn.connect_timeout_s
        self._read_timeout = conn.operation_timeout_s + READ_GRACE_S
        self._deadline = deadline
        self._clock = clock
        pinned = conn.tls_verify is TlsVerify.PINNED and conn.pinned_sha256 is not None
        self._pin = normalize_fingerprint(conn.pinned_sha256 or "") if pinned else None
        self._context: ssl.SSLContext | None = None
        if conn.scheme is Scheme.HTTPS and conn.tls_verify is TlsVerify.SYSTEM:
            self._context = ssl.create_default_context()
        elif conn.scheme is Scheme.HTTPS and conn.tls_verify is TlsVerify.CA_BUNDLE:
            self._context = ssl.create_default_context(cadata=conn.ca_bundle_pem)
        super().__init__(max_retries=0)

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: bool | str, cert: str | tuple[str, str] | None = None
    ) -> tuple[_HostParams, _PoolKwargs]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        if self._connect_to is not None:
            host_params["host"] = self._connect_to
            if host_params.get("scheme") == "https":
                extra = cast("dict[str, Any]", pool_kwargs)  # urllib3 pool keys, not in the stubs
                # SNI and the ssl module's name check (check_hostname) use the server's name.
                extra["server_hostname"] = self._host
        if host_params.get("scheme") == "https":
            pool_kwargs.pop("ca_certs", None)
            pool_kwargs.pop("ca_cert_dir", None)
            if self._context is not None:
                pool_kwargs["ssl_context"] = self._context
                pool_kwargs["cert_reqs"] = "CERT_REQUIRED"
            else:
                pool_kwargs["cert_reqs"] = "CERT_NONE"
                if self._pin is not None:
                    # urllib3 pool key; not in the requests stubs' TypedDict.
                    cast("dict[str, Any]", pool_kwargs)["assert_fingerprint"] = self._pin
        return host_params, pool_kwargs

    def cert_verify(self, conn: Any, url: str, verify: bool | str, cert: Any) -> None:
        super().cert_verify(conn, url, verify, cert)  # type: ignore[no-untyped-call]
        # The trust anchors live in our SSLContext; never let certifi's bundle be added to it.
        conn.ca_certs = None
        conn.ca_cert_dir = None

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        remaining = self._deadline - self._clock()
        if remaining <= 0:
            raise _DeadlineExceededError
        bounded = (min(self._connect_timeout, remaining), min(self._read_timeout, remaining))
        if self._connect_to is not None and request.url is not None:
            request.headers["Host"] = urlsplit(request.url).netloc
        response = super().send(request, stream=stream, timeout=bounded, verify=verify, cert=cert, proxies=proxies)
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
            response.close()
            raise self._too_large()
        # requests reads the body after the response hooks ran (requests_ntlm's hook still needs
        # the socket): the body is read through a cap instead of up front.
        response.raw = _CappedBody(response.raw, MAX_RESPONSE_BYTES, self._too_large)
        return response

    def _too_large(self) -> OutputTooLarge:
        limit = MAX_RESPONSE_BYTES // (1024 * 1024)
        return OutputTooLarge(
            f"the host sent an HTTP response over {limit} MiB; the rest was not read", host=self._host
        )


class _CappedBody:
    """urllib3's response, except that streaming it past `limit` bytes raises instead of reading on.

    `Response.content` / `iter_content` read through `stream()`; every other attribute (requests_ntlm
    reads the socket for channel binding) is the real response's.
    """

    def __init__(self, raw: Any, limit: int, error: Callable[[], RemoteError]) -> None:
        self._raw = raw
        self._limit = limit
        self._error = error

    def stream(self, amt: int | None = 2**16, decode_content: bool | None = None) -> Iterator[bytes]:
        read = 0
        for chunk in self._raw.stream(amt, decode_content=decode_content):
            read += len(chunk)
            if read > self._limit:
                self._raw.close()
                raise self._error()
            yield chunk

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


def _open_protocol(
    conn: HostConnection, deadline: float, clock: Clock, connect_to: str | None = None
) -> winrm.protocol.Protocol:
    """A pywinrm Protocol whose requests.Session carries our adapter from the very first request.

    pywinrm builds its session lazily and, for NTLM over HTTP with `message_encryption='auto'`,
    authenticates inside `build_session`. We build the session with encryption set aside, mount
    the adapter, then run the handshake ourselves, so the TLS policy and timeouts apply to it too.
    DANGER: the password is handed to pywinrm here and nowhere else.
    """
    verified = conn.scheme is Scheme.HTTPS and conn.tls_verify in (TlsVerify.SYSTEM, TlsVerify.CA_BUNDLE)
    protocol = winrm.protocol.Protocol(
        conn.endpoint,
        transport="ntlm" if conn.auth is AuthMethod.NTLM else "basic",
        username=conn.username,
        password=conn.password,
        server_cert_validation="validate" if verified else "ignore",
        ca_trust_path=None,  # type: ignore[arg-type]  # None = no extra CA path (documented); trust is the adapter's
        read_timeout_sec=conn.operation_timeout_s + int(READ_GRACE_S),
        operation_timeout_sec=conn.operation_timeout_s,
        message_encryption="auto",
        proxy=None,
    )
    transport = protocol.transport
    wanted = transport.message_encryption
    transport.message_encryption = "never"
    try:
        session = transport.build_session()
    finally:
        transport.message_encryption = wanted
    adapter = _HostAdapter(conn, deadline, clock, connect_to)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    if conn.auth is AuthMethod.NTLM and conn.scheme is Scheme.HTTP:
        transport.setup_encryption(session)
    return protocol


def _chunks(payload: bytes, size: int) -> Iterator[tuple[bytes, bool]]:
    for start in range(0, len(payload), size):
        yield payload[start : start + size], start + size >= len(payload)
    if not payload:
        yield b"", True


class _Run:
    """One attempt: open, run, read, close. Raises pywinrm/requests exceptions unclassified;
    `started` tells the classifier whether the command was already running on the host."""

    def __init__(self, conn: HostConnection, deadline: float, clock: Clock, connect_to: str | None = None) -> None:
        self.conn = conn
        self.connect_to = connect_to
        self.deadline = deadline
        self.clock = clock
        self.started = False

    def _check_deadline(self) -> None:
        if self.clock() >= self.deadline:
            raise _DeadlineExceededError

    def execute(self, payload: bytes) -> CommandOutput:
        protocol = _open_protocol(self.conn, self.deadline, self.clock, self.connect_to)
        shell_id: str | None = None
        command_id: str | None = None
        try:
            shell_id = protocol.open_shell(codepage=SHELL_CODEPAGE, noprofile=True)
            command_id = protocol.run_command(
                shell_id, "powershell.exe", [*POWERSHELL_ARGS, encoded_bootstrap()], console_mode_stdin=False
            )
            self.started = True
            for chunk, last in _chunks(payload, STDIN_CHUNK_BYTES):
                self._check_deadline()
                protocol.send_command_input(shell_id, command_id, chunk, end=last)
            output = self._receive(protocol, shell_id, command_id)
            protocol.cleanup_command(shell_id, command_id)
            command_id = None
            protocol.close_shell(shell_id, close_session=False)
            shell_id = None
            return output
        finally:
            self._best_effort_cleanup(protocol, shell_id, command_id)

    def _receive(self, protocol: winrm.protocol.Protocol, shell_id: str, command_id: str) -> CommandOutput:
        stdout, stderr = bytearray(), bytearray()
        while True:
            self._check_deadline()
            try:
                out, err, exit_code, done = protocol.get_command_output_raw(shell_id, command_id)
            except WinRMOperationTimeoutError:
                continue  # nothing new within OperationTimeout: ask again until the run deadline
            stdout += out
            stderr += err
            if len(stdout) + len(stderr) > MAX_OUTPUT_BYTES:
                raise OutputTooLarge(
                    f"the agent printed more than {MAX_OUTPUT_BYTES // (1024 * 1024)} MiB; the rest was not read",
                    host=self.conn.address,
                )
            if done:
                return CommandOutput(bytes(stdout), bytes(stderr), exit_code)

    def _best_effort_cleanup(
        self, protocol: winrm.protocol.Protocol, shell_id: str | None, command_id: str | None
    ) -> None:
        # After a failure: stop the command and drop the shell if the connection still works
        # (a real WinRM service would otherwise keep them until IdleTimeout), then close sockets.
        try:
            if shell_id is not None and self.clock() < self.deadline:
                if command_id is not None:
                    protocol.cleanup_command(shell_id, command_id)
                protocol.close_shell(shell_id, close_session=False)
        except Exception:  # already failing: the original error is what matters
            log.debug("cleanup after a failed run did not complete", exc_info=False)
        finally:
            protocol.transport.close_session()


def _classify(exc: BaseException, conn: HostConnection, *, started: bool) -> RemoteError:
    """Turn whatever pywinrm/requests raised into a RemoteError a user understands."""
    host = conn.address
    if isinstance(exc, RemoteError):
        return exc
    if isinstance(exc, _DeadlineExceededError):
        return RemoteTimeout(f"the run did not finish within {conn.run_timeout_s:g} s", host=host)
    if isinstance(exc, InvalidCredentialsError):
        return AuthenticationFailed(
            f"the host rejected the credentials of {conn.username!r} ({conn.auth.value})", host=host
        )
    if isinstance(exc, WSManFaultError):
        code = exc.wsman_fault_code
        if code == ACCESS_DENIED or (exc.fault_subcode or "").endswith("AccessDenied"):
            return NotElevated(
                f"{conn.username!r} logged on but may not use WinRM (access denied); it must be an administrator",
                host=host,
            )
        if code in BUSY_FAULTS:
            return ProtocolError(f"the WinRM service is busy (fault {code})", host=host, retryable=not started)
        return ProtocolError(f"WinRM fault {code}: {exc.reason}", host=host)
    if isinstance(exc, WinRMTransportError):
        if exc.code == 503:
            return Unreachable("the WinRM service is unavailable (HTTP 503)", host=host, retryable=not started)
        return ProtocolError(f"unexpected HTTP {exc.code} from the WinRM service", host=host)
    if isinstance(exc, requests.exceptions.SSLError):
        if conn.tls_verify is TlsVerify.PINNED:
            return TlsVerificationFailed(
                "the server's certificate does not match the pinned SHA-256 fingerprint", host=host
            )
        return TlsVerificationFailed(
            f"the server's certificate is not trusted ({conn.tls_verify.value} verification)", host=host
        )
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return Unreachable(
            f"no answer to the connection attempt within {conn.connect_timeout_s:g} s", host=host, retryable=False
        )
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return RemoteTimeout("the host stopped answering (read timeout)", host=host)
    if isinstance(exc, requests.exceptions.ConnectionError):
        if started:
            return Unreachable("the connection was lost while the agent was running", host=host)
        return Unreachable(
            f"cannot connect to {conn.endpoint} (refused, unknown name or no route)", host=host, retryable=True
        )
    if isinstance(exc, WinRMError | ParseError | AssertionError | StopIteration | ValueError):
        return ProtocolError(f"the WinRM exchange failed: {type(exc).__name__}", host=host)
    return ProtocolError(f"unexpected failure: {type(exc).__name__}", host=host)


def run_command_payload(
    conn: HostConnection,
    payload: bytes,
    *,
    secrets: list[str],
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
) -> CommandOutput:
    """Run the bootstrap with `payload` on stdin; retry transient failures that happen before
    the command started. Raises RemoteError (redacted)."""
    conn.validate()
    vetted = require_inside(conn.address, conn.effective_port, conn.management_networks)
    connect_to = str(vetted) if vetted is not None else None
    deadline = clock() + conn.run_timeout_s
    attempt = 0
    while True:
        attempt += 1
        run = _Run(conn, deadline, clock, connect_to)
        try:
            return run.execute(payload)
        except Exception as exc:  # classified below: nothing escapes unclassified
            error = _classify(exc, conn, started=run.started).redacted(secrets)
            delay = conn.retry_backoff_s * (2 ** (attempt - 1))
            if error.retryable and attempt < conn.retry_attempts and clock() + delay < deadline:
                log.info("host %s: %s (attempt %d), retrying in %.1f s", conn.address, error.kind, attempt, delay)
                sleep(delay)
                continue
            log.info("host %s: %s after %d attempt(s)", conn.address, error.kind, attempt)
            raise error from None


def decode_program_result(conn: HostConnection, program: Program, output: CommandOutput) -> ProgramResult:
    """Validate the executor's answer: markers, schema, version, job; refusals raised as errors."""
    secrets = [conn.password, *program.secret_values()]
    host = conn.address
    if RESULT_BEGIN.encode("ascii") not in output.stdout:
        errors = parse_clixml_errors(output.stderr)
        detail = errors[0] if errors else "no error text"
        meaning = AGENT_EXIT_CODES.get(output.exit_code, "unexpected exit")
        message = f"the agent exited with code {output.exit_code} ({meaning}) without a result: {detail}"
        raise AgentFailed(redact(message, secrets), host=host, code="no_result")
    try:
        result = parse_agent_output(output.stdout)
    except AgentOutputError as exc:
        raise ProtocolError(redact(str(exc), secrets), host=host) from None
    if result.error is not None:
        text = redact(f"{result.error.code}: {result.error.message}", secrets)
        if result.error.code in {"not_elevated", "not_admin"}:
            raise NotElevated(text, host=host)
        if result.error.code == "unsupported_powershell":
            raise UnsupportedPowerShell(text, host=host, code=result.error.code)
        return result.model_copy(update={"error": result.error.model_copy(update={"message": text})})
    if result.agent_version != AGENT_VERSION:
        raise ProtocolError(f"agent version {result.agent_version} answered, {AGENT_VERSION} expected", host=host)
    if result.job_id != program.job_id:
        raise ProtocolError("the result belongs to another job", host=host)
    return _redacted(result, secrets)


def _redacted(result: ProgramResult, secrets: list[str]) -> ProgramResult:
    """Host output is untrusted: a secret it echoes (in an error text) is removed before anyone reads it."""
    data = result.model_dump_json()
    if not any(s and s in data for s in secrets):
        return result
    return ProgramResult.model_validate_json(redact(data, secrets))


def run_program(
    conn: HostConnection,
    program: Program,
    *,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
) -> ProgramResult:
    """One WinRM invocation: the executor runs `program` on `conn`'s host."""
    payload = build_stdin(program)
    secrets = [conn.password, *program.secret_values()]
    output = run_command_payload(conn, payload, secrets=secrets, clock=clock, sleep=sleep)
    return decode_program_result(conn, program, output)


def selftest_invoke(conn: HostConnection) -> Callable[[Program], ProgramResult]:
    """`run_program` for the self-test: a refusal the transport raises (not elevated, PowerShell 2.0) becomes
    the engine's `HostRefused`, so the self-test reports it as a verdict; every other RemoteError is raised."""
    from lockdown.engine.driver import HostRefused

    def invoke(program: Program) -> ProgramResult:
        try:
            return run_program(conn, program)
        except UnsupportedPowerShell as exc:
            raise HostRefused("unsupported_powershell", exc.message) from None
        except NotElevated as exc:
            raise HostRefused("not_elevated", exc.message) from None

    return invoke


def run_agent(
    conn: HostConnection,
    request: AgentRequest,
    *,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
    on_program: Callable[[Program], None] | None = None,
) -> AgentResult:
    """Carry out `request` on `conn`'s host and return the engine's result.

    `on_program`, when given, is told each program just before it is sent (the caller's live log).

    The engine (`lockdown.engine.driver`) decides everything; each program it builds is one
    WinRM invocation (verify: 1; harden, rollback, rotate: observe + execute). A result whose
    `error` is set (e.g. a failed health check that rolled the run back) is returned, not
    raised, because it still carries items the caller must keep; `not_elevated` and
    `unsupported_powershell` (nothing was done) raise. Raises a `RemoteError` subclass for
    everything else; secrets never appear in its text.
    """
    from lockdown.engine import driver

    if request.agent_version != AGENT_VERSION:
        raise ProtocolError(f"the request names agent {request.agent_version}, this is {AGENT_VERSION}")

    def invoke(program: Program) -> ProgramResult:
        if on_program is not None:
            on_program(program)
        return run_program(conn, program, clock=clock, sleep=sleep)

    return driver.run(request, invoke)
