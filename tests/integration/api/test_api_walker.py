"""The API walker: every /api/v1/ operation × role × token scope answers as the pages' Scope says.

Token scopes: the user's whole scope, read-only, narrowed to customer A, narrowed to customer B (only
an MSP user may make that one). B's objects are 404 for whoever may not see them, never 403, and B's
names never appear in what A's users get.
"""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from api.models import ApiToken
from api.tokens import TokenRefused, token_issue, token_scope
from jobs.models import Job
from servers.audit import Actor
from servers.tenancy import Action, scope_for_user
from tests.conftest import ROLE_USERS
from tests.factories import tenant_compliance, tenant_job

pytestmark = pytest.mark.django_db

# operation (URL name) → (method, the action it needs; None: listing what the scope shows)
OPERATIONS: dict[str, tuple[str, Action | None]] = {
    "api-customer-list": ("GET", None),
    "api-customer-detail": ("GET", Action.VIEW),
    "api-server-list": ("GET", None),
    "api-server-detail": ("GET", Action.VIEW),
    "api-server-verify": ("POST", Action.EDIT_SERVERS),
    "api-server-harden": ("POST", Action.HARDEN),
    "api-server-rollback": ("POST", Action.HARDEN),
    "api-server-results": ("GET", Action.VIEW),
    "api-job-list": ("GET", None),
    "api-job-detail": ("GET", Action.VIEW),
    "api-schema": ("GET", None),
}
TOKEN_SCOPES = ("full", "read_only", "customer_a", "customer_b")


def _api_routes() -> dict[str, str]:
    found: dict[str, str] = {}

    def walk(patterns: list[URLPattern | URLResolver], prefix: str) -> None:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, prefix + str(entry.pattern))
            elif entry.name and (prefix + str(entry.pattern)).startswith("api/v1/"):
                found[entry.name] = prefix + str(entry.pattern)

    walk(get_resolver().url_patterns, "")
    return found


ROUTES = _api_routes()


def test_every_api_operation_is_in_the_walker() -> None:
    assert set(ROUTES) == set(OPERATIONS), "add each new API operation to OPERATIONS with the action it needs"


def _url(name: str, object_id: int | None) -> str:
    return (
        reverse(name, kwargs={"pk": object_id})
        if "<pk>" in ROUTES[name] or "(?P<pk>" in ROUTES[name]
        else reverse(name)
    )


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
        objects = {"customer": tenant.customer.pk, "server": tenant.server.pk, "job": tenant_job(tenant)}
        visible = scope.sees_everything() or tenant.customer.pk in scope.customer_ids
        for name, (method, action) in OPERATIONS.items():
            kind = name.split("-")[1]
            url = _url(name, objects.get(kind))
            if action is None:
                expected = {200}
            elif not visible:
                expected = {404}
            elif not scope.can(action, tenant.customer.pk):
                expected = {403}
            else:
                expected = {202} if method == "POST" else {200}
            jobs_before = Job.objects.count()
            last_job = Job.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
            response = api.post(url, data="{}", content_type="application/json") if method == "POST" else api.get(url)
            if response.status_code not in expected:
                problems.append(f"{method} {url}: {response.status_code}, expected {sorted(expected)}")
            if method == "POST" and response.status_code != 202 and Job.objects.count() != jobs_before:
                problems.append(f"{method} {url}: refused but a job was created")
            # A started harden locks the host: the next operation must not meet this one's lock.
            Job.objects.filter(pk__gt=last_job).delete()
            b_visible = scope.sees_everything() or tenant_b.customer.pk in scope.customer_ids
            leaked = [
                text for text in (tenant_b.customer.name, tenant_b.server.name) if text in response.content.decode()
            ]
            if leaked and not b_visible:
                problems.append(f"{method} {url}: shows {leaked}")
    assert not problems, f"as {role} with a {token_kind} token:\n" + "\n".join(problems)
    assert ApiToken.objects.filter(pk=issued.token.pk, last_used_at__isnull=False).exists()
