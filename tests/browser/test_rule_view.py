"""Issue 12 item 3 in a browser: a verified winlab fleet with drifted hosts, the Rules page, "servers
failing rule X", Waive… opening the prefilled waiver form, and an audit log that fits 1280 px.

Jobs run inline (`set_enqueue(run_host)`); the hosts are real winlab hosts over real WinRM.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from jobs import runner, services
from jobs.choices import JobKind
from jobs.services import job_create
from servers.audit import Actor, audit_record
from servers.models import Server
from servers.tenancy import Scope
from tests.factories import TEST_PASSWORD
from tests.integration.winlab_agent.conftest import SPECS, start_lab
from tests.unit.servers.test_audit_diff import PEM
from winlab.lab import Lab
from winlab.persist import write_private_json

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.winlab, pytest.mark.slow]
MSP = Scope(user_id=None, msp_role="admin")
WIDTH = 1280


@pytest.fixture
def lab_inventory(tmp_path: Path) -> Iterator[Path]:
    # Two fresh hosts (drifted) and one MEInstaller already hardened.
    lab: Lab = start_lab(tmp_path / "lab", [SPECS["plesk"], SPECS["r2"], SPECS["adopted"]])
    path = tmp_path / "inventory.json"
    write_private_json(path, lab.inventory())
    try:
        yield path
    finally:
        lab.stop()


@pytest.fixture
def inline_jobs() -> Iterator[None]:
    services.set_enqueue(runner.run_host)
    yield
    services.set_enqueue(None)


def _page_width(page) -> int:
    return int(page.evaluate("document.documentElement.scrollWidth"))


def test_rules_page_rule_page_waive_and_a_readable_audit_log(
    page, live_server, login, screenshot, alice, lab_inventory, inline_jobs
):
    call_command("import_winlab", str(lab_inventory), "--customer", "Acme Mail")
    acme = list(Server.objects.filter(customer__name="Acme Mail"))
    job_create(scope=MSP, actor=Actor.system("test"), kind=JobKind.VERIFY, servers=acme)
    drifted = set(Server.objects.filter(status="drifted").values_list("name", flat=True))
    assert drifted, "the fresh winlab hosts should drift"
    # What made the audit log 5,004 px wide: a certificate saved whole, and a list repr.
    server = acme[0]
    audit_record(
        actor=Actor.system("test"),
        action="server.update",
        obj=server,
        changes={"tls_ca_bundle": [None, PEM], "address": [None, "127.77.0.20"]},
    )

    login("alice", TEST_PASSWORD)
    page.get_by_role("link", name="Top failing rules").click()
    expect(page.get_by_role("heading", name="Top failing rules")).to_be_visible()
    # The fleet: Acme Mail's three hosts and tenant A's never-verified server.
    expect(page.locator("#rule-coverage")).to_contain_text("assessed servers of 4; not counted: 1 not assessed")
    table = page.locator("table.fleet-rules")
    first = table.locator("tbody tr").first
    expect(first).to_contain_text("Acme Mail")
    expect(first.locator("td.count")).to_contain_text(f"{len(drifted)} of ")
    assert _page_width(page) <= WIDTH
    screenshot("01-rules")

    rule_id = first.locator("code").inner_text()
    first.get_by_role("link").first.click()
    expect(page.get_by_role("heading", name=f"Servers failing {rule_id}")).to_be_visible()
    rows = page.locator("table.failing-servers tbody tr")
    expect(rows.first).to_be_visible()
    body = page.locator("table.failing-servers").inner_text()
    assert {name for name in drifted if name in body} == drifted
    assert "S-1-5-" not in body
    assert _page_width(page) <= WIDTH
    screenshot("02-servers-failing-rule")

    rows.first.get_by_role("link", name="Waive…").click()
    expect(page.locator("select#id_rule_id")).to_have_value(rule_id)
    screenshot("03-waiver-form-prefilled")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit log").click()
    expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    assert _page_width(page) <= WIDTH, "the audit log is wider than the window"
    audit = page.locator("table.audit")
    expect(audit).to_contain_text("address: — → 127.77.0.20")
    expect(audit).not_to_contain_text("[None,")
    summary = audit.locator("details.audit-value > summary", has_text="certificate, SHA-256").first
    expect(summary).to_be_visible()
    assert _page_width(page) <= WIDTH
    screenshot("04-audit-log")
    summary.click()
    expect(audit.locator("details[open] pre").first).to_contain_text("-----BEGIN CERTIFICATE-----")
    assert _page_width(page) <= WIDTH
    screenshot("05-audit-log-certificate-open")

    # From a drifted server's page, a drifted rule links to the fleet view of that rule.
    drifted_server = Server.objects.filter(status="drifted").order_by("name").first()
    assert drifted_server is not None
    page.goto(f"{live_server.url}/servers/{drifted_server.pk}/")
    links = page.locator("a[href^='/rules/']", has_text="Which other servers fail this rule")
    assert links.count() > 0
    href = links.first.get_attribute("href")
    page.goto(f"{live_server.url}{href}")
    expect(page.get_by_role("heading", name="Servers failing")).to_be_visible()
    expect(page.locator("table.failing-servers")).to_contain_text(drifted_server.name)
