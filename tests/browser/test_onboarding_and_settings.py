"""Issue 12's smaller items as an MSP admin meets them: adding a first server, a customer's window and
verify schedule by day names, and a readable 404 with DEBUG on (as in `make demo`)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from jobs.models import VerifySchedule
from servers.models import Customer, Server
from tests.factories import TEST_PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


def test_add_a_server_from_the_customer_page_with_the_onboarding_steps(
    page, live_server, login, screenshot, alice, tenant_a, tenant_b
):
    login("alice", TEST_PASSWORD)
    page.goto(f"{live_server.url}/customers/{tenant_a.customer.pk}/")
    page.get_by_role("link", name="Add server").click()
    expect(page.get_by_role("heading", name="Before you add a server")).to_be_visible()
    assert page.get_by_label("Customer").input_value() == str(tenant_a.customer.pk)
    credential_options = page.locator("#id_credential option").all_inner_texts()
    assert any(tenant_a.credential.name in text for text in credential_options)
    assert not any(tenant_b.credential.name in text for text in credential_options)
    with page.expect_download() as download:
        page.get_by_role("link", name="Enable-FleetLockdownWinRM.ps1").click()
    assert download.value.suggested_filename == "Enable-FleetLockdownWinRM.ps1"
    screenshot("add-server")

    page.locator("#id_name").fill("mx-a-02")
    page.get_by_label("Address").fill("mx-a-02.example.net")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("heading", name="mx-a-02")).to_be_visible()
    assert Server.objects.get(name="mx-a-02").customer_id == tenant_a.customer.pk


def test_window_and_schedule_days_are_ticked_by_name(page, live_server, login, screenshot, alice, tenant_a):
    login("alice", TEST_PASSWORD)
    page.goto(f"{live_server.url}/customers/{tenant_a.customer.pk}/edit/")
    days = page.get_by_role("group", name="Maintenance window days")
    for day in ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday"):
        days.get_by_label(day).uncheck()
    page.get_by_label("Maintenance window starts at").fill("22:00")
    page.get_by_label("Maintenance window time zone").select_option("Europe/Berlin")
    screenshot("customer-form")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Saturday, Sunday from 22:00 for 4 h (Europe/Berlin)")).to_be_visible()
    customer = Customer.objects.get(pk=tenant_a.customer.pk)
    assert (customer.maintenance_days, customer.maintenance_timezone) == ("5,6", "Europe/Berlin")

    page.get_by_role("link", name="Verify schedule").click()
    schedule_days = page.get_by_role("group", name="On these days")
    schedule_days.get_by_label("Saturday").uncheck()
    schedule_days.get_by_label("Sunday").uncheck()
    page.get_by_label("At (UTC)").fill("04:15")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Now: Monday to Friday at 04:15 UTC.")).to_be_visible()
    assert VerifySchedule.objects.get(customer=tenant_a.customer).day_of_week == "mon,tue,wed,thu,fri"
    screenshot("verify-schedule")


@pytest.mark.expect_console("the server responded with a status of 404")
def test_a_missing_page_is_readable_with_debug_on(page, live_server, login, screenshot, settings, alice):
    settings.DEBUG = True  # as `make demo` runs
    login("alice", TEST_PASSWORD)
    page.goto(f"{live_server.url}/servers/999999/")
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    assert "URLconf" not in page.content()
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    screenshot("not-found")
