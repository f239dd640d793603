"""Dashboard content (status in words, trend SVG, empty states) and the per-user time zone."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse

from lockdown import clock
from reports.models import ComplianceSnapshot, UserPreference
from reports.services import compliance_snapshot_take

pytestmark = pytest.mark.django_db


def test_dashboard_shows_statuses_in_words_and_an_accessible_trend(client, alice, tenant_a, fleet_of):
    fleet_of(tenant_a.customer, 6)
    assert compliance_snapshot_take(day=clock.now().date() - timedelta(days=2)) == 1
    assert compliance_snapshot_take(day=clock.now().date() - timedelta(days=2)) == 1  # idempotent
    assert ComplianceSnapshot.objects.count() == 1
    client.force_login(alice)
    page = client.get(reverse("dashboard")).content.decode()
    for words in ("Compliant", "Drifted", "Failing", "Unreachable", "Never verified", "Needs attention"):
        assert words in page
    assert '<svg class="chart"' in page
    assert '<title id="fleet-trend-title">' in page
    assert "<desc" in page
    assert "style=" not in page  # CSP: no inline style
    assert "Waivers expiring soon" in page
    assert "file_acl.rule_001" in page


def test_empty_dashboard_says_what_to_do_next(client):
    from tests.factories import MembershipFactory, UserFactory

    admin = UserFactory(username="newadmin")
    MembershipFactory(user=admin, role="admin")
    client.force_login(admin)
    page = client.get(reverse("dashboard")).content.decode()
    assert "No servers yet" in page
    assert "Add a server" in page
    client.force_login(UserFactory(username="charlie"))
    assert "Ask your MSP to add your mail servers" in client.get(reverse("dashboard")).content.decode()


def test_times_are_shown_in_the_users_time_zone(client, cora, tenant_a, fleet_of):
    fleet_of(tenant_a.customer, 1)
    client.force_login(cora)
    assert "Times in UTC" in client.get(reverse("dashboard")).content.decode()
    response = client.post(reverse("preferences"), {"time_zone": "Asia/Tokyo"})
    assert response.status_code == 302
    assert UserPreference.objects.get(user=cora).time_zone == "Asia/Tokyo"
    page = client.get(reverse("customer_detail", kwargs={"customer_id": tenant_a.customer.pk})).content.decode()
    assert "Times in Asia/Tokyo" in page
    # A new session reads the stored preference once.
    client.logout()
    client.force_login(cora)
    assert "Times in Asia/Tokyo" in client.get(reverse("dashboard")).content.decode()
    assert client.post(reverse("preferences"), {"time_zone": "Not/AZone"}).status_code == 400
