"""The whole story in a real browser, against a winlab fleet running in this process.

Import the lab, log in, verify a server, harden it after the preview, watch its job finish,
see 100 % compliance, make a signed PDF report and check its text and signature, then log in
as the customer's viewer and see only that customer. Jobs run inline in the live server's
thread (`set_enqueue(run_host)`), so no worker process is needed.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import call_command
from playwright.sync_api import expect
from pypdf import PdfReader

from jobs import runner, services
from servers.choices import Role
from tests.factories import TEST_PASSWORD, MembershipFactory, UserFactory
from tests.integration.winlab_agent.conftest import SPECS, start_lab
from winlab.lab import Lab
from winlab.persist import write_private_json

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.winlab, pytest.mark.slow]
JOB_TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def lab_inventory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("winlab-browser")
    lab: Lab = start_lab(tmp, [SPECS["plesk"], SPECS["spare"], SPECS["r2"]])
    path = tmp / "inventory.json"
    write_private_json(path, lab.inventory())
    try:
        yield path
    finally:
        lab.stop()


@pytest.fixture
def inline_jobs() -> Iterator[None]:
    from reports import services as report_services

    services.set_enqueue(runner.run_host)
    report_services.set_enqueue(report_services.report_build)  # reports build in the request's thread
    yield
    services.set_enqueue(None)
    report_services.set_enqueue(None)


def _wait_for_job(page) -> str:
    expect(page.locator("#job-finished")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    return page.locator("#job-state").inner_text()


def test_operator_verifies_hardens_reports_and_viewer_sees_only_own_customer(
    page, live_server, login, screenshot, alice, lab_inventory, inline_jobs, tmp_path
):
    call_command("import_winlab", str(lab_inventory), "--customer", "Acme Mail", "--slice", ":2")
    call_command("import_winlab", str(lab_inventory), "--customer", "Other Corp", "--slice", "2:")
    vera = UserFactory(username="vera")
    MembershipFactory(user=vera, customer=__import__("servers.models").models.Customer.objects.get(name="Acme Mail"),
                      role=Role.VIEWER)  # fmt: skip

    login("alice", TEST_PASSWORD)
    expect(page.get_by_role("heading", name="Fleet overview")).to_be_visible()
    expect(page.get_by_label("Servers by status")).to_contain_text("Never verified")
    screenshot("01-dashboard-before")

    # Keyboard: the skip link is the first stop and lands on the content.
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Servers").click()
    page.get_by_label("Search").fill("S22PLESK")
    expect(page.locator("#server-table").get_by_role("link", name="S22SPARE")).to_have_count(0)
    page.locator("#server-table").get_by_role("link", name="S22PLESK").click()
    expect(page.get_by_role("heading", name="S22PLESK")).to_be_visible()

    # Verify (discovers the facts first), then the job page shows the finished log.
    page.get_by_role("button", name="Verify").click()
    assert _wait_for_job(page) == "Succeeded"
    expect(page.locator("#job-log")).to_contain_text("Verified:")
    screenshot("02-verify-job")

    page.locator("#job-status").get_by_role("link", name="S22PLESK").click()
    expect(page.get_by_role("heading", name="Discovered on the host")).to_be_visible()
    expect(page.locator("main")).to_contain_text("Windows Server 2022")
    expect(page.locator("main")).to_contain_text("MailEnable")
    screenshot("03-server-drifted")

    # Harden: the preview lists what would change, then the job runs and its log ends.
    page.get_by_role("link", name="Harden…").click()
    expect(page.get_by_role("heading", name="What would change")).to_be_visible()
    screenshot("04-harden-preview")
    page.get_by_role("button", name="Harden", exact=True).click()
    assert _wait_for_job(page) == "Succeeded"
    expect(page.locator("#job-log")).to_contain_text("Mail ports answer")
    screenshot("05-harden-job")

    page.locator("#job-status").get_by_role("link", name="S22PLESK").click()
    compliance = page.locator("#compliance")
    expect(compliance).to_contain_text("100.0 % compliant")
    expect(page.locator("h1 .badge")).to_have_text("Compliant")
    screenshot("06-server-compliant")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Dashboard").click()
    expect(page.locator(".summary")).to_contain_text(re.compile(r"1 of \d servers fully compliant"))
    expect(page.locator("svg.chart title").first).to_have_text(re.compile("Average compliance"))
    screenshot("07-dashboard-after")

    # A signed PDF report for Acme Mail: download it, read it, check its signature.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Reports").click()
    page.locator("#id_customer").select_option(label="Acme Mail")
    page.locator("#id_format").select_option("pdf")
    page.get_by_role("button", name="Make the report").click()
    expect(page.locator(".messages")).to_contain_text("is queued")
    expect(page.locator("#report-state")).to_have_text("Ready", timeout=60_000)
    screenshot("08-reports")
    with page.expect_download() as download_info:
        page.locator("#report-downloads a").first.click()
    pdf_path = tmp_path / download_info.value.suggested_filename
    download_info.value.save_as(pdf_path)
    text = " ".join(" ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf_path.read_bytes())).pages).split())
    assert "Compliance report: Acme Mail" in text
    assert "S22PLESK" in text
    assert "S22SPARE" in text
    assert "R2WMF" not in text
    assert "100.0 %" in text
    call_command("verify_report", str(pdf_path))
    tampered = tmp_path / "tampered.pdf"
    tampered.write_bytes(pdf_path.read_bytes().replace(b"Acme Mail", b"Acme Mall", 1))
    with pytest.raises(Exception, match="MODIFIED"):
        call_command("verify_report", str(tampered))

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Reports").click()
    page.get_by_role("link", name="Signing key").click()
    expect(page.locator("#public-key")).not_to_be_empty()
    screenshot("09-signing-key")

    # The customer's viewer sees only Acme Mail's servers, report and hosts.
    page.get_by_role("button", name="Log out").click()
    login("vera", TEST_PASSWORD)
    main = page.locator("main")
    expect(main).to_contain_text("Acme Mail")
    assert "Other Corp" not in main.inner_text()
    assert "R2WMF" not in main.inner_text()
    screenshot("10-viewer-dashboard")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Servers").click()
    expect(page.locator("#server-table")).to_contain_text("S22PLESK")
    assert "R2WMF" not in main.inner_text()
    assert page.get_by_role("link", name="Add server").count() == 0
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Customers").click()
    page.get_by_role("link", name="Acme Mail").click()
    expect(page.locator("#reports-heading")).to_be_visible()
    expect(page.locator("table.reports")).to_contain_text("PDF")
    screenshot("11-viewer-customer")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Jobs").click()
    page.get_by_role("link", name=re.compile("Harden")).first.click()
    expect(page.locator("#job-status")).to_contain_text("S22PLESK")

    # Tablet width: the same dashboard, one column, nothing cut off.
    page.set_viewport_size({"width": 768, "height": 1024})
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Dashboard").click()
    expect(page.get_by_role("heading", name="Compliance over time")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot("12-viewer-dashboard-tablet")
