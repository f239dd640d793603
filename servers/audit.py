"""The audit trail: every service that changes state calls `audit_record` in its transaction."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db.models import Model
from django.http import HttpRequest

from servers.models import AuditEvent, Customer

# Field names whose values are never written to the audit trail, whatever the model.
SECRET_FIELD_NAMES = frozenset({"secret_encrypted", "secret", "password", "service_password_encrypted"})
REDACTED = "[secret changed]"


@dataclass(frozen=True)
class Actor:
    """Who acts and from where; `system` actors are jobs, schedules and commands."""

    user: Any | None
    source_ip: str | None = None
    name: str = ""

    @classmethod
    def from_request(cls, request: HttpRequest) -> Actor:
        raw_ip = request.META.get("REMOTE_ADDR", "")
        try:
            ip: str | None = str(ipaddress.ip_address(raw_ip))
        except ValueError:
            ip = None
        user = request.user if request.user.is_authenticated else None
        return cls(user=user, source_ip=ip, name=user.get_username() if user else "")

    @classmethod
    def system(cls, name: str) -> Actor:
        return cls(user=None, source_ip=None, name=name)

    @property
    def label(self) -> str:
        return self.name or (self.user.get_username() if self.user is not None else "system")


def _plain(value: Any) -> Any:
    if isinstance(value, Model):
        return str(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return sorted(str(item) for item in value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def snapshot(instance: Model, fields: Iterable[str]) -> dict[str, Any]:
    """The audited values of `fields` (secrets replaced) for a later `diff`."""
    values: dict[str, Any] = {}
    for name in fields:
        if name in SECRET_FIELD_NAMES:
            continue
        values[name] = _plain(getattr(instance, name))
    return values


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, list[Any]]:
    """{field: [old, new]} for every field whose value changed."""
    changed: dict[str, list[Any]] = {}
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old != new:
            changed[name] = [old, new]
    return changed


def audit_record(
    *,
    actor: Actor,
    action: str,
    obj: Model | None = None,
    customer: Customer | None = None,
    changes: Mapping[str, Any] | None = None,
    object_repr: str = "",
) -> AuditEvent:
    """Append one audit event. `changes` must already be free of secrets (use `diff`)."""
    clean: dict[str, Any] = {}
    for key, value in (changes or {}).items():
        clean[key] = REDACTED if key in SECRET_FIELD_NAMES else value
    if customer is None and obj is not None:
        customer = obj if isinstance(obj, Customer) else getattr(obj, "customer", None)
    return AuditEvent.objects.create(
        actor=actor.user,
        actor_name=actor.label[:150],
        source_ip=actor.source_ip,
        action=action,
        object_type=obj._meta.label_lower if obj is not None else "",
        object_id=str(obj.pk) if obj is not None and obj.pk is not None else "",
        object_repr=(object_repr or (str(obj) if obj is not None else ""))[:200],
        customer=customer,
        customer_name=customer.name if customer is not None else "",
        changes=clean,
    )
