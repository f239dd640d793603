"""Fleet pages are O(1) queries in the number of servers: 3 and 30 servers cost the same."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from jobs.models import Job

pytestmark = pytest.mark.django_db


def _queries(client, url: str) -> int:
    client.get(url)  # warm the session (time zone) and the signing key
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(captured.captured_queries)


def _counts(client, tenant, fleet_of, count: int) -> dict[str, int]:
    servers = fleet_of(tenant.customer, count)
    job = Job.objects.filter(host_runs__server=servers[0]).get()
    return {
        "dashboard": _queries(client, reverse("dashboard")),
        "server list": _queries(client, reverse("server_list")),
        "server list search": _queries(client, reverse("server_list") + "?q=mx0"),
        "server page": _queries(client, reverse("server_detail", kwargs={"server_id": servers[0].pk})),
        "job page": _queries(client, reverse("job_detail", kwargs={"job_id": job.pk})),
        "customer page": _queries(client, reverse("customer_detail", kwargs={"customer_id": tenant.customer.pk})),
        "reports": _queries(client, reverse("report_list")),
    }


@pytest.mark.parametrize("role", ["alice", "cora"])
def test_pages_run_the_same_number_of_queries_for_3_and_30_servers(client, request, tenant_a, fleet_of, role):
    from tests.factories import CustomerFactory

    user = request.getfixturevalue(role)
    client.force_login(user)
    small = _counts(client, tenant_a, fleet_of, 3)
    # Thirty more servers of the same customer, on top of the first three.
    large = _counts(client, tenant_a, fleet_of, 30)
    assert small == large, f"query counts differ: 3 servers {small}, 30 servers {large}"
    # A second customer adds no query either (aggregates, not loops) for the MSP admin.
    fleet_of(CustomerFactory(name="Another Customer Ltd"), 5)
    assert _queries(client, reverse("dashboard")) == large["dashboard"]
    print(f"\nquery counts as {role}: {large}")
