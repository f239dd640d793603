"""The API walker: every /api/v1/ operation × role × token scope answers as the pages' Scope says.

Token scopes: the user's whole scope, read-only, narrowed to customer A, narrowed to customer B (only
an MSP user may make that one). B's objects are 404 for whoever may not see them, never 403, and B's
names never appear in what A's users get.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models import Max
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from api.models import ApiToken
from api.tokens import TokenRefused, token_issue, token_scope
from jobs.models import Job
from lockdown import clock
from lockdown.models import Profile, ProfileVersion, TagAssignment, Waiver
from reports.models import Report
from servers.audit import Actor
from servers.models import Credential, Server, Tag
from servers.tenancy import Action, scope_for_user
from tests.conftest import ROLE_USERS
from tests.factories import (
    TENANT_RULE_ID,
    TenantObjects,
    sample_rule,
    tenant_alert,
    tenant_compliance,
    tenant_job,
    tenant_report,
    tenant_tag_assignment,
)

# What the walked writes create; each is deleted after its operation.
# (versions before their profiles)
CREATED = (Job, Server, Report, TagAssignment, Waiver, Credential, ProfileVersion, Profile)

pytestmark = pytest.mark.django_db

Body = Callable[[TenantObjects], dict[str, Any]]


@dataclass(frozen=True)
class Op:
    """One operation: the action it needs (None: anyone with a token; a list shows what the scope shows),
    the body it is sent (built for the tenant walked: a POST naming the tenant's objects answers as a path
    id of them would), and what it answers when allowed."""

    action: Action | None
    body: Body | None = None
    ok: int = 200
    multipart: bool = False
    fleet: bool = False  # of no customer (the MSP default): 403 for who may not, never 404


def _walk_tag(tenant: TenantObjects) -> str:
    """A second tag on the tenant's server, with no assignment yet (the walked create assigns it)."""
    tag, _ = Tag.objects.get_or_create(name=f"walk-{tenant.tag.name}")
    tenant.server.tags.add(tag)
    return tag.name


def _profile_file(tenant: TenantObjects) -> dict[str, Any]:
    """A profile document of a new profile (the walked import creates it)."""
    document = {"slug": f"walk-{tenant.tag.name}", "name": "Walked in", "version": "1", "rules": [sample_rule()]}
    return {"file": SimpleUploadedFile("walk.json", json.dumps(document).encode(), content_type="application/json")}


def _today() -> str:
    return clock.now().date().isoformat()


# (URL name, method) → the operation. Every method of every /api/v1/ route is here (the first test).
OPERATIONS: dict[tuple[str, str], Op] = {
    ("api-customer-list", "GET"): Op(None),
    ("api-profile-list", "GET"): Op(None),
    ("api-profile-detail", "GET"): Op(Action.VIEW),
    ("api-profile-import-document", "POST"): Op(
        Action.MANAGE_PROFILES, _profile_file, ok=201, multipart=True, fleet=True
    ),
    ("api-profile-version-list", "GET"): Op(None),
    ("api-profile-version-detail", "GET"): Op(Action.VIEW),
    ("api-profile-version-export", "GET"): Op(Action.VIEW),
    ("api-customer-detail", "GET"): Op(Action.VIEW),
    ("api-server-list", "GET"): Op(None),
    ("api-server-list", "POST"): Op(
        Action.EDIT_SERVERS,
        lambda t: {"customer": t.customer.pk, "name": "walked-in", "address": "walked-in.example"},
        ok=201,
    ),
    ("api-server-detail", "GET"): Op(Action.VIEW),
    ("api-server-verify", "POST"): Op(Action.EDIT_SERVERS, ok=202),
    ("api-server-harden", "POST"): Op(Action.HARDEN, ok=202),
    ("api-server-rollback", "POST"): Op(Action.HARDEN, ok=202),
    ("api-server-rotate-password", "POST"): Op(Action.HARDEN, ok=202),
    ("api-server-results", "GET"): Op(Action.VIEW),
    ("api-job-list", "GET"): Op(None),
    ("api-job-list", "POST"): Op(Action.EDIT_SERVERS, lambda t: {"kind": "verify", "servers": [t.server.pk]}, ok=202),
    ("api-job-detail", "GET"): Op(Action.VIEW),
    ("api-job-runs", "GET"): Op(Action.VIEW),
    ("api-job-log", "GET"): Op(Action.VIEW),
    ("api-job-cancel", "POST"): Op(Action.EDIT_SERVERS, ok=202),  # a verify job's action
    ("api-job-continue", "POST"): Op(Action.EDIT_SERVERS, ok=400),  # allowed, and refused: it is not paused
    ("api-report-list", "GET"): Op(None),
    ("api-report-list", "POST"): Op(
        Action.VIEW,
        lambda t: {"customer": t.customer.pk, "format": "csv", "start": _today(), "end": _today()},
        ok=202,
    ),
    ("api-report-detail", "GET"): Op(Action.VIEW),
    ("api-report-download", "GET"): Op(Action.VIEW),
    ("api-report-evidence", "GET"): Op(Action.VIEW),
    ("api-report-signature", "GET"): Op(Action.VIEW),
    # any token verifies a file against the installation's key (as the public page); this one is no report
    ("api-report-verify", "POST"): Op(
        None, lambda t: {"report": SimpleUploadedFile("x.txt", b"hello")}, multipart=True
    ),
    ("api-schema", "GET"): Op(None),
    # Credentials: MSP admins only (manage_credentials). The list and a new one are fleet-wide (403 for any
    # other token, whatever customer it names); one credential is its customer's (another's is 404).
    ("api-credential-list", "GET"): Op(Action.MANAGE_CREDENTIALS, fleet=True),
    ("api-credential-list", "POST"): Op(
        Action.MANAGE_CREDENTIALS,
        lambda t: {"customer": t.customer.pk, "name": "walked", "username": "svc-walk", "secret": "walk-Pa55word"},
        ok=201,
        fleet=True,
    ),
    ("api-credential-detail", "GET"): Op(Action.MANAGE_CREDENTIALS),
    ("api-credential-detail", "PUT"): Op(
        Action.MANAGE_CREDENTIALS,
        lambda t: {"name": t.credential.name, "username": "Administrator", "secret": "walk-Pa55word-2"},
    ),
    ("api-credential-detail", "DELETE"): Op(Action.MANAGE_CREDENTIALS, ok=400),  # allowed, and refused: in use
    ("api-server-credential", "PUT"): Op(Action.MANAGE_CREDENTIALS, lambda t: {"credential": t.credential.pk}),
    # lockdown.assignment: effective profiles list what the scope shows; a tag assignment of the tenant's
    # customer is the tenant's object; the MSP default is of no customer.
    ("api-effective-profile-list", "GET"): Op(None),
    ("api-tag-assignment-list", "GET"): Op(None),
    ("api-tag-assignment-list", "POST"): Op(
        Action.MANAGE_PROFILES,
        lambda t: {"tag": _walk_tag(t), "customer": t.customer.pk, "version": t.profile.versions.get().pk},
        ok=201,
    ),
    ("api-tag-assignment-detail", "GET"): Op(Action.VIEW),
    ("api-tag-assignment-detail", "PUT"): Op(
        Action.MANAGE_PROFILES,
        lambda t: {"tag": t.tag.name, "customer": t.customer.pk, "version": t.profile.versions.get().pk},
    ),
    ("api-tag-assignment-detail", "DELETE"): Op(Action.MANAGE_PROFILES),  # last of its object: it is gone after
    ("api-fleet-default-detail", "GET"): Op(None),
    ("api-fleet-default-set-default", "POST"): Op(Action.MANAGE_PROFILES, lambda t: {"version": None}, fleet=True),
    # governance: the tenant's waiver (of its server, proposed by another user: an MSP admin may approve it,
    # then revoke it), its open alert, and the audit trail (the whole MSP scope's admins only)
    ("api-waiver-list", "GET"): Op(None),
    ("api-waiver-list", "POST"): Op(
        Action.PROPOSE_WAIVER,
        lambda t: {
            "server": t.server.pk,
            "rule_id": TENANT_RULE_ID,
            "justification": "The vendor's add-on needs this right until its next release.",
            "expires_at": (clock.now() + timedelta(days=30)).isoformat(),
        },
        ok=201,
    ),
    ("api-waiver-detail", "GET"): Op(Action.VIEW),
    ("api-waiver-approve", "POST"): Op(Action.APPROVE_WAIVER),  # before revoke: only a pending one is approved
    ("api-waiver-revoke", "POST"): Op(Action.PROPOSE_WAIVER),
    ("api-alert-list", "GET"): Op(None),
    ("api-alert-detail", "GET"): Op(Action.VIEW),
    ("api-alert-acknowledge", "POST"): Op(Action.EDIT_SERVERS),
    ("api-audit-event-list", "GET"): Op(Action.VIEW_AUDIT, fleet=True),
}
TOKEN_SCOPES = ("full", "read_only", "customer_a", "customer_b")


def _api_routes() -> dict[str, tuple[str, set[str]]]:
    """URL name → (pattern, its methods)."""
    found: dict[str, tuple[str, set[str]]] = {}

    def walk(patterns: list[URLPattern | URLResolver], prefix: str) -> None:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, prefix + str(entry.pattern))
            elif entry.name and (prefix + str(entry.pattern)).startswith("api/v1/"):
                actions = getattr(entry.callback, "actions", None)  # a viewset's {method: action}
                methods = {method.upper() for method in actions} if actions else {"GET"}
                found[entry.name] = (prefix + str(entry.pattern), methods)

    walk(get_resolver().url_patterns, "")
    return found


ROUTES = _api_routes()


def test_every_api_operation_is_in_the_walker() -> None:
    routed = {(name, method) for name, (_, methods) in ROUTES.items() for method in methods}
    assert routed == set(OPERATIONS), "add each new API operation to OPERATIONS with the action it needs"


def _url(name: str, object_id: int | None) -> str:
    pattern = ROUTES[name][0]
    return reverse(name, kwargs={"pk": object_id}) if "<pk>" in pattern or "(?P<pk>" in pattern else reverse(name)


def _send(api: Client, method: str, url: str, op: Op, tenant: TenantObjects):
    if method == "GET":
        return api.get(url)
    if method == "DELETE":
        return api.delete(url)
    if method == "PUT":
        return api.put(url, data=json.dumps(op.body(tenant) if op.body else {}), content_type="application/json")
    if op.multipart:
        return api.post(url, data=op.body(tenant) if op.body else {})
    body = json.dumps(op.body(tenant)) if op.body else "{}"
    return api.post(url, data=body, content_type="application/json")


@pytest.mark.parametrize("token_kind", TOKEN_SCOPES)
@pytest.mark.parametrize("role", list(ROLE_USERS))
def test_api_answers_as_the_scope_says(make_role_user, tenant_a, tenant_b, role: str, token_kind: str) -> None:
    user = make_role_user(role)
    base = scope_for_user(user)
    target = {"customer_a": tenant_a.customer, "customer_b": tenant_b.customer}.get(token_kind)
    if target is not None and not base.is_msp and target.pk not in base.customer_ids:
        with pytest.raises(TokenRefused):  # a customer user cannot narrow a token to a customer they do not see
            token_issue(scope=base, actor=Actor(user=user), name="walk", days=1, read_only=False, customer=target)
        return
    issued = token_issue(
        scope=base, actor=Actor(user=user), name="walk", days=1, read_only=token_kind == "read_only", customer=target
    )
    scope = token_scope(issued.token)
    api = Client(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    problems: list[str] = []
    for tenant in (tenant_a, tenant_b):
        tenant_compliance(tenant)
        objects = {
            "customer": tenant.customer.pk,
            "server": tenant.server.pk,
            "job": tenant_job(tenant),
            "report": tenant_report(tenant),
            "tag": tenant_tag_assignment(tenant),
            "profile": tenant.profile.pk,
            "version": tenant.profile.versions.get().pk,
            "waiver": tenant.waiver.pk,
            "alert": tenant_alert(tenant),
            "credential": tenant.credential.pk,
        }
        visible = scope.sees_everything() or tenant.customer.pk in scope.customer_ids
        for (name, method), op in OPERATIONS.items():
            kind = "version" if name.startswith("api-profile-version-") else name.split("-")[1]
            url = _url(name, objects.get(kind))
            if op.action is None:
                expected = {op.ok}
            elif op.fleet:
                expected = {op.ok} if scope.can(op.action) and scope.customers_where(op.action) is None else {403}
            elif not visible:
                expected = {404}
            elif not scope.can(op.action, tenant.customer.pk):
                expected = {403}
            else:
                expected = {op.ok}
            before = {model: model.objects.aggregate(last=Max("pk"))["last"] or 0 for model in CREATED}
            counts = {model: model.objects.count() for model in CREATED}
            response = _send(api, method, url, op, tenant)
            if response.status_code not in expected:
                problems.append(f"{method} {url}: {response.status_code}, expected {sorted(expected)}")
            if method in ("POST", "PUT") and response.status_code >= 300:
                grown = [model.__name__ for model in CREATED if model.objects.count() != counts[model]]
                if grown:
                    problems.append(f"{method} {url}: refused but created {grown}")
            # What a write made must not meet the next operation (a started harden locks the host).
            for model, last in before.items():
                model.objects.filter(pk__gt=last).delete()
            b_visible = scope.sees_everything() or tenant_b.customer.pk in scope.customer_ids
            leaked = [
                text for text in (tenant_b.customer.name, tenant_b.server.name) if text in response.content.decode()
            ]
            if leaked and not b_visible:
                problems.append(f"{method} {url}: shows {leaked}")
    assert not problems, f"as {role} with a {token_kind} token:\n" + "\n".join(problems)
    assert ApiToken.objects.filter(pk=issued.token.pk, last_used_at__isnull=False).exists()
