"""The audit log page and its CSV: readable diffs, filters (dates in the user's time zone), pagination,
spreadsheet-safe export of the filtered rows, MSP admins only, the same queries for 5 or 50 events."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from reports.models import UserPreference
from servers.audit import REDACTED, Actor, audit_record
from servers.audit_diff import HIDDEN
from tests.unit.servers.test_audit_diff import PEM

pytestmark = pytest.mark.django_db


def _at(when: datetime, **kwargs):
    with mock.patch("django.utils.timezone.now", return_value=when):
        return audit_record(**kwargs)


def _csv(client, query: str = "") -> list[dict[str, str]]:
    response = client.get(reverse("audit_export") + query)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_changes_read_as_old_arrow_new_and_a_pem_sits_behind_details(client, alice, tenant_a):
    audit_record(
        actor=Actor.system("test"),
        action="server.update",
        obj=tenant_a.server,
        changes={"address": [None, "127.77.0.20"], "tls_pinned_certificate": [None, PEM], "tags": [[], ["dmz"]]},
    )
    client.force_login(alice)
    body = client.get(reverse("audit_list")).content.decode()
    assert '<strong>address</strong>: <span class="audit-value">—</span>' in body
    assert "127.77.0.20" in body
    assert "[None," not in body
    assert "None" not in body.split("<tbody>")[1]
    summary = body.split('<details class="audit-value"><summary>')[1].split("</summary>")[0]
    assert summary.startswith("certificate, SHA-256 ")
    assert "-----BEGIN CERTIFICATE-----" in body.split("</summary>")[1]  # the whole PEM, folded


def test_secrets_are_never_in_the_trail_nor_on_the_page_or_the_csv(client, alice, tenant_a):
    assert HIDDEN == REDACTED
    audit_record(
        actor=Actor.system("test"), action="credential.update", obj=tenant_a.credential,
        changes={"secret": ["hunter2-old", "hunter2-new"], "username": ["a", "b"]},
    )  # fmt: skip
    client.force_login(alice)
    body = client.get(reverse("audit_list")).content.decode()
    rows = _csv(client)
    assert "hunter2" not in body
    assert "hunter2" not in str(rows)
    assert "secret: [secret changed]" in rows[0]["changes"]


def test_the_date_filter_reads_days_in_the_users_time_zone(client, alice, tenant_a):
    UserPreference.objects.create(user=alice, time_zone="Pacific/Auckland")  # UTC+13 in December
    # 30 Nov 12:00 UTC is 1 Dec 01:00 in Auckland; 1 Dec 12:00 UTC is already 2 Dec there.
    _at(datetime(2026, 11, 30, 12, 0, tzinfo=UTC), actor=Actor.system("early"), action="server.update",
        obj=tenant_a.server)  # fmt: skip
    _at(datetime(2026, 12, 1, 12, 0, tzinfo=UTC), actor=Actor.system("late"), action="server.update",
        obj=tenant_a.server)  # fmt: skip
    client.force_login(alice)
    day = "?since=2026-12-01&until=2026-12-01"
    body = client.get(reverse("audit_list") + day).content.decode()
    assert ">early<" in body
    assert ">late<" not in body
    assert [r["actor"] for r in _csv(client, day)] == ["early"]
    assert _csv(client, day)[0]["at"] == "2026-12-01T01:00:00+13:00"
    after = client.get(reverse("audit_list") + "?since=2026-12-02").content.decode()
    assert ">late<" in after
    assert ">early<" not in after


def test_a_date_that_is_not_one_is_said_and_ignored(client, alice, tenant_a):
    audit_record(actor=Actor.system("someone"), action="server.update", obj=tenant_a.server)
    client.force_login(alice)
    response = client.get(reverse("audit_list") + "?since=yesterday")
    assert response.status_code == 200
    body = response.content.decode()
    assert 'id="filter-errors"' in body
    assert ">someone<" in body


def test_action_actor_and_customer_filters_apply_to_page_and_csv(client, alice, tenant_a, tenant_b):
    audit_record(actor=Actor.system("robot"), action="server.update", obj=tenant_a.server)
    audit_record(actor=Actor.system("robot"), action="credential.create", obj=tenant_a.credential)
    audit_record(actor=Actor.system("person"), action="server.update", obj=tenant_b.server)
    client.force_login(alice)
    assert {r["action"] for r in _csv(client, "?action=server.")} == {"server.update"}
    assert {r["action"] for r in _csv(client, "?action=credential.create")} == {"credential.create"}
    assert {r["actor"] for r in _csv(client, "?actor=rob")} == {"robot"}
    only_b = _csv(client, f"?customer={tenant_b.customer.pk}")
    assert {r["customer"] for r in only_b} == {tenant_b.customer.name}
    page = client.get(reverse("audit_list") + f"?customer={tenant_b.customer.pk}").content.decode()
    assert tenant_a.server.name not in page.split("<tbody>")[1]
    assert "Export CSV" in page
    assert f"export.csv?customer={tenant_b.customer.pk}" in page


def test_csv_cells_a_spreadsheet_would_run_are_neutralised(client, alice, tenant_a):
    audit_record(
        actor=Actor.system("=HYPERLINK(\"http://evil\")"), action="server.update", obj=tenant_a.server,
        object_repr="+cmd|' /C calc'!A0", changes={"name": ["-2+3", "@SUM(A1)"]},
    )  # fmt: skip
    client.force_login(alice)
    [row] = _csv(client, "?actor=HYPERLINK")
    assert row["actor"] == '\'=HYPERLINK("http://evil")'
    assert row["object"] == "'+cmd|' /C calc'!A0"
    assert row["changes"] == "name: -2+3 → @SUM(A1)"  # not at the start of the cell
    audit_record(actor=Actor.system("formula"), action="server.update", obj=tenant_a.server, changes={"n": "=1+1"})
    assert _csv(client, "?actor=formula")[0]["changes"] == "n: =1+1"


@pytest.mark.parametrize("role", ["oscar", "vic", "carol", "cora"])
def test_only_msp_admins_see_the_audit_log_or_its_csv(client, make_role_user, role):
    from tests.conftest import ROLE_USERS

    by_name = {username: key for key, (username, _, _) in ROLE_USERS.items()}
    client.force_login(make_role_user(by_name[role]))
    assert client.get(reverse("audit_list")).status_code == 403
    assert client.get(reverse("audit_export")).status_code == 403


def _queries(client, url: str) -> int:
    client.get(url)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
        if response.streaming:
            b"".join(response.streaming_content)
    assert response.status_code == 200
    return len(captured.captured_queries)


def test_page_and_csv_cost_the_same_queries_for_5_and_50_events(client, alice, tenant_a, tenant_b):
    client.force_login(alice)

    def add(n: int) -> None:
        for i in range(n):
            changes = {"address": [None, f"127.0.0.{i}"], "tls_pinned_certificate": [None, PEM]}
            audit_record(actor=Actor.system(f"a{i}"), action="server.update", obj=tenant_a.server, changes=changes)
            audit_record(actor=Actor.system(f"b{i}"), action="job.verify", obj=tenant_b.server)

    urls = [reverse("audit_list"), reverse("audit_list") + "?action=server.&since=2000-01-01", reverse("audit_export")]
    add(5)
    small = [_queries(client, url) for url in urls]
    add(45)
    large = [_queries(client, url) for url in urls]
    assert small == large
    print(f"\naudit log query counts (page, filtered page, csv): {large}")
