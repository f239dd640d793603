"""The Controls page and its rollup (issue 14): compliance by framework and control, scoped by customer."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from jobs.models import ServerCompliance
from lockdown import clock, services
from lockdown.control_rollup import ControlStatus, controls_rollup
from lockdown.models import ProfileVersion
from lockdown.rules.controls import Framework
from lockdown.templatetags.lockdown_tags import breakable
from servers.models import Server
from tests.factories import ServerFactory

pytestmark = pytest.mark.django_db

CMD = "file_deny.system32.cmd_exe"
ACL = "registry_acl.mail_enable"
TCB = "user_right.se_tcb_privilege"
MEMTAS = "service_identity.memtas"
USER = "local_user.ime_system"


def _verified(server: Server, label: str, statuses: dict[str, str]) -> None:
    outcomes: list[dict[str, Any]] = [
        {"rule_id": rule_id, "target": "t", "section": "s", "status": status} for rule_id, status in statuses.items()
    ]
    ServerCompliance.objects.update_or_create(
        server=server, defaults={"verified_at": clock.now(), "profile_label": label, "outcomes": outcomes}
    )


@pytest.fixture
def fleet(tenant_a, tenant_b):
    label = services.builtin_profile_sync().label
    _verified(
        tenant_a.server,
        label,
        {CMD: "compliant", ACL: "drift", TCB: "compliant", MEMTAS: "waived", USER: "needs_input"},
    )
    _verified(
        tenant_b.server,
        label,
        {CMD: "drift", ACL: "compliant", TCB: "not_applicable", MEMTAS: "compliant", USER: "compliant"},
    )
    return tenant_a, tenant_b


def _row(rollup, framework: Framework, control_id: str):
    found = rollup.framework(framework)
    assert found is not None, f"no {framework} in the rollup"
    return next(row for row in found.controls if row.ref.id == control_id)


def test_the_fleet_rollup_counts_each_control_over_every_server(fleet) -> None:
    a, b = fleet
    rollup = controls_rollup(Server.objects.all())
    assert rollup.servers == 2
    cm7 = _row(rollup, Framework.NIST_800_53, "CM-7")  # the tool denies
    assert (cm7.compliant, cm7.failing, cm7.percent, cm7.status) == (1, 1, 50.0, ControlStatus.NOT_MET)
    assert cm7.failing_servers == {b.server.pk}
    assert cm7.rules == {CMD}
    iso = _row(rollup, Framework.ISO_27001, "A.8.18")
    assert (iso.compliant, iso.failing) == (1, 1)
    # CIS 2.2.4 forbids what the guide grants: in force on A (an exception), not applicable on B
    cis = _row(rollup, Framework.CIS, "2.2.4")
    assert (cis.in_conflict, cis.conflict_servers, cis.not_applicable) == (1, {a.server.pk}, 1)
    assert (cis.compliant, cis.failing, cis.percent, cis.status) == (0, 0, None, ControlStatus.EXCEPTION)
    assert cis.results_text == "1 in conflict, 1 not applicable"
    assert cm7.results_text == "1 compliant, 1 failing"
    assert _row(rollup, Framework.STIG, "WN22-UR-000020").status is ControlStatus.EXCEPTION
    # one AC-6 row, whichever rules support it (MEMTAS: waived on A, compliant on B) or conflict (SeTcb on A)
    ac6 = [row for row in rollup.framework(Framework.NIST_800_53).controls if row.ref.id == "AC-6"]
    assert len(ac6) == 1
    assert (ac6[0].waived, ac6[0].in_conflict, ac6[0].status) == (1, 1, ControlStatus.EXCEPTION)
    assert {TCB, MEMTAS, ACL} <= ac6[0].rules
    # waived and needs-input results are shown, not counted: A.8.2 is met by what counts
    a82 = _row(rollup, Framework.ISO_27001, "A.8.2")
    assert (a82.compliant, a82.failing, a82.waived, a82.needs_input) == (2, 0, 1, 1)
    assert (a82.percent, a82.status) == (100.0, ControlStatus.MET)
    # rules judged by no server stay out: nothing verified SeCreateTokenPrivilege
    assert "2.2.15" not in [row.ref.id for row in rollup.framework(Framework.CIS).controls]
    cis_ids = [row.ref.id for row in rollup.framework(Framework.CIS).controls]
    assert cis_ids == sorted(cis_ids, key=lambda i: [int(p) for p in i.split(".")])


def test_one_customers_servers_roll_up_alone(fleet) -> None:
    a, _ = fleet
    rollup = controls_rollup(Server.objects.filter(customer=a.customer))
    cm7 = _row(rollup, Framework.NIST_800_53, "CM-7")
    assert (cm7.compliant, cm7.failing, cm7.status) == (1, 0, ControlStatus.MET)
    cm6 = _row(rollup, Framework.NIST_800_53, "CM-6")
    assert (cm6.compliant, cm6.failing, cm6.status) == (0, 1, ControlStatus.NOT_MET)


def test_a_result_judged_by_a_custom_profile_without_mappings_is_reported_unmapped(fleet) -> None:
    a, _ = fleet
    _verified(a.server, "no-such v1", {CMD: "drift"})
    rollup = controls_rollup(Server.objects.filter(pk=a.server.pk))
    assert rollup.frameworks == []
    assert rollup.unmapped_rules == {CMD}


def test_the_rollup_reads_in_constant_queries(fleet, tenant_a) -> None:
    label = services.builtin_profile_sync().label
    with CaptureQueriesContext(connection) as few:
        controls_rollup(Server.objects.all())
    for index in range(5):
        _verified(ServerFactory(customer=tenant_a.customer, name=f"mx-a-{index + 10}"), label, {CMD: "drift"})
    with CaptureQueriesContext(connection) as many:
        controls_rollup(Server.objects.all())
    assert len(many) == len(few)


def test_the_page_shows_the_statuses_and_sources_an_auditor_reads(client, alice, fleet) -> None:
    client.force_login(alice)
    page = client.get(reverse("control_list")).content.decode()
    assert "NIST SP 800-53 Rev. 5" in page
    assert "ISO/IEC 27001:2022 Annex A" in page
    assert "CIS Microsoft Windows Server 2022 Benchmark v4.0.0" in page
    assert "Exception" in page
    assert "Not met" in page
    assert 'href="https://github.com/ansible-lockdown/Windows-2022-CIS/' in page
    only_iso = client.get(reverse("control_list"), {"framework": "iso_27001"}).content.decode()
    assert "ISO/IEC 27001:2022 Annex A" in only_iso
    assert "NIST SP 800-53 Rev. 5</h2>" not in only_iso


def test_a_customer_user_sees_its_own_servers_whatever_customer_it_asks_for(client, carol, fleet) -> None:
    a, b = fleet
    client.force_login(carol)
    for query in ({}, {"customer": b.customer.pk}, {"customer": "99999999999999999999"}):
        response = client.get(reverse("control_list"), query)
        assert response.status_code == 200
        page = response.content.decode()
        assert "1 server" in page
        assert b.customer.name not in page
        assert b.server.name not in page
    mine = client.get(reverse("control_list"), {"customer": a.customer.pk}).content.decode()
    assert f"of {a.customer.name}" in mine


def test_the_server_page_and_the_version_page_name_each_rules_controls(client, alice, fleet) -> None:
    a, _ = fleet
    client.force_login(alice)
    page = client.get(reverse("server_detail", args=[a.server.pk])).content.decode()
    tcb_row = page[page.index(breakable(TCB)) :]
    tcb_row = tcb_row[: tcb_row.index("</details>")]
    assert "CIS 2.2.4</a> <strong>(conflicts)</strong>" in tcb_row
    assert "STIG WN22-UR-000020" in tcb_row
    version = services.builtin_profile_sync()
    rules = client.get(reverse("version_detail", args=[version.profile_id, version.number])).content.decode()
    deny = rules[rules.index(CMD) :]
    assert "NIST CM-7(2)</a>" in deny[: deny.index("</tr>")]


def test_results_judged_before_a_rule_gained_its_mappings_show_the_latest_versions_mappings(tenant_a) -> None:
    """A version that only adds mappings judges alike: the older results count for its controls at once;
    a rule the latest version changed keeps the mappings (none) of the version that judged it."""
    from lockdown.exchange import document_content
    from lockdown.rules import load_builtin_profile

    current = services.builtin_profile_sync()
    shipped = load_builtin_profile()
    rules, _ = document_content(shipped)
    bare = [{k: v for k, v in rule.items() if k != "controls"} for rule in rules]
    changed = next(i for i, rule in enumerate(bare) if rule["id"] == ACL)
    bare[changed] = {**bare[changed], "expected": "Something else, judged otherwise."}
    older = ProfileVersion.objects.create(
        profile=current.profile, number=current.number + 1, rules=bare, notes=[], content_hash="older"
    )
    newest = ProfileVersion.objects.create(
        profile=current.profile, number=current.number + 2, rules=rules, notes=[], content_hash="newest"
    )
    assert newest.number > older.number
    _verified(tenant_a.server, older.label, {CMD: "drift", ACL: "drift"})
    rollup = controls_rollup(Server.objects.all())
    assert _row(rollup, Framework.NIST_800_53, "CM-7").failing == 1  # CMD: judged alike, mapped by the latest
    assert rollup.unmapped_rules == {ACL}  # changed since: the older version's (absent) mappings


def test_the_page_says_of_how_many_servers_a_control_was_checked_on(client, alice, fleet) -> None:
    """Servers judged by profiles with different rules share the page (the guide's and the current baseline):
    a control only some of them check reads "1 of 3", not a bare "1" beside rows of "3"."""
    a, _ = fleet
    _verified(
        ServerFactory(customer=a.customer, name="mx-a-only-cmd"), services.builtin_profile_sync().label, {CMD: "drift"}
    )
    rollup = controls_rollup(Server.objects.all())
    everywhere = _row(rollup, Framework.NIST_800_53, "CM-7(2)")  # the cmd.exe deny: judged on all three
    partial = next(
        row for f in rollup.frameworks for row in f.controls if CMD not in row.rules and len(row.servers) == 2
    )
    assert len(everywhere.servers) == 3
    client.force_login(alice)
    page = client.get(reverse("control_list")).content.decode()

    def servers_cell(control_id: str) -> str:
        row = page[page.index(f"<strong>{control_id}</strong>") :]
        return row[: row.index("</tr>")].split("<td>")[4]

    assert servers_cell(everywhere.ref.id).startswith("3 of 3")
    assert servers_cell(partial.ref.id).startswith("2 of 3")
