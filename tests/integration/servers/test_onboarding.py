"""Adding a first server: the onboarding script, the CSV template, a customer preselected with its own
credentials only, and "Save and test connection"."""

from __future__ import annotations

import csv
import io

import pytest
from django.urls import reverse

from jobs.choices import JobKind
from jobs.models import Job
from lockdown.agent import ONBOARDING_FILE, read_ps1
from servers.csv_import import ALL_COLUMNS
from servers.models import Server
from tests.factories import CredentialFactory, import_csv
from tests.integration.servers.test_server_forms import _form

pytestmark = pytest.mark.django_db


def test_the_onboarding_script_downloads_as_shipped(client, cora) -> None:
    client.force_login(cora)  # anyone who may log in: it holds no secret and the customer runs it
    response = client.get(reverse("onboarding_script"))
    assert response.status_code == 200
    assert response.content.decode("utf-8") == read_ps1(ONBOARDING_FILE)
    assert response["Content-Disposition"] == 'attachment; filename="Enable-FleetLockdownWinRM.ps1"'


def test_the_csv_template_has_every_column_and_its_example_row_imports(client, carol, tenant_a) -> None:
    client.force_login(carol)
    response = client.get(reverse("server_import_template"))
    assert response.status_code == 200
    text = response.content.decode("utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == list(ALL_COLUMNS)
    assert len(rows) == 2
    assert not any(line.startswith("#") for line in text.splitlines())
    assert rows[1][ALL_COLUMNS.index("customer")] == tenant_a.customer.name  # carol's own customer

    page = import_csv(client, text)
    assert page.status_code == 200
    assert Server.objects.filter(name="mail01", customer=tenant_a.customer).exists()


def test_a_customer_is_preselected_and_only_its_credentials_offered(client, alice, tenant_a, tenant_b) -> None:
    client.force_login(alice)
    page = client.get(reverse("server_create") + f"?customer={tenant_a.customer.pk}")
    form = page.context["form"]
    assert form.initial["customer"] == tenant_a.customer.pk
    assert set(form.fields["credential"].queryset) == {tenant_a.credential}
    html = page.content.decode()
    assert tenant_b.credential.name not in html

    everyone = client.get(reverse("server_create")).content.decode()
    assert f'<optgroup label="{tenant_a.customer.name}">' in everyone
    assert f'<optgroup label="{tenant_b.customer.name}">' in everyone


def test_editing_offers_only_the_servers_own_customers_credentials(client, alice, tenant_a, tenant_b) -> None:
    CredentialFactory(customer=tenant_b.customer, name="b-second")
    client.force_login(alice)
    page = client.get(reverse("server_edit", kwargs={"server_id": tenant_a.server.pk}))
    assert set(page.context["form"].fields["credential"].queryset) == {tenant_a.credential}
    assert "b-second" not in page.content.decode()


def test_a_customer_the_user_may_not_add_to_is_not_preselected(client, carol, tenant_b) -> None:
    client.force_login(carol)
    page = client.get(reverse("server_create") + f"?customer={tenant_b.customer.pk}")
    assert "customer" not in page.context["form"].initial
    assert tenant_b.customer.name not in page.content.decode()


def test_save_and_test_connection_starts_a_discover_of_the_new_server(client, carol, tenant_a) -> None:
    client.force_login(carol)
    response = client.post(reverse("server_create"), {**_form(tenant_a.customer, tenant_a.credential), "then": "test"})
    server = Server.objects.get(name="mx-new")
    job = Job.objects.get()
    assert job.kind == JobKind.DISCOVER
    assert list(job.host_runs.values_list("server_id", flat=True)) == [server.pk]
    assert response["Location"] == reverse("job_detail", kwargs={"job_id": job.pk})


def test_plain_save_starts_no_job(client, carol, tenant_a) -> None:
    client.force_login(carol)
    response = client.post(reverse("server_create"), _form(tenant_a.customer, tenant_a.credential))
    server = Server.objects.get(name="mx-new")
    assert response["Location"] == reverse("server_detail", kwargs={"server_id": server.pk})
    assert not Job.objects.exists()
