"""A fleet job spanning several customers does not tell a customer's user how big the fleet is."""

from __future__ import annotations

from html import unescape

import pytest
from django.urls import reverse

from jobs.choices import JobKind
from jobs.models import HostRun, Job

pytestmark = pytest.mark.django_db


@pytest.fixture
def fleet_job(tenant_a, tenant_b) -> Job:
    job = Job.objects.create(kind=JobKind.HARDEN, description="Harden: 17 servers")
    for tenant in (tenant_a, tenant_b):
        HostRun.objects.create(
            job=job,
            server=tenant.server,
            server_name=tenant.server.name,
            customer=tenant.customer,
            customer_name=tenant.customer.name,
        )
    return job


@pytest.mark.parametrize("page", ["job_list", "job_detail", "dashboard"])
def test_a_customer_user_sees_only_their_own_host_count(client, cora, fleet_job, page: str) -> None:
    client.force_login(cora)
    url = reverse(page, kwargs={"job_id": fleet_job.pk}) if page == "job_detail" else reverse(page)
    html = unescape(client.get(url).content.decode())
    assert "17 servers" not in html
    if page != "dashboard":
        assert "Harden across the MSP's fleet: 1 of your server" in html


def test_the_msp_sees_the_description(client, alice, fleet_job) -> None:
    client.force_login(alice)
    assert "Harden: 17 servers" in client.get(reverse("job_list")).content.decode()
    assert "Harden: 17 servers" in client.get(reverse("job_detail", kwargs={"job_id": fleet_job.pk})).content.decode()


def test_a_job_of_only_the_customers_own_servers_keeps_its_description(client, cora, tenant_a) -> None:
    job = Job.objects.create(kind=JobKind.VERIFY, description=f"Scheduled verify of {tenant_a.customer.name}")
    HostRun.objects.create(
        job=job,
        server=tenant_a.server,
        server_name=tenant_a.server.name,
        customer=tenant_a.customer,
        customer_name=tenant_a.customer.name,
    )
    client.force_login(cora)
    assert f"Scheduled verify of {tenant_a.customer.name}" in client.get(reverse("job_list")).content.decode()
