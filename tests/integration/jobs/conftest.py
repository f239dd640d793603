"""A scripted agent for job-flow tests: the real WinRM path is tested against winlab elsewhere."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from jobs import runner, services
from lockdown.agent import AGENT_VERSION
from lockdown.rules.contract import AgentRequest, AgentResult
from lockdown.rules.observed import ObservedItem
from tests.unit.lockdown.factories import facts_2022


class ScriptedAgent:
    """Answers like the agent would; `observe` decides each plan item's observation."""

    def __init__(self) -> None:
        self.calls: list[AgentRequest] = []
        self.fail_with: Exception | None = None
        self.observe: Callable[[object], ObservedItem | None] = lambda item: ObservedItem(
            rule_id=item.rule_id,
            target=item.target,
            exists=False,  # type: ignore[attr-defined]
        )

    def __call__(self, conn, request: AgentRequest, *, on_program=None) -> AgentResult:
        self.calls.append(request)
        if self.fail_with is not None:
            raise self.fail_with
        if request.mode == "discover":
            return AgentResult(
                agent_version=AGENT_VERSION, mode=request.mode, job_id=request.job_id, facts=facts_2022()
            )
        items = []
        if request.plan is not None:
            for item in request.plan.items:
                if item.status is None:
                    observed = self.observe(item)
                    if observed is not None:
                        items.append(observed)
        # verify and apply read the facts again in their own program, as the engine does
        facts = facts_2022() if request.mode in ("verify", "apply") else None
        return AgentResult(
            agent_version=AGENT_VERSION, mode=request.mode, job_id=request.job_id, items=items, facts=facts
        )


@pytest.fixture
def agent() -> Iterator[ScriptedAgent]:
    scripted = ScriptedAgent()
    runner.set_agent_call(scripted)
    yield scripted
    runner.set_agent_call(None)


@pytest.fixture
def sent() -> Iterator[list[int]]:
    """Capture what would go to the broker instead of running it."""
    queue: list[int] = []
    services.set_enqueue(queue.append)
    yield queue
    services.set_enqueue(None)


@pytest.fixture
def inline(agent) -> Iterator[ScriptedAgent]:
    """Run each dispatched HostRun at once, in this thread (like an eager worker)."""
    services.set_enqueue(runner.run_host)
    yield agent
    services.set_enqueue(None)


def lab_server(lab: Any, name: str, customer_name: str, **fields: Any) -> Any:
    """A winlab host as the MSP's inventory would hold it: HTTP + NTLM (message encryption), its mail ports."""
    from servers.binding import bind
    from servers.choices import AuthMethod, TLSVerify, WinRMScheme
    from servers.models import Credential, Customer, Server

    entry = next(e for e in lab.inventory()["hosts"] if e["name"] == name)
    customer, _ = Customer.objects.get_or_create(name=customer_name)
    credential = Credential(customer=customer, name=f"admin-{name}", username=entry["username"], auth=AuthMethod.NTLM)
    credential.set_secret(entry["password"])
    credential.save()
    server = Server(
        customer=customer,
        name=name,
        address=entry["address"],
        winrm_scheme=WinRMScheme.HTTP,
        winrm_port=entry["winrm"]["http_port"],
        tls_verify=TLSVerify.OFF,
        smtp_port=entry["mail_ports"]["smtp"],
        pop_port=entry["mail_ports"]["pop"],
        imap_port=entry["mail_ports"]["imap"],
        credential=credential,
        **fields,
    )
    bind(server)  # as an MSP admin saving the server would
    server.save()
    return server
