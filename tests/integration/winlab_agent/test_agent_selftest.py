"""`manage.py agent_selftest` and the server page's "Agent self-test" against winlab hosts over real WinRM:
a good host, a UAC-filtered local administrator, a PowerShell 2.0 host. The right verdicts, no host state
changed (winlab's mutation counter), no secret in the output, MSP admins only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from jobs import runner, services
from jobs.choices import HostRunState, JobKind
from jobs.models import HostRun
from servers.models import Server
from tests.integration.jobs.conftest import lab_server
from tests.integration.winlab_agent.conftest import SPECS, start_lab
from winlab.lab import Lab
from winlab.windows.factory import HostSpec
from winlab.windows.mailenable import Edition

pytestmark = [pytest.mark.django_db, pytest.mark.winlab]
GOOD = HostSpec(name="S19GOOD", os="2019", edition=Edition.PROFESSIONAL, version="10.43", store_files=8)
FILTERED = SPECS["sql"]  # has the local administrator fleetadmin, filtered by UAC remotely
PS2 = SPECS["ps2"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    running = start_lab(tmp_path_factory.mktemp("winlab-selftest"), [GOOD, FILTERED, PS2])
    try:
        yield running
    finally:
        running.stop()


def server_for(lab: Lab, name: str, *, account: str = "Administrator") -> Server:
    server = lab_server(lab, name, "Acme")
    if account != "Administrator":
        other = next(e for e in lab.inventory()["hosts"] if e["name"] == name)["other_accounts"]
        password = next(a["password"] for a in other if a["username"] == account)
        credential = server.credential
        assert credential is not None
        credential.username = account
        credential.set_secret(password)
        credential.save()
    return server


def passwords(lab: Lab) -> list[str]:
    out = []
    for entry in lab.inventory()["hosts"]:
        out.append(entry["password"])
        out += [a["password"] for a in entry["other_accounts"]]
    return out


def selftest(*args: str) -> tuple[str, str | None]:
    out = StringIO()
    try:
        call_command("agent_selftest", *args, stdout=out)
    except CommandError as error:
        return out.getvalue(), str(error)
    return out.getvalue(), None


def verdicts(report: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["verdict"] for c in report["checks"]}


def test_a_good_host_passes_every_check_lists_what_would_change_and_changes_nothing(lab: Lab) -> None:
    server_for(lab, GOOD.name)
    model = lab.host(GOOD.name).model
    before = model.mutations
    table, error = selftest("--server", GOOD.name)
    data, json_error = selftest("--server", GOOD.name, "--json")
    assert model.mutations == before
    assert (error, json_error) == (None, None)
    report = json.loads(data)
    assert verdicts(report) == dict.fromkeys(
        ("connect", "powershell", "language_mode", "elevation", "process_64bit", "reads", "verify"), "pass"
    )
    assert report["ok"] is True
    assert report["invocations"] == 2
    assert report["would_change"]  # a fresh host: IME_SYSTEM and the ACLs are not there yet
    assert report["summary"]["drift"] == len(report["would_change"])
    assert "Verdict: READY" in table
    assert "A harden would change" in table
    assert all(p not in table + data for p in passwords(lab))


def test_a_uac_filtered_local_administrator_fails_elevation_and_changes_nothing(lab: Lab) -> None:
    server_for(lab, FILTERED.name, account="fleetadmin")
    model = lab.host(FILTERED.name).model
    before = model.mutations
    data, error = selftest("--server", FILTERED.name, "--json")
    table, _ = selftest("--server", FILTERED.name)
    assert model.mutations == before
    assert error is not None
    assert "elevation" in error
    report = json.loads(data)
    assert verdicts(report) == {
        "connect": "pass",
        "powershell": "not_run",
        "language_mode": "not_run",
        "elevation": "fail",
        "process_64bit": "not_run",
        "reads": "not_run",
        "verify": "not_run",
    }
    elevation = next(c for c in report["checks"] if c["name"] == "elevation")
    assert "LocalAccountTokenFilterPolicy" in elevation["detail"]
    assert "Verdict: NOT READY" in table
    assert all(p not in table + data for p in passwords(lab))


def test_a_powershell_2_host_fails_the_powershell_check_and_changes_nothing(lab: Lab) -> None:
    server_for(lab, PS2.name)
    model = lab.host(PS2.name).model
    before = model.mutations
    data, error = selftest("--server", PS2.name, "--json")
    assert model.mutations == before
    assert error is not None
    assert "powershell" in error
    report = json.loads(data)
    assert verdicts(report)["connect"] == "pass"
    assert verdicts(report)["powershell"] == "fail"
    assert {v for k, v in verdicts(report).items() if k not in ("connect", "powershell")} == {"not_run"}
    detail = next(c for c in report["checks"] if c["name"] == "powershell")["detail"]
    assert "requires WMF 5.1 (found PowerShell 2.0)" in detail


def test_the_server_page_button_runs_the_selftest_as_a_job_for_msp_admins_only(
    lab: Lab, alice: Any, make_role_user: Any, django_capture_on_commit_callbacks: Any
) -> None:
    server = server_for(lab, GOOD.name)
    model = lab.host(GOOD.name).model
    services.set_enqueue(runner.run_host)
    try:
        admin = Client()
        admin.force_login(alice)
        page = admin.get(reverse("server_detail", args=[server.pk]))
        button = reverse("server_selftest", args=[server.pk]).encode()
        assert button in page.content
        before = model.mutations
        with django_capture_on_commit_callbacks(execute=True):
            response = admin.post(reverse("server_selftest", args=[server.pk]))
        assert response.status_code == 302
        run = HostRun.objects.select_related("job").get(server=server, job__kind=JobKind.SELFTEST)
        assert model.mutations == before
        assert run.state == HostRunState.SUCCEEDED
        assert run.summary["selftest"]["ok"] is True
        log = "\n".join(run.events.values_list("message", flat=True))
        assert "Verdict: READY" in log
        assert all(p not in log + json.dumps(run.summary) for p in passwords(lab))

        operator = Client()
        operator.force_login(make_role_user("msp_operator"))
        assert button not in operator.get(reverse("server_detail", args=[server.pk])).content
        assert operator.post(reverse("server_selftest", args=[server.pk])).status_code == 403
        other = Client()  # Carol operates customer A's servers: Acme's do not exist for her
        other.force_login(make_role_user("customer_operator"))
        assert other.post(reverse("server_selftest", args=[server.pk])).status_code == 404
    finally:
        services.set_enqueue(None)
    assert HostRun.objects.filter(job__kind=JobKind.SELFTEST).count() == 1
