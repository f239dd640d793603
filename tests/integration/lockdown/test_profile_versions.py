"""Versions are immutable; edit and clone make new versions; diffs name the changed fields."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from lockdown import selectors, services
from lockdown.models import Profile, ProfileVersion
from lockdown.rules.profile import profile_from_data
from servers.audit import Actor
from servers.models import AuditEvent
from servers.tenancy import scope_for_user
from tests.factories import ProfileVersionFactory
from tests.integration.lockdown.conftest import small_document

pytestmark = pytest.mark.django_db


def _create(alice, **kwargs):
    return services.profile_create(
        scope=scope_for_user(alice), actor=Actor(user=alice), document=profile_from_data(small_document(**kwargs))
    )


def test_saving_an_existing_version_raises(alice) -> None:
    version = _create(alice)
    version.change_note = "rewritten history"
    with pytest.raises(PermissionError):
        version.save()
    with pytest.raises(PermissionError):
        ProfileVersion.objects.filter(pk=version.pk).update(change_note="x")
    version.refresh_from_db()
    assert version.change_note == ""


def test_number_and_content_are_unique_per_profile(alice) -> None:
    version = _create(alice)
    with pytest.raises(IntegrityError), transaction.atomic():
        ProfileVersionFactory(profile=version.profile, number=1, rules=[{"id": "x.y"}], content_hash="0" * 64)
    with pytest.raises(IntegrityError), transaction.atomic():
        ProfileVersionFactory(profile=version.profile, number=2, rules=version.rules, content_hash=version.content_hash)


def test_edit_makes_a_new_version_and_keeps_the_old_one(alice) -> None:
    v1 = _create(alice)
    edited = small_document(access="FULL")
    v2 = services.profile_version_create(
        scope=scope_for_user(alice),
        actor=Actor(user=alice),
        profile=v1.profile,
        document=profile_from_data(edited),
        change_note="full control",
    )
    assert (v1.number, v2.number) == (1, 2)
    assert v2.content_hash != v1.content_hash
    v1.refresh_from_db()
    assert v1.rules[0]["access"] == "READ"
    assert v2.created_by == alice
    assert AuditEvent.objects.filter(action="profile_version.create", object_id=str(v2.pk), actor=alice).exists()


def test_edit_without_a_change_is_refused(alice) -> None:
    v1 = _create(alice)
    with pytest.raises(services.ProfileServiceError, match="nothing changed"):
        services.profile_version_create(
            scope=scope_for_user(alice),
            actor=Actor(user=alice),
            profile=v1.profile,
            document=profile_from_data(small_document()),
        )
    assert v1.profile.versions.count() == 1


def test_the_builtin_profile_cannot_be_edited_only_cloned(alice) -> None:
    builtin = selectors.latest_builtin_version()
    assert builtin is not None
    document = profile_from_data(selectors.version_document(builtin))
    with pytest.raises(services.ProfileServiceError, match="built-in"):
        services.profile_version_create(
            scope=scope_for_user(alice), actor=Actor(user=alice), profile=builtin.profile, document=document
        )
    clone = services.profile_clone(
        scope=scope_for_user(alice), actor=Actor(user=alice), source=builtin, slug="acme-me", name="Acme ME"
    )
    assert clone.number == 1
    assert clone.profile.slug == "acme-me"
    assert clone.content_hash == builtin.content_hash
    assert AuditEvent.objects.filter(action="profile.clone", object_id=str(clone.profile.pk)).exists()


def test_operators_cannot_create_profiles(make_role_user) -> None:
    from django.core.exceptions import PermissionDenied

    oscar = make_role_user("msp_operator")
    with pytest.raises(PermissionDenied):
        _create(oscar)
    assert not Profile.objects.filter(slug="acme-hardened").exists()


def test_diff_names_added_removed_and_changed_rules_with_fields(alice) -> None:
    v1 = _create(alice)
    document = small_document(access="FULL", description="Changed words.")
    document["rules"].pop()  # remove the right
    document["rules"].append(
        {
            "id": "user_right.se_service_logon_right",
            "type": "user_right",
            "section": "Windows Rights Assignment",
            "description": "Logon as a service.",
            "expected": "Held.",
            "right": "SeServiceLogonRight",
            "principal": "IME_SYSTEM",
        }
    )
    document["notes"] = ["Another note."]
    v2 = services.profile_version_create(
        scope=scope_for_user(alice), actor=Actor(user=alice), profile=v1.profile, document=profile_from_data(document)
    )
    diff = selectors.version_diff(v1, v2)
    assert [rule["id"] for rule in diff.added] == ["user_right.se_service_logon_right"]
    assert [rule["id"] for rule in diff.removed] == ["user_right.se_tcb_privilege"]
    assert len(diff.changed) == 1
    assert diff.changed[0].rule_id == "file_acl.system32.activeds_dll"
    assert diff.changed[0].fields == {
        "access": ("READ", "FULL"),
        "description": ("IME_SYSTEM can read ACTIVEDS.DLL.", "Changed words."),
    }
    assert diff.notes_added == ["Another note."]
    assert diff.notes_removed == ["One note."]
    assert selectors.version_diff(v1, v1).empty


@pytest.mark.parametrize("slug", ["a", "Upper-Case", "under_score"])
def test_clone_page_refuses_a_bad_slug_without_saving(client, alice, slug: str) -> None:
    from django.urls import reverse

    builtin = selectors.latest_builtin_version()
    assert builtin is not None
    client.force_login(alice)
    url = reverse("version_clone", kwargs={"profile_id": builtin.profile_id, "version_number": 1})
    response = client.post(url, {"slug": slug, "name": "Clone"})
    assert response.status_code == 400
    assert "slug" in response.context["form"].errors
    assert Profile.objects.count() == 3  # the two built-ins and tenant A's
