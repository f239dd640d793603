"""A CSV import in a real browser: the demo banner, the upload, the import's own page with its
progress and outcome, and a file whose rows are refused (issue 11: import as a background job)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from servers import csv_import
from servers.models import Server
from tests.factories import TEST_PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def inline_imports() -> Iterator[None]:
    # The worker's part runs in the request thread once the upload is committed (as a worker
    # would pick it up); the page then shows the finished import.
    csv_import.set_enqueue(csv_import.server_import_run)
    yield
    csv_import.set_enqueue(None)


def test_an_admin_imports_servers_and_reads_the_outcome(
    page, live_server, login, screenshot, alice, tenant_a, inline_imports, tmp_path: Path
):
    login("alice", TEST_PASSWORD)
    assert page.get_by_role("alert").filter(has_text="Demo / development instance").is_visible()
    page.goto(f"{live_server.url}/servers/import/")
    good = tmp_path / "servers.csv"
    good.write_text(
        "name,customer,address,winrm_scheme,winrm_port\n"
        + "".join(f"mx-imp-{i},{tenant_a.customer.name},10.44.0.{i},https,5986\n" for i in range(1, 4)),
        encoding="utf-8",
    )
    page.set_input_files("input[type=file]", str(good))
    page.get_by_role("button", name="Import").click()
    page.wait_for_load_state("networkidle")
    assert page.get_by_role("heading", name="Import of servers.csv").is_visible()
    assert page.get_by_text("Imported 3 servers.").is_visible()
    screenshot("imported")
    assert Server.objects.filter(name__startswith="mx-imp-").count() == 3

    bad = tmp_path / "bad.csv"
    bad.write_text(
        f"name,customer,address\nmx-bad-1,{tenant_a.customer.name},not a host!\nmx-bad-2,Nobody Ltd,b.example\n",
        encoding="utf-8",
    )
    page.goto(f"{live_server.url}/servers/import/")
    page.set_input_files("input[type=file]", str(bad))
    page.get_by_role("button", name="Import").click()
    page.wait_for_load_state("networkidle")
    errors = page.get_by_role("alert").filter(has_text="upload the file again")
    assert page.get_by_text("Nothing imported", exact=True).is_visible()
    assert "This field is required" not in errors.inner_text()  # the missing customer is said once
    assert errors.is_visible()
    assert "Row 2: address" in errors.inner_text()
    assert "Row 3: customer" in errors.inner_text()
    screenshot("refused-rows")
    assert not Server.objects.filter(name__startswith="mx-bad-").exists()
    page.goto(f"{live_server.url}/servers/import/")
    assert page.get_by_role("heading", name="Your recent imports").is_visible()
    screenshot("recent")
