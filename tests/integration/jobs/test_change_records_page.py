"""The server page renders change records paginated and truncated; the CSV download has them all in
full (security-audit-2026-12, lower: "the server page renders every change record in full")."""

from __future__ import annotations

import csv
import io

import pytest
from django.urls import reverse

from jobs.choices import JobKind
from jobs.models import ChangeRecord, HostRun, Job, ServerCompliance
from lockdown import clock

pytestmark = pytest.mark.django_db
RULE = "file_acl.system32.activeds_dll"
TARGET = "C:\\Windows\\System32\\activeds.dll"


def _history(server, n: int) -> list[str]:
    job = Job.objects.create(kind=JobKind.HARDEN)
    run = HostRun.objects.create(job=job, server=server, server_name=server.name, customer=server.customer,
                                 customer_name=server.customer.name, state="succeeded")  # fmt: skip
    afters = ["O:BAD:P(A;;FA;;;SY)" + f"(A;;0x1200a9;;;S-1-5-21-1-2-3-{1000 + i})" * 40 for i in range(n)]
    ChangeRecord.objects.bulk_create(
        ChangeRecord(
            server=server,
            host_run=run,
            seq=i,
            rule_id=RULE,
            target=TARGET,
            target_kind="file",
            before="O:BAD:P(A;;FA;;;SY)",
            after=afters[i],
            created_at=clock.now(),
        )
        for i in range(n)
    )
    ServerCompliance.objects.create(
        server=server, host_run=run, verified_at=clock.now(), profile_label="p", summary={}, outcomes=[
            {"rule_id": RULE, "target": TARGET, "section": "File ACLs", "status": "compliant", "action": "none",
             "expected_text": "", "observed_text": "", "reason": "", "risk": "low"}
        ],
    )  # fmt: skip
    return afters


def test_the_page_shows_the_newest_few_truncated_and_the_download_every_one_in_full(client, alice, tenant_a):
    afters = _history(tenant_a.server, 30)
    client.force_login(alice)
    page = client.get(reverse("server_detail", args=[tenant_a.server.pk])).content.decode()
    assert page.count("after: <code>") == 5
    assert not any(after in page for after in afters)  # each is cut (about 2,000 characters)
    assert "5 of 30 changes shown" in page
    response = client.get(reverse("server_changes_download", args=[tenant_a.server.pk]))
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 30
    assert sorted(r["after"] for r in rows) == sorted(afters)
