"""Harden and rollback through the API: the pages' `job_create` behind a token, with the same options
and refusals (maintenance window, the host lock, the role, a read-only token), attributed to the token."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest
from django.test import Client

from api.tokens import token_issue
from jobs.choices import JobKind
from jobs.models import Job
from lockdown import clock
from servers.audit import Actor
from servers.tenancy import scope_for_user

pytestmark = pytest.mark.django_db


def _api(user, **kwargs) -> Client:
    options = {"name": "psa", "days": 30, "read_only": False, "customer": None, **kwargs}
    secret = token_issue(scope=scope_for_user(user), actor=Actor(user=user), **options).secret
    return Client(HTTP_AUTHORIZATION=f"Bearer {secret}")


def _post(api: Client, url: str, body: str | None = "{}"):
    if body is None:  # as `curl -X POST URL`: no body, no content type
        return api.generic("POST", url)
    return api.post(url, data=body, content_type="application/json")


def test_harden_without_a_body_starts_now_with_the_defaults(carol, tenant_a) -> None:
    response = _post(_api(carol, name="rmm"), f"/api/v1/servers/{tenant_a.server.pk}/harden/", body=None)
    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["id"])
    assert (job.kind, job.dry_run, job.not_before, job.reset_adopted_password) == (JobKind.HARDEN, False, None, False)
    assert list(job.host_runs.values_list("server_id", flat=True)) == [tenant_a.server.pk]
    assert job.requested_by_name.startswith("carol (API token 'rmm'")


def test_a_dry_run_and_the_adopted_password_reset_are_passed_on(carol, tenant_a) -> None:
    body = '{"dry_run": true, "reset_adopted_password": true, "in_window": true}'
    response = _post(_api(carol), f"/api/v1/servers/{tenant_a.server.pk}/harden/", body)
    assert response.status_code == 202, response.content
    job = Job.objects.get()
    assert job.dry_run
    assert job.reset_adopted_password
    assert job.not_before is None  # a dry run changes nothing: no window to wait for


def test_in_the_maintenance_window_or_refused_when_the_customer_has_none(carol, tenant_a) -> None:
    api = _api(carol)
    url = f"/api/v1/servers/{tenant_a.server.pk}/harden/"
    refused = _post(api, url, '{"in_window": true}')
    assert refused.status_code == 400
    assert "maintenance window" in refused.json()["detail"]
    assert not Job.objects.exists()
    customer = tenant_a.server.customer
    customer.maintenance_start = time(2, 0)
    customer.maintenance_hours = 3
    customer.save()
    outside, inside = datetime(2026, 12, 3, 10, 0, tzinfo=UTC), datetime(2026, 12, 3, 3, 0, tzinfo=UTC)
    with clock.frozen(outside):
        started = _post(api, url, '{"in_window": true}')
    assert started.status_code == 202, started.content
    job = Job.objects.get()
    next_day = (datetime(2026, 12, 4, 2, 0, tzinfo=UTC), datetime(2026, 12, 4, 5, 0, tzinfo=UTC))
    assert (job.not_before, job.not_after) == next_day
    job.delete()
    with clock.frozen(inside):
        started = _post(api, url, '{"in_window": true}')
    assert started.status_code == 202, started.content
    job = Job.objects.get()
    assert (job.not_before, job.not_after) == (inside, datetime(2026, 12, 3, 5, 0, tzinfo=UTC))


def test_a_locked_host_and_a_bad_body_are_refused_without_a_job(carol, tenant_a) -> None:
    api = _api(carol)
    url = f"/api/v1/servers/{tenant_a.server.pk}/harden/"
    assert _post(api, url).status_code == 202
    locked = _post(api, f"/api/v1/servers/{tenant_a.server.pk}/rollback/")
    assert locked.status_code == 400
    assert "Not started" in locked.json()["detail"]
    bad = _post(api, url, '{"dry_run": "perhaps"}')
    assert bad.status_code == 400
    assert "dry_run" in bad.json()
    assert Job.objects.count() == 1


@pytest.mark.parametrize("who", ["read-only-token", "customer-viewer"])
def test_who_may_not_harden_gets_403_and_no_job(make_role_user, carol, tenant_a, who: str) -> None:
    user = carol if who == "read-only-token" else make_role_user("customer_viewer")
    api = _api(user, read_only=who == "read-only-token")
    for action in ("harden", "rollback"):
        assert _post(api, f"/api/v1/servers/{tenant_a.server.pk}/{action}/").status_code == 403
    assert not Job.objects.exists()


def test_another_customers_server_is_404_before_its_body_is_read(make_role_user, tenant_a, tenant_b) -> None:
    api = _api(make_role_user("customer_operator"))
    response = _post(api, f"/api/v1/servers/{tenant_b.server.pk}/harden/", '{"dry_run": "perhaps"}')
    assert response.status_code == 404
    assert not Job.objects.exists()


def test_rollback_starts_a_rollback_job(carol, tenant_a) -> None:
    response = _post(_api(carol), f"/api/v1/servers/{tenant_a.server.pk}/rollback/")
    assert response.status_code == 202, response.content
    assert Job.objects.get().kind == JobKind.ROLLBACK
