"""schemathesis against the committed OpenAPI schema (issue 15): every operation, every role's token.

Each generated request is sent through the WSGI application (the whole middleware stack, the same
database transaction as the test) with a Bearer token of every role in ROLE_USERS and of the narrowed
token scopes (read-only, customer A only, customer B only — the last only for the MSP roles). Every
response must be no 5xx, a documented status code with the documented content type and body schema,
show no customer the token may not see, and never carry a credential's secret, its ciphertext, or a
token. `api/openapi.yaml` is the live schema (test_api.test_the_committed_schema_is_the_generated_one).

Deterministic (derandomized, no example database) and small: FUZZ_EXAMPLES per operation, each sent
with every token (~18 requests an example).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from schemathesis.checks import (  # type: ignore[attr-defined]
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.tokens import token_issue, token_scope
from servers.audit import Actor
from servers.tenancy import scope_for_user
from tests.conftest import ROLE_USERS
from tests.factories import (
    TenantObjects,
    tenant_alert,
    tenant_compliance,
    tenant_job,
    tenant_report,
    tenant_tag_assignment,
)

pytestmark = pytest.mark.django_db

SCHEMA_PATH = Path(__file__).resolve().parents[3] / "api" / "openapi.yaml"
FUZZ_EXAMPLES = 20
# Written into each tenant's credential: no response may contain it, nor its ciphertext.
SECRETS = {"A": "fuzz-secret-of-A-7bq2!", "B": "fuzz-secret-of-B-9kx4!"}

schema = schemathesis.openapi.from_path(
    SCHEMA_PATH,
    config=schemathesis.Config.from_dict(
        {"seed": 15, "generation": {"deterministic": True, "database": "none", "max-examples": FUZZ_EXAMPLES}}
    ),
)
# path → the kind of object its {id} names: a generated id is sometimes replaced by a real one (A's or B's)
ID_PATHS = {
    "/api/v1/customers/{id}/": "customer",
    "/api/v1/servers/{id}/": "server",
    "/api/v1/servers/{id}/verify/": "server",
    "/api/v1/servers/{id}/results/": "server",
    "/api/v1/servers/{id}/harden/": "server",
    "/api/v1/servers/{id}/rollback/": "server",
    "/api/v1/servers/{id}/rotate-password/": "server",
    "/api/v1/jobs/{id}/": "job",
    "/api/v1/jobs/{id}/runs/": "job",
    "/api/v1/jobs/{id}/log/": "job",
    "/api/v1/jobs/{id}/cancel/": "job",
    "/api/v1/jobs/{id}/continue/": "job",
    "/api/v1/reports/{id}/": "report",
    "/api/v1/reports/{id}/download/": "report",
    "/api/v1/reports/{id}/evidence/": "report",
    "/api/v1/reports/{id}/signature/": "report",
    "/api/v1/tag-assignments/{id}/": "tag_assignment",
    "/api/v1/profiles/{id}/": "profile",
    "/api/v1/profile-versions/{id}/": "version",
    "/api/v1/profile-versions/{id}/export/": "version",
    "/api/v1/waivers/{id}/": "waiver",
    "/api/v1/waivers/{id}/approve/": "waiver",
    "/api/v1/waivers/{id}/revoke/": "waiver",
    "/api/v1/alerts/{id}/": "alert",
    "/api/v1/alerts/{id}/acknowledge/": "alert",
    "/api/v1/credentials/{id}/": "credential",
    "/api/v1/servers/{id}/credential/": "server",
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@dataclass
class FuzzToken:
    label: str
    secret: str
    sees: frozenset[str]  # tenant labels ("A", "B") whose objects this token may be shown


@dataclass
class World:
    tokens: list[FuzzToken]
    tenants: dict[str, TenantObjects]
    # path template → the real ids a generated id is sometimes replaced with (both tenants')
    ids: dict[str, list[int]] = field(default_factory=dict)
    forbidden: list[str] = field(default_factory=list)  # never in any response


def _markers(tenant: TenantObjects) -> list[str]:
    """Text that appears only in a response about this tenant's objects."""
    return [
        tenant.customer.name,
        tenant.server.name,
        tenant.server.address,
        tenant.credential.name,
        tenant.tag.name,
    ]


@pytest.fixture
def world(make_role_user, tenant_a, tenant_b) -> World:
    tenants = {"A": tenant_a, "B": tenant_b}
    forbidden: list[str] = []
    for label, tenant in tenants.items():
        tenant.credential.set_secret(SECRETS[label])
        tenant.credential.save(update_fields=["secret_encrypted"])
        forbidden += [SECRETS[label], tenant.credential.secret_encrypted]
        tenant_compliance(tenant)
    tokens: list[FuzzToken] = []
    for role in ROLE_USERS:
        user = make_role_user(role)
        base = scope_for_user(user)
        for kind in ("full", "read_only", "customer_a", "customer_b"):
            target = {"customer_a": tenant_a.customer, "customer_b": tenant_b.customer}.get(kind)
            if target is not None and not base.is_msp and target.pk not in base.customer_ids:
                continue  # a customer user cannot narrow a token to a customer they do not see
            issued = token_issue(
                scope=base, actor=Actor(user=user), name=f"fuzz {kind}", days=1, read_only=kind == "read_only",
                customer=target,
            )  # fmt: skip
            scope = token_scope(issued.token)
            sees = frozenset(
                label
                for label, tenant in tenants.items()
                if scope.sees_everything() or tenant.customer.pk in scope.customer_ids
            )
            tokens.append(FuzzToken(label=f"{role}/{kind}", secret=issued.secret, sees=sees))
            forbidden += [issued.secret, issued.token.digest]
    real = {
        "customer": [t.customer.pk for t in tenants.values()],
        "server": [t.server.pk for t in tenants.values()],
        "profile": [t.profile.pk for t in tenants.values()],
        "version": [t.profile.versions.get().pk for t in tenants.values()],
        "job": [tenant_job(t) for t in tenants.values()],
        "report": [tenant_report(t) for t in tenants.values()],
        "tag_assignment": [tenant_tag_assignment(t) for t in tenants.values()],
        "waiver": [t.waiver.pk for t in tenants.values()],
        "alert": [tenant_alert(t) for t in tenants.values()],
        "credential": [t.credential.pk for t in tenants.values()],
    }
    ids = {path: real[kind] for path, kind in ID_PATHS.items()}
    return World(tokens=tokens, tenants=tenants, ids=ids, forbidden=forbidden)


def test_every_operation_with_an_id_is_fuzzed_with_real_ids_too() -> None:
    templated = {path for path in schema.raw_schema["paths"] if "{" in path}
    assert templated == set(ID_PATHS), "add a new operation's path to ID_PATHS with the kind of object it names"


@pytest.fixture
def wsgi_app() -> Iterator[Any]:
    """The project's WSGI application, kept inside the test's transaction.

    As django.test.Client does: a finished request must not close the connection, which would
    spoil the transaction the test (and its data) lives in.
    """
    from django.core.wsgi import get_wsgi_application

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def _leaks(body: str, token: FuzzToken, world: World) -> list[str]:
    problems = [f"a secret ({text[:6]}…)" for text in world.forbidden if text in body]
    for label, tenant in world.tenants.items():
        if label in token.sees:
            continue
        problems += [f"customer {label}'s {text!r}" for text in _markers(tenant) if text in body]
        problems += _foreign_ids(body, tenant)
    return problems


def _foreign_ids(body: str, tenant: TenantObjects) -> list[str]:
    """Another customer's object named by id in a JSON body (a customer id, a server's customer)."""
    try:
        data = json.loads(body)
    except ValueError:
        return []
    rows = data.get("results", [data]) if isinstance(data, dict) else []
    found = []
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict):
            continue
        if row.get("customer") == tenant.customer.pk or (
            "maintenance_window" in row and row.get("id") == tenant.customer.pk
        ):
            found.append(f"customer {tenant.customer.name}'s object {row.get('id')}")
        if "winrm_port" in row and row.get("id") == tenant.server.pk:
            found.append(f"server {tenant.server.name}")
    return found


@schema.parametrize()
@schema.given(data=st.data())
@settings(
    max_examples=FUZZ_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_the_api_keeps_its_schema_and_its_tenants_apart(case, data, world: World, wsgi_app) -> None:
    known = world.ids.get(case.path)
    if known and case.path_parameters and data.draw(st.booleans(), label="use a real id"):
        case.path_parameters = {**case.path_parameters, "id": data.draw(st.sampled_from(known), label="real id")}
    for token in world.tokens:
        headers = {"Authorization": f"Bearer {token.secret}"}
        response = case.call(app=wsgi_app, headers=headers)
        case.validate_response(response, checks=CHECKS, headers=headers)
        leaks = _leaks(response.text, token, world)
        assert not leaks, f"{case.method} {case.formatted_path} as {token.label} shows {leaks}"
