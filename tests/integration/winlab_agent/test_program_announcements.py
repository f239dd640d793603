"""`run_agent(on_program=...)` tells the caller each program before it goes to the host (the job's
live log names the phase of a long apply from it), over real WinRM to winlab."""

from __future__ import annotations

import pytest

from jobs.runner import phase_text
from lockdown.agent import AGENT_VERSION
from lockdown.engine.program import Program
from lockdown.rules import AgentRequest
from lockdown.rules.vocabulary import AgentMode
from remote.transport import run_agent
from tests.integration.winlab_agent.conftest import SERVICE_PASSWORD, connection, discover, name_of, plan_for
from winlab.lab import Lab

pytestmark = pytest.mark.winlab


def test_an_apply_announces_its_read_then_its_change_and_a_verify_its_one_read(lab: Lab) -> None:
    name = name_of("spare")
    plan = plan_for(discover(lab, name), sql=False)
    seen: list[Program] = []
    verify = AgentRequest(agent_version=AGENT_VERSION, mode=AgentMode.VERIFY, job_id="61.1", plan=plan)
    run_agent(connection(lab, name), verify, on_program=seen.append)
    assert [phase_text(p).split(":")[0] for p in seen] == ["Reading the host"]
    seen.clear()
    apply = AgentRequest(
        agent_version=AGENT_VERSION, mode=AgentMode.APPLY, job_id="61.2", plan=plan, service_password=SERVICE_PASSWORD
    )
    result = run_agent(connection(lab, name), apply, on_program=seen.append)
    assert result.error is None, result.error
    assert result.changes
    assert [phase_text(p).split(":")[0] for p in seen] == ["Reading the host", "Changing the host"]
    assert all(p.job_id == "61.2" for p in seen)
