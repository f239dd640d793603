"""Harden / re-harden / rollback through the jobs layer on a winlab fleet covering every host variant.

Real path end to end: `job_create` → runner → engine → WinRM → winlab's executor and primitives over
the emulated Windows. Each host: harden reaches 100 % (or, for the hosts that cannot be hardened
without the operator's say, fails cleanly), a second harden makes zero host mutations (winlab's
counter), rollback restores the host's state exactly; the MEInstaller host keeps working through a
reboot; hosts with POP/IMAP stopped or disabled and a self-signed TLS-1.2-only webmail harden
without a rollback.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import replace
from typing import Final

import pytest

from jobs import runner, services
from jobs.choices import HostRunState, JobKind
from jobs.models import HostRun
from jobs.services import JobOptions, job_create
from servers.audit import Actor
from servers.choices import Declared
from servers.management.commands.import_winlab import _web
from servers.models import Server
from servers.tenancy import Scope
from tests.integration.jobs.conftest import lab_server
from tests.integration.winlab_agent.conftest import SPECS
from winlab.lab import Lab
from winlab.windows.clock import ManualClock
from winlab.windows.factory import HostSpec
from winlab.windows.mailenable import Edition
from winlab.windows.state import state_diff

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.winlab]
MSP = Scope(user_id=None, msp_role="admin")
ACTOR = Actor.system("test")

VARIANTS: Final = {
    "plain": SPECS["spare"],
    "r2": SPECS["r2"],
    "plesk": SPECS["plesk"],
    "sql": SPECS["sql"],
    "express": HostSpec(name="S19EXPR", os="2019", edition=Edition.ENTERPRISE, version="10.43", sql=True,
                        sql_instance="SQLEXPRESS"),
    "pop_disabled": HostSpec(name="S19NOPOP", os="2019", edition=Edition.STANDARD, version="10.43",
                             pop_state="disabled", imap_state="stopped"),
    "self_signed": HostSpec(name="S22TLS", os="2022", edition=Edition.ENTERPRISE, version="10.43",
                            webmail_https_self_signed=True),
    "noncanonical": HostSpec(name="S16NC", os="2016", edition=Edition.PROFESSIONAL, version="10.43",
                             noncanonical_dacl_folder=True),
    "meinstaller": replace(SPECS["adopted"], name="S19MEI", meinstaller_mta_localsystem=True),
}  # fmt: skip
SQL_HOSTS: Final = {"sql", "express"}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    # Real mail listeners (the runner checks the ports from the network after a harden), on free ports.
    ports = {"smtp": _free_port(), "pop": _free_port(), "imap": _free_port()}
    running = Lab(list(VARIANTS.values()), lab_dir=tmp_path_factory.mktemp("winlab-variants"), clock=ManualClock(),
                  time_scale=0.0, mail_ports=ports)  # fmt: skip
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(autouse=True)
def inline() -> Iterator[None]:
    services.set_enqueue(runner.run_host)
    yield
    services.set_enqueue(None)


def server_for(lab: Lab, role: str) -> Server:
    name = VARIANTS[role].name
    entry = next(e for e in lab.inventory()["hosts"] if e["name"] == name)
    sql = Declared.YES if role in SQL_HOSTS else Declared.NO
    server: Server = lab_server(
        lab, name, "Variants Ltd", sql_integrated=sql, integrated_auth=Declared.NO, **_web(entry)
    )
    return server


def run(kind: JobKind, server: Server, **options: object) -> HostRun:
    job = job_create(scope=MSP, actor=ACTOR, kind=kind, servers=[server], options=JobOptions(**options))  # type: ignore[arg-type]
    run = HostRun.objects.get(job=job)
    assert run.state != HostRunState.QUEUED
    return run


def state(lab: Lab, name: str) -> dict[str, object]:
    with lab.host(name).binding.lock:
        return lab.host(name).model.to_state_dict()


def running_services(lab: Lab, name: str) -> set[str]:
    with lab.host(name).binding.lock:
        return {svc.name for svc in lab.host(name).model.services.all() if svc.running}


def mutations(lab: Lab, name: str) -> int:
    return lab.host(name).model.mutations


@pytest.mark.parametrize("role", [r for r in VARIANTS if r != "meinstaller"])
def test_harden_reaches_100_a_second_changes_nothing_rollback_restores_exactly(lab: Lab, role: str) -> None:
    server = server_for(lab, role)
    name = server.name
    verified = run(JobKind.VERIFY, server)
    assert verified.state == HostRunState.SUCCEEDED, verified.error_message
    before = state(lab, name)
    running = running_services(lab, name)
    hardened = run(JobKind.HARDEN, server)
    assert hardened.state == HostRunState.SUCCEEDED, hardened.error_message  # no rollback on any variant
    server.refresh_from_db()
    assert server.compliance_pct == 100.0
    assert running_services(lab, name) == running  # what ran still runs; a Disabled POP stays off
    touched = mutations(lab, name)
    again = run(JobKind.HARDEN, server)
    assert again.state == HostRunState.SUCCEEDED, again.error_message
    assert mutations(lab, name) == touched  # measured on the host, not claimed
    assert again.changes_made == 0
    undone = run(JobKind.ROLLBACK, server)
    assert undone.state == HostRunState.SUCCEEDED, undone.error_message
    assert state_diff(before, state(lab, name)) == []


def test_the_meinstaller_host_needs_the_operators_reset_and_keeps_working_after_a_reboot(lab: Lab) -> None:
    server = server_for(lab, "meinstaller")
    name = server.name
    model = lab.host(name).model
    # Without the operator's choice the adopted IME_SYSTEM's password is never reset: the MTA cannot be
    # moved to it (its password is not known here), the run says so, and nothing breaks.
    first = run(JobKind.HARDEN, server)
    assert first.state == HostRunState.FAILED
    assert "stored service password does not match" in first.error_message
    assert model.health().ok
    assert model.services.get("MEMTAS").start_name.lower() == "localsystem"
    lab.reboot(name)
    assert model.health().ok
    # With it: the password is set on the account and on EVERY service running as it, restarted together.
    second = run(JobKind.HARDEN, server, reset_adopted_password=True)
    assert second.state == HostRunState.SUCCEEDED, second.error_message
    server.refresh_from_db()
    assert server.compliance_pct == 100.0
    report = lab.reboot(name)
    assert report["failed"] == {} or not report["failed"], report
    assert model.health().ok
