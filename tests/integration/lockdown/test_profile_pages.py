"""Profile pages: editor and upload validate on the server, name the rule and field, save nothing on error."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from lockdown import selectors
from lockdown.models import Profile, ProfileVersion
from servers.models import AuditEvent
from tests.integration.lockdown.conftest import as_yaml, small_document

pytestmark = pytest.mark.django_db


def _rules_of(document: dict[str, Any]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = document["rules"]
    return rules


def _mutate(change: str) -> str:
    """A profile text with one defect, named by `change`."""
    document = small_document()
    file_rule, right_rule = _rules_of(document)
    if change == "unknown_type":
        file_rule["type"] = "registry_magic"
    elif change == "relative_path":
        file_rule["target"] = "Windows\\System32\\cmd.exe"
    elif change == "unc_path":
        file_rule["target"] = "\\\\evil\\share\\cmd.exe"
    elif change == "wildcard":
        file_rule["target"] = "[SYSTEM32]\\*.exe"
    elif change == "control_character":
        file_rule["target"] = "[SYSTEM32]\\cmd\x07.exe"
    elif change == "unknown_right":
        right_rule["right"] = "SeBecomeGodPrivilege"
    elif change == "malformed_sid":
        right_rule["principal"] = "S-1-5-21-abc"
    elif change == "bad_account":
        right_rule["principal"] = "IME/SYSTEM*"
    elif change == "duplicate_id":
        right_rule["id"] = file_rule["id"]
    elif change == "yaml_bomb":
        return (
            'a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: [*b,*b,*b,*b,*b,*b]\n'
        )
    elif change == "deep_nesting":
        return "rules: " + "[" * 50_000 + "]" * 50_000 + "\n"
    elif change == "deep_block_nesting":
        return "".join(" " * level + f"k{level}:\n" for level in range(1000))
    elif change == "not_yaml":
        return "slug: [unclosed\n"
    return as_yaml(document)


BAD_INPUTS = [
    ("unknown_type", "field 'type': unknown rule type 'registry_magic'"),
    ("relative_path", "field 'target': relative paths are not allowed"),
    ("unc_path", "field 'target': UNC paths are not allowed"),
    ("wildcard", "field 'target'"),
    ("control_character", "field 'target'"),
    ("unknown_right", "rule 'user_right.se_tcb_privilege', field 'right': unknown right name 'SeBecomeGodPrivilege'"),
    ("malformed_sid", "field 'principal': malformed SID"),
    ("bad_account", "field 'principal': not an account name"),
    ("duplicate_id", "rule 'file_acl.system32.activeds_dll', field 'id': duplicate rule id"),
    ("yaml_bomb", "YAML aliases are not allowed"),
    ("deep_nesting", "nested more than 64 levels deep"),
    ("deep_block_nesting", "nested too deeply"),
    ("not_yaml", "not valid YAML"),
]


@pytest.mark.parametrize(("change", "message"), BAD_INPUTS, ids=[case[0] for case in BAD_INPUTS])
def test_editor_lists_the_precise_error_and_saves_nothing(client, alice, change: str, message: str) -> None:
    client.force_login(alice)
    before = (Profile.objects.count(), ProfileVersion.objects.count(), AuditEvent.objects.count())
    response = client.post(reverse("profile_create"), {"text": _mutate(change), "change_note": ""})
    assert response.status_code == 400
    assert "Nothing was saved" in response.content.decode()
    errors = response.context["form"].errors["text"]
    assert any(message in error for error in errors), errors
    if change in {"unknown_type", "relative_path", "unc_path", "wildcard", "control_character"}:
        assert any("rule 'file_acl.system32.activeds_dll'" in error for error in errors), errors
    assert (Profile.objects.count(), ProfileVersion.objects.count(), AuditEvent.objects.count()) == before


@pytest.mark.parametrize(("change", "message"), BAD_INPUTS, ids=[case[0] for case in BAD_INPUTS])
def test_upload_lists_the_precise_error_and_saves_nothing(client, alice, change: str, message: str) -> None:
    client.force_login(alice)
    before = (Profile.objects.count(), ProfileVersion.objects.count())
    upload = SimpleUploadedFile("profile.yaml", _mutate(change).encode("utf-8"))
    response = client.post(reverse("profile_import"), {"file": upload})
    assert response.status_code == 400
    errors = response.context["form"].errors["file"]
    assert any(message in error for error in errors), errors
    assert (Profile.objects.count(), ProfileVersion.objects.count()) == before


def test_a_50_mb_upload_is_refused_by_size(client, alice) -> None:
    client.force_login(alice)
    upload = SimpleUploadedFile("huge.yaml", b"#" * (50 * 1024 * 1024))
    response = client.post(reverse("profile_import"), {"file": upload})
    assert response.status_code == 400
    assert "the limit is" in response.context["form"].errors["file"][0]
    assert not ProfileVersion.objects.filter(profile__slug="acme-hardened").exists()
    assert ProfileVersion.objects.count() == 3  # the two built-ins and tenant A's


def test_json_upload_with_bad_json_is_an_error_not_a_500(client, alice) -> None:
    client.force_login(alice)
    response = client.post(reverse("profile_import"), {"file": SimpleUploadedFile("p.json", b'{"slug": ')})
    assert response.status_code == 400
    assert "not valid JSON" in response.context["form"].errors["file"][0]
    response = client.post(reverse("profile_import"), {"file": SimpleUploadedFile("p.json", b"\xff\xfe\x00")})
    assert response.status_code == 400
    assert "not UTF-8" in response.context["form"].errors["file"][0]


def test_upload_creates_a_profile_and_audits_it(client, alice) -> None:
    client.force_login(alice)
    upload = SimpleUploadedFile("acme.json", json.dumps(small_document()).encode())
    response = client.post(reverse("profile_import"), {"file": upload})
    assert response.status_code == 302
    version = ProfileVersion.objects.get(profile__slug="acme-hardened")
    assert version.created_by == alice
    assert AuditEvent.objects.filter(action="profile.import", actor=alice).exists()
    assert AuditEvent.objects.filter(action="profile.create", actor=alice, object_repr="Acme hardened").exists()


def test_editor_saves_a_new_version_and_refuses_a_slug_change(client, alice) -> None:
    client.force_login(alice)
    client.post(reverse("profile_create"), {"text": as_yaml(small_document()), "change_note": "first"})
    profile = Profile.objects.get(slug="acme-hardened")
    url = reverse("version_edit", kwargs={"profile_id": profile.pk, "version_number": 1})
    response = client.post(url, {"text": as_yaml(small_document(slug="other-slug")), "change_note": ""})
    assert response.status_code == 400
    assert "field 'slug'" in response.context["form"].errors["text"][0]
    response = client.post(url, {"text": as_yaml(small_document(access="FULL")), "change_note": "full"})
    assert response.status_code == 302
    assert list(profile.versions.values_list("number", "change_note")) == [(2, "full"), (1, "first")]


def test_version_page_groups_by_section_and_says_high_risk_in_words(client, cora) -> None:
    builtin = selectors.latest_builtin_version()
    assert builtin is not None
    client.force_login(cora)
    response = client.get(reverse("version_detail", kwargs={"profile_id": builtin.profile_id, "version_number": 1}))
    body = response.content.decode()
    assert response.status_code == 200
    assert "High risk" in body
    assert "Windows Rights Assignment" in body
    assert "Deviation from the guide:" in body
    assert "Deviations from the guide" in body
    sections = response.context["sections"]
    assert sum(len(section.rows) for section in sections) == len(builtin.rules)
    assert len({section.title for section in sections}) == len(sections)


def test_diff_page_shows_changed_fields(client, alice) -> None:
    client.force_login(alice)
    client.post(reverse("profile_create"), {"text": as_yaml(small_document()), "change_note": ""})
    profile = Profile.objects.get(slug="acme-hardened")
    url = reverse("version_edit", kwargs={"profile_id": profile.pk, "version_number": 1})
    client.post(url, {"text": as_yaml(small_document(access="FULL")), "change_note": ""})
    response = client.get(reverse("profile_diff", kwargs={"profile_id": profile.pk}) + "?from=1&to=2")
    body = response.content.decode()
    assert response.status_code == 200
    assert "0 added, 0 removed, 1 changed" in body
    assert "<code>access</code>" in body


def test_customer_users_see_the_builtin_and_their_own_profiles_only(client, cora, tenant_b) -> None:
    client.force_login(cora)
    body = client.get(reverse("profile_list")).content.decode()
    assert "MailEnable hardened server" in body
    assert "Tenant A Ltd baseline" in body
    assert "Tenant B Ltd baseline" not in body
    url = reverse("profile_detail", kwargs={"profile_id": tenant_b.profile.pk})
    assert client.get(url).status_code == 404
