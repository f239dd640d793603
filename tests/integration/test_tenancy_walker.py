"""The tenancy walker: every URL × role × method gives the answer the permission table says.

Customer B's objects are 404 for customer A's users (never 403), B's names never appear in
pages A's users get, and a URL parameter without a factory fails the run instead of being
skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from servers.tenancy import Action, scope_for_user
from tests.conftest import ROLE_USERS
from tests.factories import URL_PARAMETER_FACTORIES

# Pages reachable without logging in, or part of logging in: tested in test_auth.py.
AUTH_URL_NAMES = {"login", "logout", "health", "two_factor_setup", "two_factor_verify"}

# The action each page needs; object pages check it against the object's customer.
URL_ACTIONS: dict[str, Action] = {
    "dashboard": Action.VIEW,
    "server_list": Action.VIEW,
    "server_create": Action.EDIT_SERVERS,
    "server_import": Action.EDIT_SERVERS,
    "server_detail": Action.VIEW,
    "server_edit": Action.EDIT_SERVERS,
    "server_delete": Action.EDIT_SERVERS,
    "customer_list": Action.VIEW,
    "customer_create": Action.MANAGE_CUSTOMERS,
    "customer_detail": Action.VIEW,
    "customer_edit": Action.MANAGE_CUSTOMERS,
    "credential_list": Action.MANAGE_CREDENTIALS,
    "credential_create": Action.MANAGE_CREDENTIALS,
    "credential_edit": Action.MANAGE_CREDENTIALS,
    "credential_delete": Action.MANAGE_CREDENTIALS,
    "audit_list": Action.VIEW_AUDIT,
}
GET_ONLY = {
    "dashboard",
    "server_list",
    "server_detail",
    "customer_list",
    "customer_detail",
    "credential_list",
    "audit_list",
}


@dataclass(frozen=True)
class Route:
    name: str
    params: tuple[str, ...]


def _walk(patterns: list[URLPattern | URLResolver], prefix: str = "") -> list[Route]:
    routes: list[Route] = []
    for entry in patterns:
        if isinstance(entry, URLResolver):
            if str(entry.pattern).startswith("admin/"):
                continue  # Django admin: superusers only, tested in test_admin.py
            routes.extend(_walk(entry.url_patterns, prefix + str(entry.pattern)))
        elif entry.name:
            params = tuple(re.findall(r"<(?:\w+:)?(\w+)>", prefix + str(entry.pattern)))
            routes.append(Route(entry.name, params))
    return routes


ROUTES = [route for route in _walk(get_resolver().url_patterns) if route.name not in AUTH_URL_NAMES]


def test_every_route_has_an_expected_action_and_factories_for_its_parameters() -> None:
    for route in ROUTES:
        assert route.name in URL_ACTIONS, f"{route.name}: add it to URL_ACTIONS with the action it needs"
        for param in route.params:
            assert param in URL_PARAMETER_FACTORIES, f"{route.name}: no factory for URL parameter {param!r}"


CASES = [
    pytest.param(route, role, owner, method, id=f"{route.name}-{role}-{owner}-{method}")
    for route in ROUTES
    for role in ROLE_USERS
    for owner in (("A", "B") if route.params else ("-",))
    for method in ("GET", "POST", "HTMX")
]


@pytest.mark.django_db
@pytest.mark.parametrize(("route", "role", "owner", "method"), CASES)
def test_route_answers_as_the_permission_table_says(
    client, make_role_user, tenant_a, tenant_b, route, role, owner, method
):
    user = make_role_user(role)
    client.force_login(user)
    tenant = {"A": tenant_a, "B": tenant_b, "-": None}[owner]
    kwargs = {param: URL_PARAMETER_FACTORIES[param](tenant) for param in route.params} if tenant else {}
    url = reverse(route.name, kwargs=kwargs)
    if method == "POST":
        response = client.post(url, data={})
    else:
        headers = {"HX-Request": "true"} if method == "HTMX" else {}
        response = client.get(url, headers=headers)

    scope = scope_for_user(user)
    action = URL_ACTIONS[route.name]
    visible = tenant is None or scope.sees_everything() or tenant.customer.pk in scope.customer_ids
    allowed = scope.can(action, tenant.customer if tenant else None)
    if method == "POST" and route.name in GET_ONLY:
        expected = {405}
    elif not visible:
        expected = {404}
    elif not allowed:
        expected = {403}
    elif method == "POST":
        expected = {200, 302, 400}
    else:
        expected = {200}
    assert response.status_code in expected, f"{method} {url} as {role}: {response.status_code}, expected {expected}"

    if not scope.sees_everything() and response.status_code == 200:
        body = response.content.decode()
        for secret_name in (
            tenant_b.customer.name,
            tenant_b.server.name,
            tenant_b.credential.name,
            tenant_b.server.address,
            tenant_b.tag.name,
        ):
            assert secret_name not in body, f"{url} shows customer B's {secret_name!r} to {role}"


@pytest.mark.django_db
@pytest.mark.parametrize("route", ROUTES, ids=[r.name for r in ROUTES])
def test_anonymous_user_is_sent_to_login(client, tenant_a, route):
    kwargs = {param: URL_PARAMETER_FACTORIES[param](tenant_a) for param in route.params}
    response = client.get(reverse(route.name, kwargs=kwargs))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.django_db
def test_user_without_membership_sees_no_server(client, tenant_a):
    from tests.factories import UserFactory

    charlie = UserFactory(username="charlie")
    client.force_login(charlie)
    assert client.get(reverse("server_detail", kwargs={"server_id": tenant_a.server.pk})).status_code == 404
    page = client.get(reverse("server_list")).content.decode()
    assert tenant_a.server.name not in page
