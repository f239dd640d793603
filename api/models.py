"""Personal API tokens: named, optionally expiring and narrowed, stored hashed, revocable."""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models


class ApiToken(models.Model):
    """One user's token for `/api/v1/`. The token itself is shown once and never stored.

    `prefix` (public, 8 characters) finds the row; `digest` is the SHA-256 of the whole token,
    compared in constant time (`api.tokens.authenticate`). A token acts with its user's
    memberships (servers.tenancy.Scope), narrowed by `read_only` and `customer` — never more.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=60)
    prefix = models.CharField(max_length=8, unique=True)
    digest = models.CharField(max_length=64)
    read_only = models.BooleanField(default=False)
    customer = models.ForeignKey(
        "servers.Customer", null=True, blank=True, on_delete=models.CASCADE, related_name="api_tokens"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset({"digest"})

    class Meta:
        ordering: ClassVar = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"API token {self.name!r} ({self.prefix})"
