"""Issue 12 item 3 in a browser: the drifted page of a fresh winlab host fits three screen heights folded;
the root causes lead to their rows; problems-only and search narrow the page; a row shows names in
words and the raw values in its evidence; a harden refreshes the facts; the server's trend is drawn.

Jobs run inline (`set_enqueue(run_host)`); the host is a real winlab host over real WinRM.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from jobs import runner, services
from jobs.choices import HostRunState, JobKind
from jobs.models import HostRun
from jobs.services import job_create
from lockdown import clock
from servers.audit import Actor
from servers.models import Server
from servers.tenancy import Scope
from tests.factories import TEST_PASSWORD
from tests.integration.winlab_agent.conftest import SPECS, start_lab
from winlab.lab import Lab
from winlab.persist import write_private_json

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.winlab, pytest.mark.slow]
MSP = Scope(user_id=None, msp_role="admin")
WIDTH, HEIGHT = 1280, 900


@pytest.fixture
def fresh_host(tmp_path: Path) -> Iterator[Path]:
    lab: Lab = start_lab(tmp_path / "lab", [SPECS["plesk"]])
    path = tmp_path / "inventory.json"
    write_private_json(path, lab.inventory())
    services.set_enqueue(runner.run_host)
    try:
        yield path
    finally:
        services.set_enqueue(None)
        lab.stop()


def _height(page) -> int:
    return int(page.evaluate("document.documentElement.scrollHeight"))


def _width(page) -> int:
    return int(page.evaluate("document.documentElement.scrollWidth"))


def test_a_drifted_fresh_host_page_is_folded_scannable_and_refreshed_by_harden(
    page, live_server, login, screenshot, alice, fresh_host
):
    call_command("import_winlab", str(fresh_host), "--customer", "Acme Mail")
    server = Server.objects.get(customer__name="Acme Mail")
    job_create(scope=MSP, actor=Actor.system("test"), kind=JobKind.VERIFY, servers=[server])
    server.refresh_from_db()
    assert server.status == "drifted"
    page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
    login("alice", TEST_PASSWORD)
    url = f"{live_server.url}/servers/{server.pk}/"
    page.goto(url)

    # Folded: every section a line with its counts, under three screen heights, no wider than the window.
    compliance = page.locator("#compliance")
    expect(compliance.locator("details.section").first).to_be_visible()
    assert compliance.locator("details.section[open]").count() == 0
    assert _height(page) < 3 * HEIGHT, f"{_height(page)} px"
    assert _width(page) <= WIDTH
    expect(
        compliance.locator("details.section > summary", has_text="File System Permissions (Access Granted)")
    ).to_contain_text("drift")
    screenshot("01-folded")

    # The root cause behind most findings comes first, and leads to exactly its rows.
    causes = page.locator("#root-causes li")
    top = causes.first
    expect(top).to_contain_text("IME_SYSTEM does not exist on the host")
    count = int(top.locator(".badge").inner_text().split(" ")[0])
    assert count > 100
    top.get_by_role("link", name=f"Show these {count}").click()
    expect(page.locator("#filter-status")).to_contain_text(f"Showing {count} of ")
    rows = compliance.locator("table.rules tbody tr:not(.cause-head)")
    expect(rows).to_have_count(count)  # waits for the filtered table, like the status line above
    screenshot("02-one-root-cause")

    # Problems only: sections open, each cause once with a sample of its rows.
    page.goto(url)
    page.get_by_label("Show").select_option("problems")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#filter-status")).to_be_visible()
    assert compliance.locator("details.section[open]").count() > 0
    statuses = set(compliance.locator("table.rules tbody tr:not(.cause-head) td:nth-child(2)").all_inner_texts())
    assert statuses <= {"Drift", "Needs input", "Error"}
    expect(compliance.locator("tr.cause-head").first).to_contain_text("show all")
    assert _width(page) <= WIDTH
    screenshot("03-problems-only")

    # Search, then one row opened: rights in words in the table, the raw mask and SID in its evidence.
    page.get_by_label("Search").fill("activeds")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#filter-status")).to_contain_text("matching “activeds”")
    row = compliance.locator("table.rules tbody tr:not(.cause-head)").first
    expect(row).to_contain_text("ACTIVEDS")
    assert "0x" not in row.locator("td").nth(2).inner_text()
    expect(row.locator("td").nth(2)).to_contain_text("effective Read on the file")
    row.locator("summary").first.click()
    evidence = row.locator("dl.evidence")
    expect(evidence).to_contain_text("0x00120089")
    expect(row.get_by_role("link", name="Which other servers fail this rule")).to_be_visible()
    # Ids and paths wrap only where a <wbr> offers it, never mid-word.
    wrap = page.evaluate("getComputedStyle(document.querySelector('#compliance code.target')).overflowWrap")
    assert wrap == "normal"
    screenshot("04-search-and-evidence")

    # Harden: the facts card says the account now exists (read by the apply's own program).
    page.goto(url)
    expect(
        page.locator("section.card", has=page.get_by_role("heading", name="Discovered on the host"))
    ).to_contain_text("IME_SYSTEM absent")
    job = job_create(scope=MSP, actor=Actor.system("test"), kind=JobKind.HARDEN, servers=[server])
    assert HostRun.objects.get(job=job).state == HostRunState.SUCCEEDED
    # A reading from two days ago, so the trend has a line to draw.
    HostRun.objects.filter(job=job).update(finished_at=clock.now())
    earlier = HostRun.objects.filter(server=server).order_by("id").first()
    assert earlier is not None
    HostRun.objects.filter(pk=earlier.pk).update(finished_at=clock.now() - timedelta(days=2))
    page.goto(url)
    expect(
        page.locator("section.card", has=page.get_by_role("heading", name="Discovered on the host"))
    ).not_to_contain_text("IME_SYSTEM absent")
    expect(page.locator("#result-counts")).not_to_contain_text("drift")
    chart = page.locator("svg#server-trend")
    expect(chart).to_be_visible()
    expect(chart.locator("desc")).to_contain_text("Compliance went from 0.0 %")
    expect(chart.locator("desc")).to_contain_text("to 100.0 %")
    assert _height(page) < 3 * HEIGHT
    screenshot("05-hardened-with-trend")
