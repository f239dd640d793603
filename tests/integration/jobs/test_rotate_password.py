"""Password rotation through the jobs layer, over REAL WinRM to winlab hosts.

The runner, the agent contract and winlab's agent run for real; jobs run inline
(`set_enqueue(run_host)`). Each test uses its own host, so the module's lab is shared safely.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jobs import runner, services
from jobs.choices import HostRunState, JobKind
from jobs.models import HostRun, HostRunEvent, Job, ServiceAccountSecret
from jobs.services import JobOptions, job_create
from servers.audit import Actor
from servers.crypto import decrypt_secret
from servers.models import AuditEvent, Server
from servers.tenancy import Scope
from tests.integration.jobs.conftest import lab_server
from tests.integration.winlab_agent.conftest import SPECS, start_lab
from winlab.lab import Lab
from winlab.windows.tokens import LogonType

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.winlab]
MSP = Scope(user_id=None, msp_role="admin")
ACTOR = Actor.system("test")
ME_SERVICES = {"MEMTAS", "MESMTPCS", "MEPOPS", "MEIMAPS"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    from dataclasses import replace

    specs = [
        SPECS["spare"],
        replace(SPECS["spare"], name="S22ROTFAIL"),
        SPECS["adopted"],
    ]
    running = start_lab(tmp_path_factory.mktemp("winlab-rotate"), specs)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(autouse=True)
def inline() -> Iterator[None]:
    services.set_enqueue(runner.run_host)
    yield
    services.set_enqueue(None)


def server_for(lab: Lab, name: str) -> Server:
    server: Server = lab_server(lab, name, "Rotation Ltd")
    return server


def run_job(kind: JobKind, server: Server, options: JobOptions | None = None) -> HostRun:
    job = job_create(scope=MSP, actor=ACTOR, kind=kind, servers=[server], options=options)
    return HostRun.objects.get(job=job)


def stored_password(server: Server) -> str:
    return decrypt_secret(ServiceAccountSecret.objects.get(server=server).password_encrypted)


def ime_services(lab: Lab, name: str) -> dict[str, tuple[str, str]]:
    """MailEnable services: (StartName, State)."""
    model = lab.host(name).model
    with lab.host(name).binding.lock:
        return {svc.name: (svc.start_name, svc.state.value) for svc in model.services.all() if svc.name in ME_SERVICES}


def logs_on(lab: Lab, name: str, password: str) -> bool:
    """LogonUser(IME_SYSTEM, password, service logon) against the host model."""
    model = lab.host(name).model
    with lab.host(name).binding.lock:
        try:
            model.authority.logon(f"{model.accounts.machine_name}\\IME_SYSTEM", password, LogonType.SERVICE)
        except Exception:
            return False
    return True


def events(run: HostRun) -> str:
    return "\n".join(HostRunEvent.objects.filter(host_run=run).values_list("message", flat=True))


def test_rotation_sets_a_new_password_on_the_account_and_every_service_twice(lab: Lab) -> None:
    name = SPECS["spare"].name
    server = server_for(lab, name)
    harden = run_job(JobKind.HARDEN, server)
    assert harden.state == HostRunState.SUCCEEDED, events(harden)
    first = stored_password(server)
    assert logs_on(lab, name, first)
    assert all(state == "Running" for _, state in ime_services(lab, name).values())

    rotate = run_job(JobKind.ROTATE_PASSWORD, server)
    assert rotate.state == HostRunState.SUCCEEDED, events(rotate)
    assert Job.objects.get(pk=rotate.job_id).kind == JobKind.ROTATE_PASSWORD
    second = stored_password(server)
    assert second != first
    assert ServiceAccountSecret.objects.get(server=server).pending_password_encrypted == ""
    assert logs_on(lab, name, second)
    assert not logs_on(lab, name, first)
    on_ime = {n: s for n, s in ime_services(lab, name).items() if s[0].upper().endswith("IME_SYSTEM")}
    assert on_ime, "the harden moved the MailEnable services to IME_SYSTEM"
    assert all(state == "Running" for _, state in on_ime.values())
    with lab.host(name).binding.lock:
        stored = {lab.host(name).model.services.get(n).password for n in on_ime}
    assert stored == {second}  # every service got the new password
    assert "Rotated: IME_SYSTEM and" in events(rotate)
    assert AuditEvent.objects.filter(action="server.service_password_rotated", object_id=str(server.pk)).exists()

    again = run_job(JobKind.ROTATE_PASSWORD, server)
    assert again.state == HostRunState.SUCCEEDED, events(again)
    third = stored_password(server)
    assert third not in (first, second)
    assert logs_on(lab, name, third)
    assert all(state == "Running" for _, state in ime_services(lab, name).values())
    verify = run_job(JobKind.VERIFY, server)
    assert verify.state == HostRunState.SUCCEEDED


def test_a_service_that_cannot_restart_gets_the_old_password_back(lab: Lab) -> None:
    name = "S22ROTFAIL"
    server = server_for(lab, name)
    harden = run_job(JobKind.HARDEN, server)
    assert harden.state == HostRunState.SUCCEEDED, events(harden)
    before = stored_password(server)
    # A domain GPO takes SeServiceLogonRight away: the services keep running, but the restart after the
    # password change fails with 1069 (the model's logon check), so the agent must restore the old password.
    lab.fault(name, gpo_revert="SeServiceLogonRight", gpo_refresh_in=0.5)
    lab.advance(1.0)
    try:
        rotate = run_job(JobKind.ROTATE_PASSWORD, server)
        assert rotate.state == HostRunState.ROLLED_BACK, events(rotate)
        assert rotate.error_kind == "health_check_failed"
        assert "previous password was put back" in events(rotate)
        assert stored_password(server) == before
        assert ServiceAccountSecret.objects.get(server=server).pending_password_encrypted == ""
        assert logs_on(lab, name, before) is False  # the right is gone for every password...
        with lab.host(name).binding.lock:
            model = lab.host(name).model
            assert model.accounts.check_password("IME_SYSTEM", before)  # ...but the old password is back
            assert {model.services.get(n).password for n, s in ime_services(lab, name).items() if "IME" in s[0]} == {
                before
            }
    finally:
        lab.fault(name, clear=True)


def test_harden_resets_an_adopted_password_only_when_the_operator_chooses(lab: Lab) -> None:
    name = SPECS["adopted"].name
    server = server_for(lab, name)
    with lab.host(name).binding.lock:
        original_hash = lab.host(name).model.accounts.password_hash("IME_SYSTEM")
    plain = run_job(JobKind.HARDEN, server)
    with lab.host(name).binding.lock:
        assert lab.host(name).model.accounts.password_hash("IME_SYSTEM") == original_hash
    assert not Job.objects.get(pk=plain.job_id).reset_adopted_password
    # Without the reset, rotation refuses: the stored password does not log the adopted account on.
    refused = run_job(JobKind.ROTATE_PASSWORD, server)
    assert refused.state == HostRunState.FAILED
    assert refused.error_kind in {"previous_password_mismatch", "no_service_password"}

    reset = run_job(JobKind.HARDEN, server, JobOptions(reset_adopted_password=True))
    assert reset.state == HostRunState.SUCCEEDED, events(reset)
    assert Job.objects.get(pk=reset.job_id).reset_adopted_password
    assert "cannot be rolled back" in events(reset)
    audit = AuditEvent.objects.get(action="job.harden", object_id=str(reset.job_id))
    assert audit.changes["reset_adopted_password"] is True
    assert AuditEvent.objects.filter(action="server.adopted_password_reset").exists()
    password = stored_password(server)
    assert logs_on(lab, name, password)
    assert all(state == "Running" for _, state in ime_services(lab, name).values())

    rotate = run_job(JobKind.ROTATE_PASSWORD, server)
    assert rotate.state == HostRunState.SUCCEEDED, events(rotate)
    assert logs_on(lab, name, stored_password(server))
