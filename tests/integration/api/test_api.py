"""/api/v1/: personal tokens (hashed, shown once, narrowed, revocable) and the pages' tenancy behind them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse

from api.models import ApiToken
from api.tokens import authenticate, token_issue, token_revoke
from jobs.models import Job
from lockdown import clock
from servers.audit import Actor
from servers.models import AuditEvent
from servers.tenancy import scope_for_user

pytestmark = pytest.mark.django_db


def _issue(user, **kwargs) -> str:
    options = {"name": "psa", "days": 30, "read_only": False, "customer": None, **kwargs}
    return token_issue(scope=scope_for_user(user), actor=Actor(user=user), **options).secret


def _api(secret: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {secret}")


def test_a_token_is_stored_only_as_a_hash_and_its_creation_audited(alice) -> None:
    secret = _issue(alice)
    token = ApiToken.objects.get()
    assert secret.startswith(f"flk_{token.prefix}_")
    assert len(secret) > 40
    assert secret not in (token.digest, token.prefix, token.name)
    event = AuditEvent.objects.get(action="api_token.create")
    assert secret not in str(event.changes)
    assert authenticate(secret) == token


@pytest.mark.parametrize("spoil", ["unknown", "wrong-secret", "expired", "revoked", "inactive-user", "no-scheme"])
def test_a_token_that_is_not_live_is_401_with_one_message(alice, tenant_a, spoil: str) -> None:
    secret = _issue(alice)
    token = ApiToken.objects.get()
    header = f"Bearer {secret}"
    if spoil == "unknown":
        header = "Bearer flk_00000000_" + "x" * 43
    elif spoil == "wrong-secret":
        header = f"Bearer flk_{token.prefix}_" + "y" * 43
    elif spoil == "expired":
        ApiToken.objects.filter(pk=token.pk).update(expires_at=clock.now() - timedelta(seconds=1))
    elif spoil == "revoked":
        token_revoke(actor=Actor(user=alice), token=token)
    elif spoil == "inactive-user":
        type(alice).objects.filter(pk=alice.pk).update(is_active=False)
    elif spoil == "no-scheme":
        header = secret
    response = Client(HTTP_AUTHORIZATION=header).get("/api/v1/servers/")
    assert response.status_code == 401
    if spoil != "no-scheme":
        assert response.json() == {"detail": "The token is not valid (unknown, expired or revoked)."}


def test_the_session_does_not_authenticate_the_api(client, alice, tenant_a) -> None:
    client.force_login(alice)
    assert client.get("/api/v1/servers/").status_code == 401


def test_a_customer_token_sees_its_customer_only_and_others_are_404(carol, tenant_a, tenant_b) -> None:
    api = _api(_issue(carol))
    names = [row["name"] for row in api.get("/api/v1/servers/").json()["results"]]
    assert names == [tenant_a.server.name]
    assert api.get(f"/api/v1/servers/{tenant_b.server.pk}/").status_code == 404
    assert api.get(f"/api/v1/customers/{tenant_b.customer.pk}/").status_code == 404
    body = api.get(f"/api/v1/servers/{tenant_a.server.pk}/").content.decode()
    assert tenant_b.customer.name not in body


def test_an_msp_token_narrowed_to_one_customer_sees_only_it(alice, tenant_a, tenant_b) -> None:
    api = _api(_issue(alice, customer=tenant_b.customer))
    names = [row["name"] for row in api.get("/api/v1/servers/").json()["results"]]
    assert names == [tenant_b.server.name]
    assert api.get(f"/api/v1/servers/{tenant_a.server.pk}/").status_code == 404


def test_a_customer_user_cannot_narrow_a_token_to_another_customer(carol, tenant_b) -> None:
    from api.tokens import TokenRefused

    with pytest.raises(TokenRefused):
        _issue(carol, customer=tenant_b.customer)


def test_verify_through_the_api_starts_a_job_attributed_to_the_token(carol, tenant_a) -> None:
    api = _api(_issue(carol, name="rmm-check"))
    response = api.post(f"/api/v1/servers/{tenant_a.server.pk}/verify/")
    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["id"])
    assert response.json()["kind"] == "verify"
    assert list(job.host_runs.values_list("server_id", flat=True)) == [tenant_a.server.pk]
    assert job.requested_by_name == f"carol (API token 'rmm-check', {ApiToken.objects.get().prefix})"


@pytest.mark.parametrize("who", ["read-only-operator", "viewer"])
def test_a_read_only_token_or_a_viewer_may_not_start_a_job(make_role_user, carol, tenant_a, who: str) -> None:
    user = carol if who == "read-only-operator" else make_role_user("customer_viewer")
    api = _api(_issue(user, read_only=who == "read-only-operator"))
    response = api.post(f"/api/v1/servers/{tenant_a.server.pk}/verify/")
    assert response.status_code == 403
    assert not Job.objects.exists()


def test_no_secret_reaches_an_api_response(alice, tenant_a) -> None:
    api = _api(_issue(alice))
    body = "".join(api.get(url).content.decode() for url in ("/api/v1/servers/", "/api/v1/customers/", "/api/v1/jobs/"))
    assert "factory-secret-Pa55word!" not in body  # the credential's password (tests.factories)
    assert "secret_encrypted" not in body


def test_last_used_is_recorded_at_most_once_a_minute(alice, tenant_a) -> None:
    secret = _issue(alice)
    _api(secret).get("/api/v1/customers/")
    first = ApiToken.objects.get().last_used_at
    assert first is not None
    _api(secret).get("/api/v1/customers/")
    assert ApiToken.objects.get().last_used_at == first


def test_the_token_page_shows_a_new_token_once(client, alice) -> None:
    client.force_login(alice)
    response = client.post(reverse("api_token_list"), {"name": "bi export", "days": "30", "read_only": "on"})
    assert response.status_code == 200, response.content
    token = ApiToken.objects.get()
    assert token.read_only
    page = response.content.decode()
    secret = page.split('<code id="new-token">')[1].split("</code>")[0]
    assert authenticate(secret) == token
    assert response["Cache-Control"] == "no-store"
    assert secret not in client.get(reverse("api_token_list")).content.decode()
    assert client.post(reverse("api_token_revoke", kwargs={"token_id": token.pk})).status_code == 302
    assert authenticate(secret) is None


def test_the_committed_schema_is_the_generated_one() -> None:
    from pathlib import Path

    from django.core.management import call_command

    out = Path(__file__).resolve().parents[3] / "api" / "openapi.yaml"
    import io

    generated = io.StringIO()
    call_command("spectacular", "--format", "openapi", stdout=generated)
    assert generated.getvalue() == out.read_text(encoding="utf-8"), (
        "regenerate: .venv/bin/python manage.py spectacular --file api/openapi.yaml"
    )


@pytest.mark.parametrize(
    "url", ["/api/v1/servers/", "/api/v1/jobs/", "/api/v1/customers/", "/api/v1/effective-profiles/"]
)
def test_a_list_costs_the_same_queries_for_3_and_30_servers(alice, tenant_a, url: str) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.factories import ServerFactory, tenant_job

    api = _api(_issue(alice, read_only=True))
    api.get(url)  # the token's last use is written on the first request
    counts = []
    for total in (3, 30):
        while tenant_a.customer.servers.count() < total:
            ServerFactory(customer=tenant_a.customer)
        tenant_job(tenant_a)
        with CaptureQueriesContext(connection) as queries:
            assert api.get(url).status_code == 200
        counts.append(len(queries.captured_queries))
    assert counts[0] == counts[1], counts


@pytest.mark.parametrize("path", ["/api/v1/servers/0.12/", "/api/v1/servers/1.5/verify/", "/api/v1/nothing/"])
def test_an_unknown_api_path_is_a_json_404_not_the_pages_html(alice, path: str) -> None:
    # found by schemathesis: a non-integer id fell through to the pages' HTML 404
    response = _api(_issue(alice)).get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found."}


def test_a_rejected_filter_names_the_parameter_as_the_schema_says(alice) -> None:
    response = _api(_issue(alice)).get("/api/v1/servers/?customer=x")
    assert response.status_code == 400
    assert response.json() == {"customer": "a customer id"}  # a string per parameter (api.schema.VALIDATION_ERROR)


def test_results_are_the_servers_latest_outcomes_with_their_evidence(cora, tenant_a) -> None:
    from tests.factories import tenant_compliance

    compliance = tenant_compliance(tenant_a, rules=4)
    compliance.outcomes[0] |= {
        "action": "changed",
        "expected": {"sid": "S-1-5-21-1-2-3-1001", "mask": 1179817},
        "observed": {"aces": [{"sid": "S-1-5-21-1-2-3-1001", "mask": 0}]},
        "risk_note": "Only what the service reads.",
    }
    compliance.outcomes[2] |= {"waiver_justification": "Vendor ticket 4711"}
    compliance.save()
    body = _api(_issue(cora)).get(f"/api/v1/servers/{tenant_a.server.pk}/results/").json()
    assert body["count"] == 4
    first = body["results"][0]
    assert first == {
        "action": "changed",
        "expected": {"sid": "S-1-5-21-1-2-3-1001", "mask": 1179817},
        "observed": {"aces": [{"sid": "S-1-5-21-1-2-3-1001", "mask": 0}]},
        "risk_note": "Only what the service reads.",
        "waiver_justification": None,
        "rule_id": "file_acl.rule_000",
        "target": "C:\\Program Files (x86)\\Mail Enable\\Bin\\file0.exe",
        "section": "Section 0",
        "status": "compliant",
        "underlying_status": None,
        "expected_text": "IME_SYSTEM may read and execute.",
        "observed_text": f"IME_SYSTEM has no access on {tenant_a.server.name}.",
        "reason": "",
        "risk": "low",
    }
    assert [row["status"] for row in body["results"]] == ["compliant", "drift", "waived", "error"]
    assert body["results"][2]["underlying_status"] == "drift"
    assert body["results"][2]["waiver_justification"] == "Vendor ticket 4711"


def test_results_filter_by_status_and_page(cora, tenant_a) -> None:
    from tests.factories import tenant_compliance

    tenant_compliance(tenant_a, rules=12)
    api = _api(_issue(cora))
    url = f"/api/v1/servers/{tenant_a.server.pk}/results/"
    drift = api.get(url, {"status": "drift"}).json()
    assert drift["count"] == 3
    assert {row["status"] for row in drift["results"]} == {"drift"}
    first = api.get(url, {"page_size": 5}).json()
    assert [row["rule_id"] for row in first["results"]] == [f"file_acl.rule_{i:03d}" for i in range(5)]
    assert first["next"] is not None
    last = api.get(url, {"page_size": 5, "page": 3}).json()
    assert [row["rule_id"] for row in last["results"]] == ["file_acl.rule_010", "file_acl.rule_011"]
    assert last["next"] is None
    assert api.get(url, {"page": 9}).status_code == 404
    refused = api.get(url, {"status": "drifted"})  # a server's status, not a rule's
    assert refused.status_code == 400
    assert set(refused.json()) == {"status"}


def test_results_of_a_server_never_verified_are_an_empty_page(cora, tenant_a) -> None:
    body = _api(_issue(cora)).get(f"/api/v1/servers/{tenant_a.server.pk}/results/").json()
    assert body == {"count": 0, "next": None, "previous": None, "results": []}


def test_results_of_another_customers_server_are_404(carol, tenant_a, tenant_b) -> None:
    from tests.factories import tenant_compliance

    tenant_compliance(tenant_b)
    response = _api(_issue(carol)).get(f"/api/v1/servers/{tenant_b.server.pk}/results/")
    assert response.status_code == 404
    assert tenant_b.server.name not in response.content.decode()


def test_results_cost_the_same_queries_for_3_and_300_rules(alice, tenant_a) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.factories import tenant_compliance

    api = _api(_issue(alice, read_only=True))
    url = f"/api/v1/servers/{tenant_a.server.pk}/results/"
    api.get(url)  # the token's last use is written on the first request
    counts = []
    for rules in (3, 300):
        tenant_compliance(tenant_a, rules=rules)
        with CaptureQueriesContext(connection) as queries:
            response = api.get(url, {"page_size": 500})
        assert response.status_code == 200
        assert response.json()["count"] == rules
        counts.append(len(queries.captured_queries))
    assert counts[0] == counts[1], counts
