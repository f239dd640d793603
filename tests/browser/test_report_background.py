"""Issue 12 item 4 "done when": the fleet PDF of a winlab fleet is built in the background (the page
follows it until it is ready), downloaded, and its first page is the executive summary; the report
list and the Verify a report page (anonymous, as an external auditor) are screenshotted.

Hosts are real winlab hosts over real WinRM (one with PowerShell 2.0, one whose credential is
rejected); the report is built by a worker thread, as a Celery worker would, never in the request.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.core.management import call_command
from playwright.sync_api import expect
from pypdf import PdfReader

from jobs import runner, services
from jobs.choices import JobKind
from jobs.services import job_create
from reports import services as report_services
from reports.models import Report
from servers.audit import Actor
from servers.models import Credential, Server
from servers.tenancy import Scope
from tests.factories import TEST_PASSWORD
from tests.integration.winlab_agent.conftest import SPECS, start_lab
from winlab.lab import Lab
from winlab.persist import write_private_json

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.winlab, pytest.mark.slow]
MSP = Scope(user_id=None, msp_role="admin")
BUILD_TIMEOUT_MS = 120_000


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[None]:
    """Two customers of winlab hosts, verified: Acme Mail (a PowerShell 2.0 host, a rejected credential,
    two readable hosts) and Globex (one readable host)."""
    lab: Lab = start_lab(tmp_path / "lab", [SPECS["plesk"], SPECS["spare"], SPECS["r2"], SPECS["ps2"], SPECS["sql"]])
    inventory = tmp_path / "inventory.json"
    write_private_json(inventory, lab.inventory())
    try:
        call_command("import_winlab", str(inventory), "--customer", "Acme Mail", "--slice", ":4")
        call_command("import_winlab", str(inventory), "--customer", "Globex Mail", "--slice", "4:")
        bad = Credential.objects.get(servers__name=SPECS["spare"].name)
        bad.set_secret("not-the-password-1!")
        bad.save(update_fields=["secret_encrypted"])
        services.set_enqueue(runner.run_host)
        try:
            job_create(scope=MSP, actor=Actor.system("test"), kind=JobKind.VERIFY, servers=list(Server.objects.all()))
        finally:
            services.set_enqueue(None)
        yield
    finally:
        lab.stop()


class Worker:
    """A worker thread that builds each report once the request that asked for it has committed, and
    only after `release()`, so the test sees the page while the report is still queued."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.built: list[int] = []

    def release(self) -> None:
        self.gate.set()


@pytest.fixture
def report_worker() -> Iterator[Worker]:
    from django.db import connection

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fake-report-worker")
    worker = Worker()

    def build(report_id: int) -> None:
        try:
            worker.gate.wait(timeout=BUILD_TIMEOUT_MS / 1000)
            report_services.report_build(report_id)
            worker.built.append(report_id)
        finally:
            connection.close()

    report_services.set_enqueue(lambda report_id: pool.submit(build, report_id) and None)
    yield worker
    worker.release()
    pool.shutdown(wait=True)
    report_services.set_enqueue(None)


def test_a_fleet_pdf_is_built_in_the_background_and_opens_with_the_summary(
    page, live_server, login, screenshot, alice, fleet, report_worker, tmp_path
):
    login("alice", TEST_PASSWORD)
    page.goto(f"{live_server.url}/reports/")
    page.locator("#id_customer").select_option(label="The whole fleet")
    page.locator("#id_format").select_option("pdf")
    page.get_by_role("button", name="Make the report").click()
    expect(page.locator(".messages")).to_contain_text("is queued: it is built in the background")
    expect(page.get_by_role("heading", level=1)).to_contain_text("PDF report: whole fleet")
    expect(page.locator("#report-state")).to_have_text("Queued")
    expect(page.get_by_role("link", name="Download the PDF")).to_have_count(0)
    screenshot("00-report-queued")
    # The page follows the build (htmx polls its status, no reload) until the worker has finished.
    report_worker.release()
    expect(page.locator("#report-state")).to_have_text("Ready", timeout=BUILD_TIMEOUT_MS)
    report = Report.objects.get()
    assert report_worker.built == [report.pk]  # built by the worker, not in the request
    expect(page.locator("#report-coverage")).to_contain_text("over 3 of 6 servers; 3 not assessed")
    screenshot("01-report-ready")
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download the PDF").click()
    pdf_path = tmp_path / download_info.value.suggested_filename
    download_info.value.save_as(pdf_path)
    pages = PdfReader(io.BytesIO(pdf_path.read_bytes())).pages
    first = " ".join(pages[0].extract_text().split())
    assert first.startswith("Compliance report: whole fleet Executive summary")
    assert "over 3 of 6 servers; 3 not assessed" in first  # 5 winlab hosts and tenant A's never-verified one
    assert "requires WMF 5.1" in first
    assert "the credential was rejected" in first
    assert "Compliance by customer" in first
    assert "Acme Mail" in first
    assert "Globex Mail" in first
    assert "Average compliance over the period" in first
    assert "Top failing rules" in first
    assert "Waivers in force:" in first
    assert " ".join(pages[1].extract_text().split()).startswith("Details")
    text = " ".join(" ".join(p.extract_text() for p in pages).split())
    assert "PowerShell ?" not in text
    assert "MailEnable ?" not in text
    assert "0x00" not in text  # rights in words; the numbers are in the evidence
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "fleet.pdf").write_bytes(pdf_path.read_bytes())

    page.goto(f"{live_server.url}/reports/")
    row = page.locator("table.reports tbody tr").first
    expect(row).to_contain_text("Ready")
    expect(row).to_contain_text("over 3 of 6 servers; 3 not assessed")
    expect(row.get_by_role("link", name="PDF of report")).to_be_visible()
    screenshot("02-report-list")

    # An external auditor, without an account, checks the file; then an edited copy.
    page.get_by_role("button", name="Log out").click()
    page.goto(f"{live_server.url}/reports/verify/")
    expect(page.get_by_text("No account is needed")).to_be_visible()
    page.set_input_files("#id_report", str(pdf_path))
    page.get_by_role("button", name="Check the signature").click()
    expect(page.locator("#verdict")).to_contain_text("Valid: the file is intact and was signed by this installation")
    screenshot("03-verify-valid")
    tampered = tmp_path / "tampered.pdf"
    original = pdf_path.read_bytes()
    tampered.write_bytes(original.replace(b"/Title (Compliance report", b"/Title (Compliance rep0rt", 1))
    assert tampered.read_bytes() != original
    page.set_input_files("#id_report", str(tampered))
    page.get_by_role("button", name="Check the signature").click()
    expect(page.locator("#verdict")).to_contain_text("Tampered")
    screenshot("04-verify-tampered")
