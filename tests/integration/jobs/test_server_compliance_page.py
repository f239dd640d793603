"""The server page's compliance (issue 12 item 3): sections collapsed with counts, findings grouped by root
cause, a problems-only filter and a search, names for rights and accounts (the raw values in the evidence
only), names that break between their parts, and the server's own trend."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from jobs.choices import JobKind
from jobs.models import HostRun, Job, ServerCompliance
from jobs.selectors import SAMPLE_ROWS, ComplianceFilter, cause_key, server_compliance_page
from lockdown import clock
from reports.selectors import server_trend

pytestmark = pytest.mark.django_db
MISSING = "S22PLESK\\IME_SYSTEM does not exist on the host (no SID to grant to)"
GRANTED = "File System Permissions (Access Granted)"
REGISTRY = "Registry Permissions"


def _outcome(n: int, *, status: str = "drift", section: str = GRANTED, reason: str = MISSING) -> dict[str, object]:
    registry = section == REGISTRY
    return {
        "rule_id": f"registry_acl.key{n}" if registry else f"file_acl.system32.file{n}_dll",
        "target": f"HKLM\\SOFTWARE\\Key{n}" if registry else f"C:\\Windows\\System32\\FILE{n}.DLL",
        "section": section,
        "status": status,
        "action": "none",
        "expected_text": "IME_SYSTEM has effective ReadKey (0x20019) on the key"
        if registry
        else "IME_SYSTEM has effective Read (0x120089) on the file",
        "expected": {"mask": "0x00120089", "sid": "S-1-5-32-545"},
        "observed_text": "effective 0x001200A9 for S-1-5-32-545" if status == "compliant" else "principal not found",
        "observed": {"principal_sid": None},
        "reason": reason,
        "risk": "low",
    }


def _verified(server, outcomes: list[dict[str, object]]) -> ServerCompliance:
    job = Job.objects.create(kind=JobKind.VERIFY)
    run = HostRun.objects.create(job=job, server=server, server_name=server.name, customer=server.customer,
                                 customer_name=server.customer.name, state="succeeded")  # fmt: skip
    return ServerCompliance.objects.create(
        server=server, host_run=run, verified_at=clock.now(), profile_label="p", summary={}, outcomes=outcomes
    )


def _fresh_host(server) -> None:
    """What a fresh winlab host looks like: one missing account behind most findings."""
    outcomes = [_outcome(n) for n in range(40)]
    outcomes += [_outcome(n, section=REGISTRY) for n in range(40, 44)]
    outcomes += [_outcome(n, status="drift", reason="the account does not exist", section="Accounts") for n in (50, 51)]
    outcomes += [_outcome(n, status="not_applicable", reason="absent on this host") for n in range(60, 70)]
    outcomes += [_outcome(n, status="compliant", reason="") for n in range(70, 75)]
    _verified(server, outcomes)


def test_findings_are_grouped_by_root_cause_across_the_page_and_in_each_section(tenant_a) -> None:
    _fresh_host(tenant_a.server)
    page = server_compliance_page(tenant_a.server)
    assert page.total == 61
    assert page.counts == {"drift": 46, "not_applicable": 10, "compliant": 5}
    # Problems only, most rows first; what does not apply and what complies is no cause.
    assert [(c.count, c.reason, c.sections) for c in page.causes] == [
        (44, MISSING, [GRANTED, REGISTRY]),
        (2, "the account does not exist", ["Accounts"]),
    ]
    granted = next(s for s in page.sections if s.name == GRANTED)
    assert granted.counts == {"drift": 40, "not_applicable": 10, "compliant": 5}
    # Drift first, then compliant, then not applicable; a sample of each cause unless filtered.
    assert [(g.status, g.total, len(g.rows)) for g in granted.groups] == [
        ("drift", 40, SAMPLE_ROWS),
        ("compliant", 5, SAMPLE_ROWS),
        ("not_applicable", 10, SAMPLE_ROWS),
    ]
    assert granted.groups[0].key == cause_key("drift", MISSING)
    assert [r.outcome["rule_id"] for r in granted.groups[0].rows] == [
        "file_acl.system32.file0_dll",
        "file_acl.system32.file1_dll",
        "file_acl.system32.file2_dll",
    ]


def test_sections_are_collapsed_when_there_are_many_problems_and_open_when_few(tenant_a) -> None:
    _fresh_host(tenant_a.server)
    assert not any(s.open for s in server_compliance_page(tenant_a.server).sections)
    ServerCompliance.objects.all().delete()
    _verified(tenant_a.server, [_outcome(1), _outcome(2, status="compliant", reason="", section="Other")])
    opened = {s.name: s.open for s in server_compliance_page(tenant_a.server).sections}
    assert opened == {GRANTED: True, "Other": False}  # the one problem is in sight, the rest folded


def test_problems_only_search_and_one_cause_filter_the_rows(tenant_a) -> None:
    _fresh_host(tenant_a.server)
    problems = server_compliance_page(tenant_a.server, ComplianceFilter(show="problems"))
    assert problems.shown == 46
    assert {g.status for s in problems.sections for g in s.groups} == {"drift"}
    assert all(s.open for s in problems.sections if s.shown)
    assert not next(s for s in problems.sections if s.name == GRANTED).groups[0].rows[SAMPLE_ROWS:]
    # A search shows every matching row (no sample), over ids, paths and the sentences in words.
    found = server_compliance_page(tenant_a.server, ComplianceFilter(q="FILE1"))
    assert sorted(r.outcome["rule_id"] for s in found.sections for g in s.groups for r in g.rows) == sorted(
        [f"file_acl.system32.file{n}_dll" for n in (1, *range(10, 20))]
    )
    assert server_compliance_page(tenant_a.server, ComplianceFilter(q="read & execute")).shown == 5
    assert server_compliance_page(tenant_a.server, ComplianceFilter(q="not applicable")).shown == 10
    assert server_compliance_page(tenant_a.server, ComplianceFilter(q="the account does NOT exist")).shown == 2
    one = server_compliance_page(tenant_a.server, ComplianceFilter(cause=cause_key("drift", MISSING)))
    assert one.shown == 44
    assert sum(len(g.rows) for s in one.sections for g in s.groups) == 44  # all of them, not a sample
    assert [s.name for s in one.sections if s.open] == [GRANTED, REGISTRY]


def test_the_filter_takes_only_what_it_knows_from_the_query() -> None:
    assert ComplianceFilter.from_query({"show": "everything", "cause": "'><script>", "q": "  a \n b "}) == (
        ComplianceFilter(show="all", q="a b", cause="")
    )
    assert ComplianceFilter.from_query({"show": "problems", "cause": "0123456789ab"}) == ComplianceFilter(
        show="problems", cause="0123456789ab"
    )
    assert len(ComplianceFilter.from_query({"q": "x" * 500}).q) == 200
    assert not ComplianceFilter().active
    assert ComplianceFilter(q="x").active


def test_the_page_names_rights_and_accounts_and_keeps_the_numbers_in_the_evidence(client, alice, tenant_a) -> None:
    _verified(
        tenant_a.server,
        [_outcome(1, status="compliant", reason=""), _outcome(2, section=REGISTRY, reason="the key <b>is</b> odd")],
    )
    client.force_login(alice)
    body = client.get(reverse("server_detail", args=[tenant_a.server.pk])).content.decode()
    cells = [
        cell.split("</td>")[0] for row in body.split("<tr")[1:] for cell in row.split("<td>")[2:] if "</details>" in row
    ]
    text = " ".join(cells)
    assert "IME_SYSTEM has effective Read on the file" in text
    assert "IME_SYSTEM has effective Read on the key" in text
    assert "effective Read &amp; execute for Users" in text
    assert "0x" not in text
    assert "S-1-5" not in text
    evidence = body.split('<dl class="evidence">')[1].split("</dl>")[0]
    assert "0x120089" in evidence
    assert "S-1-5-32-545" in evidence
    assert "<b>is</b>" not in body
    assert "the key &lt;b&gt;is&lt;/b&gt; odd" in body
    # Ids and paths offer a break after each separator; the CSS does not break inside a word.
    assert "file_<wbr>acl.<wbr>system32.<wbr>file1_<wbr>dll" in body
    assert "C:\\<wbr>Windows\\<wbr>System32\\<wbr>FILE1.<wbr>DLL" in body


def test_the_page_links_each_cause_and_the_filter_form_keeps_its_values(client, alice, tenant_a) -> None:
    _fresh_host(tenant_a.server)
    client.force_login(alice)
    url = reverse("server_detail", args=[tenant_a.server.pk])
    body = client.get(url).content.decode()
    assert f'href="?cause={cause_key("drift", MISSING)}#compliance">Show these 44</a>' in body
    assert "40 × drift</span>" in body
    assert "show all 40</a>" in body
    assert '<details class="section" open>' not in body
    filtered = client.get(url, {"show": "problems", "q": "FILE1"}).content.decode()
    assert '<option value="problems" selected>' in filtered
    assert 'value="FILE1"' in filtered
    assert "Showing 11 of 61 results matching “FILE1”." in filtered


def test_the_page_costs_the_same_queries_for_10_and_200_rules(client, alice, tenant_a) -> None:
    client.force_login(alice)
    url = reverse("server_detail", args=[tenant_a.server.pk])

    def queries(n: int) -> int:
        ServerCompliance.objects.all().delete()
        _verified(tenant_a.server, [_outcome(i, reason=f"reason {i % 7}") for i in range(n)])
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url, {"show": "problems"}).status_code == 200
        return len(captured)

    queries(10)  # the first request of a session also reads and saves the session
    assert queries(10) == queries(200)


def test_the_trend_is_the_last_reading_of_each_day(tenant_a) -> None:
    server = tenant_a.server
    job = Job.objects.create(kind=JobKind.VERIFY)
    now = clock.now()
    for finished, pct in ((now - timedelta(days=2, hours=2), 10.0), (now - timedelta(days=2), 30.0), (now, 90.0)):
        HostRun.objects.create(job=job, server=server, server_name=f"{server.name}-{pct}", customer_name="c",
                               customer=server.customer, state="succeeded", finished_at=finished,
                               compliance_pct=pct)  # fmt: skip
    HostRun.objects.create(job=job, server=server, server_name="unread", customer=server.customer,
                           customer_name="c", state="failed", finished_at=now, compliance_pct=None)  # fmt: skip
    HostRun.objects.create(job=job, server=server, server_name="old", customer=server.customer,
                           customer_name="c", state="succeeded", finished_at=now - timedelta(days=40),
                           compliance_pct=5.0)  # fmt: skip
    points = server_trend(server=server, tz=clock.now().tzinfo)
    assert [(p.day, p.average_pct) for p in points] == [
        ((now - timedelta(days=2)).date(), 30.0),
        (now.date(), 90.0),
    ]
