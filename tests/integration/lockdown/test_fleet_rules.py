"""The fleet rule view: top failing rules and "servers failing rule X", scoped, honest, O(1) queries.

Only current results (the newest row per server, rule and target) of assessed servers count;
stale and not-assessed servers are said beside the figures. Customer A's users never count,
see or reach customer B's results.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from jobs.choices import HostRunState, JobKind, JobState
from jobs.models import HostRun, Job, RuleResult
from lockdown import clock
from servers.choices import ServerStatus, StaleReason
from servers.models import Customer, Server
from tests.factories import ServerFactory

pytestmark = pytest.mark.django_db

RULE = "file_acl.system32.cmd_exe"
OTHER = "user_right.ime_system.service_logon"
_SEQ = itertools.count()


def _server(customer: Customer, state: str = "assessed") -> Server:
    server: Server = ServerFactory(customer=customer, name=f"mx-{next(_SEQ):03d}")  # type: ignore[assignment]
    fields: dict[str, object] = {"status": ServerStatus.DRIFTED, "compliance_pct": 90.0}
    fields["last_verified_at"] = clock.now()
    if state == "stale":
        fields.update(results_stale_reason=StaleReason.ROLLBACK, results_stale_since=clock.now())
    elif state == "not_assessed":
        fields.update(status=ServerStatus.NOT_ASSESSED, compliance_pct=None, not_assessed_kind="authentication_failed")
    Server.objects.filter(pk=server.pk).update(**fields)
    server.refresh_from_db()
    return server


def _result(server: Server, status: str, *, rule_id: str = RULE, target: str = "C:\\Windows\\System32\\cmd.exe",
            age_days: int = 0) -> RuleResult:  # fmt: skip
    run = HostRun.objects.filter(server=server).first()
    if run is None:
        job = Job.objects.create(kind=JobKind.VERIFY, state=JobState.SUCCEEDED)
        run = HostRun.objects.create(
            job=job, server=server, server_name=server.name, customer=server.customer,
            customer_name=server.customer.name, state=HostRunState.SUCCEEDED,
        )  # fmt: skip
    return RuleResult.objects.create(
        server=server,
        host_run=run,
        rule_id=rule_id,
        target=target,
        section="File System Permissions (Access Denied)",
        status=status,
        expected_text="An explicit Deny ACE of 0x000200A9 for IME_SYSTEM (S-1-5-21-1-2-3-1001).",
        observed_text="effective 0x001200A9" if status == "drift" else "denied",
        reason="no explicit Deny ACE for the account's own SID",
        created_at=clock.now() - timedelta(days=age_days),
    )


@pytest.fixture
def fleet(tenant_a, tenant_b):
    """A: three assessed servers (RULE drifts on two, one of them on two targets), one stale and one
    not-assessed server that drifted on RULE before; B: two assessed servers drifting on RULE."""
    a1, a2, a3 = (_server(tenant_a.customer) for _ in range(3))
    _result(a1, "drift")
    _result(a1, "drift", target="C:\\Windows\\SysWOW64\\cmd.exe")
    _result(a2, "drift")
    _result(a3, "compliant")
    _result(a3, "drift", rule_id=OTHER, target="IME_SYSTEM")
    # An older drift of a3 on RULE, since fixed: only the newest row is current.
    _result(a3, "drift", age_days=3)
    _result(_server(tenant_a.customer, "stale"), "drift")
    _result(_server(tenant_a.customer, "not_assessed"), "drift")
    b1, b2 = _server(tenant_b.customer), _server(tenant_b.customer)
    _result(b1, "drift")
    _result(b2, "drift")
    return {"a": (a1, a2, a3), "b": (b1, b2)}


def _rule_row(body: str, rule_id: str) -> str:
    return body.split(f"<code>{rule_id}</code>")[1].split("</tr>")[0]


def test_msp_admin_sees_failing_servers_of_every_customer_counted_once_per_server(client, alice, fleet):
    client.force_login(alice)
    body = client.get(reverse("rule_list")).content.decode()
    row = _rule_row(body, RULE)
    # a1 (two targets) counts once; a3's old drift does not count; stale and not assessed are left out.
    assert "<strong>4</strong> of 5 assessed" in row
    assert "Tenant A Ltd: 2" in row
    assert "Tenant B Ltd: 2" in row
    # the never-verified servers of the tenants (2) and the one whose credential was rejected
    assert "not counted: 3 not assessed, 1 stale" in body


def test_a_customer_viewer_counts_only_their_customers_servers(client, cora, fleet, tenant_b):
    client.force_login(cora)
    body = client.get(reverse("rule_list")).content.decode()
    assert "<strong>2</strong> of 3 assessed" in _rule_row(body, RULE)
    assert tenant_b.customer.name not in body
    detail = client.get(reverse("rule_detail", kwargs={"rule_id": RULE})).content.decode()
    assert "<strong>2</strong> of 3 assessed" in detail
    assert not [s.name for s in fleet["b"] if s.name in detail]


def test_the_customer_filter_narrows_the_counts_and_another_tenants_customer_is_404(
    client, alice, cora, fleet, tenant_b
):
    client.force_login(alice)
    body = client.get(reverse("rule_list") + f"?customer={tenant_b.customer.pk}").content.decode()
    row = _rule_row(body, RULE)
    assert "<strong>2</strong> of 2 assessed" in row
    assert "Tenant A Ltd" not in row
    assert f"<code>{OTHER}</code>" not in body  # only A's server drifts on it
    client.force_login(cora)
    assert client.get(reverse("rule_list") + f"?customer={tenant_b.customer.pk}").status_code == 404
    url = reverse("rule_detail", kwargs={"rule_id": RULE}) + f"?customer={tenant_b.customer.pk}"
    assert client.get(url).status_code == 404


def test_rules_sort_by_failing_count_both_ways(client, alice, fleet):
    client.force_login(alice)
    most_first = client.get(reverse("rule_list")).content.decode()
    assert most_first.index(RULE) < most_first.index(OTHER)
    fewest_first = client.get(reverse("rule_list") + "?sort=failing").content.decode()
    assert fewest_first.index(OTHER) < fewest_first.index(RULE)


def test_rule_page_lists_each_drifted_target_in_words_with_waive_for_those_who_may_propose(client, carol, cora, fleet):
    a1, a2, a3 = fleet["a"]
    client.force_login(carol)
    body = client.get(reverse("rule_detail", kwargs={"rule_id": RULE})).content.decode()
    rows = body.split("<tbody>")[1].split("</tbody>")[0]
    assert rows.count("<tr") == 3  # a1's two targets and a2
    assert rows.count(">Waive…<") == 2  # once per server
    assert a1.name in rows
    assert a2.name in rows
    assert a3.name not in rows
    assert "effective Read &amp; execute" in rows
    assert "0x001200A9" not in rows
    assert "S-1-5-21" not in rows
    assert "account with RID 1001" in rows
    waive = reverse("server_waiver_propose", kwargs={"server_id": a2.pk}) + f"?rule={RULE}"
    assert waive in rows
    client.force_login(cora)
    assert "Waive…" not in client.get(reverse("rule_detail", kwargs={"rule_id": RULE})).content.decode()


def test_the_waive_link_opens_the_waiver_form_prefilled(client, carol, tenant_a):
    from tests.factories import TENANT_RULE_ID

    client.force_login(carol)
    url = reverse("server_waiver_propose", kwargs={"server_id": tenant_a.server.pk})
    form = client.get(url + f"?rule={TENANT_RULE_ID}").content.decode()
    assert f'value="{TENANT_RULE_ID}"' in form
    # A rule id outside the server's profile is not put in the form.
    assert 'value="file_acl.nope.x"' not in client.get(url + "?rule=file_acl.nope.x").content.decode()


def test_a_rule_only_another_customer_has_is_404(client, cora, tenant_b):
    server = _server(tenant_b.customer)
    _result(server, "drift", rule_id="file_acl.only_b.thing")
    client.force_login(cora)
    assert client.get(reverse("rule_detail", kwargs={"rule_id": "file_acl.only_b.thing"})).status_code == 404
    assert client.get(reverse("rule_detail", kwargs={"rule_id": "file_acl.no_such.rule"})).status_code == 404


def _queries(client, url: str) -> int:
    client.get(url)  # warm the session's time zone
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(captured.captured_queries)


def _grow(customer: Customer, count: int) -> None:
    for n in range(count):
        server = _server(customer)
        _result(server, "drift")
        _result(server, "drift", target="C:\\Windows\\SysWOW64\\cmd.exe")
        _result(server, "drift" if n % 2 else "compliant", rule_id=OTHER, target="IME_SYSTEM")
        # a rule of its own, failing on every third server: the Rules page grows with the fleet
        _result(server, "drift" if n % 3 == 0 else "compliant", rule_id=f"file_acl.extra.rule_{n:03d}", target="x")


@pytest.mark.parametrize("role", ["alice", "carol", "cora"])
def test_both_pages_cost_the_same_queries_for_3_and_30_servers(client, request, tenant_a, tenant_b, role):
    client.force_login(request.getfixturevalue(role))
    urls = {
        "rules": reverse("rule_list"),
        "rules sorted": reverse("rule_list") + "?sort=failing",
        "rules of A": reverse("rule_list") + f"?customer={tenant_a.customer.pk}",
        "rule page": reverse("rule_detail", kwargs={"rule_id": RULE}),
        "rule page of A": reverse("rule_detail", kwargs={"rule_id": RULE}) + f"?customer={tenant_a.customer.pk}",
    }
    _grow(tenant_a.customer, 3)
    _grow(tenant_b.customer, 1)
    small = {name: _queries(client, url) for name, url in urls.items()}
    _grow(tenant_a.customer, 27)
    _grow(tenant_b.customer, 10)
    large = {name: _queries(client, url) for name, url in urls.items()}
    assert small == large, f"query counts differ: 3 servers {small}, 30 servers {large}"
    print(f"\nfleet rule view query counts as {role}: {large}")
