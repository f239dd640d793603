"""/api/v1/profiles/ and /profile-versions/: the library as the pages show it, export and import (issue 15)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings

from api.tokens import token_issue
from lockdown import services
from lockdown.models import Profile, ProfileVersion
from lockdown.rules.builtin import BASELINE_SLUG
from lockdown.selectors import version_document
from servers.audit import Actor
from servers.models import AuditEvent
from servers.tenancy import scope_for_user
from tests.factories import TENANT_RULE_ID, ProfileFactory, ProfileVersionFactory, sample_rule, stored_rules

pytestmark = pytest.mark.django_db


@pytest.fixture
def builtin_profile() -> Profile:
    return services.builtin_profile_sync().profile


def _api(user, **kwargs: Any) -> Client:
    options = {"name": "gitops", "days": 30, "read_only": False, "customer": None, **kwargs}
    secret = token_issue(scope=scope_for_user(user), actor=Actor(user=user), **options).secret
    return Client(HTTP_AUTHORIZATION=f"Bearer {secret}")


def _json(response, status: int) -> Any:
    assert response.status_code == status, response.content
    return response.json()


def _upload(api: Client, document: dict[str, Any] | bytes, name: str = "profile.json"):
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    return api.post("/api/v1/profiles/import/", {"file": SimpleUploadedFile(name, raw)})


def test_export_then_import_a_changed_document_makes_the_next_version_and_the_same_one_nothing(alice, tenant_a) -> None:
    api = _api(alice)
    version = tenant_a.profile.versions.get()
    exported = api.get(f"/api/v1/profile-versions/{version.pk}/export/?format=json")
    assert exported.status_code == 200
    assert exported["Content-Type"] == "application/json; charset=utf-8"
    assert exported["Content-Disposition"] == f'attachment; filename="{tenant_a.profile.slug}-v1.json"'
    document = json.loads(exported.content)
    assert document == version_document(version)
    as_yaml = api.get(f"/api/v1/profile-versions/{version.pk}/export/?format=yaml")
    assert as_yaml.content == api.get(f"/api/v1/profile-versions/{version.pk}/export/").content  # the default
    assert as_yaml["Content-Type"] == "application/yaml; charset=utf-8"
    assert yaml.safe_load(as_yaml.content) == document

    same = _json(_upload(api, document), 200)
    assert (same["created_profile"], same["created_version"]) == (False, False)
    assert same["version"]["id"] == version.pk

    document["rules"].append(sample_rule("user_right.gitops.extra"))
    changed = _json(_upload(api, document, "baseline.yaml"), 201)
    assert (changed["created_profile"], changed["created_version"]) == (False, True)
    assert (changed["version"]["number"], changed["version"]["version_label"]) == (2, f"{tenant_a.profile.slug} v2")
    new = ProfileVersion.objects.get(pk=changed["version"]["id"])
    assert [rule["id"] for rule in new.rules][-1] == "user_right.gitops.extra"
    detail = _json(api.get(f"/api/v1/profile-versions/{new.pk}/"), 200)
    assert detail["rule_count"] == len(document["rules"])
    assert detail["rules"] == new.rules
    event = AuditEvent.objects.filter(action="profile.import").latest("pk")
    assert event.changes["source"] == [None, "baseline.yaml"]
    assert "(API token 'gitops'" in event.actor_name


def test_a_new_slug_makes_a_new_profile(alice) -> None:
    api = _api(alice)
    document = {"slug": "gitops-baseline", "name": "GitOps baseline", "version": "1", "rules": [sample_rule()]}
    made = _json(_upload(api, document), 201)
    assert (made["created_profile"], made["created_version"]) == (True, True)
    profile = Profile.objects.get(slug="gitops-baseline")
    assert made["version"]["profile"] == profile.pk
    listed = _json(api.get("/api/v1/profiles/"), 200)["results"]
    row = next(p for p in listed if p["slug"] == "gitops-baseline")
    assert (row["name"], row["latest_version"], row["version_count"], row["builtin"]) == (
        "GitOps baseline",
        1,
        1,
        False,
    )


def test_an_invalid_document_or_the_builtin_slug_is_refused_and_nothing_is_made(alice, builtin_profile) -> None:
    api = _api(alice)
    before = (Profile.objects.count(), ProfileVersion.objects.count())
    broken = {"slug": "broken", "name": "Broken", "version": "1", "rules": [sample_rule(right="SeNoSuchRight")]}
    refused = _json(_upload(api, broken), 400)
    assert set(refused) == {"file"}
    assert TENANT_RULE_ID in refused["file"]
    builtin = {"slug": builtin_profile.slug, "name": "Mine now", "version": "9", "rules": [sample_rule()]}
    assert "built-in" in _json(_upload(api, builtin), 400)["file"]
    assert "file" in _json(api.post("/api/v1/profiles/import/", {}), 400)
    with override_settings(FLEET_MAX_UPLOAD_BYTES=64):
        assert "limit" in _json(_upload(api, b"x" * 65), 400)["file"]
    assert (Profile.objects.count(), ProfileVersion.objects.count()) == before


def test_a_customer_token_sees_the_profiles_of_its_servers_only_and_may_not_import(
    carol, builtin_profile, tenant_a, tenant_b
) -> None:
    api = _api(carol)
    slugs = {row["slug"] for row in _json(api.get("/api/v1/profiles/"), 200)["results"]}
    assert slugs == {tenant_a.profile.slug, builtin_profile.slug, BASELINE_SLUG}  # built-ins are for everyone
    versions = _json(api.get("/api/v1/profile-versions/"), 200)["results"]
    assert {row["profile_slug"] for row in versions} == slugs
    theirs = tenant_b.profile.versions.get()
    assert api.get(f"/api/v1/profiles/{tenant_b.profile.pk}/").status_code == 404
    assert api.get(f"/api/v1/profile-versions/{theirs.pk}/").status_code == 404
    assert api.get(f"/api/v1/profile-versions/{theirs.pk}/export/").status_code == 404
    before = ProfileVersion.objects.count()
    # refused before the upload is read: an invalid file answers 403, not 400
    assert _upload(api, b"not a profile").status_code == 403
    assert ProfileVersion.objects.count() == before


def test_a_read_only_admin_token_may_read_but_not_import(alice, tenant_a) -> None:
    api = _api(alice, read_only=True)
    version = tenant_a.profile.versions.get()
    assert api.get(f"/api/v1/profile-versions/{version.pk}/export/").status_code == 200
    document = {"slug": "ro-baseline", "name": "RO", "version": "1", "rules": [sample_rule()]}
    assert _upload(api, document).status_code == 403
    assert not Profile.objects.filter(slug="ro-baseline").exists()


def test_versions_filter_by_profile_and_refuse_a_bad_filter_or_format(alice, tenant_a) -> None:
    other = ProfileVersionFactory(
        profile=ProfileFactory(slug="other", name="Other"), rules=stored_rules([sample_rule("user_right.other")])
    )
    api = _api(alice)
    rows = _json(api.get(f"/api/v1/profile-versions/?profile={tenant_a.profile.pk}"), 200)["results"]
    assert [row["profile_slug"] for row in rows] == [tenant_a.profile.slug]
    assert "rules" not in rows[0]  # the list leaves the rules to the detail
    assert _json(api.get("/api/v1/profile-versions/?profile=x"), 400) == {"profile": "a profile id"}
    assert "format" in _json(api.get(f"/api/v1/profile-versions/{other.pk}/export/?format=xml"), 400)
