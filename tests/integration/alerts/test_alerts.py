"""Drift alerts: raised once per drop, emailed, sent to a signed webhook (retried), auto-remediation."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core import mail
from django.urls import reverse

from jobs import alerts
from jobs.choices import DeliveryState, JobKind
from jobs.models import Alert, AlertDelivery, Job
from jobs.services import job_create
from jobs.tasks import deliver_webhook
from jobs.webhooks import WebhookTargetRefused, check_webhook_target
from lockdown.rules.observed import ObservedItem
from servers.audit import Actor
from servers.models import AuditEvent
from servers.tenancy import Scope
from tests.factories import CustomerFactory, ServerFactory
from tests.unit.lockdown.factories import hardened_observation

pytestmark = pytest.mark.django_db
MSP = Scope(user_id=None, msp_role="admin")
ACTOR = Actor.system("test")
SECRET = "hook-secret-for-tests-123"


@pytest.fixture
def server(db):
    return ServerFactory(customer=CustomerFactory(name="Alerted Ltd"), name="mx-alerted")


@pytest.fixture
def webhook_inline() -> Iterator[None]:
    """Deliveries run through the real Celery task, eagerly (retries included, without waiting)."""
    alerts.set_webhook_enqueue(lambda delivery_id: deliver_webhook.apply(args=[delivery_id]))
    yield
    alerts.set_webhook_enqueue(None)


class Receiver:
    """A tiny webhook endpoint on 127.0.0.1 that answers the given statuses in order."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _verify(server, capture) -> Job:
    with capture(execute=True):
        return job_create(scope=MSP, actor=ACTOR, kind=JobKind.VERIFY, servers=[server])


def _drift_one(agent) -> str:
    """The scripted host is hardened except for one file deny: returns that rule id."""
    drifted: dict[str, str] = {}

    def observe(item):
        if item.rule_id.startswith("file_deny.") and not drifted:
            drifted["rule"] = item.rule_id
        if drifted.get("rule") == item.rule_id:
            return ObservedItem(rule_id=item.rule_id, target=item.target, exists=True, dacl=[])
        return hardened_observation(item)

    agent.observe = observe
    return "file_deny."


def _settings(server, **kw: Any) -> None:
    alerts.alert_settings_save(
        scope=MSP,
        actor=ACTOR,
        customer=server.customer,
        email_recipients=kw.get("emails", []),
        webhook_url=kw.get("url", ""),
        webhook_secret=kw.get("secret"),
        auto_remediate=kw.get("auto", False),
        webhook_allow_http=kw.get("url", "").startswith("http://"),  # the receiver is plain http on 127.0.0.1
    )


def test_drift_raises_one_alert_not_one_per_verify(inline, server, django_capture_on_commit_callbacks):
    _settings(server, emails=["noc@example.net"])
    inline.observe = hardened_observation
    _verify(server, django_capture_on_commit_callbacks)
    assert Alert.objects.count() == 0  # the first verify is a baseline, not a drop
    _verify(server, django_capture_on_commit_callbacks)
    assert Alert.objects.count() == 0
    _drift_one(inline)
    for _ in range(3):
        _verify(server, django_capture_on_commit_callbacks)
    assert Alert.objects.count() == 1
    alert = Alert.objects.get()
    assert alert.server == server
    assert alert.customer == server.customer
    assert alert.kind == "drift"
    assert alert.details["rules_total"] >= 1
    assert alert.details["status_after"] == "drifted"
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["noc@example.net"]
    assert "mx-alerted" in mail.outbox[0].subject
    assert AlertDelivery.objects.get(alert=alert).state == DeliveryState.SENT
    # Back to compliant, then drift again: a new drop, a new alert.
    inline.observe = hardened_observation
    _verify(server, django_capture_on_commit_callbacks)
    _drift_one(inline)
    _verify(server, django_capture_on_commit_callbacks)
    assert Alert.objects.count() == 2


def test_webhook_is_signed_and_retried_after_a_500(
    inline, webhook_inline, server, settings, django_capture_on_commit_callbacks
):
    settings.FLEET_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    with Receiver([500, 200]) as receiver:
        _settings(server, url=receiver.url, secret=SECRET)
        inline.observe = hardened_observation
        _verify(server, django_capture_on_commit_callbacks)
        _drift_one(inline)
        _verify(server, django_capture_on_commit_callbacks)
    assert len(receiver.requests) == 2
    for headers, body in receiver.requests:
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["x-fleet-signature"] == expected
        assert headers["content-type"] == "application/json"
        payload = json.loads(body)
        assert payload["server"] == "mx-alerted"
        assert payload["kind"] == "drift"
        assert SECRET not in body.decode()
    delivery = AlertDelivery.objects.get(channel="webhook")
    assert delivery.state == DeliveryState.SENT
    assert delivery.attempts == 2


def test_webhook_gives_up_after_the_maximum_of_retries(inline, webhook_inline, server, settings):
    settings.FLEET_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.FLEET_WEBHOOK_MAX_RETRIES = 2
    with Receiver([500, 500, 500, 500]) as receiver:
        _settings(server, url=receiver.url, secret=SECRET)
        alert = alerts.alert_raise(server=server, host_run=None, kind="drift", message="test", details={})
        delivery = AlertDelivery.objects.get(alert=alert)
        deliver_webhook.apply(args=[delivery.pk])
    delivery.refresh_from_db()
    assert len(receiver.requests) == 3  # the first attempt and two retries
    assert delivery.state == DeliveryState.FAILED
    assert "HTTP 500" in delivery.last_error


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/hook",
        "http://[::1]/hook",
        "ftp://example.net/hook",
    ],
)
def test_internal_addresses_are_refused_unless_allowed(settings, url):
    settings.FLEET_WEBHOOK_ALLOWED_HOSTS = ["*"]
    with pytest.raises(WebhookTargetRefused):
        check_webhook_target(url)


def test_a_host_off_the_allow_list_is_refused_and_loopback_allowed_explicitly(settings):
    settings.FLEET_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    check_webhook_target("http://127.0.0.1:9/hook", allow_http=True)
    with pytest.raises(WebhookTargetRefused, match="allow-list"):
        check_webhook_target("https://hooks.example.net/x")


def test_the_settings_page_refuses_an_internal_webhook(client, alice, tenant_a, settings):
    settings.FLEET_WEBHOOK_ALLOWED_HOSTS = ["*"]
    client.force_login(alice)
    url = reverse("customer_alert_settings", kwargs={"customer_id": tenant_a.customer.pk})
    response = client.post(
        url, {"webhook_url": "http://127.0.0.1:8000/x", "webhook_secret": SECRET, "webhook_allow_http": "on"}
    )
    assert response.status_code == 400
    assert "internal address" in response.content.decode()
    assert SECRET not in response.content.decode()


def test_auto_remediation_is_off_by_default(inline, server, django_capture_on_commit_callbacks):
    inline.observe = hardened_observation
    _verify(server, django_capture_on_commit_callbacks)
    _drift_one(inline)
    _verify(server, django_capture_on_commit_callbacks)
    assert Alert.objects.count() == 1
    assert not Job.objects.filter(kind=JobKind.HARDEN).exists()
    assert Alert.objects.get().remediation_job is None


def test_auto_remediation_starts_a_harden_and_audits_it(inline, server, django_capture_on_commit_callbacks):
    _settings(server, auto=True)
    inline.observe = hardened_observation
    _verify(server, django_capture_on_commit_callbacks)
    _drift_one(inline)
    _verify(server, django_capture_on_commit_callbacks)
    alert = Alert.objects.get()
    harden = Job.objects.get(kind=JobKind.HARDEN)
    assert alert.remediation_job == harden
    assert harden.requested_by_name == "auto-remediation"
    event = AuditEvent.objects.get(action="alert.auto_remediation")
    assert event.changes["job"] == harden.pk
    assert AuditEvent.objects.filter(action="job.harden", actor_name="auto-remediation").exists()


def test_alert_pages_are_scoped_and_acknowledge_works(client, carol, tenant_a, tenant_b):
    from tests.factories import tenant_alert

    mine, theirs = tenant_alert(tenant_a), tenant_alert(tenant_b)
    client.force_login(carol)
    page = client.get(reverse("alert_list")).content.decode()
    assert tenant_a.server.name in page
    assert tenant_b.server.name not in page
    assert client.post(reverse("alert_acknowledge", kwargs={"alert_id": theirs})).status_code == 404
    assert client.post(reverse("alert_acknowledge", kwargs={"alert_id": mine})).status_code == 302
    alert = Alert.objects.get(pk=mine)
    assert alert.acknowledged_at is not None
    assert alert.acknowledged_by == carol
    assert Alert.objects.get(pk=theirs).acknowledged_at is None
    assert tenant_a.server.name not in client.get(reverse("alert_list")).content.decode()  # open alerts only
    assert AuditEvent.objects.filter(action="alert.acknowledge").count() == 1


def test_viewer_cannot_acknowledge(client, cora, tenant_a):
    from tests.factories import tenant_alert

    client.force_login(cora)
    response = client.post(reverse("alert_acknowledge", kwargs={"alert_id": tenant_alert(tenant_a)}))
    assert response.status_code == 403
