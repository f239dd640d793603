"""No secret anywhere: canaries through a harden, rotations, an alert webhook and failed runs.

The canaries are the WinRM credential's password, the IME_SYSTEM passwords (the one a harden sets
and the ones rotations generate) and a customer's webhook secret. After real runs over WinRM to
winlab (jobs inline), none of them may appear — raw, as base64 of UTF-8 or as base64 of UTF-16LE —
in any text or JSON column of any table (encrypted columns excepted), in the log records (DEBUG),
in the job events or in the rendered pages.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.apps import apps
from django.core import mail
from django.db import models
from django.urls import reverse

from jobs import alerts, runner, services
from jobs.choices import HostRunState, JobKind
from jobs.models import Alert, HostRun, HostRunEvent, Job, ServiceAccountSecret
from jobs.services import job_create
from jobs.tasks import deliver_webhook
from servers.audit import Actor
from servers.binding import bind
from servers.choices import AuthMethod, Role, TLSVerify, WinRMScheme
from servers.crypto import decrypt_secret, encrypt_secret
from servers.models import Credential, Customer, Membership, Server
from servers.tenancy import Scope
from tests.factories import UserFactory
from tests.integration.winlab_agent.conftest import SPECS, start_lab
from winlab.lab import Lab

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.winlab]
MSP = Scope(user_id=None, msp_role="admin")
ACTOR = Actor.system("test")
SERVICE_CANARY = "Canary-Svc-Pw-7f3a9c!x2Q"
WEBHOOK_CANARY = "canary-webhook-secret-5d1e8b"


def forms_of(secret: str) -> set[str]:
    return {
        secret,
        base64.b64encode(secret.encode("utf-8")).decode("ascii"),
        base64.b64encode(secret.encode("utf-16-le")).decode("ascii"),
    }


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                outer.bodies.append(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    running = start_lab(tmp_path_factory.mktemp("winlab-secrets"), [SPECS["spare"]])
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def inline() -> Iterator[None]:
    services.set_enqueue(runner.run_host)
    alerts.set_webhook_enqueue(lambda delivery_id: deliver_webhook.apply(args=[delivery_id]))
    yield
    services.set_enqueue(None)
    alerts.set_webhook_enqueue(None)


def _server(lab: Lab) -> tuple[Server, str]:
    entry = next(e for e in lab.inventory()["hosts"] if e["name"] == SPECS["spare"].name)
    customer = Customer.objects.create(name="Canary Ltd")
    credential = Credential(customer=customer, name="canary-admin", username=entry["username"], auth=AuthMethod.NTLM)
    credential.set_secret(entry["password"])
    credential.save()
    server = Server.objects.create(
        customer=customer,
        name=entry["name"],
        address=entry["address"],
        winrm_scheme=WinRMScheme.HTTP,
        winrm_port=entry["winrm"]["http_port"],
        tls_verify=TLSVerify.OFF,
        smtp_port=entry["mail_ports"]["smtp"],
        pop_port=entry["mail_ports"]["pop"],
        imap_port=entry["mail_ports"]["imap"],
        credential=credential,
    )
    bind(server)  # as an MSP admin saving it would
    server.save(update_fields=["credential_binding"])
    return server, entry["password"]


def _run(kind: JobKind, server: Server) -> HostRun:
    return HostRun.objects.get(job=job_create(scope=MSP, actor=ACTOR, kind=kind, servers=[server]))


def _database_texts() -> Iterator[tuple[str, str]]:
    """(table.column, value) of every text and JSON column of every model, encrypted columns excepted."""
    for model in apps.get_models():
        fields = [
            f.name
            for f in model._meta.concrete_fields
            if isinstance(f, (models.CharField, models.TextField, models.JSONField))
            and not f.name.endswith("_encrypted")
        ]
        if not fields:
            continue
        for row in model._default_manager.values_list(*fields):
            for name, value in zip(fields, row, strict=True):
                if value not in (None, ""):
                    yield f"{model._meta.db_table}.{name}", value if isinstance(value, str) else repr(value)


def test_canaries_appear_nowhere(lab: Lab, inline: None, settings, caplog, client) -> None:
    caplog.set_level(logging.DEBUG)
    settings.FLEET_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    server, credential_password = _server(lab)
    ServiceAccountSecret.objects.create(server=server, password_encrypted=encrypt_secret(SERVICE_CANARY))
    receiver = Receiver()
    try:
        alerts.alert_settings_save(
            scope=MSP,
            actor=ACTOR,
            customer=server.customer,
            email_recipients=["noc@example.net"],
            webhook_url=receiver.url,
            webhook_secret=WEBHOOK_CANARY,
            auto_remediate=False,
            webhook_allow_http=True,  # the receiver is plain http on 127.0.0.1
        )
        harden = _run(JobKind.HARDEN, server)
        assert harden.state == HostRunState.SUCCEEDED
        rotate = _run(JobKind.ROTATE_PASSWORD, server)
        assert rotate.state == HostRunState.SUCCEEDED
        rotated = decrypt_secret(ServiceAccountSecret.objects.get(server=server).password_encrypted)
        assert rotated != SERVICE_CANARY
        assert _run(JobKind.VERIFY, server).state == HostRunState.SUCCEEDED
        # A GPO takes the service logon right away: the next verify drifts (alert: email + signed webhook),
        # and a rotation fails its restart and restores the previous password (a failed run).
        lab.fault(server.name, gpo_revert="SeServiceLogonRight", gpo_refresh_in=0.5)
        lab.advance(1.0)
        assert _run(JobKind.VERIFY, server).state == HostRunState.SUCCEEDED
        failed_rotation = _run(JobKind.ROTATE_PASSWORD, server)
        assert failed_rotation.state == HostRunState.ROLLED_BACK
        lab.fault(server.name, clear=True)
        lab.fault(server.name, auth_failure=True)
        assert _run(JobKind.VERIFY, server).state == HostRunState.FAILED
        lab.fault(server.name, clear=True)
    finally:
        receiver.close()
    assert Alert.objects.filter(server=server).exists()
    assert receiver.bodies
    assert mail.outbox

    canaries = {
        "credential password": credential_password,
        "first service password": SERVICE_CANARY,
        "rotated service password": rotated,
        "webhook secret": WEBHOOK_CANARY,
    }
    places: dict[str, str] = {}
    for where, text in _database_texts():
        places[f"db {where}"] = places.get(f"db {where}", "") + "\n" + text
    places["logs"] = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records)
    places["events"] = "\n".join(HostRunEvent.objects.values_list("message", flat=True))
    places["webhook bodies"] = "\n".join(body.decode() for body in receiver.bodies)
    places["emails"] = "\n".join(f"{m.subject}\n{m.body}" for m in mail.outbox)

    alice: Any = UserFactory(username="alice-canary")
    Membership.objects.create(user=alice, customer=None, role=Role.ADMIN)
    client.force_login(alice)
    pages = [
        reverse("server_detail", kwargs={"server_id": server.pk}),
        reverse("server_harden", kwargs={"server_id": server.pk}),
        reverse("server_rotate_password", kwargs={"server_id": server.pk}),
        reverse("customer_alert_settings", kwargs={"customer_id": server.customer_id}),
        reverse("customer_schedule", kwargs={"customer_id": server.customer_id}),
        reverse("alert_list") + "?show=all",
        reverse("audit_list"),
        reverse("audit_export"),
        reverse("job_list"),
    ]
    for job in Job.objects.all():
        pages.append(reverse("job_detail", kwargs={"job_id": job.pk}))
        pages.append(reverse("job_log", kwargs={"job_id": job.pk}) + "?after=0")
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        body = b"".join(response.streaming_content) if response.streaming else response.content
        places[f"page {url}"] = body.decode()

    # The scan reads what it should (a vacuous scan would pass too).
    assert any("Rotated: IME_SYSTEM" in text for where, text in places.items() if where.startswith("db "))
    assert "Rotated: IME_SYSTEM" in places["events"]
    leaks = [
        f"{label} ({'raw' if form == secret else 'encoded'}) in {where}"
        for label, secret in canaries.items()
        for form in forms_of(secret)
        for where, text in places.items()
        if form in text
    ]
    assert leaks == []
