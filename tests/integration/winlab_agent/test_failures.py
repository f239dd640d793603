"""What goes wrong, the way Windows makes it go wrong: from the model, over real WinRM."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import winrm

from lockdown.agent import AGENT_VERSION, agent_script, encode_stdin_line
from lockdown.engine.program import Program, Step
from lockdown.rules import RuleAction, RuleStatus
from lockdown.rules.vocabulary import AgentMode
from remote.errors import AuthenticationFailed, NotElevated, RemoteError, Unreachable
from remote.transport import run_command_payload
from tests.integration.winlab_agent.conftest import (
    SPECS,
    connection,
    discover,
    judged_not_compliant,
    name_of,
    outcomes,
    plan_for,
    run,
    start_lab,
)
from winlab.lab import Lab
from winlab.windows.state import state_diff

pytestmark = pytest.mark.winlab


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    specs = [SPECS["sql"], SPECS["spare"], SPECS["plesk"]]
    running = start_lab(tmp_path_factory.mktemp("winlab-failures"), specs)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def spare(lab: Lab) -> Iterator[str]:
    name = name_of("spare")
    yield name
    lab.fault(name, clear=True)


def test_wrong_password_is_an_authentication_failure(lab: Lab) -> None:
    name = name_of("spare")
    before = lab.server(name).counters.auth_failures
    with pytest.raises(AuthenticationFailed):
        run(lab, name, AgentMode.DISCOVER, password="not-the-password")
    assert lab.server(name).counters.auth_failures == before + 1


def test_uac_filtered_local_admin_gets_the_structured_not_elevated_error(lab: Lab) -> None:
    name = name_of("sql")
    other = lab.inventory()["hosts"][0]["other_accounts"][0]
    assert other["username"] == "fleetadmin"
    mutations = lab.host(name).model.mutations
    with pytest.raises(NotElevated) as caught:
        run(lab, name, AgentMode.VERIFY, plan_for(discover(lab, name), sql=True), username="fleetadmin",
            password=other["password"])  # fmt: skip
    assert "not elevated" in caught.value.message
    assert other["password"] not in caught.value.message
    assert lab.host(name).model.mutations == mutations


def test_access_denied_on_one_object_fails_that_item_only(lab: Lab, spare: str) -> None:
    plan = plan_for(discover(lab, spare), sql=False)
    cmd = "C:\\Windows\\System32\\cmd.exe"
    lab.fault(spare, deny=cmd)
    applied = run(lab, spare, AgentMode.APPLY, plan)
    try:
        assert applied.error is None
        failed = [i for i in applied.items if i.error]
        assert [(i.target, i.action) for i in failed] == [(cmd, RuleAction.FAILED)]
        assert failed[0].error is not None
        assert "Access is denied." in failed[0].error
        lab.fault(spare, clear=True)
        results = outcomes(plan, run(lab, spare, AgentMode.VERIFY, plan))
        assert [(r[0], r[1]) for r in judged_not_compliant(results)] == [("file_deny.system32.cmd_exe", cmd)]
    finally:
        run(lab, spare, AgentMode.ROLLBACK, rollback=applied.changes)


def test_gpo_removing_the_logon_right_fails_the_restart_and_rolls_back(lab: Lab, spare: str) -> None:
    host = lab.host(spare)
    plan = plan_for(discover(lab, spare), sql=False)
    with host.binding.lock:
        baseline = host.model.to_state_dict()
    lab.fault(spare, gpo_revert="SeServiceLogonRight", gpo_refresh_in=0.5)
    applied = run(lab, spare, AgentMode.APPLY, plan)
    assert applied.error is not None
    assert applied.error.code == "health_check_failed"
    assert "[Win32 error 1069]" in applied.error.message
    assert applied.action is RuleAction.ROLLED_BACK
    assert applied.changes == []
    assert {i.action for i in applied.items if i.action is not RuleAction.NONE} == {RuleAction.ROLLED_BACK}
    assert host.model.policy.refreshes == 1
    with host.binding.lock:
        assert state_diff(baseline, host.model.to_state_dict()) == []
    assert host.model.health().ok
    smtp = host.mail.ports["smtp"]
    with socket.create_connection((host.address, smtp), timeout=5) as conn:
        assert b"ESMTP MailEnable Service" in conn.recv(200)


def test_host_down_mid_run_is_unreachable_and_the_host_kept_what_the_agent_did(lab: Lab, spare: str) -> None:
    host = lab.host(spare)
    plan = plan_for(discover(lab, spare), sql=False)
    host.binding.time_scale = 0.1  # the apply's ~10 modelled seconds come back after ~1 real second
    outcome: list[BaseException | object] = []

    def apply() -> None:
        try:
            outcome.append(run(lab, spare, AgentMode.APPLY, plan))
        except RemoteError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=apply)
    before = host.model.mutations
    try:
        worker.start()
        deadline = time.monotonic() + 10
        while host.model.mutations == before and time.monotonic() < deadline:
            time.sleep(0.02)
        lab.set_down(spare, True)
        worker.join(30)
    finally:
        host.binding.time_scale = 0.0
        lab.set_down(spare, False)
    assert len(outcome) == 1
    assert isinstance(outcome[0], Unreachable)
    assert "lost while the agent was running" in outcome[0].message
    results = outcomes(plan, run(lab, spare, AgentMode.VERIFY, plan))
    assert judged_not_compliant(results) == []  # the agent finished on the host; only its answer was lost
    assert all(r.status is not RuleStatus.ERROR for r in results)


def test_a_modified_agent_is_refused_with_a_powershell_error(lab: Lab) -> None:
    name = name_of("plesk")
    tampered = agent_script() + "\n# one more line\n"
    program = Program(
        agent_version=AGENT_VERSION, job_id="job-1", mode="discover", steps=[Step(id="host", op="host_info")]
    )
    payload = encode_stdin_line(tampered) + b"\n" + encode_stdin_line(program.model_dump_json()) + b"\n"
    output = run_command_payload(connection(lab, name), payload, secrets=[])
    assert output.exit_code == 1
    assert b"FLEET-LOCKDOWN-RESULT" not in output.stdout
    assert b"cannot interpret this agent" in output.stderr
    assert b"#< CLIXML" in output.stderr


def test_any_other_powershell_is_refused_never_faked(lab: Lab) -> None:
    entry = next(e for e in lab.inventory()["hosts"] if e["name"] == name_of("plesk"))
    session = winrm.Session(
        f"http://{entry['address']}:{entry['winrm']['http_port']}/wsman",
        auth=(entry["username"], entry["password"]),
        transport="ntlm",
        proxy=None,
        ca_trust_path=None,
    )
    response = session.run_ps("Get-Service MEPOPS | Stop-Service")
    assert response.status_code == 1
    assert b"cannot interpret this PowerShell script" in response.std_err
    assert lab.host(name_of("plesk")).model.services.get("MEPOPS").running
