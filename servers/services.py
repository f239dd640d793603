"""Writes to the inventory. Each service checks permission, writes, and audits in one transaction."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from lockdown import clock
from servers.audit import Actor, audit_record, diff, snapshot
from servers.binding import BOUND_FIELDS, bind, is_bound
from servers.choices import AuthMethod, StaleReason, TLSVerify, WinRMScheme
from servers.models import Credential, Customer, Server, Tag
from servers.tenancy import Action, Scope, require

SERVER_AUDIT_FIELDS = (
    "customer",
    "name",
    "address",
    "winrm_scheme",
    "winrm_port",
    "tls_verify",
    "tls_fingerprint",
    "credential",
    "smtp_port",
    "pop_port",
    "imap_port",
    "webmail_url",
    "admin_url",
    "web_self_signed",
    "sql_integrated",
    "integrated_auth",
    "integrated_auth_acknowledged_by",
    "integrated_auth_acknowledged_at",
    "notes",
)
CREDENTIAL_AUDIT_FIELDS = ("customer", "name", "username", "auth")
CUSTOMER_AUDIT_FIELDS = (
    "name",
    "notes",
    "maintenance_days",
    "maintenance_start",
    "maintenance_hours",
    "maintenance_timezone",
    "management_networks",
)


def _apply(instance: Any, data: dict[str, Any], fields: tuple[str, ...]) -> None:
    for name in fields:
        if name in data:
            setattr(instance, name, data[name])


def _set_tags(server: Server, tags: list[str]) -> None:
    existing = {tag.name: tag for tag in Tag.objects.filter(name__in=tags)}
    missing = [Tag(name=name) for name in tags if name not in existing]
    if missing:
        Tag.objects.bulk_create(missing, ignore_conflicts=True)
        existing = {tag.name: tag for tag in Tag.objects.filter(name__in=tags)}
    server.tags.set([existing[name] for name in tags])


# --- Customers ------------------------------------------------------------------------------
@transaction.atomic
def customer_create(*, scope: Scope, actor: Actor, name: str, notes: str = "", **window: Any) -> Customer:
    require(scope, Action.MANAGE_CUSTOMERS)
    customer = Customer(name=name, notes=notes)
    _apply(customer, window, CUSTOMER_AUDIT_FIELDS)
    customer.save()
    audit_record(
        actor=actor, action="customer.create", obj=customer, changes=diff({}, snapshot(customer, CUSTOMER_AUDIT_FIELDS))
    )
    return customer


@transaction.atomic
def customer_update(*, scope: Scope, actor: Actor, customer: Customer, data: dict[str, Any]) -> Customer:
    require(scope, Action.MANAGE_CUSTOMERS)
    before = snapshot(Customer.objects.get(pk=customer.pk), CUSTOMER_AUDIT_FIELDS)
    _apply(customer, data, CUSTOMER_AUDIT_FIELDS)
    customer.save()
    audit_record(
        actor=actor,
        action="customer.update",
        obj=customer,
        changes=diff(before, snapshot(customer, CUSTOMER_AUDIT_FIELDS)),
    )
    return customer


# --- Credentials ----------------------------------------------------------------------------
@transaction.atomic
def credential_create(
    *, scope: Scope, actor: Actor, customer: Customer, name: str, username: str, auth: str, secret: str
) -> Credential:
    require(scope, Action.MANAGE_CREDENTIALS, customer)
    credential = Credential(customer=customer, name=name, username=username, auth=auth)
    credential.set_secret(secret)
    credential.secret_changed_at = timezone.now()
    credential.save()
    changes: dict[str, Any] = diff({}, snapshot(credential, CREDENTIAL_AUDIT_FIELDS))
    changes["secret"] = "set"  # noqa: S105  (a marker, not the secret)
    audit_record(actor=actor, action="credential.create", obj=credential, changes=changes)
    return credential


def basic_refusal(credential: Credential, auth: str) -> str | None:
    """Why `credential` may not use `auth` (Basic only where every server using it is verified HTTPS)."""
    if auth != AuthMethod.BASIC or credential.pk is None:
        return None
    exposed = credential.servers.filter(~Q(winrm_scheme=WinRMScheme.HTTPS) | Q(tls_verify=TLSVerify.OFF))
    names = sorted(set(exposed.values_list("name", flat=True)))
    if not names:
        return None
    return (
        "Basic authentication sends the password itself; it is allowed only over HTTPS with certificate "
        f"verification on, and these servers use this credential without it: {', '.join(names[:10])}"
        + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    )


@transaction.atomic
def credential_update(
    *, scope: Scope, actor: Actor, credential: Credential, data: dict[str, Any], secret: str = ""
) -> Credential:
    """Rename, change username or auth, and optionally replace the secret (never read it)."""
    require(scope, Action.MANAGE_CREDENTIALS, credential.customer_id)
    before = snapshot(Credential.objects.get(pk=credential.pk), CREDENTIAL_AUDIT_FIELDS)
    refusal = basic_refusal(credential, str(data.get("auth", credential.auth)))
    if refusal:
        raise ValidationError({"auth": refusal})
    _apply(credential, data, ("name", "username", "auth"))
    changes: dict[str, Any] = {}
    if secret:
        credential.set_secret(secret)
        credential.secret_changed_at = timezone.now()
        changes["secret"] = "replaced"  # noqa: S105  (a marker, not the secret)
    credential.save()
    changes.update(diff(before, snapshot(credential, CREDENTIAL_AUDIT_FIELDS)))
    audit_record(actor=actor, action="credential.update", obj=credential, changes=changes)
    return credential


@transaction.atomic
def credential_delete(*, scope: Scope, actor: Actor, credential: Credential) -> None:
    require(scope, Action.MANAGE_CREDENTIALS, credential.customer_id)
    audit_record(
        actor=actor,
        action="credential.delete",
        obj=credential,
        changes=diff(snapshot(credential, CREDENTIAL_AUDIT_FIELDS), {}),
    )
    credential.delete()


# --- Servers --------------------------------------------------------------------------------
def _bind_or_refuse(scope: Scope, server: Server, stored: Server | None) -> str | None:
    """Apply the credential rules of servers.binding to `server` (about to be saved).

    A user who may manage the customer's credentials binds: the credential goes where the settings
    say. Anyone else may not choose or change the credential (PermissionDenied), and an edit of the
    connection settings of a server with a credential unbinds it. Returns the audit action to record
    for the credential ("server.credential_bind" / "server.credential_unbind"), or None.
    """
    if server.credential is not None and server.credential.customer_id != server.customer_id:
        raise PermissionDenied("the credential belongs to another customer")
    may_bind = scope.can(Action.MANAGE_CREDENTIALS, server.customer_id)
    previous_credential = stored.credential_id if stored is not None else None
    if server.credential_id != previous_credential and server.credential_id is not None:
        require(scope, Action.MANAGE_CREDENTIALS, server.customer_id)
    moved = stored is None or any(getattr(server, name) != getattr(stored, name) for name in BOUND_FIELDS)
    if server.credential_id is None:
        server.credential_binding = ""
        return "server.credential_unbind" if previous_credential is not None else None
    if may_bind:
        was_bound = stored is not None and is_bound(stored) and not moved
        bind(server)
        return None if was_bound else "server.credential_bind"
    if moved:
        # someone who may not manage credentials changed where this one would be sent: it stays behind
        server.credential = None
        server.credential_binding = ""
        return "server.credential_unbind"
    return None


def _audit_binding(actor: Actor, server: Server, action: str | None, stored: Server | None) -> None:
    if action is None:
        return
    credential = stored.credential if action.endswith("unbind") and stored is not None else server.credential
    audit_record(
        actor=actor,
        action=action,
        obj=server,
        changes={
            "credential": [
                str(credential) if credential else None,
                str(server.credential) if server.credential else None,
            ],
            "endpoint": server.endpoint,
        },
    )


@transaction.atomic
def server_create(*, scope: Scope, actor: Actor, data: dict[str, Any], tags: list[str]) -> Server:
    require(scope, Action.EDIT_SERVERS, data["customer"])
    server = Server()
    _apply(server, data, (*SERVER_AUDIT_FIELDS, "tls_ca_bundle"))
    binding = _bind_or_refuse(scope, server, None)
    server.save()
    _set_tags(server, tags)
    changes: dict[str, Any] = diff({}, snapshot(server, SERVER_AUDIT_FIELDS))
    if tags:
        changes["tags"] = [[], tags]
    audit_record(actor=actor, action="server.create", obj=server, changes=changes)
    _audit_binding(actor, server, binding, None)
    return server


@transaction.atomic
def server_update(*, scope: Scope, actor: Actor, server: Server, data: dict[str, Any], tags: list[str]) -> Server:
    """Save an edit. The credential rules of servers.binding apply: see `_bind_or_refuse`."""
    require(scope, Action.EDIT_SERVERS, server.customer_id)
    if "customer" in data:
        require(scope, Action.EDIT_SERVERS, data["customer"])
    stored = Server.objects.select_related("credential").get(pk=server.pk)
    before = snapshot(stored, SERVER_AUDIT_FIELDS)
    old_tags = sorted(stored.tags.values_list("name", flat=True))
    _apply(server, data, (*SERVER_AUDIT_FIELDS, "tls_ca_bundle"))
    binding = _bind_or_refuse(scope, server, stored)
    server.save()
    _set_tags(server, tags)
    changes: dict[str, Any] = diff(before, snapshot(server, SERVER_AUDIT_FIELDS))
    if old_tags != sorted(tags):
        changes["tags"] = [old_tags, sorted(tags)]
    audit_record(actor=actor, action="server.update", obj=server, changes=changes)
    _audit_binding(actor, server, binding, stored)
    return server


@transaction.atomic
def server_delete(*, scope: Scope, actor: Actor, server: Server) -> None:
    require(scope, Action.EDIT_SERVERS, server.customer_id)
    audit_record(
        actor=actor, action="server.delete", obj=server, changes=diff(snapshot(server, SERVER_AUDIT_FIELDS), {})
    )
    server.delete()


def server_results_mark_stale(*, servers: QuerySet[Server], reason: StaleReason) -> int:
    """The stored results of `servers` may no longer describe the hosts (a rollback, a harden that did not
    complete, another profile): the figures leave them out until each one's next verify clears the mark."""
    return servers.update(results_stale_reason=reason, results_stale_since=clock.now())
