"""Webhook targets (security-audit-2026-12, "webhook DNS rebinding", and the lower webhook items).

Each attempt resolves the target's name once and connects to the address it vetted, keeping the name
for the Host header, TLS SNI and the certificate check; plain http only where an MSP admin allowed it;
no refusal or failure text names a resolved address.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied

from jobs import alerts, webhooks
from jobs.choices import DeliveryState
from jobs.models import AlertDelivery, AlertSettings
from jobs.webhooks import WebhookError, WebhookTargetRefused, check_webhook_target, webhook_deliver
from servers.audit import Actor
from servers.tenancy import Scope
from winlab.wsman.tls import LabAuthority

pytestmark = pytest.mark.django_db
MSP = Scope(user_id=None, msp_role="admin")
PUBLIC = "93.184.216.34"
NAME = "hooks.example.net"


class Endpoint:
    """An HTTP(S) endpoint on 127.0.0.1 that records each request's Host header and TLS SNI."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self.requests: list[dict[str, str]] = []
        self.sni: list[str | None] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.requests.append({k.lower(): v for k, v in self.headers.items()})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if context is not None:
            context.sni_callback = lambda sock, name, ctx: outer.sni.append(name)  # type: ignore[assignment]
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    running = Endpoint()
    yield running
    running.close()


class Rebinding:
    """DNS for NAME: a public address the first time, 127.0.0.1 after (a rebinding attacker's resolver)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, answers: list[str]) -> None:
        self.answers = answers
        self.asked = 0
        real = socket.getaddrinfo

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if host != NAME:
                return real(host, port, *args, **kwargs)
            address = self.answers[min(self.asked, len(self.answers) - 1)]
            self.asked += 1
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def _delivery(server, url: str, *, allow_http: bool) -> AlertDelivery:
    alerts.alert_settings_save(
        scope=MSP, actor=Actor.system("t"), customer=server.customer, email_recipients=[], webhook_url=url,
        webhook_secret="hook-secret-1", auto_remediate=False, webhook_allow_http=allow_http,
    )  # fmt: skip
    alert = alerts.alert_raise(server=server, host_run=None, kind="drift", message="m", details={})
    return AlertDelivery.objects.get(alert=alert, channel="webhook")


def test_a_name_that_rebinds_to_loopback_after_the_check_never_gets_the_post(tenant_a, endpoint, settings, monkeypatch):
    settings.FLEET_WEBHOOK_ALLOWED_HOSTS = [NAME]
    url = f"http://{NAME}:{endpoint.port}/hook"
    dns = Rebinding(monkeypatch, [PUBLIC])
    delivery = _delivery(tenant_a.server, url, allow_http=True)  # saving checks it: public, accepted
    dns.answers = [PUBLIC, "127.0.0.1"]  # from now on: public once, then loopback
    dns.asked = 0
    connected: list[tuple[str, int]] = []

    def create_connection(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        connected.append(address)
        raise OSError("no route to a public address in this sandbox")

    monkeypatch.setattr("urllib3.util.connection.create_connection", create_connection)
    with pytest.raises(WebhookError) as failed:
        webhook_deliver(delivery.pk)
    assert dns.asked == 1  # resolved once, for the check ...
    assert connected == [(PUBLIC, endpoint.port)]  # ... and the connection went to what was checked
    assert endpoint.requests == []
    assert PUBLIC not in failed.value.message
    assert "127.0.0.1" not in failed.value.message


def test_https_keeps_the_name_for_host_sni_and_the_certificate(tenant_a, settings, monkeypatch, tmp_path):
    authority = LabAuthority(tmp_path)
    # the certificate names NAME and another address: verification must be by name, not by the IP used
    cert = authority.issue(NAME, "192.0.2.10")
    https = Endpoint(cert.server_context())
    try:
        monkeypatch.setattr(webhooks.certifi, "where", lambda: str(authority.ca_path))
        settings.FLEET_WEBHOOK_ALLOWED_HOSTS = [NAME, "127.0.0.1/32"]
        Rebinding(monkeypatch, ["127.0.0.1"])
        delivery = _delivery(tenant_a.server, f"https://{NAME}:{https.port}/hook", allow_http=False)
        assert webhook_deliver(delivery.pk) is True
    finally:
        https.close()
    assert https.sni == [NAME]
    assert [r["host"] for r in https.requests] == [f"{NAME}:{https.port}"]
    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.SENT


def test_a_certificate_for_another_name_is_refused(tenant_a, settings, monkeypatch, tmp_path):
    authority = LabAuthority(tmp_path)
    https = Endpoint(authority.issue("other.example.net", "127.0.0.1").server_context())
    try:
        monkeypatch.setattr(webhooks.certifi, "where", lambda: str(authority.ca_path))
        settings.FLEET_WEBHOOK_ALLOWED_HOSTS = [NAME, "127.0.0.1/32"]
        Rebinding(monkeypatch, ["127.0.0.1"])
        delivery = _delivery(tenant_a.server, f"https://{NAME}:{https.port}/hook", allow_http=False)
        with pytest.raises(WebhookError) as failed:
            webhook_deliver(delivery.pk)
    finally:
        https.close()
    assert https.requests == []
    assert "127.0.0.1" not in failed.value.message


def test_plain_http_is_refused_unless_an_msp_admin_allowed_it(tenant_a, carol, settings, monkeypatch):
    settings.FLEET_WEBHOOK_ALLOWED_HOSTS = [NAME]
    Rebinding(monkeypatch, [PUBLIC])
    with pytest.raises(WebhookTargetRefused, match="https"):
        check_webhook_target(f"http://{NAME}/hook")
    check_webhook_target(f"http://{NAME}/hook", allow_http=True)
    customer_operator = Scope(user_id=carol.pk, customer_roles={tenant_a.customer.pk: "operator"})
    with pytest.raises(PermissionDenied):
        alerts.alert_settings_save(
            scope=customer_operator, actor=Actor.system("t"), customer=tenant_a.customer, email_recipients=[],
            webhook_url=f"http://{NAME}/hook", webhook_secret="s3cret-hook", auto_remediate=False,
            webhook_allow_http=True,
        )  # fmt: skip
    with pytest.raises(WebhookTargetRefused, match="https"):
        alerts.alert_settings_save(
            scope=customer_operator, actor=Actor.system("t"), customer=tenant_a.customer, email_recipients=[],
            webhook_url=f"http://{NAME}/hook", webhook_secret="s3cret-hook", auto_remediate=False,
        )  # fmt: skip
    assert not AlertSettings.objects.filter(customer=tenant_a.customer, webhook_allow_http=True).exists()


def test_a_refusal_never_names_the_internal_address(settings, monkeypatch):
    settings.FLEET_WEBHOOK_ALLOWED_HOSTS = ["*"]
    Rebinding(monkeypatch, ["10.20.30.40"])
    with pytest.raises(WebhookTargetRefused) as refused:
        check_webhook_target(f"https://{NAME}/hook")
    assert "internal address" in refused.value.message
    assert "10.20.30.40" not in refused.value.message
