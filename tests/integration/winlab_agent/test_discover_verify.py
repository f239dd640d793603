"""discover and verify over real WinRM (NTLM + encryption, and HTTPS with the lab CA)."""

from __future__ import annotations

import math

import pytest

from lockdown.agent import build_stdin, format_agent_output
from lockdown.engine import driver
from lockdown.engine.program import Program, ProgramResult
from lockdown.rules import RuleStatus
from lockdown.rules.vocabulary import AgentMode, DomainRole
from remote import Scheme
from remote.errors import UnsupportedPowerShell
from remote.transport import STDIN_CHUNK_BYTES, run_program
from tests.integration.winlab_agent.conftest import (
    connection,
    discover,
    name_of,
    outcomes,
    plan_for,
    request,
    run,
)
from winlab.lab import Lab

pytestmark = pytest.mark.winlab
RECEIVE_BUDGET = (153600 - 2048) * 3 // 4  # bytes of output one Receive carries (pywinrm's MaxEnvelopeSize)


def test_powershell_2_host_answers_requires_wmf51_like_the_bootstrap(lab: Lab) -> None:
    with pytest.raises(UnsupportedPowerShell) as caught:
        run(lab, name_of("ps2"), AgentMode.DISCOVER)
    assert caught.value.code == "unsupported_powershell"
    assert "requires WMF 5.1 (found PowerShell 2.0)" in caught.value.message


@pytest.mark.parametrize("role", ["r2", "sql", "plesk", "adopted"])
def test_discover_reads_os_powershell_and_mailenable(lab: Lab, role: str) -> None:
    facts = discover(lab, name_of(role))
    model = lab.host(name_of(role)).model
    assert facts.computer_name == name_of(role)
    assert facts.os_build == model.os.build
    assert facts.powershell_version.startswith("5.1")
    assert facts.mailenable_version == model.mailenable.install.version
    assert facts.program_dir == model.mailenable.install.program_dir
    assert facts.mail_root == model.mailenable.install.mail_root
    assert facts.bin64_exists is (model.mailenable.install.major >= 10)
    assert {"MEMTAS", "MESMTPCS", "MEPOPS", "MEIMAPS"} <= set(facts.services)
    assert facts.domain_role is DomainRole.STANDALONE_SERVER


def test_discover_over_https_with_the_lab_ca(lab: Lab) -> None:
    conn = connection(lab, name_of("plesk"), scheme=Scheme.HTTPS)
    from remote.transport import run_agent

    result = run_agent(conn, request(AgentMode.DISCOVER))
    assert result.facts is not None
    assert result.facts.program_dir is not None
    assert "Plesk" in result.facts.program_dir


def test_discover_finds_the_meinstaller_hardening_to_adopt(lab: Lab) -> None:
    facts = discover(lab, name_of("adopted"))
    model = lab.host(name_of("adopted")).model
    assert facts.ime_system_sid == model.accounts.user("IME_SYSTEM").sid
    assert facts.store_group_name == "IME_STORE_USERS"


def test_verify_of_a_fresh_host_is_drift_or_not_applicable_and_changes_nothing(lab: Lab) -> None:
    name = name_of("plesk")
    plan = plan_for(discover(lab, name), sql=False)
    before = lab.host(name).model.mutations
    result = run(lab, name, AgentMode.VERIFY, plan)
    statuses = {o.status for o in outcomes(plan, result)}
    # IME_SYSTEM does not exist yet: every rule about it is drift ("no SID"), absent files not_applicable.
    assert statuses == {RuleStatus.DRIFT, RuleStatus.NOT_APPLICABLE}
    assert lab.host(name).model.mutations == before


def test_verify_costs_nine_http_requests_plus_extra_chunks_and_receives(lab: Lab) -> None:
    name = name_of("r2")
    plan = plan_for(discover(lab, name), sql=False)
    server = lab.server(name)
    conn = connection(lab, name)
    sent: list[Program] = []
    answers: list[ProgramResult] = []

    def invoke(program: Program) -> ProgramResult:
        sent.append(program)
        answers.append(run_program(conn, program))
        return answers[-1]

    before = server.counters.snapshot()
    driver.run(request(AgentMode.VERIFY, plan), invoke)
    after = server.counters.snapshot()
    assert len(sent) == 1  # verify is one invocation
    stdin = build_stdin(sent[0])
    extra_chunks = math.ceil(len(stdin) / STDIN_CHUNK_BYTES) - 1
    receives = math.ceil(len(format_agent_output(answers[0])) / RECEIVE_BUDGET)
    used = after.requests - before.requests
    assert used <= 9 + extra_chunks + (receives - 1) + 1  # +1: the result may straddle a Receive boundary
    assert after.encrypted_requests - before.encrypted_requests == used - 3  # all but the NTLM handshake
    assert after.ntlm_logins - before.ntlm_logins == 1
