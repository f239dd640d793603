"""Issue 12 item 3: the facts on the server page are refreshed by verify, harden and rollback, in the programs they
already send (no extra invocation), against a real winlab host over WinRM. A verify whose fresh facts
compile to another plan reads the host again against that plan."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from jobs import runner, services
from jobs.choices import HostRunState, JobKind
from jobs.models import HostRun
from jobs.services import job_create
from remote import run_agent
from servers.audit import Actor
from servers.models import Server
from servers.tenancy import Scope
from tests.integration.jobs.conftest import lab_server
from tests.integration.winlab_agent.conftest import SPECS, start_lab

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.winlab, pytest.mark.slow]
MSP = Scope(user_id=None, msp_role="admin")


@pytest.fixture
def counted() -> Iterator[list[str]]:
    """The real transport, with each agent request's mode recorded."""
    modes: list[str] = []

    def call(conn: Any, request: Any, **kw: Any) -> Any:
        modes.append(str(request.mode))
        return run_agent(conn, request, **kw)

    runner.set_agent_call(call)
    services.set_enqueue(runner.run_host)
    yield modes
    services.set_enqueue(None)
    runner.set_agent_call(None)


def _run(server: Server, kind: str) -> HostRun:
    job = job_create(scope=MSP, actor=Actor.system("test"), kind=kind, servers=[Server.objects.get(pk=server.pk)])
    return HostRun.objects.get(job=job)


def _log(run: HostRun) -> str:
    return "\n".join(e.message for e in run.events.order_by("seq"))


def test_verify_and_harden_refresh_the_facts_without_another_invocation(tmp_path, counted):
    lab = start_lab(tmp_path, [SPECS["plesk"]])
    try:
        server = lab_server(lab, SPECS["plesk"].name, "Facts Ltd")
        first = _run(server, JobKind.VERIFY)
        assert counted == ["discover", "verify"]  # no facts yet: discover first, once
        server.refresh_from_db()
        assert server.facts["ime_system_sid"] is None
        read_at = server.facts_updated_at
        counted.clear()
        harden = _run(server, JobKind.HARDEN)
        assert harden.state == HostRunState.SUCCEEDED, _log(harden)
        assert counted == ["apply"]
        server.refresh_from_db()
        # The account the harden created is in the stored facts, read by the apply's own program.
        assert server.facts["ime_system_sid"].startswith("S-1-5-21-")
        assert server.facts["store_group_sid"].startswith("S-1-5-21-")
        assert server.facts_updated_at > read_at
        assert "changed since last read: ime_system_sid" in _log(harden)
        counted.clear()
        again = _run(server, JobKind.VERIFY)
        assert counted == ["verify"]
        assert "changed since last read" not in _log(again)
        assert "verifying again" not in _log(first) + _log(again)
        # A rollback removes the account the harden created: its own program reads the facts again too.
        counted.clear()
        rollback = _run(server, JobKind.ROLLBACK)
        assert rollback.state == HostRunState.SUCCEEDED, _log(rollback)
        assert counted == ["rollback"]
        server.refresh_from_db()
        assert server.facts["ime_system_sid"] is None
        assert "changed since last read: ime_system_sid" in _log(rollback)
    finally:
        lab.stop()


def test_a_verify_whose_fresh_facts_change_the_plan_reads_the_host_again(tmp_path, counted):
    lab = start_lab(tmp_path, [SPECS["plesk"]])
    try:
        server = lab_server(lab, SPECS["plesk"].name, "Moved Ltd")
        _run(server, JobKind.VERIFY)
        server.refresh_from_db()
        # The stored facts are out of date: MailEnable's message store was elsewhere when they were read.
        real_root = server.facts["mail_root"]
        Server.objects.filter(pk=server.pk).update(facts={**server.facts, "mail_root": "D:\\OldStore"})
        counted.clear()
        run = _run(server, JobKind.VERIFY)
        assert run.state == HostRunState.SUCCEEDED, _log(run)
        assert counted == ["verify", "verify"]
        assert "changed since last read: mail_root" in _log(run)
        assert "verifying again" in _log(run)
        server.refresh_from_db()
        assert server.facts["mail_root"] == real_root
        # The stored results are those of the second read, against the real store.
        targets = {o["target"] for o in server.compliance.outcomes}
        assert not any("OldStore" in t for t in targets)
        assert any(real_root in t for t in targets)
    finally:
        lab.stop()
