"""A drifted verify-only check (the current baseline's additions) says that harden leaves it, and how to fix it.

Such a rule's outcome carries its `remedy` in `expected` (lockdown.rules.compile); the guide's rules carry
none. The server page and the harden preview showed both kinds alike, so a version below the advisories'
fixed build read as something Harden would change.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from jobs import selectors
from jobs.models import ServerCompliance
from lockdown import clock, services
from lockdown.templatetags.lockdown_tags import breakable

pytestmark = pytest.mark.django_db

REMEDY = "Upgrade MailEnable to at least the minimum fixed build the row names, then verify again."
VERSION_RULE = "mailenable_version.advisories"
GUIDE_RULE = "file_deny.system32.cmd_exe"


def _outcome(rule_id: str, status: str, **expected: Any) -> dict[str, Any]:
    return {
        "rule_id": rule_id,
        "target": "MailEnable" if rule_id == VERSION_RULE else r"C:\Windows\System32\cmd.exe",
        "section": "Current baseline — version and advisories" if rule_id == VERSION_RULE else "Deny",
        "status": status,
        "action": "none",
        "expected_text": "expected",
        "expected": {"judge": "x", **expected},
        "observed_text": "MailEnable Standard 9.83" if rule_id == VERSION_RULE else "no deny",
        "observed": {},
        "reason": "MailEnable Standard 9.83 is affected by CVE-2022-42135" if rule_id == VERSION_RULE else "no deny",
        "risk": "high",
    }


@pytest.fixture
def drifted(tenant_a):
    ServerCompliance.objects.update_or_create(
        server=tenant_a.server,
        defaults={
            "verified_at": clock.now(),
            "profile_label": services.builtin_profile_sync().label,
            "outcomes": [_outcome(VERSION_RULE, "drift", remedy=REMEDY), _outcome(GUIDE_RULE, "drift")],
        },
    )
    return tenant_a.server


def _row(page: str, rule_id: str) -> str:
    start = page.index(rule_id)
    return page[start : page.index("</tr>", start)]


def test_the_server_page_says_harden_leaves_a_verify_only_check_and_how_to_fix_it(client, alice, drifted) -> None:
    client.force_login(alice)
    page = client.get(reverse("server_detail", args=[drifted.pk]), {"show": "problems"}).content.decode()
    version_row = _row(page, breakable(VERSION_RULE))
    assert "Harden does not change this: fix it by hand." in version_row
    assert REMEDY in version_row
    assert "fix it by hand" not in _row(page, breakable(GUIDE_RULE))


def test_the_harden_preview_marks_the_checks_it_will_not_change(client, alice, drifted) -> None:
    client.force_login(alice)
    page = client.get(reverse("server_harden", args=[drifted.pk])).content.decode()
    version_row = _row(page, breakable(VERSION_RULE))
    assert REMEDY in version_row
    assert page.index("Not changed by harden") < page.index(breakable(VERSION_RULE))  # listed under that heading
    assert page.index(breakable(GUIDE_RULE)) < page.index("Not changed by harden")  # the change is listed above
    assert REMEDY not in _row(page, breakable(GUIDE_RULE))
    # long registry paths wrap between keys instead of widening the table past the card
    assert breakable(r"C:\Windows\System32\cmd.exe") in page


def test_the_preview_counts_only_what_harden_changes(client, alice, drifted) -> None:
    client.force_login(alice)
    page = client.get(reverse("server_harden", args=[drifted.pk])).content.decode()
    assert "<strong>1</strong> check in drift would be changed" in page  # the guide's deny, not the version
    assert "1 check in drift to fix by hand" in page
    fix = page[page.index('id="fix-by-hand"') :]
    assert breakable(VERSION_RULE) in fix
    assert breakable(GUIDE_RULE) not in fix
    preview = selectors.fleet_preview([drifted])
    assert preview.changes == 1
