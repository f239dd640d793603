"""Issue 12 item 4: the PDF opens with a one-page executive summary, then the details; rights in words;
a server that could not be read says why instead of "PowerShell ?, MailEnable ? ?"."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from pypdf import PdfReader

from jobs.models import ServerCompliance
from lockdown import clock
from reports.models import ComplianceSnapshot, ReportFormat
from reports.services import report_create
from servers.audit import Actor
from servers.choices import ServerStatus
from servers.models import Server
from servers.tenancy import Scope
from tests.factories import CustomerFactory, ServerFactory, WaiverFactory

from .conftest import outcome

pytestmark = pytest.mark.django_db
MSP = Scope(user_id=None, msp_role="admin")


def _pdf(customer=None):
    now = clock.now()
    report = report_create(
        scope=MSP, actor=Actor.system("test"), customer=customer, fmt=ReportFormat.PDF,
        period_start=now - timedelta(days=7), period_end=now,
    )  # fmt: skip
    pages = PdfReader(io.BytesIO(bytes(report.content))).pages
    return report, [" ".join(page.extract_text().split()) for page in pages]


def _ps2_server(customer, name: str = "mx-ps2") -> Server:
    server = ServerFactory(customer=customer, name=name)
    Server.objects.filter(pk=server.pk).update(
        status=ServerStatus.NOT_ASSESSED, not_assessed_kind="unsupported_powershell", last_verified_at=clock.now()
    )
    return Server.objects.get(pk=server.pk)


def test_page_one_is_the_summary_and_the_details_start_on_page_two(tenant_a, tenant_b, fleet_of):
    from lockdown.models import Waiver

    fleet_of(tenant_a.customer, 3)
    servers = fleet_of(tenant_b.customer, 2)
    _ps2_server(tenant_a.customer)
    # A waiver that ended during the period is in the details, but it is no open exception now.
    ended = WaiverFactory(server=servers[1], rule_id="file_acl.rule_002", expires_at=clock.now() - timedelta(days=1))
    Waiver.objects.filter(pk=ended.pk).update(approved_at=clock.now() - timedelta(days=3))
    report, pages = _pdf()
    summary = pages[0]
    assert "Executive summary" in summary
    # 5 assessed (fleet_of); 3 not: the two tenants' never-verified servers and the PowerShell 2.0 host.
    # The coverage sentence is the one servers.assessment writes everywhere else.
    assert "over 5 of 8 servers; 3 not assessed" in summary
    assert "requires WMF 5.1" in summary  # why, beside the figure
    assert "Compliance by customer" in summary
    assert "Tenant A Ltd" in summary
    assert "Tenant B Ltd" in summary
    assert "Average compliance over the period" in summary
    assert "Top failing rules" in summary
    assert "Waivers in force: 3" in summary  # fleet_of waives every other server
    evidence = json.loads(bytes(report.evidence))
    assert (len(evidence["waivers"]), evidence["summary"]["open_waivers"]) == (4, 3)
    assert "page 1/" in summary
    assert pages[1].startswith("Details")
    assert "Waivers in force during the period" not in summary  # the details are not squeezed onto it


def test_top_failing_rules_count_the_assessed_servers_failing_each_rule(tenant_a, fleet_of):
    servers = fleet_of(tenant_a.customer, 3)
    # rule_009 fails on every server; an unassessed server's old reading does not count.
    for server in servers:
        compliance = ServerCompliance.objects.get(server=server)
        compliance.outcomes = [outcome(9, "drift"), outcome(8, "compliant")]
        compliance.save()
    old = _ps2_server(tenant_a.customer, "mx-old")
    ServerCompliance.objects.create(server=old, verified_at=clock.now(), outcomes=[outcome(8, "drift")])
    report, pages = _pdf(tenant_a.customer)
    assert "file_acl.rule_009" in pages[0]
    assert "file_acl.rule_008" not in pages[0]
    top = json.loads(bytes(report.evidence))["summary"]["top_failing_rules"]
    assert top == [{"rule_id": "file_acl.rule_009", "title": "", "failing_servers": 3}]


def test_the_summary_stays_one_page_for_many_customers_and_rules(db):
    for n in range(14):
        customer = CustomerFactory(name=f"Customer number {n:02d} with a rather long name Ltd")
        server: Server = ServerFactory(customer=customer, name=f"big-{n:02d}")  # type: ignore[assignment]
        Server.objects.filter(pk=server.pk).update(
            status=ServerStatus.DRIFTED, compliance_pct=50.0 + n, last_verified_at=clock.now()
        )
        ServerCompliance.objects.create(
            server=server, verified_at=clock.now(), outcomes=[outcome(i, "drift") for i in range(30)]
        )
    _, pages = _pdf()
    assert "and 6 more customers" in pages[0]
    assert pages[1].startswith("Details")


def test_the_trend_is_drawn_from_the_periods_daily_points(tenant_a, fleet_of):
    fleet_of(tenant_a.customer, 2)
    today = clock.now().date()
    for back, pct in ((3, 60.0), (2, 70.0), (1, 80.0)):
        ComplianceSnapshot.objects.create(
            day=today - timedelta(days=back), customer=tenant_a.customer, servers_total=3, verified=2,
            pct_sum=2 * pct, taken_at=clock.now(),
        )  # fmt: skip
    ComplianceSnapshot.objects.create(  # before the period: not drawn
        day=today - timedelta(days=30), customer=tenant_a.customer, verified=1, pct_sum=1.0, taken_at=clock.now()
    )
    _, pages = _pdf(tenant_a.customer)
    assert f"from 60.0 % on {today - timedelta(days=3):%Y-%m-%d}" in pages[0]
    assert "4 days with data" in pages[0]


def test_rights_are_written_in_words_and_the_numbers_stay_in_the_evidence(tenant_a, fleet_of):
    server = fleet_of(tenant_a.customer, 1)[0]
    compliance = ServerCompliance.objects.get(server=server)
    compliance.outcomes = [
        outcome(1, "drift", observed_text="effective 0x001200A9",
                expected_text="IME_SYSTEM has effective FullControl (0x1F01FF) on the folder"),
        {**outcome(2, "compliant", observed_text="effective 0x000F003F",
                   expected_text="IME_SYSTEM has effective ReadKey (0x20019) on the key"),
         "rule_id": "registry_acl.software_classes"},
    ]  # fmt: skip
    compliance.save()
    report, pages = _pdf(tenant_a.customer)
    text = " ".join(pages[1:])
    assert "effective Read & execute" in text
    assert "effective Full control on the folder" in text
    assert "effective Read on the key" in text
    assert "0x" not in text
    assert "0x001200A9" in bytes(report.evidence).decode()


def test_a_server_never_read_says_why_instead_of_question_marks(tenant_a, fleet_of):
    fleet_of(tenant_a.customer, 1)
    _ps2_server(tenant_a.customer)
    _, pages = _pdf(tenant_a.customer)
    text = " ".join(pages)
    assert "?" not in text.replace("https?", "")
    section = next(page for page in pages[1:] if page.startswith("mx-ps2"))
    assert "Not assessed: requires WMF 5.1" in section
    assert "No facts were read from this server." in section
    assert section.count("requires WMF 5.1") == 1
    # A verified server still lists what discovery read.
    assert "Microsoft Windows Server 2022, PowerShell 5.1." in text
