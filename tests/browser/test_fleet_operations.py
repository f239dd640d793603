"""Issue 12 "done when": pick three servers by checkbox, confirm a fleet harden on the confirmation
page, watch progress, continue after the canary pause, and retry the host that failed.

Real path: the pages, the jobs services and the runner against winlab over WinRM; runs go to a small
thread pool standing in for the Celery worker, so the page watches work in progress.
"""

from __future__ import annotations

import json
import re
import socket

import pytest
from django.core.management import call_command
from django.db import connection
from playwright.sync_api import expect

from jobs.choices import HostRunState, JobState
from jobs.models import HostRun, Job
from servers.models import Server
from tests.factories import TEST_PASSWORD

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor == "sqlite",
        reason="worker threads writing beside the live server need a real database (CI runs it on PostgreSQL)",
    ),
]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def lab(tmp_path):
    from winlab.lab import Lab

    ports = {"smtp": _free_port(), "pop": _free_port(), "imap": _free_port()}
    # Addresses apart from the demo's and the other browser tests' fleets.
    with Lab(hosts=6, seed=0, lab_dir=tmp_path / "lab", time_scale=0.05, first_address=440, mail_ports=ports) as lab:
        inventory = tmp_path / "inventory.json"
        inventory.write_text(json.dumps(lab.inventory()), encoding="utf-8")
        call_command("import_winlab", str(inventory), "--customer", "Ops Customer", stdout=open("/dev/null", "w"))  # noqa: SIM115
        yield lab


def test_select_confirm_pause_continue_and_retry_from_the_browser(
    page, live_server, login, screenshot, alice, lab, worker_pool, settings
):
    settings.FLEET_CONFIRM_TYPED_ABOVE = 2  # so three servers ask for the typed phrase
    hardenable = sorted(h["name"] for h in lab.inventory()["hosts"] if h["powershell"] != "2.0")[:3]
    canary, failing, third = hardenable
    lab.fault(failing, auth_failure=True)  # its first harden fails: a credential the host rejects
    login("alice", TEST_PASSWORD)

    # 1. The server list: tick three servers, choose Harden, "New job for selected".
    page.goto(f"{live_server.url}/servers/")
    for name in hardenable:
        page.get_by_label(f"Select {name}").check()
    page.get_by_label("Kind", exact=True).select_option("harden")
    screenshot("1-server-list-selected")
    page.get_by_role("button", name="New job for selected").click()
    expect(page.get_by_role("heading", name="Preview: 3 servers")).to_be_visible()
    # Choosing servers again keeps Harden (the reported bug reset it to Verify).
    page.get_by_role("button", name="Choose servers").click()
    expect(page.get_by_role("heading", name="Preview: 3 servers")).to_be_visible()
    expect(page.locator("#id_kind")).to_have_value("harden")
    # The canary: one host, chosen here; wait for approval after it.
    page.get_by_role("checkbox", name=canary, exact=True).check()
    page.get_by_label("Pause for approval after the canary wave").check()
    screenshot("2-new-job")
    page.get_by_role("button", name="Start the job").click()

    # 2. The confirmation page: servers per customer, the mail interruption, the typed phrase.
    expect(page.get_by_role("heading", name="Confirm: harden 3 servers")).to_be_visible()
    expect(page.locator("#mail-interruption")).to_contain_text("mail is interrupted for a short time on each of the 3")
    expect(page.locator("#confirm-customers")).to_contain_text("Ops Customer")
    expect(page.get_by_text(f"Canary wave: {canary} (chosen)")).to_be_visible()
    page.get_by_label("Type harden 3 servers to confirm").fill("harden 3 servers")
    screenshot("3-confirm")
    page.get_by_role("button", name="Harden 3 servers").click()

    # 3. The job page: the canary runs, with its phases in the live log, then the job waits.
    expect(page.get_by_role("heading", name="Job #")).to_be_visible()
    expect(page.locator("#job-log")).to_contain_text("Changing the host:", timeout=120_000)
    expect(page.locator("#job-state")).to_have_text("Paused for approval after the canary", timeout=120_000)
    expect(page.locator("#job-progress-text")).to_contain_text("1 of 3")
    expect(page.locator("#job-progress-text")).to_contain_text("elapsed")
    screenshot("4-paused")
    job = Job.objects.get()
    assert job.state == JobState.PAUSED
    assert HostRun.objects.get(job=job, wave=0).server_name == canary
    page.get_by_role("button", name="Continue with the remaining hosts").click()

    # 4. The rest run; the host with the rejected credential fails; progress reaches 3 of 3.
    expect(page.locator("#job-finished")).to_be_visible(timeout=180_000)
    expect(page.locator("#job-progress-text")).to_contain_text("3 of 3")
    screenshot("5-finished-with-a-failure")
    runs = {run.server_name: run for run in HostRun.objects.filter(job=job)}
    assert runs[canary].state == runs[third].state == HostRunState.SUCCEEDED
    assert runs[failing].error_kind == "authentication_failed"

    # 5. Retry failed: the credential works again; a new job for that host alone, confirmed, succeeds.
    lab.fault(failing, clear=True)
    page.get_by_role("link", name="Retry failed (1)").click()
    expect(page.get_by_role("heading", name="Preview: 1 server,")).to_be_visible()
    expect(page.locator("#id_kind")).to_have_value("harden")
    page.get_by_role("button", name="Start the job").click()
    expect(page.get_by_role("heading", name="Confirm: harden 1 server")).to_be_visible()
    page.get_by_role("button", name="Harden 1 server").click()
    expect(page.locator("#job-finished")).to_be_visible(timeout=180_000)
    expect(page.locator("#job-state")).to_have_text("Succeeded")
    expect(page.locator("#job-progress-text")).to_contain_text("1 of 1")
    screenshot("6-retry-succeeded")
    retry = Job.objects.exclude(pk=job.pk).get()
    assert re.match(rf"Retry of job #{job.pk}:", retry.description)
    assert [r.server_name for r in retry.host_runs.all()] == [failing]
    assert retry.host_runs.get().state == HostRunState.SUCCEEDED
    assert Server.objects.get(name=failing).compliance_pct == 100.0
