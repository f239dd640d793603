"""/api/v1/ assignments as an integrator drives them: preview a tag assignment, apply it, read every
server's effective profile and where it comes from."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from django.test import Client

from api.tokens import token_issue
from lockdown.models import ProfileVersion, TagAssignment
from servers.audit import Actor
from servers.models import AuditEvent, Server, Tag
from servers.tenancy import scope_for_user
from tests.factories import ProfileFactory, ProfileVersionFactory, ServerFactory, TagFactory, sample_rule, stored_rules

pytestmark = pytest.mark.django_db


def _api(user, **kwargs: Any) -> Client:
    options = {"name": "psa", "days": 30, "read_only": False, "customer": None, **kwargs}
    secret = token_issue(scope=scope_for_user(user), actor=Actor(user=user), **options).secret
    return Client(HTTP_AUTHORIZATION=f"Bearer {secret}")


def _json(response, status: int) -> Any:
    assert response.status_code == status, response.content
    return response.json()


@pytest.fixture
def fleet(tenant_a, tenant_b):
    plesk = cast(Tag, TagFactory(name="plesk"))
    a2 = ServerFactory(customer=tenant_a.customer, name="mx-a-02")
    for server in (tenant_a.server, a2, tenant_b.server):
        server.tags.add(plesk)
    version = cast(
        ProfileVersion,
        ProfileVersionFactory(
            profile=ProfileFactory(slug="plesk-hardened", name="Plesk hardened"),
            rules=stored_rules([sample_rule("user_right.plesk.extra")]),
        ),
    )
    return plesk, a2, version


def test_an_integrator_previews_then_applies_a_tag_assignment_with_an_exclusion(alice, fleet, tenant_a) -> None:
    _, a2, version = fleet
    api = _api(alice)
    body = json.dumps({"tag": "plesk", "version": version.pk, "excluded": [a2.pk]})
    preview = _json(api.post("/api/v1/tag-assignments/?preview=true", body, content_type="application/json"), 200)
    assert preview["preview"] is True
    assert preview["assignment"] is None
    assert sorted(move["server_name"] for move in preview["moves"]) == ["mx-a-01", "mx-b-01"]
    move = next(m for m in preview["moves"] if m["server_name"] == "mx-a-01")
    assert move["before"]["level"] == "customer"
    assert (move["after"]["level"], move["after"]["tag"], move["after"]["version"]) == ("tag", "plesk", version.pk)
    assert not TagAssignment.objects.exists()
    assert not Server.objects.exclude(results_stale_reason="").exists()

    applied = _json(api.post("/api/v1/tag-assignments/", body, content_type="application/json"), 201)
    assert applied["preview"] is False
    assert [m["server_name"] for m in applied["moves"]] == [m["server_name"] for m in preview["moves"]]
    assert applied["assignment"]["excluded"] == [a2.pk]
    assert set(Server.objects.exclude(results_stale_reason="").values_list("name", flat=True)) == {
        "mx-a-01",
        "mx-b-01",
    }
    effective = _json(api.get(f"/api/v1/effective-profiles/?customer={tenant_a.customer.pk}"), 200)["results"]
    follows = {row["server_name"]: row["follows"] for row in effective}
    assert follows["mx-a-01"]["version_label"] == version.label
    assert follows["mx-a-02"]["excluded_from"] == ["plesk"]
    assert follows["mx-a-02"]["level"] == "customer"
    assert "(API token 'psa'" in AuditEvent.objects.get(action="tag_assignment.create").actor_name


def test_removing_it_previews_the_fallback_then_removes(alice, fleet) -> None:
    plesk, _, version = fleet
    saved = TagAssignment.objects.create(tag=plesk, version=version)
    api = _api(alice)
    preview = _json(api.delete(f"/api/v1/tag-assignments/{saved.pk}/?preview=true"), 200)
    assert sorted(m["after"]["level"] for m in preview["moves"]) == ["customer", "customer", "customer"]
    assert TagAssignment.objects.filter(pk=saved.pk).exists()
    assert len(_json(api.delete(f"/api/v1/tag-assignments/{saved.pk}/"), 200)["moves"]) == 3
    assert not TagAssignment.objects.exists()


def test_a_refusal_names_the_field_and_writes_nothing(alice, fleet, tenant_a, tenant_b) -> None:
    _, _, version = fleet
    api = _api(alice)
    outside = json.dumps(
        {"tag": "plesk", "customer": tenant_a.customer.pk, "version": version.pk, "excluded": [tenant_b.server.pk]}
    )
    refused = _json(api.post("/api/v1/tag-assignments/", outside, content_type="application/json"), 400)
    assert refused == {"excluded": "mx-b-01 not in this group (no tag plesk among Tenant A Ltd's servers)"}
    unknown = json.dumps({"tag": "nope", "version": version.pk})
    assert _json(api.post("/api/v1/tag-assignments/", unknown, content_type="application/json"), 400) == {
        "tag": "no tag nope"
    }
    assert not TagAssignment.objects.exists()


def test_a_customer_token_sees_its_own_tag_assignments_only_and_may_not_write(carol, fleet, tenant_a, tenant_b) -> None:
    plesk, _, version = fleet
    own = TagAssignment.objects.create(tag=plesk, customer=tenant_a.customer, version=version)
    theirs = TagAssignment.objects.create(tag=plesk, customer=tenant_b.customer, version=version)
    fleet_wide = TagAssignment.objects.create(tag=cast(Tag, TagFactory(name="eu")), version=version)
    api = _api(carol)
    listed = [row["id"] for row in _json(api.get("/api/v1/tag-assignments/"), 200)["results"]]
    assert listed == [own.pk]
    assert api.get(f"/api/v1/tag-assignments/{theirs.pk}/").status_code == 404
    assert api.get(f"/api/v1/tag-assignments/{fleet_wide.pk}/").status_code == 404
    assert api.delete(f"/api/v1/tag-assignments/{own.pk}/?preview=true").status_code == 403
    body = json.dumps({"version": version.pk})
    assert api.post("/api/v1/fleet-default/set/?preview=true", body, content_type="application/json").status_code == 403


def test_the_msp_default_is_set_through_the_api(alice, tenant_a, fleet) -> None:
    _, _, version = fleet
    tenant_a.customer.default_profile_version = None
    tenant_a.customer.save()
    api = _api(alice)
    body = json.dumps({"version": version.pk})
    changed = _json(api.post("/api/v1/fleet-default/set/", body, content_type="application/json"), 200)
    assert changed["default"] == {"version": version.pk, "version_label": version.label}
    assert sorted(m["server_name"] for m in changed["moves"]) == ["mx-a-01", "mx-a-02"]
    assert _json(api.get("/api/v1/fleet-default/"), 200)["version"] == version.pk
