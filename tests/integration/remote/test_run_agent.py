"""run_program over real WinRM to winlab: success paths, request budget, and every error class.

(`run_agent` = the engine driving `run_program`; the engine's own results are tested in
tests/unit/engine and, over WinRM against the emulated Windows, in tests/integration/winlab_agent.)"""

from __future__ import annotations

import math

import pytest

from lockdown.agent import agent_sha256, build_stdin
from remote import (
    AgentFailed,
    AuthenticationFailed,
    AuthMethod,
    InsecureConfiguration,
    NotElevated,
    OutputTooLarge,
    ProtocolError,
    RemoteError,
    RemoteTimeout,
    Scheme,
    TlsVerificationFailed,
    TlsVerify,
    Unreachable,
    UnsupportedPowerShell,
)
from remote.transport import STDIN_CHUNK_BYTES, run_program
from tests.integration.remote.conftest import (
    ADMIN_PASSWORD,
    RECEIVED,
    SERVICE_PASSWORD,
    VIEWER_PASSWORD,
    AgentLab,
    apply_program,
    big_program,
    verify_program,
)

pytestmark = pytest.mark.winlab

SECRETS = (ADMIN_PASSWORD, VIEWER_PASSWORD, SERVICE_PASSWORD, "wrong-Secret-Pw-123")


def assert_no_secrets(exc: BaseException) -> None:
    for text in (str(exc), repr(exc), getattr(exc, "message", ""), *map(str, exc.args)):
        for secret in SECRETS:
            assert secret not in text


def test_verify_over_ntlm_http_is_encrypted_and_costs_nine_requests(agent_lab: AgentLab, agent01) -> None:
    program = verify_program()
    extra_chunks = math.ceil(len(build_stdin(program)) / STDIN_CHUNK_BYTES) - 1
    # stdin is gzipped: the agent and a verify program of the built-in profile fit one Send, so a
    # verify is 9 requests here.
    assert extra_chunks == 0
    before = agent01.counters.snapshot()
    result = run_program(agent_lab.conn(), program)
    after = agent01.counters.snapshot()
    assert result.job_id == program.job_id
    assert [s.id for s in result.steps] == [s.id for s in program.steps]
    assert RECEIVED["AGENT01"].programs[-1] == program
    # 3 NTLM handshake requests, Create, Command, Send×chunks, Receive, Signal, Delete.
    assert after.requests - before.requests == 9 + extra_chunks, (after.requests - before.requests, extra_chunks)
    assert after.ntlm_logins - before.ntlm_logins == 1
    assert after.connections - before.connections == 1
    soap = after.soap_requests - before.soap_requests
    assert soap > 0
    assert after.encrypted_requests - before.encrypted_requests == soap  # every WS-Man message sealed
    assert after.shells_created - before.shells_created == 1


def test_verify_over_https_with_the_lab_ca(agent_lab: AgentLab, agent01) -> None:
    before = agent01.counters.snapshot()
    result = run_program(agent_lab.conn(scheme="https"), verify_program("job-https"))
    assert result.job_id == "job-https"
    assert agent01.counters.encrypted_requests == before.encrypted_requests  # TLS protects it instead


def test_apply_sends_the_service_password_only_inside_the_payload(agent_lab: AgentLab) -> None:
    program = apply_program()
    assert SERVICE_PASSWORD not in repr(program)
    result = run_program(agent_lab.conn(), program)
    assert result.mode == "apply"
    assert SERVICE_PASSWORD not in result.model_dump_json()
    received = RECEIVED["AGENT01"].programs[-1]
    assert received.secret_values() == [SERVICE_PASSWORD]


def test_payload_larger_than_one_chunk_arrives_intact(agent_lab: AgentLab) -> None:
    program = big_program()
    payload = build_stdin(program)
    assert len(payload) > 3 * STDIN_CHUNK_BYTES
    result = run_program(agent_lab.conn(), program)
    assert RECEIVED["AGENT01"].programs[-1] == program
    assert RECEIVED["AGENT01"].stdin_sizes[-1] == len(payload)
    assert [s.id for s in result.steps] == [s.id for s in program.steps]


def test_the_agent_hash_the_host_checks_is_the_shipped_one() -> None:
    assert len(agent_sha256()) == 64


def test_wrong_password_is_authentication_failed(agent_lab: AgentLab) -> None:
    with pytest.raises(AuthenticationFailed) as caught:
        run_program(agent_lab.conn(password="wrong-Secret-Pw-123"), apply_program())
    assert caught.value.kind == "authentication_failed"
    assert_no_secrets(caught.value)


def test_access_denied_on_shell_create_is_not_elevated(agent_lab: AgentLab) -> None:
    with pytest.raises(NotElevated) as caught:
        run_program(agent_lab.conn(username=".\\viewer", password=VIEWER_PASSWORD), verify_program())
    assert caught.value.kind == "not_elevated"
    assert_no_secrets(caught.value)


def test_structured_not_elevated_from_the_agent_is_not_elevated_and_redacted(agent_lab: AgentLab) -> None:
    with pytest.raises(NotElevated) as caught:
        run_program(agent_lab.conn("NOADMIN"), apply_program())
    assert "UAC" in str(caught.value)
    assert_no_secrets(caught.value)


def test_host_down_is_unreachable_after_retries(agent_lab: AgentLab, agent01) -> None:
    agent_lab.fleet.set_down("AGENT01", True)
    sleeps: list[float] = []
    with pytest.raises(Unreachable) as caught:
        run_program(agent_lab.conn(retry_attempts=3, retry_backoff_s=0.01), verify_program(), sleep=sleeps.append)
    assert sleeps == [0.01, 0.02]
    assert caught.value.kind == "unreachable"
    assert_no_secrets(caught.value)


def test_latency_beyond_the_run_deadline_is_a_timeout(agent_lab: AgentLab, agent01) -> None:
    agent01.faults.latency_s = 1.0
    with pytest.raises(RemoteTimeout) as caught:
        run_program(agent_lab.conn(run_timeout_s=0.4), verify_program())
    assert caught.value.kind == "timeout"
    assert_no_secrets(caught.value)


def test_https_without_trusting_the_lab_ca_fails_verification(agent_lab: AgentLab, agent01) -> None:
    before = agent01.counters.snapshot()
    with pytest.raises(TlsVerificationFailed) as caught:
        run_program(agent_lab.conn(scheme="https", tls_verify=TlsVerify.SYSTEM, ca_bundle_pem=None), verify_program())
    assert caught.value.kind == "tls_verification_failed"
    assert agent01.counters.soap_requests == before.soap_requests
    assert_no_secrets(caught.value)


def test_pinned_fingerprint_that_matches_connects(agent_lab: AgentLab) -> None:
    pin = agent_lab.cert_sha256("AGENT01")
    colon_form = ":".join(pin[i : i + 2] for i in range(0, 64, 2)).upper()
    conn = agent_lab.conn(scheme="https", tls_verify=TlsVerify.PINNED, ca_bundle_pem=None, pinned_sha256=colon_form)
    assert run_program(conn, verify_program("job-pinned")).job_id == "job-pinned"


def test_pinned_fingerprint_mismatch_is_refused_before_any_soap(agent_lab: AgentLab, agent01) -> None:
    before = agent01.counters.snapshot()
    conn = agent_lab.conn(scheme="https", tls_verify=TlsVerify.PINNED, ca_bundle_pem=None, pinned_sha256="ab" * 32)
    with pytest.raises(TlsVerificationFailed, match="pinned"):
        run_program(conn, apply_program())
    assert agent01.counters.soap_requests == before.soap_requests
    assert agent01.counters.auth_failures == before.auth_failures


def test_basic_over_http_is_refused_without_a_request(agent_lab: AgentLab, agent01) -> None:
    before = agent01.counters.snapshot()
    with pytest.raises(InsecureConfiguration) as caught:
        run_program(agent_lab.conn(auth=AuthMethod.BASIC, username="Administrator"), apply_program())
    assert agent01.counters.requests == before.requests
    assert agent01.counters.connections == before.connections
    assert_no_secrets(caught.value)


def test_basic_over_https_works(agent_lab: AgentLab, agent01) -> None:
    before = agent01.counters.snapshot()
    conn = agent_lab.conn(scheme="https", auth=AuthMethod.BASIC, username="Administrator")
    assert run_program(conn, verify_program("job-basic")).job_id == "job-basic"
    assert agent01.counters.basic_logins > before.basic_logins


def test_oversized_output_is_capped(agent_lab: AgentLab) -> None:
    with pytest.raises(OutputTooLarge) as caught:
        run_program(agent_lab.conn("HUGE"), verify_program())
    assert caught.value.kind == "output_too_large"
    assert isinstance(caught.value, ProtocolError)


def test_garbage_between_the_markers_is_a_protocol_error(agent_lab: AgentLab) -> None:
    with pytest.raises(ProtocolError) as caught:
        run_program(agent_lab.conn("GARBAGE"), apply_program())
    assert caught.value.kind == "protocol_error"
    assert_no_secrets(caught.value)


def test_old_powershell_is_reported_as_unsupported(agent_lab: AgentLab) -> None:
    with pytest.raises(UnsupportedPowerShell, match=r"WMF 5\.1") as caught:
        run_program(agent_lab.conn("OLDPS"), verify_program())
    assert caught.value.code == "unsupported_powershell"


def test_a_crash_without_result_is_an_agent_error_with_the_clixml_message(agent_lab: AgentLab) -> None:
    with pytest.raises(AgentFailed, match="Get-Nothing") as caught:
        run_program(agent_lab.conn("CRASH"), apply_program())
    assert caught.value.kind == "agent_error"
    assert_no_secrets(caught.value)


def test_every_error_is_a_remote_error_with_a_kind() -> None:
    kinds = {
        cls.kind
        for cls in (
            AuthenticationFailed,
            NotElevated,
            Unreachable,
            RemoteTimeout,
            TlsVerificationFailed,
            ProtocolError,
            OutputTooLarge,
            AgentFailed,
            UnsupportedPowerShell,
            InsecureConfiguration,
        )
        if issubclass(cls, RemoteError)
    }
    assert len(kinds) == 10


def test_connection_repr_hides_the_password(agent_lab: AgentLab) -> None:
    conn = agent_lab.conn(scheme="https")
    assert ADMIN_PASSWORD not in repr(conn)
    assert conn.scheme is Scheme.HTTPS
