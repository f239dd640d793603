"""The webhooks in the committed schema are the ones the app sends (issue 15).

Every event is raised with the app's own code (`compliance_checked`, `server_status_changed` → `alert_raise`)
and delivered by `webhook_deliver` to a real receiver on 127.0.0.1. What arrives must be exactly the
documented payload (every field, none undocumented, at any depth), carry the documented headers, and its
signature must verify with nothing but the recipe `api/openapi.yaml` states (`x-fleet-signature`).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker

from jobs.alerts import alert_settings_save, compliance_checked, server_status_changed
from jobs.models import AlertDelivery, HostRun
from jobs.webhooks import webhook_deliver
from servers.audit import Actor
from servers.tenancy import Scope
from tests.factories import tenant_job
from tests.integration.alerts.test_alerts import Receiver

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[3]
SCHEMA: dict[str, Any] = yaml.safe_load((ROOT / "api" / "openapi.yaml").read_text(encoding="utf-8"))
WEBHOOK_SECRET = "whsec-only-the-receiver-knows-41"
MSP = Scope(user_id=None, msp_role="admin")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")

Delivered = tuple[dict[str, str], bytes]  # the headers (lower-case names) and the raw body, as received


def _format_checker() -> FormatChecker:
    """date-time checked for real (jsonschema skips it without the optional rfc3339-validator)."""
    checker = FormatChecker()

    @checker.checks("date-time", raises=ValueError)
    def _date_time(value: object) -> bool:
        if not isinstance(value, str):
            return True
        if not RFC3339.match(value):
            raise ValueError(f"{value!r} is not RFC 3339")
        datetime.fromisoformat(value)
        return True

    return checker


def _strict(components: dict[str, Any]) -> dict[str, Any]:
    """The components with every object closed (additionalProperties: false): an undocumented field fails."""
    closed = copy.deepcopy(components)

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node:
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for item in node:
                close(item)

    close(closed)
    return closed


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator(
        {**schema, "components": _strict(SCHEMA["components"])}, format_checker=_format_checker()
    )


def _operation(event: str) -> dict[str, Any]:
    return SCHEMA["webhooks"][event]["post"]


def _errors(validator: Draft202012Validator, instance: Any) -> list[str]:
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(instance)]


@pytest.fixture
def delivered(tenant_a, settings) -> dict[str, Delivered]:
    """One delivery of every kind of alert the app raises, as the receiver got it (key: the alert's kind)."""
    settings.FLEET_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    tenant_a.customer.name = "Tenant A Müller"  # non-ASCII: the signed bytes are what was sent, not the text
    tenant_a.customer.save(update_fields=["name"])
    server = tenant_a.server
    host_run = HostRun.objects.get(job_id=tenant_job(tenant_a))
    with Receiver([]) as receiver:
        alert_settings_save(
            scope=MSP,
            actor=Actor.system("test"),
            customer=tenant_a.customer,
            email_recipients=[],
            webhook_url=receiver.url,
            webhook_secret=WEBHOOK_SECRET,
            auto_remediate=False,
            webhook_allow_http=True,  # the receiver is plain http on 127.0.0.1
        )
        target = "C:\\Program Files (x86)\\Mail Enable\\Bin"
        drift = compliance_checked(
            server=server,
            host_run=host_run,
            previous=[
                {"rule_id": "file_acl.bin", "target": target, "status": "compliant"},
                {"rule_id": "user_right.logon", "target": "IME_SYSTEM", "status": "compliant"},
            ],
            current=[
                {"rule_id": "file_acl.bin", "target": target, "status": "drift"},
                {"rule_id": "user_right.logon", "target": "IME_SYSTEM", "status": "error"},
            ],
            status_before="compliant",
            status_after="drifted",
        )
        status = server_status_changed(
            server_id=server.pk, host_run=host_run, status_before="drifted", status_after="unreachable"
        )
        assert drift is not None
        assert status is not None
        for alert in (drift, status):
            assert webhook_deliver(AlertDelivery.objects.get(alert=alert, channel="webhook").pk) is True
    assert len(receiver.requests) == 2
    return {"drift": receiver.requests[0], "status": receiver.requests[1]}


def test_every_event_the_app_sends_is_documented_and_only_those(delivered) -> None:
    sent = {json.loads(body)["event"] for _, body in delivered.values()}
    in_code = set()
    for path in ROOT.glob("[!.]*/**/*.py"):
        if "tests" not in path.parts and ".venv" not in path.parts:
            in_code |= set(re.findall(r'"event":\s*"([^"]+)"', path.read_text(encoding="utf-8")))
    assert (
        sent == in_code == set(SCHEMA["webhooks"]) == set(SCHEMA["components"]["schemas"]["WebhookEventEnum"]["enum"])
    )
    assert SCHEMA["openapi"] == "3.1.0"


def test_each_payload_is_exactly_the_documented_one(delivered, tenant_a) -> None:
    request_body = _operation("fleet.alert")["requestBody"]
    assert request_body["required"] is True
    validator = _validator(request_body["content"]["application/json"]["schema"])
    payloads = {kind: json.loads(body) for kind, (_, body) in delivered.items()}
    for kind, payload in payloads.items():
        assert _errors(validator, payload) == [], kind
    drift, status = payloads["drift"], payloads["status"]
    target = "C:\\Program Files (x86)\\Mail Enable\\Bin"
    assert {key: value for key, value in drift.items() if key not in ("alert_id", "delivery_id", "sent_at")} == {
        "event": "fleet.alert",
        "kind": "drift",
        "customer": "Tenant A Müller",
        "server": "mx-a-01",
        "message": "mx-a-01: 2 check(s) that were compliant are now in drift or error; status compliant → drifted.",
        "details": {
            "status_before": "compliant",
            "status_after": "drifted",
            "rules": [
                {"rule_id": "file_acl.bin", "target": target, "status": "drift"},
                {"rule_id": "user_right.logon", "target": "IME_SYSTEM", "status": "error"},
            ],
            "rules_total": 2,
        },
        "created_at": AlertDelivery.objects.get(pk=drift["delivery_id"]).alert.created_at.isoformat(),
    }
    assert (status["kind"], status["details"]) == (
        "status",
        {"status_before": "drifted", "status_after": "unreachable", "rules": [], "rules_total": 0},
    )
    assert status["message"] == "mx-a-01: status drifted → unreachable (run failed)."
    for payload in payloads.values():
        delivery = AlertDelivery.objects.get(pk=payload["delivery_id"])
        assert (payload["alert_id"], delivery.state) == (delivery.alert_id, "sent")


def test_a_payload_the_schema_does_not_describe_fails_the_check(delivered) -> None:
    """The check itself bites: a renamed, an added, a missing or a retyped field (at any depth) is caught."""
    validator = _validator(_operation("fleet.alert")["requestBody"]["content"]["application/json"]["schema"])
    payload = json.loads(delivered["drift"][1])
    renamed = {**{k: v for k, v in payload.items() if k != "server"}, "server_name": payload["server"]}
    added = {**payload, "details": {**payload["details"], "compliance_pct": 50.0}}
    missing = {k: v for k, v in payload.items() if k != "sent_at"}
    retyped = {**payload, "alert_id": str(payload["alert_id"])}
    bad_time = {**payload, "created_at": "yesterday"}
    for spoiled in (renamed, added, missing, retyped, bad_time):
        assert _errors(validator, spoiled)


def test_the_documented_headers_arrive(delivered) -> None:
    parameters = _operation("fleet.alert")["parameters"]
    assert [(p["in"], p["name"], p["required"]) for p in parameters] == [
        ("header", "X-Fleet-Signature", True),
        ("header", "X-Fleet-Delivery", True),
        ("header", "User-Agent", True),
    ]
    for headers, body in delivered.values():
        for parameter in parameters:
            value = headers.get(parameter["name"].lower())
            assert value is not None, parameter["name"]
            assert _errors(_validator(parameter["schema"]), value) == [], parameter["name"]
        assert headers["content-type"] == "application/json"
        assert headers["x-fleet-delivery"] == str(json.loads(body)["delivery_id"])


def _verifies(recipe: dict[str, str], secret: str, headers: dict[str, str], body: bytes) -> bool:
    """A receiver's check, built from the schema's recipe alone (no import of the app's `sign`)."""
    assert recipe["algorithm"] == "HMAC-SHA256"
    assert recipe["encoding"].startswith("hex")
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(recipe["prefix"] + digest, headers.get(recipe["header"].lower(), ""))


def test_a_receiver_verifies_the_signature_with_only_the_documented_recipe(delivered) -> None:
    operation = _operation("fleet.alert")
    recipe = operation["x-fleet-signature"]
    assert recipe["header"] == operation["parameters"][0]["name"]
    assert recipe["header"] in operation["description"]
    assert "HMAC-SHA256" in operation["description"]
    for headers, body in delivered.values():
        assert _verifies(recipe, WEBHOOK_SECRET, headers, body)
        assert not _verifies(recipe, WEBHOOK_SECRET, headers, body.replace(b"mx-a-01", b"mx-a-02"))
        assert not _verifies(recipe, WEBHOOK_SECRET, headers, json.dumps(json.loads(body), indent=1).encode())
        assert not _verifies(recipe, "another-customers-secret", headers, body)
        assert WEBHOOK_SECRET not in body.decode() + json.dumps(headers)
