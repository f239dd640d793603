"""rotate_password against a scripted host: the three invocations, the refusals, the restore after a failed check."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from lockdown.agent import AGENT_VERSION
from lockdown.engine import driver
from lockdown.engine.program import ProgramResult, Step
from lockdown.rules.contract import AgentRequest, HealthStatus, HealthTargets, RotationReport
from lockdown.rules.vocabulary import AgentMode, RuleAction
from tests.unit.engine.scripted import Answer, ScriptedHost

NEW, OLD = "New-Pw-77-xyz!", "Old-Pw-42-abc!"
SID = "S-1-5-21-100-200-300-1005"
OTHER_SID = "S-1-5-21-100-200-300-1009"
BANNER = "220 mail1 ESMTP MailEnable Service ready"
HEALTH = HealthTargets(smtp_port=2525, webmail_url="https://mail1.example.com/webmail")
PROBES = ["b.smtp", "b.smtp.v6", "b.pop", "b.pop.v6", "b.imap", "b.imap.v6", "b.webmail"]


def _service(name: str, sid: str | None, state: str, start_name: str = ".\\IME_SYSTEM") -> dict[str, Any]:
    return {"name": name, "exists": True, "start_name": start_name, "start_name_sid": sid, "state": state}


SERVICES = [
    _service("MEPOPS", SID, "Stopped", start_name="MAIL1\\IME_SYSTEM"),
    _service("MEMTAS", SID, "Running"),
    _service("MESMTPCS", "S-1-5-18", "Running", start_name="LocalSystem"),
    _service("MEIMAPS", OTHER_SID, "Running", start_name=".\\someone"),
]


def _host(**answers: Any) -> ScriptedHost:
    """A host named MAIL1 whose IME_SYSTEM runs MEMTAS (Running) and MEPOPS (Stopped); SMTP and webmail answer."""
    table: dict[str, Any] = {
        "host": {"computer_name": "MAIL1"},
        "o.account": {"exists": True, "sid": SID, "flags": 66048, "groups": []},
        "b.services": {"services": SERVICES},
        "b.smtp": {"connected": True, "banner": BANNER},
        "b.smtp.v6": {"connected": False, "error": "connection refused"},
        "b.webmail": {"status": 200, "title": "MailEnable Webmail", "error": None},
        "o.logon": {"ok": True, "code": 0},
        "h.services": {"services": [_service(n, None, "Running") for n in ("MEIMAPS", "MEMTAS", "MESMTPCS")]},
        "h.smtp": {"connected": True, "banner": BANNER},
        "h.webmail": {"status": 200, "title": "MailEnable Webmail", "error": None},
    }
    table.update({k.replace("_", "."): v for k, v in answers.items()})
    return ScriptedHost(answers=table)


def _rotate(host: ScriptedHost, **fields: Any) -> Any:
    fields = {"service_password": NEW, "previous_service_password": OLD, "health": HEALTH, **fields}
    return host.run(mode=AgentMode.ROTATE_PASSWORD, job_id="rot-1", **fields)


def _ids(steps: list[Step]) -> list[str]:
    return [s.id for s in steps]


def test_rotation_observes_then_checks_the_stored_password_then_runs_one_program() -> None:
    host = _host()
    result = _rotate(host)
    assert result.error is None
    assert len(host.programs) == 3
    observe, check, program = host.programs
    for sent in host.programs:
        assert (sent.agent_version, sent.job_id, sent.mode) == (AGENT_VERSION, "rot-1", "rotate_password")
        assert {k: v.get_secret_value() for k, v in sent.secrets.items()} == {
            "SERVICE_PASSWORD": NEW,
            "PREVIOUS_PASSWORD": OLD,
        }
    assert _ids(observe.steps) == ["host", "o.account", "b.services", *PROBES]
    assert observe.steps[0] == Step(id="host", op="host_info")
    assert observe.steps[1] == Step(id="o.account", op="user_get", args={"name": "IME_SYSTEM"})
    assert observe.steps[2] == Step(id="b.services", op="service_get", args={"names": None})
    assert observe.steps[3].args["port"] == 2525
    assert observe.steps[-1].args["url"] == "https://mail1.example.com/webmail"
    assert not any(s.critical for s in observe.steps)
    assert observe.on_failure == []
    # the stored password is tried before anything is written
    assert check.steps == [
        Step(id="o.logon", op="logon_check", args={"user": "MAIL1\\IME_SYSTEM", "password": "{{PREVIOUS_PASSWORD}}"})
    ]
    assert check.on_failure == []
    assert _ids(program.steps) == [
        "p.set",
        "p.svc0",
        "p.svc1",
        "r.stop0",
        "r.start0",
        "h.settle",
        "h.services",
        "h.smtp",
        "h.webmail",
    ]


def test_the_new_password_goes_to_the_account_and_every_service_running_as_its_sid() -> None:
    host = _host()
    _rotate(host)
    program = host.programs[2]
    steps = {s.id: s for s in program.steps}
    assert steps["p.set"] == Step(
        id="p.set",
        op="user_set_password",
        args={"name": "IME_SYSTEM", "password": "{{SERVICE_PASSWORD}}"},
        critical=True,
    )
    # sorted by name, whatever spelling of the account the service has: it runs as the SID
    assert steps["p.svc0"] == Step(
        id="p.svc0",
        op="service_change",
        expect={"return_value": 0},
        critical=True,
        args={"name": "MEMTAS", "start_name": ".\\IME_SYSTEM", "password": "{{SERVICE_PASSWORD}}"},
    )
    assert steps["p.svc1"] == Step(
        id="p.svc1",
        op="service_change",
        expect={"return_value": 0},
        critical=True,
        args={"name": "MEPOPS", "start_name": "MAIL1\\IME_SYSTEM", "password": "{{SERVICE_PASSWORD}}"},
    )
    # only the service that was Running is restarted (a Stopped one is never started)
    assert [(s.args["name"], s.args["action"]) for s in program.steps if s.op == "service_control"] == [
        ("MEMTAS", "stop"),
        ("MEMTAS", "start"),
    ]
    # the checks are on what answered before: the running MailEnable services, SMTP on IPv4, webmail
    assert steps["h.services"].args == {"names": ["MEIMAPS", "MEMTAS", "MESMTPCS"]}
    assert steps["h.services"].critical
    assert steps["h.smtp"].critical
    assert steps["h.smtp"].args["port"] == 2525
    assert steps["h.webmail"].critical
    assert steps["h.webmail"].args["url"] == HEALTH.webmail_url


def test_the_undo_puts_the_previous_password_back_only_where_the_new_one_was_set() -> None:
    host = _host()
    _rotate(host)
    undo = host.programs[2].on_failure
    assert undo[:3] == [
        Step(
            id="f.set",
            op="user_set_password",
            args={"name": "IME_SYSTEM", "password": "{{PREVIOUS_PASSWORD}}"},
            when_done="p.set",
        ),
        Step(
            id="f.svc0",
            op="service_change",
            when_done="p.svc0",
            args={"name": "MEMTAS", "start_name": ".\\IME_SYSTEM", "password": "{{PREVIOUS_PASSWORD}}"},
        ),
        Step(
            id="f.svc1",
            op="service_change",
            when_done="p.svc1",
            args={"name": "MEPOPS", "start_name": "MAIL1\\IME_SYSTEM", "password": "{{PREVIOUS_PASSWORD}}"},
        ),
    ]
    assert [(s.id, s.op, s.args["name"], s.args["action"]) for s in undo[3:]] == [
        ("f.r.stop0", "service_control", "MEMTAS", "stop"),
        ("f.r.start0", "service_control", "MEMTAS", "start"),
    ]
    assert not any(s.critical for s in undo)


def test_a_successful_rotation_reports_the_account_its_services_and_the_health() -> None:
    host = _host()
    result = _rotate(host)
    assert result.mode is AgentMode.ROTATE_PASSWORD
    assert result.job_id == "rot-1"
    assert result.action is RuleAction.CHANGED
    assert result.rotation == RotationReport(
        account="IME_SYSTEM", account_sid=SID, services=["MEMTAS", "MEPOPS"], password_set=True, restored=False
    )
    health = {h.check: (h.status, h.detail) for h in result.health}
    assert health["services"] == (HealthStatus.OK, "running: MEIMAPS, MEMTAS, MESMTPCS")
    assert health["smtp"] == (HealthStatus.OK, "port 2525")
    assert health["webmail"] == (HealthStatus.OK, HEALTH.webmail_url)
    assert health["webadmin"][0] is HealthStatus.NOT_CHECKED
    assert result.items == []
    assert result.changes == []


def test_the_passwords_travel_as_secrets_and_never_appear_in_the_result() -> None:
    host = _host()
    result = _rotate(host)
    for program in host.programs:
        assert all(isinstance(v, SecretStr) for v in program.secrets.values())
        dumped = program.model_dump_json()
        assert NEW not in dumped
        assert OLD not in dumped
        assert NEW not in repr(program)
        assert OLD not in repr(program)
    text = result.model_dump_json()
    assert NEW not in text
    assert OLD not in text


def test_another_account_is_rotated_under_its_own_name() -> None:
    host = _host()
    result = _rotate(host, service_account="MEADMIN")
    assert host.programs[0].steps[1].args == {"name": "MEADMIN"}
    assert host.programs[1].steps[0].args["user"] == "MAIL1\\MEADMIN"
    assert host.programs[2].steps[0].args["name"] == "MEADMIN"
    assert result.rotation is not None
    assert result.rotation.account == "MEADMIN"


def test_an_account_missing_on_the_host_stops_after_the_observation() -> None:
    host = _host(o_account={"exists": False, "sid": None})
    result = _rotate(host)
    assert len(host.programs) == 1
    assert result.error is not None
    assert result.error.code == "agent_error"
    assert result.error.message == "IME_SYSTEM does not exist on this host"
    assert result.rotation is None
    assert result.action is RuleAction.NONE


def test_a_failed_read_of_the_account_is_taken_as_missing() -> None:
    host = _host(o_account=Answer(status="error", error=("win32_5", "Access is denied.")))
    result = _rotate(host)
    assert len(host.programs) == 1
    assert result.error is not None
    assert result.error.code == "agent_error"


@pytest.mark.parametrize(
    ("logon", "code"),
    [
        (Answer(result={"ok": False, "code": 1326}), "1326"),
        (Answer(result={"ok": False, "code": 0}), "0"),
        (Answer(status="error", error=("exception", "LogonUser threw")), "None"),
        (Answer(status="expect_failed", result={"ok": True, "code": 0}), "None"),
    ],
)
def test_a_stored_password_the_host_does_not_accept_changes_nothing(logon: Answer, code: str) -> None:
    host = _host(o_logon=logon)
    result = _rotate(host)
    assert len(host.programs) == 2  # observe and the logon check: no program
    assert result.error is not None
    assert result.error.code == "previous_password_mismatch"
    assert result.error.message == (f"IME_SYSTEM's current password is not the one stored here (logon failed: {code})")
    assert result.rotation is None
    assert result.action is RuleAction.NONE


def test_a_stored_password_whose_logon_type_is_not_granted_is_the_right_one() -> None:
    """1385: the password is right, the account may not log on over the network (service accounts)."""
    host = _host(o_logon={"ok": False, "code": 1385})
    result = _rotate(host)
    assert result.error is None
    assert len(host.programs) == 3


def test_a_host_that_does_not_name_itself_is_checked_without_a_computer_part() -> None:
    host = _host(host={"computer_name": None})
    _rotate(host)
    assert host.programs[1].steps[0].args["user"] == "\\IME_SYSTEM"


def test_an_account_no_service_runs_as_gets_the_password_and_nothing_is_restarted() -> None:
    host = _host(b_services={"services": [_service("MEMTAS", OTHER_SID, "Running")]})
    result = _rotate(host)
    program = host.programs[2]
    assert [s.op for s in program.steps if s.op in ("service_change", "service_control")] == []
    assert _ids(program.on_failure) == ["f.set"]
    assert result.rotation is not None
    assert result.rotation.services == []


def test_a_failed_health_check_restores_the_previous_password_and_says_why() -> None:
    host = _host(
        r_start0={"changed": False, "state": "Stopped", "code": 1069},
        h_services=Answer(
            status="expect_failed",
            result={"services": [_service("MEIMAPS", None, "Running"), _service("MEMTAS", None, "Stopped")]},
        ),
    )
    result = _rotate(host)
    assert len(host.programs) == 3
    assert host.results[2].aborted_at == "h.services"
    # every undo ran (the fake host ran the on_failure steps whose step had run ok)
    assert [s.status for s in host.results[2].on_failure] == ["ok", "ok", "ok", "ok", "ok"]
    assert result.error is not None
    assert result.error.code == "health_check_failed"
    assert result.error.message == (
        "health check failed after the password change: "
        "MEMTAS did not start: The service did not start due to a logon failure. [Win32 error 1069]; "
        "MEMTAS is Stopped; "
        "the previous password was restored on the account and its services"
    )
    assert result.rotation == RotationReport(
        account="IME_SYSTEM", account_sid=SID, services=["MEMTAS", "MEPOPS"], password_set=False, restored=True
    )
    assert result.action is RuleAction.NONE
    health = {h.check: h.status for h in result.health}
    assert health["services"] is HealthStatus.FAILED
    assert health["smtp"] is HealthStatus.NOT_CHECKED  # not reached: the program stopped at the services


def test_a_failed_password_change_is_named_by_its_step() -> None:
    host = _host(p_set=Answer(status="error", error=("win32_2245", "The password does not meet the policy")))
    result = _rotate(host)
    assert host.results[2].aborted_at == "p.set"
    # nothing to put back; the restart of what was stopped still runs
    assert [s.status for s in host.results[2].on_failure] == ["skipped", "skipped", "skipped", "ok", "ok"]
    assert result.error is not None
    assert result.error.message == (
        "health check failed after the password change: step p.set failed; "
        "the previous password was restored on the account and its services"
    )
    assert result.rotation is not None
    assert result.rotation.restored
    assert not result.rotation.password_set


def test_a_long_failure_message_is_cut_to_the_contract_length() -> None:
    names = [f"MESVC{n:03d}" for n in range(120)]
    failed = {f"r_start{n}": {"changed": False, "state": "Stopped", "code": 1069} for n in range(len(names))}
    host = _host(
        b_services={"services": [_service(n, SID, "Running") for n in names]},
        h_smtp=Answer(status="expect_failed", result={"connected": False, "error": "connection refused"}),
        **failed,
    )
    result = _rotate(host)
    assert result.error is not None
    assert len(result.error.message) == 4096
    assert result.error.message.startswith("health check failed after the password change: MESVC000 did not start")


def test_a_refused_program_is_the_result_error() -> None:
    host = _host()
    host.refusals[0] = ("unsupported_powershell", "PowerShell 2.0 found, 5.1 needed")
    result = _rotate(host)
    assert len(host.programs) == 1
    assert result.error is not None
    assert result.error.code == "unsupported_powershell"
    assert result.error.message == "PowerShell 2.0 found, 5.1 needed"
    assert result.rotation is None


@pytest.mark.parametrize("invocation", [1, 2])
def test_a_refusal_at_a_later_invocation_stops_there(invocation: int) -> None:
    host = _host()
    host.refusals[invocation] = ("not_elevated", "the WinRM account is not an administrator")
    result = _rotate(host)
    assert len(host.programs) == invocation + 1
    assert result.error is not None
    assert (result.error.code, result.error.message) == ("not_elevated", "the WinRM account is not an administrator")
    assert result.rotation is None


def test_host_refused_carries_its_code_and_message() -> None:
    exc = driver.HostRefused("constrained_language", "ConstrainedLanguage")
    assert (exc.code, exc.message) == ("constrained_language", "ConstrainedLanguage")
    assert str(exc) == "ConstrainedLanguage"
    assert exc.args == ("ConstrainedLanguage",)


def test_run_answers_a_refusal_with_the_request_identity() -> None:
    request = AgentRequest(
        agent_version=AGENT_VERSION,
        mode=AgentMode.ROTATE_PASSWORD,
        job_id="rot-9",
        service_password=NEW,
        previous_service_password=OLD,
    )

    def refuse(_program: Any) -> ProgramResult:
        return ProgramResult.model_validate({"error": {"code": "version_mismatch", "message": "agent 1.9.0"}})

    result = driver.run(request, refuse)
    assert (result.agent_version, result.mode, result.job_id) == (AGENT_VERSION, AgentMode.ROTATE_PASSWORD, "rot-9")
    assert result.error is not None
    assert (result.error.code, result.error.message) == ("version_mismatch", "agent 1.9.0")
