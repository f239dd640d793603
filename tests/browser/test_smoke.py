"""A first walk through the app in a real browser: log in, open the server list, filter."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.factories import TEST_PASSWORD, ServerFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_admin_logs_in_and_sees_the_server_list(page, live_server, login, screenshot, alice, tenant_a, tenant_b):
    ServerFactory(customer=tenant_a.customer, name="mx-extra-02", address="mx2.a.example")
    login("alice", TEST_PASSWORD)
    assert page.get_by_role("heading", name="Fleet overview").is_visible()
    screenshot("dashboard")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Servers").click()
    page.wait_for_load_state("networkidle")
    table = page.locator("table.servers")
    assert table.get_by_role("link", name="mx-a-01").is_visible()
    assert table.get_by_role("link", name="mx-b-01").is_visible()
    assert table.get_by_text("Never verified").first.is_visible()
    screenshot("server-list")

    # Live search (htmx) narrows the table without a page load.
    page.get_by_label("Search").fill("mx-extra")
    expect(page.locator("#server-table").get_by_role("link", name="mx-b-01")).to_have_count(0)
    assert table.get_by_role("link", name="mx-extra-02").is_visible()
    screenshot("server-list-search")

    table.get_by_role("link", name="mx-extra-02").click()
    assert page.get_by_role("heading", name="mx-extra-02").is_visible()
    screenshot("server-detail")


def test_customer_viewer_sees_only_own_servers(page, live_server, login, screenshot, cora, tenant_a, tenant_b):
    login("cora", TEST_PASSWORD)
    page.goto(f"{live_server.url}/servers/")
    body = page.locator("main").inner_text()
    assert "mx-a-01" in body
    assert "mx-b-01" not in body
    assert tenant_b.customer.name not in body
    assert page.get_by_role("link", name="Add server").count() == 0
    screenshot("viewer-server-list")
