"""Issuing, checking and revoking personal API tokens (the only code that sees a token in clear)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction

from api.models import ApiToken
from lockdown import clock
from servers.audit import Actor, audit_record
from servers.models import Customer
from servers.tenancy import Scope, scope_for_user

TOKEN_PREFIX = "flk_"  # noqa: S105  (the public marker of a token, not a secret)
MAX_TOKEN_DAYS = 366
# Writing last_used_at on every request would make each API read a write: once a minute is enough
# to answer "is this token still used?".
LAST_USED_RESOLUTION = timedelta(minutes=1)


class TokenRefused(ValueError):
    """The token cannot be made as asked; the message says why."""


@dataclass(frozen=True)
class Issued:
    token: ApiToken
    secret: str  # shown once to its owner, never stored or logged


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii", "replace")).hexdigest()


def token_issue(
    *,
    scope: Scope,
    actor: Actor,
    name: str,
    days: int | None,
    read_only: bool,
    customer: Customer | None,
) -> Issued:
    """A new token for the acting user; narrowed to `customer` only if the user sees it."""
    user = actor.user
    if user is None:
        raise TokenRefused("only a signed-in user has tokens")
    name = " ".join(name.split())[:60]
    if not name:
        raise TokenRefused("Give the token a name (what uses it).")
    if days is not None and not 1 <= days <= MAX_TOKEN_DAYS:
        raise TokenRefused(f"A token lasts 1 to {MAX_TOKEN_DAYS} days.")
    if customer is not None and not scope.is_msp and customer.pk not in scope.customer_ids:
        raise TokenRefused("You may narrow a token only to one of your customers.")
    now = clock.now()
    with transaction.atomic():
        while True:
            prefix = secrets.token_hex(4)
            if not ApiToken.objects.filter(prefix=prefix).exists():
                break
        secret = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        token = ApiToken.objects.create(
            user=user,
            name=name,
            prefix=prefix,
            digest=_digest(secret),
            read_only=read_only,
            customer=customer,
            expires_at=now + timedelta(days=days) if days else None,
        )
        audit_record(
            actor=actor,
            action="api_token.create",
            obj=token,
            customer=customer,
            changes={
                "name": [None, name],
                "prefix": [None, prefix],
                "read_only": [None, read_only],
                "customer": [None, customer.name if customer else "all of the user's"],
                "expires_at": [None, token.expires_at.isoformat() if token.expires_at else "never"],
            },
        )
    return Issued(token=token, secret=secret)


def token_revoke(*, actor: Actor, token: ApiToken) -> ApiToken:
    """Revoke one of the actor's own tokens (an MSP admin may revoke anyone's)."""
    if token.revoked_at is None:
        token.revoked_at = clock.now()
        token.save(update_fields=["revoked_at"])
        audit_record(actor=actor, action="api_token.revoke", obj=token, customer=token.customer, changes={})
    return token


def authenticate(secret: str, *, now: datetime | None = None) -> ApiToken | None:
    """The live token this secret is, or None (unknown, wrong, expired, revoked, or its user inactive)."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 100:
        return None
    prefix = secret[len(TOKEN_PREFIX) :].split("_", 1)[0]
    token = ApiToken.objects.select_related("user", "customer").filter(prefix=prefix).first()
    if token is None or not hmac.compare_digest(token.digest, _digest(secret)):
        return None
    now = now or clock.now()
    if token.revoked_at is not None or (token.expires_at is not None and token.expires_at <= now):
        return None
    if not token.user.is_active:
        return None
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def token_scope(token: ApiToken) -> Scope:
    """The user's memberships, narrowed by the token: never more than the user may do in the pages."""
    return scope_for_user(token.user).narrowed(
        read_only=token.read_only, customer_id=token.customer_id if token.customer_id else None
    )


def token_actor(token: ApiToken, request: Any) -> Actor:
    """Who the audit trail names for a request made with this token."""
    base = Actor.from_request(request)
    return Actor(
        user=token.user,
        source_ip=base.source_ip,
        name=f"{token.user.get_username()} (API token {token.name!r}, {token.prefix})",
    )
