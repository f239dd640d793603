"""Issue 12: an alert resolves itself when the verify after it shows the server recovered."""

from __future__ import annotations

import pytest
from django.urls import reverse

from jobs.choices import JobKind
from jobs.models import Alert, HostRun, Job
from jobs.services import job_create
from lockdown.rules.observed import ObservedItem
from remote.errors import AuthenticationFailed
from reports.selectors import open_alerts
from servers.audit import Actor
from servers.models import AuditEvent
from servers.tenancy import Scope
from tests.factories import CustomerFactory, ServerFactory
from tests.unit.lockdown.factories import hardened_observation

pytestmark = pytest.mark.django_db
MSP = Scope(user_id=None, msp_role="admin")
ACTOR = Actor.system("test")


@pytest.fixture
def server(db):
    return ServerFactory(customer=CustomerFactory(name="Recovering Ltd"), name="mx-recovers")


def _verify(server, capture) -> Job:
    with capture(execute=True):
        return job_create(scope=MSP, actor=ACTOR, kind=JobKind.VERIFY, servers=[server])


def _drift(agent, prefixes: tuple[str, ...]) -> None:
    """Hardened, except that the first rule of each prefix has lost its ACE."""
    first: dict[str, str] = {}

    def observe(item):
        for prefix in prefixes:
            if item.rule_id.startswith(prefix) and first.setdefault(prefix, item.rule_id) == item.rule_id:
                return ObservedItem(rule_id=item.rule_id, target=item.target, exists=True, dacl=[])
        return hardened_observation(item)

    agent.observe = observe


def test_a_drift_alert_resolves_when_its_rules_comply_again(inline, server, django_capture_on_commit_callbacks):
    inline.observe = hardened_observation
    _verify(server, django_capture_on_commit_callbacks)
    _drift(inline, ("file_deny.",))
    _verify(server, django_capture_on_commit_callbacks)
    alert = Alert.objects.get()
    assert alert.resolved_at is None
    assert open_alerts(scope=MSP).total == 1
    inline.observe = hardened_observation
    job = _verify(server, django_capture_on_commit_callbacks)
    alert.refresh_from_db()
    assert alert.resolved_at is not None
    assert alert.resolved_by_run == HostRun.objects.get(job=job)
    assert open_alerts(scope=MSP).total == 0
    assert AuditEvent.objects.filter(action="alert.resolve").count() == 1


def test_a_drift_alert_stays_open_while_one_of_its_rules_still_drifts(
    inline, server, django_capture_on_commit_callbacks
):
    # Already drifted on a registry rule; then a file deny drops too: the alert names the file deny.
    _drift(inline, ("registry_acl.",))
    _verify(server, django_capture_on_commit_callbacks)
    _drift(inline, ("registry_acl.", "file_deny."))
    _verify(server, django_capture_on_commit_callbacks)
    alert = Alert.objects.get()
    assert {rule["rule_id"].split(".")[0] for rule in alert.details["rules"]} == {"file_deny"}
    assert alert.details["status_before"] == "drifted"
    # The registry rule recovers, the file deny does not: the server is no worse than before, but
    # the drop the alert reported is still there.
    _drift(inline, ("file_deny.",))
    _verify(server, django_capture_on_commit_callbacks)
    alert.refresh_from_db()
    assert alert.resolved_at is None
    inline.observe = hardened_observation
    _verify(server, django_capture_on_commit_callbacks)
    alert.refresh_from_db()
    assert alert.resolved_at is not None


def test_a_status_alert_resolves_when_the_server_can_be_read_again(inline, server, django_capture_on_commit_callbacks):
    inline.observe = hardened_observation
    _verify(server, django_capture_on_commit_callbacks)
    inline.fail_with = AuthenticationFailed("rejected", host="x")
    _verify(server, django_capture_on_commit_callbacks)
    alert = Alert.objects.get()
    assert alert.kind == "status"
    assert alert.details["status_after"] == "not_assessed"
    inline.fail_with = None
    _verify(server, django_capture_on_commit_callbacks)
    alert.refresh_from_db()
    assert alert.resolved_at is not None


def test_a_status_alert_stays_open_while_the_server_is_still_worse(inline, server, django_capture_on_commit_callbacks):
    inline.observe = hardened_observation
    _verify(server, django_capture_on_commit_callbacks)
    inline.fail_with = AuthenticationFailed("rejected", host="x")
    _verify(server, django_capture_on_commit_callbacks)
    _verify(server, django_capture_on_commit_callbacks)
    status_alert = Alert.objects.get(kind="status")
    assert status_alert.resolved_at is None
    # Readable again, but drifted: worse than the compliant it was before the drop.
    inline.fail_with = None
    _drift(inline, ("file_deny.",))
    _verify(server, django_capture_on_commit_callbacks)
    status_alert.refresh_from_db()
    assert status_alert.resolved_at is None


def test_the_alerts_page_lists_open_alerts_and_shows_resolved_ones_on_request(
    client, alice, inline, server, django_capture_on_commit_callbacks
):
    inline.observe = hardened_observation
    _verify(server, django_capture_on_commit_callbacks)
    _drift(inline, ("file_deny.",))
    _verify(server, django_capture_on_commit_callbacks)
    inline.observe = hardened_observation
    _verify(server, django_capture_on_commit_callbacks)
    client.force_login(alice)
    assert "mx-recovers" not in client.get(reverse("alert_list")).content.decode()
    everything = client.get(reverse("alert_list") + "?show=all").content.decode()
    assert "mx-recovers" in everything
    assert "Resolved" in everything
