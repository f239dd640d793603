"""The signed report's compliance by framework (issue 14): the PDF section and the evidence JSON."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from pypdf import PdfReader

from jobs.models import ServerCompliance
from lockdown import clock, services
from reports.models import ReportFormat
from reports.services import report_create
from servers.audit import Actor
from servers.tenancy import Scope

pytestmark = pytest.mark.django_db
MSP = Scope(user_id=None, msp_role="admin")


def test_the_report_states_compliance_by_framework_with_the_exceptions(tenant_a, tenant_b) -> None:
    label = services.builtin_profile_sync().label
    for tenant, statuses in (
        (tenant_a, {"file_deny.system32.cmd_exe": "drift", "user_right.se_tcb_privilege": "compliant"}),
        (tenant_b, {"file_deny.system32.cmd_exe": "compliant"}),
    ):
        outcomes = [{"rule_id": r, "target": "t", "section": "s", "status": s} for r, s in statuses.items()]
        ServerCompliance.objects.update_or_create(
            server=tenant.server, defaults={"verified_at": clock.now(), "profile_label": label, "outcomes": outcomes}
        )
    now = clock.now()
    report = report_create(
        scope=MSP, actor=Actor.system("test"), customer=tenant_a.customer, fmt=ReportFormat.PDF,
        period_start=now - timedelta(days=7), period_end=now,
    )  # fmt: skip
    text = " ".join(" ".join(p.extract_text().split()) for p in PdfReader(io.BytesIO(bytes(report.content))).pages)
    assert "Compliance by framework" in text
    assert "NIST SP 800-53 Rev. 5: 0 of 3 assessed met" in text  # CM-7 and CM-7(2) drift; AC-6: the exception
    assert "CIS Benchmark: 0 of 1 assessed met" in text
    assert "Act as part of the operating system" in text
    evidence = json.loads(bytes(report.evidence))
    rows = {(row["framework"], row["id"]): row for row in evidence["controls"]}
    assert (rows[("nist_800_53", "CM-7")]["status"], rows[("nist_800_53", "CM-7")]["failing"]) == ("not_met", 1)
    cis = rows[("cis", "2.2.4")]
    assert (cis["status"], cis["in_conflict"], cis["version"]) == ("exception", 1, "v4.0.0")
    assert cis["rules"] == ["user_right.se_tcb_privilege"]
    # the customer's report rolls up its own servers only: B's compliant deny does not count
    assert rows[("nist_800_53", "CM-7")]["compliant"] == 0


def test_a_failing_row_gives_its_reason_and_a_verify_only_one_says_harden_leaves_it(tenant_a) -> None:
    """The version check's row read "MailEnable Standard 9.83" and nothing else: which advisories, and that
    harden does not change it, were only on the server page."""
    reason = "MailEnable Standard 9.83 is affected by CVE-2025-44148, CVE-2022-42135; the minimum fixed build is 10.42"
    outcomes = [
        {
            "rule_id": "mailenable_version.advisories", "target": "MailEnable", "section": "s", "status": "drift",
            "expected_text": "No advisory affects this version", "observed_text": "MailEnable Standard 9.83",
            "expected": {"judge": "no_advisory_affects", "remedy": "Upgrade MailEnable."}, "reason": reason,
        },
        {
            "rule_id": "file_deny.system32.cmd_exe", "target": "cmd.exe", "section": "s", "status": "drift",
            "expected_text": "a deny", "observed_text": "no deny", "expected": {"judge": "x"}, "reason": "no deny",
        },
        {
            "rule_id": "file_deny.system32.ftp_exe", "target": "ftp.exe", "section": "s", "status": "compliant",
            "expected_text": "a deny", "observed_text": "denied", "reason": "UNSHOWN compliant reason",
        },
    ]  # fmt: skip
    ServerCompliance.objects.update_or_create(
        server=tenant_a.server,
        defaults={
            "verified_at": clock.now(),
            "profile_label": services.builtin_profile_sync().label,
            "outcomes": outcomes,
        },
    )
    now = clock.now()
    report = report_create(
        scope=MSP, actor=Actor.system("test"), customer=tenant_a.customer, fmt=ReportFormat.PDF,
        period_start=now - timedelta(days=7), period_end=now,
    )  # fmt: skip
    text = " ".join(" ".join(p.extract_text().split()) for p in PdfReader(io.BytesIO(bytes(report.content))).pages)
    assert "CVE-2025-44148, CVE-2022-42135; the minimum fixed build is 10.42" in text
    assert "(a check only: harden does not change it)" in text
    assert text.count("harden does not change it") == 1  # the guide's rule is harden's to fix
    assert "no deny: no deny" not in text  # a reason that repeats the observation is not printed twice
    assert "9.83: MailEnable Standard 9.83" not in text
    assert "UNSHOWN compliant reason" not in text
