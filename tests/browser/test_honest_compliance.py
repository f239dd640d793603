"""Issue 12 "done when": coverage and *not assessed* on the dashboard, the customer page, the server
list, the PDF and the CSV, for a winlab fleet with a PowerShell 2.0 host and a rejected credential;
after a rollback the server page says stale, never the old 100 %.

Jobs run inline (`set_enqueue(run_host)`), in the live server's thread for the clicks, so no worker
process is needed; the hosts are real winlab hosts over real WinRM.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import call_command
from playwright.sync_api import expect
from pypdf import PdfReader

from jobs import runner, services
from jobs.choices import JobKind
from jobs.services import job_create
from servers.audit import Actor
from servers.models import Credential, Server
from servers.tenancy import Scope
from tests.factories import TEST_PASSWORD
from tests.integration.winlab_agent.conftest import SPECS, start_lab
from winlab.lab import Lab
from winlab.persist import write_private_json

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.winlab, pytest.mark.slow]
JOB_TIMEOUT_MS = 120_000
MSP = Scope(user_id=None, msp_role="admin")
BAD_CREDENTIAL_HOST = SPECS["spare"].name  # S22SPARE: its stored password is wrong
PS2_HOST = SPECS["ps2"].name  # R2PS2: Server 2008 R2 without WMF 5.1


@pytest.fixture
def lab_inventory(tmp_path: Path) -> Iterator[Path]:
    lab: Lab = start_lab(tmp_path / "lab", [SPECS["plesk"], SPECS["spare"], SPECS["r2"], SPECS["ps2"]])
    path = tmp_path / "inventory.json"
    write_private_json(path, lab.inventory())
    try:
        yield path
    finally:
        lab.stop()


@pytest.fixture
def inline_jobs() -> Iterator[None]:
    from reports import services as report_services

    services.set_enqueue(runner.run_host)
    report_services.set_enqueue(report_services.report_build)
    yield
    services.set_enqueue(None)
    report_services.set_enqueue(None)


def _wait_for_job(page) -> str:
    expect(page.locator("#job-finished")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    return page.locator("#job-state").inner_text()


def _download(page, base_url: str, tmp_path: Path, fmt: str, index: int = 0) -> bytes:
    """Ask for a report, wait on its page until it is built (in the background), download file `index`
    (0 the report, 1 its evidence)."""
    page.goto(f"{base_url}/reports/")
    page.locator("#id_customer").select_option(label="Acme Mail")
    page.locator("#id_format").select_option(fmt)
    page.get_by_role("button", name="Make the report").click()
    expect(page.locator(".messages")).to_contain_text("is queued")
    expect(page.locator("#report-state")).to_have_text("Ready", timeout=JOB_TIMEOUT_MS)
    with page.expect_download() as download_info:
        page.locator("#report-downloads a").nth(index).click()
    path = tmp_path / download_info.value.suggested_filename
    download_info.value.save_as(path)
    return path.read_bytes()


def test_coverage_and_not_assessed_everywhere_and_stale_after_rollback(
    page, live_server, login, screenshot, alice, lab_inventory, inline_jobs, tmp_path
):
    call_command("import_winlab", str(lab_inventory), "--customer", "Acme Mail")
    bad = Credential.objects.get(servers__name=BAD_CREDENTIAL_HOST)
    bad.set_secret("not-the-password-1!")
    bad.save(update_fields=["secret_encrypted"])
    # A fleet verify, as the scheduler or the fleet-job page would start it.
    acme = list(Server.objects.filter(customer__name="Acme Mail"))
    job_create(scope=MSP, actor=Actor.system("test"), kind=JobKind.VERIFY, servers=acme)
    kinds = dict(Server.objects.values_list("name", "not_assessed_kind"))
    assert kinds[PS2_HOST] == "unsupported_powershell"
    assert kinds[BAD_CREDENTIAL_HOST] == "authentication_failed"

    login("alice", TEST_PASSWORD)
    expect(page.get_by_role("heading", name="Fleet overview")).to_be_visible()
    summary = page.locator(".summary")
    # The fleet: Acme Mail's four hosts and the MSP's never-verified test server (tenant A).
    expect(summary.locator("#coverage")).to_contain_text("over 2 of 5 servers; 3 not assessed")
    causes = page.get_by_label("Not assessed, by cause")
    expect(causes).to_contain_text("requires WMF 5.1")
    expect(causes).to_contain_text("install Windows Management Framework 5.1")
    expect(causes).to_contain_text("the credential was rejected")
    expect(causes).to_contain_text("never verified")
    expect(page.get_by_label("Servers by status")).to_contain_text("Not assessed")
    attention = page.locator("section[aria-labelledby=worst-heading]")
    expect(attention.get_by_role("row", name=PS2_HOST)).to_contain_text("Not assessed")
    expect(attention).not_to_contain_text("Failing")
    screenshot("01-dashboard-coverage")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Customers").click()
    expect(page.get_by_role("row", name="Acme Mail")).to_contain_text("over 2 of 4 servers; 2 not assessed")
    page.get_by_role("link", name="Acme Mail").click()
    expect(page.locator("#coverage")).to_contain_text("over 2 of 4 servers; 2 not assessed")
    servers = page.locator("table.servers")
    expect(servers.get_by_role("row", name=PS2_HOST)).to_contain_text("requires WMF 5.1")
    expect(servers.get_by_role("row", name=BAD_CREDENTIAL_HOST)).to_contain_text("the credential was rejected")
    screenshot("02-customer-coverage")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Servers").click()
    expect(page.locator("#server-table").get_by_role("row", name=PS2_HOST)).to_contain_text("Not assessed")
    screenshot("03-server-list")

    # The PowerShell 2.0 host's own page: the cause and the remedy.
    page.locator("#server-table").get_by_role("link", name=PS2_HOST).click()
    expect(page.locator("#assessment")).to_contain_text("Not assessed: requires WMF 5.1")
    expect(page.locator("#assessment")).to_contain_text("Install Windows Management Framework 5.1")
    screenshot("04-server-not-assessed")

    # Harden a healthy host to 100 %, roll it back: its page says stale, never the old 100 %.
    plesk = Server.objects.get(name=SPECS["plesk"].name)
    page.goto(f"{live_server.url}/servers/{plesk.pk}/")
    page.get_by_role("link", name="Harden…").click()
    page.get_by_role("button", name="Harden", exact=True).click()
    assert _wait_for_job(page) == "Succeeded"
    page.goto(f"{live_server.url}/servers/{plesk.pk}/")
    expect(page.locator("#compliance")).to_contain_text("100.0 % compliant")
    page.get_by_role("link", name="Roll back…").click()
    page.get_by_role("button", name="Roll back now").click()
    assert _wait_for_job(page) == "Succeeded"
    page.goto(f"{live_server.url}/servers/{plesk.pk}/")
    expect(page.locator("h1")).to_contain_text("Stale")
    expect(page.locator("#assessment")).to_contain_text("Stale results: a rollback changed the host")
    expect(page.locator("#compliance")).to_contain_text("Stale: the results below were read at")
    expect(page.locator("#compliance")).not_to_contain_text("100.0 % compliant")
    screenshot("05-server-stale-after-rollback")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Dashboard").click()
    expect(page.locator("#coverage")).to_contain_text("over 1 of 5 servers; 3 not assessed, 1 stale")
    screenshot("06-dashboard-after-rollback")

    # The signed reports say the same.
    pdf = _download(page, live_server.url, tmp_path, "pdf")
    text = " ".join(" ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages).split())
    assert "over 1 of 4 servers; 2 not assessed, 1 stale" in text
    assert "Not assessed: requires WMF 5.1" in text
    assert "Not assessed: the credential was rejected" in text
    assert "Stale: a rollback changed the host" in text
    assert "Failing" not in text
    body = _download(page, live_server.url, tmp_path, "csv").decode("utf-8")
    assert "#" not in body  # spreadsheet-clean: the figures are in the evidence, the signature in the .sig
    evidence = json.loads(_download(page, live_server.url, tmp_path, "csv", index=1))
    assert "over 1 of 4 servers; 2 not assessed, 1 stale" in evidence["summary"]["coverage"]
    rows = list(csv.reader(io.StringIO(body)))
    header = next(row for row in rows if row and row[0] == "customer")
    by_server = {row[1]: dict(zip(header, row, strict=True)) for row in rows if len(row) == len(header)}
    assert by_server[PS2_HOST]["server_status"] == "Not assessed"
    assert by_server[PS2_HOST]["compliance_pct"] == ""
    assert "requires WMF 5.1" in by_server[PS2_HOST]["assessment"]
    assert "credential was rejected" in by_server[BAD_CREDENTIAL_HOST]["assessment"]
    screenshot("07-reports")
