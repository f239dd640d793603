"""winlab's agent v2 executor over the emulated Windows: the semantics of lockdown.engine.program."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lockdown.engine.program import PROGRAM_VERSION, ProgramResult
from tests.unit.winlab.builders import make_host
from winlab.agent import primitives
from winlab.agent.executor import EXIT_OK, EXIT_PROGRAM_ERROR, run_program
from winlab.agent.primitives import PrimitiveContext, journal_path
from winlab.windows import sids
from winlab.windows.host import WindowsHost

VERSION = "2.0.0"
PW = "Xq7!long-Passw0rd"
RIGHT = "SeServiceLogonRight"


def program(*steps: dict[str, Any], on_failure: list[dict[str, Any]] | None = None, **extra: Any) -> str:
    data: dict[str, Any] = {
        "agent_version": VERSION,
        "program_version": PROGRAM_VERSION,
        "job_id": "job-7",
        "mode": "harden",
        "steps": list(steps),
        "on_failure": on_failure or [],
    }
    data.update(extra)
    return json.dumps(data)


def run(host: WindowsHost, text: str) -> tuple[ProgramResult, int]:
    result, code = run_program(host, host.admin_token(), text, agent_version=VERSION)
    ProgramResult.model_validate_json(result.model_dump_json())  # what the engine re-validates
    return result, code


def step(id: str, op: str, **fields: Any) -> dict[str, Any]:
    return {"id": id, "op": op, **fields}


def ime_user(host: WindowsHost) -> str:
    return host.accounts.user("IME_USER").sid


def journal(host: WindowsHost, job_id: str = "job-7") -> list[dict[str, Any]]:
    text = host.fs.read_text(journal_path(job_id)) or ""
    return [json.loads(line) for line in text.splitlines()]


# --- program-level refusals -------------------------------------------------------------------------
def test_a_uac_filtered_token_is_refused_not_elevated_and_nothing_runs():
    host = make_host(admin_account="local", uac_filtering=True)
    text = program(step("a", "lsa_add", args={"sid": sids.USERS, "right": RIGHT}))
    result, code = run(host, text)
    assert code == EXIT_PROGRAM_ERROR
    assert result.error is not None
    assert result.error.code == "not_elevated"
    assert "LocalAccountTokenFilterPolicy=1" in result.error.message
    assert "UAC remote restrictions" in result.error.message
    assert result.job_id == "job-7"
    assert result.steps == []
    assert host.mutations == 0


def test_version_mismatch_and_bad_program(host):
    result, code = run(host, program(agent_version="1.9.9"))
    assert (code, result.error.code) == (EXIT_PROGRAM_ERROR, "version_mismatch")
    result, _ = run(host, program(program_version=PROGRAM_VERSION + 1))
    assert result.error.code == "version_mismatch"
    for text in ("{not json", "[]", program(step("a", "format_disk")), program(step("a", "lsa_add", args={}))):
        result, code = run(host, text)
        assert (code, result.error.code) == (EXIT_PROGRAM_ERROR, "bad_program"), text
    assert host.mutations == 0


# --- steps ---------------------------------------------------------------------------------------
def test_substitution_at_any_depth_and_bind(host):
    text = program(
        step(
            "a",
            "user_create",
            args={"name": "IME_SYSTEM", "password": "{{PW}}", "flags": 0, "description": "d"},
            bind={"SID": "sid"},
        ),
        step("b", "lsa_add", args={"sid": "{{SID}}", "right": RIGHT}),
        step("c", "sid_lookup", args={"names": ["ME01\\{{NAME}}", "x"]}, bind={"FOUND": "sids.ME01\\IME_SYSTEM"}),
        secrets={"PW": PW, "NAME": "IME_SYSTEM"},
    )
    result, code = run(host, text)
    assert code == EXIT_OK
    assert [s.status for s in result.steps] == ["ok", "ok", "ok"]
    sid = host.accounts.user("IME_SYSTEM").sid
    assert host.accounts.check_password("IME_SYSTEM", PW)
    assert sid in host.lsa.holders(RIGHT)
    assert result.steps[2].result == {"sids": {"ME01\\IME_SYSTEM": sid, "x": None}}
    assert result.vars == {"SID": sid, "FOUND": sid}  # secrets are never echoed back


def test_bind_stores_text_and_a_missing_value_leaves_the_variable_unbound(host):
    text = program(
        step("a", "user_get", args={"name": "Administrator"},
             bind={"FLAGS": "flags", "GONE": "nothing", "G0": "groups.0", "G9": "groups.9", "OK": "exists"}),
        step("b", "user_get", args={"name": "{{GONE}}"}),
    )  # fmt: skip
    result, _ = run(host, text)
    assert result.vars["FLAGS"] == str(host.accounts.user("Administrator").flags)
    assert result.vars["G0"] == sids.ADMINISTRATORS
    assert result.vars["OK"] == "True"
    assert "G9" not in result.vars
    assert "GONE" not in result.vars
    assert result.steps[1].status == "error"
    assert result.steps[1].error.code == "unbound_var"


def test_an_unbound_variable_makes_the_step_an_error_without_calling_the_primitive(host):
    result, _ = run(host, program(step("a", "lsa_add", args={"sid": "{{NOPE}}", "right": RIGHT})))
    outcome = result.steps[0]
    assert outcome.status == "error"
    assert outcome.result is None
    assert outcome.error.code == "unbound_var"
    assert "{{NOPE}}" in outcome.error.message
    assert host.mutations == 0


def test_expect_and_expect_match(host):
    text = program(
        step("a", "service_get", args={"names": ["MEPOPS"]},
             expect={"services.0.state": "Running", "services.0.exists": True},
             expect_match={"services.0.start_name_sid": r"^S-1-5-18$"}),
        step("b", "service_get", args={"names": ["MEPOPS"]}, expect={"services.0.state": "Stopped"}),
        step("c", "tcp_probe", args={"host": "127.0.0.1", "port": 110, "send": None, "timeout_ms": 10},
             expect_match={"banner": r"^\+OK .*mailenable"}),  # case-sensitive: MailEnable
    )  # fmt: skip
    result, code = run(host, text)
    assert code == EXIT_OK
    assert result.aborted_at is None
    assert [s.status for s in result.steps] == ["ok", "expect_failed", "expect_failed"]
    assert result.steps[1].result is not None  # the result is kept
    assert "services.0.state" in result.steps[1].error.message


def test_primitive_errors_carry_the_win32_code(host):
    result, _ = run(host, program(step("a", "user_set_flags", args={"name": "GHOST", "set": 1, "clear": 0})))
    assert result.steps[0].status == "error"
    assert result.steps[0].error.code == "win32_2221"
    assert "The user name could not be found." in result.steps[0].error.message


def test_a_critical_failure_aborts_and_on_failure_undoes_only_what_changed(host):
    sid = ime_user(host)
    text = program(
        step("a", "lsa_add", args={"sid": sid, "right": RIGHT}, journal={"undo": "lsa_remove"}),
        step("b", "lsa_add", args={"sid": sids.ALL_SERVICES, "right": RIGHT}),  # already held: changed false
        step("c", "service_get", args={"names": ["MEPOPS"]}, expect={"services.0.state": "Stopped"}, critical=True),
        step("d", "lsa_add", args={"sid": sid, "right": "SeBatchLogonRight"}),
        on_failure=[
            step("u.b", "lsa_remove", args={"sid": sids.ALL_SERVICES, "right": RIGHT}, when_done="b"),
            step("u.a", "lsa_remove", args={"sid": sid, "right": RIGHT}, when_done="a"),
            step("u.d", "lsa_remove", args={"sid": sid, "right": "SeBatchLogonRight"}, when_done="d"),
            step("u.x", "user_set_flags", args={"name": "GHOST", "set": 0, "clear": 0}, critical=True),
            step("u.y", "host_info"),
        ],
    )
    result, code = run(host, text)
    assert code == EXIT_OK
    assert result.aborted_at == "c"
    assert [s.id for s in result.steps] == ["a", "b", "c"]  # d never ran
    assert [(s.id, s.status) for s in result.on_failure] == [
        ("u.b", "skipped"), ("u.a", "ok"), ("u.d", "skipped"), ("u.x", "error"), ("u.y", "ok"),
    ]  # fmt: skip
    assert sids.ALL_SERVICES in host.lsa.holders(RIGHT)  # b changed nothing, so its undo did not run
    assert sid not in host.lsa.holders(RIGHT)
    assert sid not in host.lsa.holders("SeBatchLogonRight")


def test_without_an_abort_on_failure_does_not_run(host):
    text = program(
        step("a", "lsa_add", args={"sid": ime_user(host), "right": RIGHT}),
        step("b", "user_get", args={"name": "GHOST"}, expect={"exists": True}),  # not critical
        on_failure=[step("u.a", "lsa_remove", args={"sid": ime_user(host), "right": RIGHT}, when_done="a")],
    )
    result, _ = run(host, text)
    assert result.aborted_at is None
    assert result.on_failure == []
    assert ime_user(host) in host.lsa.holders(RIGHT)


def test_the_journal_is_written_before_the_next_step(host):
    sid = ime_user(host)
    text = program(
        step(
            "a",
            "lsa_add",
            args={"sid": sid, "right": RIGHT},
            bind={"CHANGED": "changed"},
            journal={"rule_id": "r1", "before": "x"},
        ),
        step("b", "journal_read", args={"job_id": "job-7"}, expect={"entries.0.step": "a", "trusted": True}),
        step("c", "lsa_add", args={"sid": sid, "right": RIGHT}, journal={"rule_id": "r2"}),  # no change: no entry
        step("d", "user_set_flags", args={"name": "GHOST", "set": 1, "clear": 0}, journal={"rule_id": "r3"}),
        secrets={"PW": PW},
    )
    result, _ = run(host, text)
    assert [s.status for s in result.steps] == ["ok", "ok", "ok", "error"]
    entries = journal(host)
    assert entries == [{"step": "a", "record": {"rule_id": "r1", "before": "x"}, "vars": {"CHANGED": "True"}}]
    assert result.steps[1].result is not None
    assert result.steps[1].result["entries"] == entries


def test_a_journal_append_that_fails_is_the_step_error_and_aborts_a_critical_step(host):
    user = host.logon("IME_USER", host.mailenable.install.passwords["IME_USER"])
    host.fs.create_dir(primitives.JOURNAL_ROOT, user)  # planted: owned by IME_USER
    text = program(
        step("a", "lsa_add", args={"sid": ime_user(host), "right": RIGHT}, journal={"r": 1}, critical=True),
        step("b", "host_info"),
        on_failure=[step("u.a", "lsa_remove", args={"sid": ime_user(host), "right": RIGHT})],
    )
    result, _ = run(host, text)
    assert result.steps[0].status == "error"
    assert result.steps[0].result == {"changed": True}
    assert "not by an administrator" in result.steps[0].error.message
    assert result.aborted_at == "a"
    assert result.on_failure[0].status == "ok"
    assert ime_user(host) not in host.lsa.holders(RIGHT)


def test_secrets_are_redacted_from_errors_vars_and_the_journal(host):
    secret = "Sup3r!Secret-Value"
    text = program(
        step("a", "group_member_add", args={"group": "G-{{PW}}", "sid": sids.USERS}),
        step("b", "user_get", args={"name": "IME_USER"}, bind={"PW": "sid", "COPY": "sid"}),
        step("c", "lsa_add", args={"sid": ime_user(host), "right": RIGHT}, journal={}),
        secrets={"PW": secret},
    )
    result, _ = run(host, text)
    error = result.steps[0].error
    assert error.code == "win32_1376"
    assert secret not in error.message
    assert "G-***" in error.message
    assert "PW" not in result.vars  # a secret's name never appears, even when rebound
    assert result.vars == {"COPY": ime_user(host)}
    assert "PW" not in journal(host)[0]["vars"]
    assert secret not in result.model_dump_json()


def test_modelled_time_accumulates_on_the_host_clock(host):
    start = host.ctx.clock.now()
    text = program(
        step("a", "service_control", args={"name": "MEPOPS", "action": "stop", "timeout_ms": 30000}),
        step("b", "sleep", args={"seconds": 10}),
        step(
            "c",
            "service_control",
            args={"name": "MEPOPS", "action": "start", "timeout_ms": 30000},
            expect={"code": 0, "state": "Running"},
        ),
    )
    result, _ = run(host, text)
    assert [s.status for s in result.steps] == ["ok", "ok", "ok"]
    assert host.ctx.clock.now() - start >= 11


@pytest.mark.parametrize("mail_ports", [None, {2110: "pop"}])
def test_mail_ports_of_a_lab_host_can_be_given(host, mail_ports):
    port = 2110 if mail_ports else 110
    text = program(step("a", "tcp_probe", args={"host": "::1", "port": port, "send": "CAPA", "timeout_ms": 10},
                        expect={"connected": True}))  # fmt: skip
    result, _ = run_program(host, host.admin_token(), text, agent_version=VERSION, mail_ports=mail_ports)
    assert result.steps[0].status == "ok"
    assert PrimitiveContext(host, host.admin_token()).mail_ports == {25: "smtp", 110: "pop", 143: "imap"}


def test_when_ok_runs_a_step_only_if_every_listed_step_succeeded():
    host = make_host()
    text = program(
        step("good", "sleep", args={"seconds": 0}),
        step("bad", "user_get", args={"name": "{{NOPE}}"}),  # unbound: status error
        step("after_good", "sleep", args={"seconds": 0}, when_ok=["good"]),
        step("after_bad", "sleep", args={"seconds": 0}, when_ok=["good", "bad"]),
    )
    result, code = run(host, text)
    assert code == EXIT_OK
    statuses = {s.id: s.status for s in result.steps}
    assert statuses == {"good": "ok", "bad": "error", "after_good": "ok", "after_bad": "skipped"}


def test_when_ok_may_only_name_an_earlier_step():
    host = make_host()
    text = program(step("a", "sleep", args={"seconds": 0}, when_ok=["b"]), step("b", "sleep", args={"seconds": 0}))
    result, code = run(host, text)
    assert code == EXIT_PROGRAM_ERROR
    assert result.error is not None
    assert result.error.code == "bad_program"
