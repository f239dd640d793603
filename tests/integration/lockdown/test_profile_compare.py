"""Issue 14 item 4: the guide's profile and the current baseline side by side, so a customer can move with a diff (and
the assignment page's preview)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from lockdown.models import ProfileVersion
from lockdown.rules.builtin import BASELINE_SLUG, DEFAULT_BUILTIN_SLUG
from lockdown.services import builtin_profile_sync

pytestmark = pytest.mark.django_db


def _latest(slug: str) -> ProfileVersion:
    version = ProfileVersion.objects.filter(profile__slug=slug).order_by("-number").first()
    assert version is not None
    return version


def test_both_built_in_profiles_are_synced_and_the_fleet_still_falls_back_to_the_guide(alice):
    from lockdown.assignment import builtin_latest_id

    builtin_profile_sync()
    guide, baseline = _latest(DEFAULT_BUILTIN_SLUG), _latest(BASELINE_SLUG)
    assert guide.profile.builtin
    assert baseline.profile.builtin
    assert len(baseline.rules) == len(guide.rules) + 11
    assert builtin_latest_id() == guide.pk
    builtin_profile_sync()  # unchanged files: no new version of either
    assert _latest(BASELINE_SLUG).pk == baseline.pk
    assert _latest(DEFAULT_BUILTIN_SLUG).pk == guide.pk


def test_the_compare_page_lists_what_the_baseline_adds_to_the_guide(client, alice):
    builtin_profile_sync()
    guide, baseline = _latest(DEFAULT_BUILTIN_SLUG), _latest(BASELINE_SLUG)
    client.force_login(alice)
    page = client.get(reverse("profile_compare"), {"from": guide.pk, "to": baseline.pk})
    assert page.status_code == 200
    text = page.content.decode()
    assert "11 added, 0 removed, 0 changed" in text
    for rule_id in (
        "mailenable_version.advisories",
        "smtp_probe.relay_refused",
        "registry_value.schannel.tls10_server",
    ):
        assert rule_id in text
    assert client.get(reverse("profile_compare"), {"from": guide.pk, "to": 999999}).status_code == 404
    assert client.get(reverse("profile_compare")).status_code == 200


def test_a_customer_user_compares_only_profiles_it_can_see(client, carol):
    from tests.factories import ProfileVersionFactory

    builtin_profile_sync()
    other = ProfileVersionFactory()  # in the library, assigned to nobody: not carol's customer's business
    client.force_login(carol)
    guide, baseline = _latest(DEFAULT_BUILTIN_SLUG), _latest(BASELINE_SLUG)
    assert client.get(reverse("profile_compare"), {"from": guide.pk, "to": baseline.pk}).status_code == 200
    hidden = client.get(reverse("profile_compare"), {"from": guide.pk, "to": other.pk})
    assert hidden.status_code == 404
    assert other.profile.name not in hidden.content.decode()
