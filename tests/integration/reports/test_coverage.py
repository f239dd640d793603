"""Issue 12: every average is over assessed servers only, and says so beside it.

A customer with hosts that could not be read (PowerShell 2.0, a rejected credential, never
verified) or whose results are stale (a rollback) must not show "100 %" as if every host were
checked: the average counts the assessed servers, and the coverage says how many the rest are.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from pypdf import PdfReader

from lockdown import clock
from reports.models import ComplianceSnapshot, ReportFormat
from reports.selectors import fleet_summary
from reports.services import compliance_snapshot_take, report_create
from servers.audit import Actor
from servers.choices import ServerStatus, StaleReason
from servers.models import Server
from servers.tenancy import Scope
from tests.factories import CustomerFactory, ServerFactory

pytestmark = pytest.mark.django_db
MSP = Scope(user_id=None, msp_role="admin")
COVERAGE = "95.0 % over 2 of 6 servers; 3 not assessed, 1 stale"


def mixed_fleet(customer, prefix: str = "mx") -> dict[str, Server]:
    """Two assessed servers (100 % and 90 %); a PowerShell 2.0 host and a rejected credential that still
    carry an old 100 %; a never-verified host; a rolled-back host whose 100 % is stale."""
    now = clock.now()
    rows = {
        "ok": {"status": ServerStatus.COMPLIANT, "compliance_pct": 100.0},
        "drifted": {"status": ServerStatus.DRIFTED, "compliance_pct": 90.0},
        "ps2": {
            "status": ServerStatus.NOT_ASSESSED,
            "compliance_pct": 100.0,
            "not_assessed_kind": "unsupported_powershell",
        },
        "badcred": {
            "status": ServerStatus.NOT_ASSESSED,
            "compliance_pct": 100.0,
            "not_assessed_kind": "authentication_failed",
        },
        "new": {},
        "rolledback": {
            "status": ServerStatus.DRIFTED,
            "compliance_pct": 100.0,
            "results_stale_reason": StaleReason.ROLLBACK,
            "results_stale_since": now,
        },
    }
    servers = {}
    for key, fields in rows.items():
        server = ServerFactory(customer=customer, name=f"{prefix}-{key}")
        if fields:
            Server.objects.filter(pk=server.pk).update(last_verified_at=now - timedelta(hours=1), **fields)
        servers[key] = Server.objects.get(pk=server.pk)
    return servers


@pytest.fixture
def customer(db):
    customer = CustomerFactory(name="Mixed Mail Ltd")
    mixed_fleet(customer)
    return customer


def test_the_average_counts_only_assessed_servers_and_carries_its_coverage(customer):
    summary = fleet_summary(scope=MSP)
    coverage = summary.coverage
    assert (coverage.total, coverage.assessed, coverage.not_assessed, coverage.stale) == (6, 2, 3, 1)
    assert summary.average_pct == pytest.approx(95.0)
    assert coverage.text == COVERAGE
    (only,) = summary.customers
    assert only.coverage.text == COVERAGE


def test_no_server_assessed_is_not_measured_never_a_number(db):
    customer = CustomerFactory(name="Unread Ltd")
    server = ServerFactory(customer=customer, name="mx-ps2-only")
    Server.objects.filter(pk=server.pk).update(
        status=ServerStatus.NOT_ASSESSED, compliance_pct=100.0, not_assessed_kind="unsupported_powershell"
    )
    summary = fleet_summary(scope=MSP)
    assert summary.average_pct is None
    assert summary.coverage.text == "not measured: 0 of 1 server assessed"


def test_a_customer_user_sees_only_its_own_servers_in_the_coverage(customer, tenant_a, cora):
    from servers.tenancy import scope_for_user

    summary = fleet_summary(scope=scope_for_user(cora))
    assert summary.coverage.total == Server.objects.filter(customer=tenant_a.customer).count()


def test_dashboard_shows_coverage_beside_the_average_and_not_assessed_with_the_cause(client, alice, customer):
    client.force_login(alice)
    page = client.get(reverse("dashboard")).content.decode()
    # alice's fleet also holds tenant A's never-verified server
    assert '<p class="coverage" id="coverage">over 2 of 7 servers; 4 not assessed, 1 stale</p>' in page
    assert COVERAGE in page  # the customer's row
    assert "Not assessed" in page
    assert "requires WMF 5.1" in page
    assert "— install Windows Management Framework 5.1 on the host" in page  # the remedy beside the cause
    assert "the credential was rejected" in page
    assert "Failing</span>" not in page.split('aria-labelledby="worst-heading"')[1].split("</section>")[0]


def test_customer_page_and_list_show_the_coverage(client, alice, customer):
    client.force_login(alice)
    page = client.get(reverse("customer_detail", args=[customer.pk])).content.decode()
    assert '<p class="big-figure">95.0 %</p>' in page
    assert '<p class="coverage" id="coverage">over 2 of 6 servers; 3 not assessed, 1 stale</p>' in page
    assert "requires WMF 5.1" in page
    assert "a rollback changed the host" in page
    listing = client.get(reverse("customer_list")).content.decode()
    assert COVERAGE in listing


def test_server_list_figures_say_not_assessed_or_stale_instead_of_the_old_percentage(client, alice, customer):
    client.force_login(alice)
    page = client.get(reverse("server_list")).content.decode()
    row = page.split("mx-ps2</a>")[1].split("</tr>")[0]
    assert "Not assessed" in row
    assert "requires WMF 5.1" in row
    assert "100.0 %" not in row
    row = page.split("mx-rolledback</a>")[1].split("</tr>")[0]
    assert "Stale" in row
    assert "100.0 %" not in row


def _report(customer, fmt):
    now = clock.now()
    return report_create(
        scope=MSP,
        actor=Actor.system("test"),
        customer=customer,
        fmt=fmt,
        period_start=now - timedelta(days=7),
        period_end=now,
    )


def test_csv_states_the_coverage_and_each_server_not_assessed_with_its_cause(customer):
    report = _report(customer, ReportFormat.CSV)
    text = bytes(report.content).decode("utf-8")
    # The CSV is rows only (spreadsheet-clean); the report's coverage is in its signed evidence.
    assert json.loads(bytes(report.evidence))["summary"]["coverage"] == COVERAGE
    rows = {row[1]: row for row in csv.reader(io.StringIO(text)) if len(row) > 5 and row[0] == customer.name}
    header = next(row for row in csv.reader(io.StringIO(text)) if row and row[0] == "customer")
    column = {name: i for i, name in enumerate(header)}
    ps2 = rows["mx-ps2"]
    assert ps2[column["server_status"]] == "Not assessed"
    assert ps2[column["compliance_pct"]] == ""  # the old 100 % is no figure any more
    assert "requires WMF 5.1" in ps2[column["assessment"]]
    assert "Stale" in rows["mx-rolledback"][column["assessment"]]
    assert rows["mx-ok"][column["compliance_pct"]] == "100.0"
    assert report.compliance_pct == pytest.approx(95.0)


def test_pdf_states_the_coverage_and_each_server_not_assessed_with_its_cause(customer):
    from jobs.models import ServerCompliance

    from .conftest import outcome

    # The rejected credential's host was read once: its page lists those outcomes, and says they are not now.
    badcred = Server.objects.get(name="mx-badcred")
    ServerCompliance.objects.create(
        server=badcred, verified_at=clock.now() - timedelta(days=2), profile_label="builtin v1",
        outcomes=[outcome(1, "compliant")],
    )  # fmt: skip
    report = _report(customer, ReportFormat.PDF)
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(bytes(report.content))).pages)
    text = " ".join(text.split())
    assert COVERAGE in text
    assert "requires WMF 5.1" in text
    assert "the credential was rejected" in text
    assert "Failing" not in text


def test_the_daily_snapshot_averages_the_same_servers(customer):
    compliance_snapshot_take()
    snapshot = ComplianceSnapshot.objects.get(customer=customer)
    assert snapshot.verified == 2
    assert snapshot.pct_sum == pytest.approx(190.0)
    assert snapshot.not_assessed == 2
    assert snapshot.servers_total == 6


def _queries(client, url: str) -> int:
    client.get(url)
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured.captured_queries)


def test_figures_and_causes_cost_the_same_queries_for_6_and_36_servers(client, alice, db):
    customer = CustomerFactory(name="Growing Ltd")
    mixed_fleet(customer, "a")
    client.force_login(alice)
    urls = [
        reverse("dashboard"),
        reverse("server_list"),
        reverse("customer_detail", args=[customer.pk]),
        reverse("customer_list"),
    ]
    small = [_queries(client, url) for url in urls]
    for n in range(5):
        mixed_fleet(customer, f"b{n}")
    assert [_queries(client, url) for url in urls] == small


def test_the_query_and_the_page_words_agree_on_every_server(customer):
    """servers.assessment states the definition twice (a Q for aggregates, Python for one server's words)."""
    from servers.assessment import assessed_q, assessment_of, not_assessed_q, stale_q

    by_query = {}
    for state, q in (("assessed", assessed_q()), ("stale", stale_q()), ("not_assessed", not_assessed_q())):
        for pk in Server.objects.filter(q).values_list("pk", flat=True):
            assert pk not in by_query, "the three states overlap"
            by_query[pk] = state
    assert by_query == {server.pk: assessment_of(server, msp=True).state for server in Server.objects.all()}
