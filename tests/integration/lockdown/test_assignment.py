"""Assignment: the hierarchy (server pin → tag → customer → MSP default → built-in), its preview and its pages."""

from __future__ import annotations

from typing import cast

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from jobs.choices import JobKind, JobState
from jobs.models import HostRun, Job, ServerCompliance
from lockdown import assignment, clock, selectors, services
from lockdown.models import ProfileVersion, TagAssignment
from servers.audit import Actor
from servers.models import AuditEvent, Server, Tag
from servers.tenancy import scope_for_user
from tests.factories import (
    CustomerFactory,
    ProfileFactory,
    ProfileVersionFactory,
    ServerFactory,
    TagFactory,
    sample_rule,
    stored_rules,
)

pytestmark = pytest.mark.django_db


def test_effective_version_falls_back_from_server_to_customer_to_builtin(tenant_a) -> None:
    server, customer = tenant_a.server, tenant_a.customer
    builtin = selectors.latest_builtin_version()
    assert builtin is not None
    assert selectors.effective_profile_version(server) == customer.default_profile_version
    pinned = cast(ProfileVersion, ProfileVersionFactory(profile=ProfileFactory(slug="pinned")))
    server.profile_version = pinned
    server.save()
    assert selectors.effective_profile_version(server) == pinned
    server.profile_version = None
    server.save()
    customer.default_profile_version = None
    customer.save()
    server.refresh_from_db()
    assert selectors.effective_profile_version(server) == builtin


def test_the_builtin_fallback_is_its_latest_version(tenant_a) -> None:
    builtin = selectors.latest_builtin_version()
    assert builtin is not None
    newer = cast(
        ProfileVersion,
        ProfileVersionFactory(
            profile=builtin.profile, number=2, rules=stored_rules([sample_rule("user_right.only_one_rule")])
        ),
    )
    tenant_a.customer.default_profile_version = None
    tenant_a.customer.save()
    tenant_a.server.refresh_from_db()
    assert selectors.effective_profile_version(tenant_a.server) == newer


def test_admin_assigns_a_customer_default_and_it_is_audited(client, alice, tenant_a) -> None:
    builtin = selectors.latest_builtin_version()
    assert builtin is not None
    client.force_login(alice)
    url = reverse("customer_profile_assign", kwargs={"customer_id": tenant_a.customer.pk})
    response = client.post(url, {"version": builtin.pk})
    assert response.status_code == 302
    tenant_a.customer.refresh_from_db()
    assert tenant_a.customer.default_profile_version == builtin
    event = AuditEvent.objects.get(action="customer.assign_profile")
    assert event.actor == alice
    assert event.changes == {
        "default_profile_version": ["tenant-a-baseline v1", "mailenable-hardened v1"],
        "servers_moved": [None, 1],  # its one server without a pin of its own
    }


def test_admin_pins_and_unpins_a_server_and_both_are_audited(client, alice, tenant_a) -> None:
    builtin = selectors.latest_builtin_version()
    assert builtin is not None
    client.force_login(alice)
    url = reverse("server_profile_assign", kwargs={"server_id": tenant_a.server.pk})
    assert client.post(url, {"version": builtin.pk}).status_code == 302
    tenant_a.server.refresh_from_db()
    assert tenant_a.server.profile_version == builtin
    assert client.post(url, {"version": ""}).status_code == 302
    tenant_a.server.refresh_from_db()
    assert tenant_a.server.profile_version is None
    changes = list(
        AuditEvent.objects.filter(action="server.assign_profile").order_by("id").values_list("changes", flat=True)
    )
    assert changes == [
        {"profile_version": [None, "mailenable-hardened v1"], "servers_moved": [None, 1]},
        {"profile_version": ["mailenable-hardened v1", None], "servers_moved": [None, 1]},
    ]


@pytest.mark.parametrize("role", ["msp_operator", "customer_operator"])
def test_only_msp_admins_assign(client, make_role_user, tenant_a, role: str) -> None:
    builtin = selectors.latest_builtin_version()
    assert builtin is not None
    client.force_login(make_role_user(role))
    url = reverse("server_profile_assign", kwargs={"server_id": tenant_a.server.pk})
    assert client.post(url, {"version": builtin.pk}).status_code == 403
    tenant_a.server.refresh_from_db()
    assert tenant_a.server.profile_version is None


def test_server_page_shows_the_effective_version(client, cora, tenant_a) -> None:
    client.force_login(cora)
    body = client.get(reverse("server_detail", kwargs={"server_id": tenant_a.server.pk})).content.decode()
    assert "Tenant A Ltd baseline version 1" in body
    assert "the customer&#x27;s default" in body


# --- The hierarchy: MSP default → customer → tag → server, with exclusions and blocks ---------
def _version(slug: str, *rule_ids: str) -> ProfileVersion:
    rules = stored_rules([sample_rule(rule_id) for rule_id in rule_ids])
    return cast(ProfileVersion, ProfileVersionFactory(profile=ProfileFactory(slug=slug, name=slug), rules=rules))


def _verified(server: Server, version: ProfileVersion, statuses: dict[str, str]) -> None:
    """`server` verified against `version`: one outcome per rule id, with the status given."""
    from tests.unit.lockdown.test_assignment_resolve import _outcome

    outcomes = [_outcome(rule_id, status) for rule_id, status in statuses.items()]
    run = HostRun.objects.create(
        job=Job.objects.create(kind=JobKind.VERIFY, state=JobState.SUCCEEDED),
        server=server,
        server_name=server.name,
        customer=server.customer,
        customer_name=server.customer.name,
    )
    ServerCompliance.objects.create(
        server=server, host_run=run, verified_at=clock.now(), profile_label=version.label, outcomes=outcomes
    )
    Server.objects.filter(pk=server.pk).update(compliance_pct=50.0)


@pytest.fixture
def plesk_fleet(tenant_a, tenant_b):
    """Customer A: two plesk servers, a third to exclude, one without the tag; customer B: one plesk server.
    Every server follows its customer's default until the tag is assigned."""
    plesk = TagFactory(name="plesk")
    a_default = tenant_a.customer.default_profile_version
    servers = {
        "a1": tenant_a.server,
        "a2": ServerFactory(customer=tenant_a.customer, name="mx-a-02"),
        "a3": ServerFactory(customer=tenant_a.customer, name="mx-a-03"),
        "a4": ServerFactory(customer=tenant_a.customer, name="mx-a-04"),
        "b1": tenant_b.server,
    }
    for key in ("a1", "a2", "a3", "b1"):
        servers[key].tags.add(plesk)
    rule_id = a_default.rules[0]["id"]
    _verified(servers["a1"], a_default, {rule_id: "compliant"})
    _verified(servers["a2"], a_default, {rule_id: "drift"})
    return plesk, servers


def _following(servers: dict[str, Server]) -> dict[str, str]:
    found = assignment.effective_for(Server.objects.filter(pk__in=[s.pk for s in servers.values()]))
    return {key: found[s.pk].version.label for key, s in servers.items() if found[s.pk].version}


def test_a_tag_assignment_is_previewed_then_applied_to_exactly_its_servers_and_an_exclusion_keeps_one(
    client, alice, plesk_fleet, tenant_a
) -> None:
    plesk, servers = plesk_fleet
    before = _following(servers)
    a_default = tenant_a.customer.default_profile_version
    # The new version keeps the customer default's rule unchanged and adds one: carried results, 1 to verify.
    hardened = _version("plesk-hardened", a_default.rules[0]["id"], "user_right.plesk.extra")
    client.force_login(alice)
    form = {
        "tag": plesk.pk,
        "customer": "",
        "version": hardened.pk,
        "precedence": 100,
        "excluded": [servers["a3"].pk],
    }
    url = reverse("tag_assignment_create")
    page = client.post(url, {**form, "confirm": "preview"})
    assert page.status_code == 200
    moves = page.context["moves"]
    assert sorted(move.server.name for move in moves) == ["mx-a-01", "mx-a-02", "mx-b-01"]
    predicted = {move.server.name: move.predicted for move in moves}
    assert (predicted["mx-a-01"].percent, predicted["mx-a-01"].to_verify) == (100.0, 1)
    assert (predicted["mx-a-02"].percent, predicted["mx-a-02"].to_verify) == (0.0, 1)
    assert predicted["mx-b-01"].never_verified
    body = page.content.decode()
    assert "3 servers would change profile" in body
    assert "Apply: 3 servers change profile" in body
    # The preview wrote nothing: no assignment, no stale mark, the same versions.
    assert not TagAssignment.objects.exists()
    assert not Server.objects.exclude(results_stale_reason="").exists()
    assert _following(servers) == before

    assert client.post(url, {**form, "confirm": "apply"}).status_code == 302
    after = _following(servers)
    assert after == {**before, "a1": hardened.label, "a2": hardened.label, "b1": hardened.label}
    stale = set(Server.objects.exclude(results_stale_reason="").values_list("name", flat=True))
    assert stale == {"mx-a-01", "mx-a-02", "mx-b-01"}
    event = AuditEvent.objects.get(action="tag_assignment.create")
    assert event.actor == alice
    assert event.changes["servers_moved"] == [None, 3]
    assert event.changes["assignment"][1]["excluded"] == ["mx-a-03"]
    listing = client.get(reverse("assignment_list")).content.decode()
    assert "the customer&#x27;s default; excluded from tag plesk" in listing
    assert "tag plesk (all customers)" in listing


def test_removing_the_exclusion_moves_only_the_excluded_server(client, alice, plesk_fleet) -> None:
    plesk, servers = plesk_fleet
    hardened = _version("plesk-hardened", "user_right.plesk.extra")
    saved = TagAssignment.objects.create(tag=plesk, version=hardened)
    saved.excluded_servers.add(servers["a3"])
    client.force_login(alice)
    url = reverse("tag_assignment_edit", args=[saved.pk])
    form = {"tag": plesk.pk, "customer": "", "version": hardened.pk, "precedence": 100}
    moves = client.post(url, {**form, "confirm": "preview"}).context["moves"]
    assert [move.server.name for move in moves] == ["mx-a-03"]
    assert client.post(url, {**form, "confirm": "apply"}).status_code == 302
    assert _following(servers)["a3"] == hardened.label


def test_a_customers_own_tag_assignment_reaches_only_its_servers(alice, plesk_fleet, tenant_a) -> None:
    plesk, _ = plesk_fleet
    own = _version("acme-plesk", "user_right.acme.only")
    spec = services.TagAssignmentSpec(tag=plesk, customer=tenant_a.customer, version=own, precedence=100)
    _, moves = services.tag_assignment_save(scope=scope_for_user(alice), actor=Actor.system("test"), spec=spec)
    assert sorted(move.server.name for move in moves) == ["mx-a-01", "mx-a-02", "mx-a-03"]


def test_excluding_a_server_outside_the_group_is_refused_on_the_field(client, alice, plesk_fleet, tenant_a) -> None:
    plesk, servers = plesk_fleet
    client.force_login(alice)
    form = {"tag": plesk.pk, "customer": tenant_a.customer.pk, "version": _version("x", "user_right.x").pk}
    chosen = {**form, "precedence": 1, "excluded": [servers["b1"].pk], "confirm": "apply"}
    page = client.post(reverse("tag_assignment_create"), chosen)
    assert page.status_code == 400
    assert page.context["form"].errors["excluded"] == [
        "mx-b-01 not in this group (no tag plesk among Tenant A Ltd's servers)"
    ]
    assert not TagAssignment.objects.exists()


def test_the_msp_default_reaches_customers_without_a_default_unless_they_block_it(
    client, alice, tenant_a, tenant_b
) -> None:
    msp = _version("msp-baseline", "user_right.msp.one")
    for tenant in (tenant_a, tenant_b):
        tenant.customer.default_profile_version = None
        tenant.customer.save()
    tenant_b.customer.block_inheritance = True
    tenant_b.customer.save()
    client.force_login(alice)
    preview = client.post(reverse("fleet_default_edit"), {"version": msp.pk, "confirm": "preview"})
    assert [move.server.name for move in preview.context["moves"]] == [tenant_a.server.name]
    assert client.post(reverse("fleet_default_edit"), {"version": msp.pk, "confirm": "apply"}).status_code == 302
    assert selectors.effective_profile_version(tenant_a.server) == msp
    followed = assignment.effective(tenant_b.server)
    assert followed.version == selectors.latest_builtin_version()
    assert followed.source_text == "the built-in profile's latest version: the customer blocks the MSP default"
    assert AuditEvent.objects.get(action="fleet.assign_profile").changes == {
        "default_profile_version": [None, msp.label],
        "servers_moved": [None, 1],
    }


def test_a_server_that_blocks_inheritance_follows_the_builtin(client, alice, plesk_fleet) -> None:
    plesk, servers = plesk_fleet
    TagAssignment.objects.create(tag=plesk, version=_version("plesk-hardened", "user_right.plesk.extra"))
    client.force_login(alice)
    url = reverse("server_profile_assign", args=[servers["a1"].pk])
    assert client.post(url, {"version": "", "block_inheritance": "on"}).status_code == 302
    followed = assignment.effective(servers["a1"])
    assert followed.version == selectors.latest_builtin_version()
    assert followed.source_text == "the built-in profile's latest version: this server blocks inheritance"
    page = client.get(reverse("server_detail", args=[servers["a1"].pk])).content.decode()
    assert "this server blocks inheritance" in page


@pytest.mark.parametrize("role", ["msp_operator", "customer_operator"])
def test_only_msp_admins_assign_tags_or_the_msp_default(client, make_role_user, plesk_fleet, role: str) -> None:
    plesk, _ = plesk_fleet
    client.force_login(make_role_user(role))
    form = {"tag": plesk.pk, "version": _version("x", "user_right.x").pk, "precedence": 1, "confirm": "apply"}
    assert client.post(reverse("tag_assignment_create"), form).status_code == 403
    assert client.post(reverse("fleet_default_edit"), {"version": "", "confirm": "apply"}).status_code == 403
    assert not TagAssignment.objects.exists()


def test_a_customer_user_sees_what_reaches_its_servers_not_the_msps_assignments(
    client, carol, plesk_fleet, tenant_b
) -> None:
    plesk, _ = plesk_fleet
    TagAssignment.objects.create(tag=plesk, customer=tenant_b.customer, version=_version("globex-only", "user_right.g"))
    client.force_login(carol)
    page = client.get(reverse("assignment_list")).content.decode()
    assert "mx-a-01" in page
    assert "mx-b-01" not in page
    assert "globex-only" not in page
    assert "Server groups by tag" not in page


def test_effective_profiles_cost_the_same_queries_for_3_and_30_servers(tenant_a) -> None:
    tag = cast(Tag, TagFactory(name="grouped"))
    TagAssignment.objects.create(tag=tag, version=_version("grouped", "user_right.grouped"))

    def count(n: int) -> int:
        Server.objects.exclude(pk=tenant_a.server.pk).delete()
        for index in range(n - 1):
            server = ServerFactory(customer=tenant_a.customer if index % 2 else CustomerFactory())
            server.tags.add(tag)
        with CaptureQueriesContext(connection) as queries:
            found = assignment.effective_for(Server.objects.all())
        assert len(found) == n
        return len(queries)

    assert count(3) == count(30)


def test_a_customer_user_sees_the_profiles_its_tags_bring_and_not_another_customers(
    client, carol, plesk_fleet, tenant_b
) -> None:
    plesk, _ = plesk_fleet
    fleet_wide = _version("plesk-everyone", "user_right.everyone")
    theirs = _version("globex-plesk", "user_right.globex")
    TagAssignment.objects.create(tag=plesk, version=fleet_wide)
    TagAssignment.objects.create(tag=plesk, customer=tenant_b.customer, version=theirs)
    scope = scope_for_user(carol)
    visible = set(selectors.visible_profiles(scope=scope).values_list("slug", flat=True))
    assert "plesk-everyone" in visible
    assert "globex-plesk" not in visible
    client.force_login(carol)
    assert client.get(reverse("profile_detail", args=[theirs.profile_id])).status_code == 404
