"""Alert webhooks: the target allow-list, the signature, one delivery attempt.

One contract, in the manner of healthchecks' transports: `webhook_deliver(delivery_id)` makes one
attempt and raises `WebhookError(message, permanent=...)`; the Celery task retries the
non-permanent ones with exponential backoff.

The body is JSON; `X-Fleet-Signature: sha256=<hex>` is HMAC-SHA256 of the exact body bytes under
the customer's webhook secret (encrypted at rest). Targets are checked when saved AND before
every attempt (a name may resolve elsewhere later): https only (plain http only where an MSP admin
allowed it for the customer), the host must be on `FLEET_WEBHOOK_ALLOWED_HOSTS`, and every address
it resolves to must be public unless an IP/CIDR entry names it. Each attempt resolves the name ONCE
and connects to the address it vetted (Host header and TLS SNI / certificate check still name the
host), so a name that answers a public address to the check and 127.0.0.1 to the request (DNS
rebinding) cannot reach inside. Redirects are not followed (they could lead inside). Error texts
never name a resolved address.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import certifi
import urllib3
from django.conf import settings

from jobs.choices import DeliveryState
from jobs.models import AlertDelivery, AlertSettings
from lockdown import clock
from servers.crypto import decrypt_secret, redact

SIGNATURE_HEADER = "X-Fleet-Signature"
# Cloud metadata services answer on these even where they are not link-local.
METADATA_ADDRESSES = frozenset({"169.254.169.254", "fd00:ec2::254", "100.100.100.200"})
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookError(Exception):
    """A delivery attempt failed; `permanent` ones are not retried."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


class WebhookTargetRefused(WebhookError):
    """The URL is not allowed (scheme, allow-list, or an internal address)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


def _allowed_entries() -> list[str]:
    return [entry.strip().lower() for entry in getattr(settings, "FLEET_WEBHOOK_ALLOWED_HOSTS", ["*"]) if entry.strip()]


def _explicitly_allowed(address: IPAddress, entries: list[str]) -> bool:
    for entry in entries:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def _internal(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        str(address) in METADATA_ADDRESSES
        or address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (tests may replace this)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({ipaddress.ip_address(info[4][0]) for info in infos}, key=str)


@dataclass(frozen=True)
class Target:
    """A vetted webhook URL: where to connect (`address`) and what to call the host (`host`)."""

    scheme: str
    host: str
    port: int
    path: str
    address: IPAddress

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"


def vet_target(url: str, *, allow_http: bool = False) -> Target:
    """The target of `url` with the one address to connect to; `WebhookTargetRefused` if not allowed."""
    parts = urlsplit(url)
    if parts.scheme != "https" and not (parts.scheme == "http" and allow_http):
        raise WebhookTargetRefused(
            "Webhook URLs must start with https:// (plain http:// only where an MSP admin allowed it for this "
            "customer)."
        )
    host = (parts.hostname or "").lower()
    if not host:
        raise WebhookTargetRefused("The webhook URL has no host name.")
    if parts.username or parts.password:
        raise WebhookTargetRefused("Put no credentials in the webhook URL; the secret signs each request.")
    entries = _allowed_entries()
    if "*" not in entries and host not in entries and not _host_in_networks(host, entries):
        raise WebhookTargetRefused(f"{host} is not on the webhook allow-list (FLEET_WEBHOOK_ALLOWED_HOSTS).")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = resolve(host, port)
    except (OSError, ValueError):
        raise WebhookTargetRefused(f"{host} does not resolve.") from None
    if not addresses:
        raise WebhookTargetRefused(f"{host} does not resolve.")
    for address in addresses:
        if _internal(address) and not _explicitly_allowed(address, entries):
            # the address itself is not named: the text reaches customers' pages
            raise WebhookTargetRefused(
                f"{host} resolves to an internal address; internal targets must be allowed explicitly."
            )
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(scheme=parts.scheme, host=host, port=port, path=path, address=addresses[0])


def check_webhook_target(url: str, *, allow_http: bool = False) -> None:
    """Raise `WebhookTargetRefused` unless `url` may receive alerts (see the module docstring)."""
    vet_target(url, allow_http=allow_http)


def _post(target: Target, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST to the vetted address only; Host, SNI and the certificate check name `target.host`."""
    address = str(target.address)
    pool: urllib3.HTTPConnectionPool
    if target.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            address,
            target.port,
            server_hostname=target.host,
            assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
            timeout=timeout,
            retries=False,
        )
    else:
        pool = urllib3.HTTPConnectionPool(address, target.port, timeout=timeout, retries=False)
    try:
        response = pool.urlopen(
            "POST", target.path, body=body, headers={**headers, "Host": target.host_header}, redirect=False
        )
        return int(response.status)
    finally:
        pool.close()


def _host_in_networks(host: str, entries: list[str]) -> bool:
    try:
        return _explicitly_allowed(ipaddress.ip_address(host), entries)
    except ValueError:
        return False


def sign(secret: str, body: bytes) -> str:
    """The signature header value: `sha256=` + hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def backoff_seconds(retries: int) -> int:
    """Exponential: base, 2×base, 4×base … capped at six hours."""
    base = int(getattr(settings, "FLEET_WEBHOOK_BACKOFF_BASE_S", 30))
    return int(min(base * (2**retries), 6 * 3600))


def alert_payload(delivery: AlertDelivery) -> dict[str, Any]:
    alert = delivery.alert
    return {
        "event": "fleet.alert",
        "alert_id": alert.pk,
        "kind": alert.kind,
        "customer": alert.customer.name,
        "server": alert.server_name,
        "message": alert.message,
        "details": alert.details,
        "created_at": alert.created_at.isoformat(),
        "sent_at": clock.now().isoformat(),
        "delivery_id": delivery.pk,
    }


def webhook_deliver(delivery_id: int) -> bool:
    """One attempt. True when delivered (or nothing left to do); raises `WebhookError` otherwise.

    DANGER: decrypts the customer's webhook secret; it only keys the HMAC and is never sent or logged.
    """
    delivery = AlertDelivery.objects.select_related("alert", "alert__customer").filter(pk=delivery_id).first()
    if delivery is None or delivery.state != DeliveryState.PENDING:
        return True
    AlertDelivery.objects.filter(pk=delivery.pk).update(attempts=delivery.attempts + 1)
    config = AlertSettings.objects.filter(customer_id=delivery.alert.customer_id).first()
    if config is None or not config.webhook_url or not config.webhook_secret_encrypted:
        raise WebhookError("The customer has no webhook configured any more.", permanent=True)
    target = vet_target(delivery.target, allow_http=config.webhook_allow_http)
    secret = decrypt_secret(config.webhook_secret_encrypted)
    body = json.dumps(alert_payload(delivery), sort_keys=True, separators=(",", ":")).encode("utf-8")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "FleetLockdown-Webhook/1",
        SIGNATURE_HEADER: sign(secret, body),
        "X-Fleet-Delivery": str(delivery.pk),
    }
    try:
        status = _post(target, body, headers, float(getattr(settings, "FLEET_WEBHOOK_TIMEOUT_S", 10)))
    except urllib3.exceptions.HTTPError as exc:
        # the class only: urllib3's texts name the address connected to
        raise WebhookError(f"{exc.__class__.__name__} sending to the webhook") from None
    if 200 <= status < 300:
        AlertDelivery.objects.filter(pk=delivery.pk).update(
            state=DeliveryState.SENT, delivered_at=clock.now(), last_error=""
        )
        return True
    # 4xx other than 408/429 will not get better by retrying.
    permanent = 400 <= status < 500 and status not in (408, 429)
    raise WebhookError(f"The webhook answered HTTP {status}.", permanent=permanent)


def delivery_failed(delivery_id: int, message: str, *, final: bool) -> None:
    """Record an attempt's error; `final` marks the delivery failed (no more retries)."""
    fields: dict[str, Any] = {"last_error": redact(message)[:500]}
    if final:
        fields["state"] = DeliveryState.FAILED
    AlertDelivery.objects.filter(pk=delivery_id, state=DeliveryState.PENDING).update(**fields)
