"""The built-in profile is loaded from the shipped YAML, once per content."""

from __future__ import annotations

import pytest

from lockdown import services
from lockdown.exchange import content_hash, document_content
from lockdown.models import Profile, ProfileVersion
from lockdown.rules import load_builtin_profile
from servers.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_post_migrate_loaded_the_builtin_profile_as_version_1() -> None:
    profile = Profile.objects.get(slug="mailenable-hardened")
    assert profile.builtin
    version = ProfileVersion.objects.get(profile=profile)
    assert version.number == 1
    assert len(version.rules) == len(load_builtin_profile().rules)
    assert version.content_hash == content_hash(*document_content(load_builtin_profile()))


def test_sync_is_idempotent() -> None:
    first = services.builtin_profile_sync()
    events = AuditEvent.objects.count()
    second = services.builtin_profile_sync()
    assert first.pk == second.pk
    assert ProfileVersion.objects.filter(profile__slug="mailenable-hardened").count() == 1
    assert AuditEvent.objects.count() == events


def test_sync_makes_a_new_version_only_when_the_shipped_content_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = load_builtin_profile()
    changed = shipped.model_copy(update={"notes": [*shipped.notes, "A new note in a later release."]})
    monkeypatch.setattr(services, "load_builtin_profile", lambda: changed)
    version = services.builtin_profile_sync()
    assert version.number == 2
    assert services.builtin_profile_sync().pk == version.pk
    assert AuditEvent.objects.filter(action="profile_version.create", object_id=str(version.pk)).exists()


def test_sync_from_an_empty_database_creates_and_audits_the_profile() -> None:
    ProfileVersion.objects.all().delete()
    Profile.objects.all().delete()
    version = services.builtin_profile_sync()
    assert version.number == 1
    assert AuditEvent.objects.filter(action="profile.create", object_repr=version.profile.name).exists()


def test_a_new_builtin_version_makes_the_servers_it_judges_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 12: servers that follow the built-in's latest version are judged by another one now."""
    from servers.choices import StaleReason
    from servers.models import Server
    from tests.factories import CustomerFactory, ProfileVersionFactory, ServerFactory

    follows = ServerFactory(customer=CustomerFactory(name="Follows Builtin Ltd"), name="mx-follows")
    ServerFactory(customer=follows.customer, name="mx-pinned", profile_version=ProfileVersionFactory())
    defaulted_customer = CustomerFactory(name="Own Default Ltd", default_profile_version=ProfileVersionFactory())
    ServerFactory(customer=defaulted_customer, name="mx-own-default")
    services.builtin_profile_sync()  # the same content: nothing is stale
    assert set(Server.objects.values_list("results_stale_reason", flat=True)) == {""}
    shipped = load_builtin_profile()
    first = shipped.rules[0].model_copy(update={"expected": "A stricter expectation in a later release."})
    changed = shipped.model_copy(update={"rules": [first, *shipped.rules[1:]]})
    monkeypatch.setattr(services, "load_builtin_profile", lambda: changed)
    services.builtin_profile_sync()
    stale = dict(Server.objects.values_list("name", "results_stale_reason"))
    assert stale["mx-follows"] == StaleReason.PROFILE_CHANGED
    assert stale["mx-pinned"] == ""
    assert stale["mx-own-default"] == ""


def test_a_version_that_only_changes_notes_or_control_mappings_leaves_results_standing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Mappings say what a rule means to an auditor, not what it checks: every host is judged alike."""
    from servers.models import Server
    from tests.factories import CustomerFactory, ServerFactory

    ServerFactory(customer=CustomerFactory(name="Follows Builtin Ltd"), name="mx-follows")
    shipped = load_builtin_profile()
    first = shipped.rules[0].model_copy(update={"controls": shipped.rules[0].controls[:1]})
    changed = shipped.model_copy(update={"rules": [first, *shipped.rules[1:]], "notes": [*shipped.notes, "More."]})
    monkeypatch.setattr(services, "load_builtin_profile", lambda: changed)
    assert services.builtin_profile_sync().number == 2
    assert set(Server.objects.values_list("results_stale_reason", flat=True)) == {""}


def test_a_version_that_drops_a_rule_makes_its_followers_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    from servers.choices import StaleReason
    from servers.models import Server
    from tests.factories import CustomerFactory, ServerFactory

    ServerFactory(customer=CustomerFactory(name="Follows Builtin Ltd"), name="mx-follows")
    shipped = load_builtin_profile()
    monkeypatch.setattr(
        services, "load_builtin_profile", lambda: shipped.model_copy(update={"rules": shipped.rules[1:]})
    )
    services.builtin_profile_sync()
    assert Server.objects.get(name="mx-follows").results_stale_reason == StaleReason.PROFILE_CHANGED
