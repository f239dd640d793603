"""The webhooks the app sends, in the OpenAPI schema (`webhooks:`, OAS 3.1): each event's payload and its signature.

`jobs.webhooks` builds (`alert_payload`), signs (`sign`) and sends (`webhook_deliver`) them; this module only
describes them, by hand, so that a change on either side shows: tests/integration/api/test_api_webhooks.py
builds every event with the app's own code, validates it against the committed schema (no field missing, none
undocumented) and verifies its signature with nothing but the recipe stated here.

There is one event today, `fleet.alert` (a server's compliance dropped: `kind` drift or status).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.settings import spectacular_settings
from drf_spectacular.utils import OpenApiResponse, OpenApiWebhook, extend_schema
from rest_framework import serializers

from jobs.alerts import DROPPED_TO, MAX_RULES_IN_ALERT
from jobs.choices import AlertKind
from jobs.webhooks import SIGNATURE_HEADER
from servers.choices import ServerStatus

DROPPED_RULE_STATUSES = sorted(DROPPED_TO)  # the schema's DroppedRuleStatusEnum (SPECTACULAR_SETTINGS)
DELIVERY_HEADER = "X-Fleet-Delivery"
WEBHOOK_EVENTS = ["fleet.alert"]  # every `event` the app sends (the schema's WebhookEventEnum)

# How a receiver checks a request, machine-readable (the test verifies deliveries with exactly this).
SIGNATURE: dict[str, str] = {
    "header": SIGNATURE_HEADER,
    "prefix": "sha256=",
    "algorithm": "HMAC-SHA256",
    "encoding": "hex (lowercase)",
    "key": "The customer's webhook secret (Alerts settings), as UTF-8 bytes",
    "signed": "The raw request body, byte for byte as received (compact JSON with sorted keys, UTF-8): "
    "verify it before parsing, never a re-serialisation of the parsed JSON",
}

SIGNATURE_TEXT = f"""Every request is signed. `{SIGNATURE_HEADER}: sha256=<hex>` is the HMAC-SHA256, keyed with the \
customer's webhook secret (its UTF-8 bytes), of the raw request body exactly as received; the hex digest is \
lowercase. To verify, before parsing the JSON:

    expected = "sha256=" + hmac.new(secret.encode("utf-8"), raw_body, hashlib.sha256).hexdigest()
    valid = hmac.compare_digest(expected, request.headers["{SIGNATURE_HEADER}"])

Refuse the request when it does not match. The signature has no timestamp of its own: `sent_at` (signed, in the \
body) tells a replay from a fresh request, and `delivery_id` (also in `{DELIVERY_HEADER}`) is the same on every \
retry of one delivery, so a receiver can drop duplicates.

Answer 2xx once stored. A 4xx other than 408 and 429 ends the delivery (it is not retried); anything else — 408, \
429, a 3xx (redirects are not followed), a 5xx, a timeout (10 s by default), no connection — is retried with \
exponential backoff (30 s, doubling, at most 6 hours apart; 6 retries by default). The target must be \
https:// (plain http:// only where an MSP admin allowed it for the customer) and is checked against the \
installation's allow-list before every attempt."""


class WebhookAlertRuleSerializer(serializers.Serializer[dict[str, Any]]):
    """A check that was compliant at the previous verify and is not any more."""

    rule_id = serializers.CharField(help_text="The hardening rule's id, e.g. file_acl.mailenable_bin")
    target = serializers.CharField(help_text="The resolved target (a path, a right, a setting)")
    status = serializers.ChoiceField(choices=DROPPED_RULE_STATUSES, help_text="What the verify found now")


class AlertDetailsSerializer(serializers.Serializer[dict[str, Any]]):
    """What changed: the server's status before and after, and the checks that dropped."""

    status_before = serializers.ChoiceField(choices=ServerStatus.choices, help_text="The server's status before")
    status_after = serializers.ChoiceField(choices=ServerStatus.choices, help_text="The server's status now")
    rules = WebhookAlertRuleSerializer(
        many=True,
        help_text=f"The checks that dropped, at most the first {MAX_RULES_IN_ALERT} (empty for kind status)",
    )
    rules_total = serializers.IntegerField(min_value=0, help_text="How many checks dropped in all")


class AlertEventSerializer(serializers.Serializer[dict[str, Any]]):
    """The body of `fleet.alert`: one server's compliance dropped (one alert per drop, not per verify)."""

    event = serializers.ChoiceField(choices=["fleet.alert"], help_text="Always fleet.alert for this payload")
    alert_id = serializers.IntegerField(help_text="The alert's id (the Alerts page)")
    kind = serializers.ChoiceField(
        choices=AlertKind.choices,
        help_text="drift: checks that were compliant are now in drift or error; status: the server's status "
        "worsened (e.g. it could not be reached)",
    )
    customer = serializers.CharField(help_text="The customer's name")
    server = serializers.CharField(help_text="The server's name")
    message = serializers.CharField(help_text="What happened, in words (secrets redacted)")
    details = AlertDetailsSerializer()
    created_at = serializers.DateTimeField(help_text="When the alert was raised (ISO 8601 with offset)")
    sent_at = serializers.DateTimeField(help_text="When this attempt was sent (new on every retry)")
    delivery_id = serializers.IntegerField(help_text=f"The delivery's id, the same on each retry (= {DELIVERY_HEADER})")


ALERT_WEBHOOK = OpenApiWebhook(
    name="fleet.alert",
    decorator=extend_schema(
        summary="A server's compliance dropped (sent to the customer's webhook URL)",
        description=SIGNATURE_TEXT,
        request=AlertEventSerializer,
        responses={200: OpenApiResponse(description="Received: any 2xx ends the delivery")},
        extensions={"x-fleet-signature": SIGNATURE},
    ),
)


def document_webhook_headers(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """Postprocessing hook, before the enums' (SPECTACULAR_SETTINGS): the headers every webhook request carries
    (drf-spectacular's webhooks take no parameters), the signature first.

    It also rebuilds the components: drf-spectacular builds them before it registers the webhooks' payloads,
    so without this the enum hook would not see them (their enums would stay inline, unnamed).
    """
    result["components"] = generator.registry.build(spectacular_settings.APPEND_COMPONENTS)
    headers = [
        {
            "in": "header",
            "name": SIGNATURE_HEADER,
            "required": True,
            "description": "sha256= and the lowercase hex HMAC-SHA256 of the raw body under the webhook secret",
            "schema": {"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"},
        },
        {
            "in": "header",
            "name": DELIVERY_HEADER,
            "required": True,
            "description": "The delivery's id: the same on every retry",
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
        },
        {
            "in": "header",
            "name": "User-Agent",
            "required": True,
            "schema": {"type": "string", "const": "FleetLockdown-Webhook/1"},
        },
    ]
    for operations in result.get("webhooks", {}).values():
        for operation in operations.values():
            operation["parameters"] = headers
    return result
