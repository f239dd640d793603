"""The fleet-job pages: checkboxes on the server list, the one-form new-job page (Kind survives
choosing servers), the confirmation page, the job page's progress, continue and retry."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from jobs.choices import HostRunState, JobKind, JobState
from jobs.models import HostRun, Job
from jobs.services import JobOptions, job_create
from servers.audit import Actor
from servers.tenancy import Scope
from tests.factories import ServerFactory

pytestmark = pytest.mark.django_db
MSP = Scope(user_id=None, msp_role="admin")


def _fleet(tenant, n):
    return [ServerFactory(customer=tenant.customer, name=f"mx-{i:02d}") for i in range(n)]


def _post(client, servers, **fields):
    data = {
        "kind": "harden",
        "canary_size": "1",
        "canary_order": "healthy_first",
        "failure_threshold_pct": "20",
        "max_in_flight": "20",
        "server": [str(s.pk) for s in servers],
        **fields,
    }
    return client.post(reverse("job_new"), data=data)


def test_the_server_list_has_a_checkbox_per_server_and_new_job_for_selected(client, alice, tenant_a):
    servers = _fleet(tenant_a, 2)
    client.force_login(alice)
    body = client.get(reverse("server_list")).content.decode()
    assert 'id="selected-servers"' in body
    assert 'action="' + reverse("job_new") + '"' in body
    for server in servers:
        assert f'name="server" value="{server.pk}" form="selected-servers"' in body
    assert "New job for selected" in body


def test_a_viewer_gets_no_checkboxes(client, make_role_user, tenant_a):
    client.force_login(make_role_user("customer_viewer"))
    body = client.get(reverse("server_list")).content.decode()
    assert 'form="selected-servers"' not in body
    assert "New job for selected" not in body


def test_new_job_for_selected_prefills_the_kind_and_only_those_servers(client, alice, tenant_a):
    servers = _fleet(tenant_a, 4)
    client.force_login(alice)
    response = client.get(reverse("job_new"), {"kind": "harden", "server": [servers[0].pk, servers[2].pk]})
    assert response.context["form"]["kind"].value() == "harden"
    assert [s.name for s in response.context["servers"]] == ["mx-00", "mx-02"]


def test_choosing_servers_keeps_the_kind_and_the_options(client, alice, tenant_a):
    """The reported bug: choosing servers reset Kind from Harden to Verify."""
    servers = _fleet(tenant_a, 3)
    client.force_login(alice)
    response = _post(client, servers, step="choose", customer=str(tenant_a.customer.pk), canary_size="2")
    assert response.status_code == 200
    assert response.context["form"]["kind"].value() == "harden"
    assert re.search(r'<option value="harden" selected>', response.content.decode())
    assert response.context["form"]["canary_size"].value() == "2"
    assert not Job.objects.exists()


def test_a_fleet_harden_goes_to_a_confirmation_page_first(client, alice, tenant_a, tenant_b):
    servers = [*_fleet(tenant_a, 2), tenant_b.server]
    client.force_login(alice)
    response = _post(client, servers, step="review")
    assert response.status_code == 200
    assert not Job.objects.exists()
    body = response.content.decode()
    assert "jobs/job_confirm.html" in [t.name for t in response.templates]
    assert "mail is interrupted for a short time on each of the 3 servers" in body
    assert dict((name, len(group)) for name, group in response.context["by_customer"]) == {
        tenant_a.customer.name: 2,
        tenant_b.customer.name: 1,
    }
    assert 'name="step" value="start"' in body
    assert 'name="typed_confirmation"' not in body  # 3 servers: under the limit


def test_a_fleet_rollback_is_confirmed_with_its_own_warning(client, alice, tenant_a):
    client.force_login(alice)
    response = _post(client, _fleet(tenant_a, 2), step="review", kind="rollback")
    assert "Rolling back puts the MailEnable services back" in response.content.decode()
    assert not Job.objects.exists()


def test_a_verify_and_a_dry_run_start_without_the_confirmation_page(client, alice, tenant_a):
    client.force_login(alice)
    assert _post(client, _fleet(tenant_a, 2), step="review", kind="verify").status_code == 302
    assert (
        _post(
            client, list(ServerFactory.create_batch(1, customer=tenant_a.customer)), step="review", dry_run="on"
        ).status_code
        == 302
    )
    assert Job.objects.count() == 2


def test_confirming_starts_the_job_with_the_chosen_canary(client, alice, tenant_a):
    servers = _fleet(tenant_a, 3)
    client.force_login(alice)
    response = _post(client, servers, step="start", canary=[str(servers[2].pk)], pause_after_canary="on")
    job = Job.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("job_detail", kwargs={"job_id": job.pk})
    assert (job.kind, job.canary_size, job.canary_order, job.pause_after_canary) == ("harden", 1, "chosen", True)
    assert HostRun.objects.get(job=job, wave=0).server_name == "mx-02"


def test_more_than_the_limit_asks_for_the_typed_phrase(client, alice, tenant_a, settings):
    settings.FLEET_CONFIRM_TYPED_ABOVE = 2
    servers = _fleet(tenant_a, 3)
    client.force_login(alice)
    page = _post(client, servers, step="review").content.decode()
    assert "Type <strong>harden 3 servers</strong> to confirm" in page
    refused = _post(client, servers, step="start", typed_confirmation="yes")
    assert refused.status_code == 200
    assert "jobs/job_confirm.html" in [t.name for t in refused.templates]
    assert "type “harden 3 servers” to confirm" in refused.content.decode()
    assert not Job.objects.exists()
    assert _post(client, servers, step="start", typed_confirmation="harden 3 servers").status_code == 302
    assert Job.objects.count() == 1


def test_the_job_page_shows_progress(client, alice, tenant_a):
    job = job_create(scope=MSP, actor=Actor.system("t"), kind=JobKind.VERIFY, servers=_fleet(tenant_a, 4))
    first = HostRun.objects.filter(job=job).order_by("server_name").first()
    HostRun.objects.filter(pk=first.pk).update(state=HostRunState.SUCCEEDED, started_at=job.started_at)
    client.force_login(alice)
    body = client.get(reverse("job_detail", kwargs={"job_id": job.pk})).content.decode()
    assert '<progress value="1" max="4"' in body
    assert "<strong>1 of 4</strong> hosts done (25 %)" in body
    assert "elapsed" in body
    assert "left" in body


def test_a_paused_job_offers_continue_and_a_finished_one_retry_failed(client, alice, tenant_a):
    servers = _fleet(tenant_a, 3)
    job = job_create(
        scope=MSP, actor=Actor.system("t"), kind=JobKind.VERIFY, servers=servers,
        options=JobOptions(canary_size=1, pause_after_canary=True),
    )  # fmt: skip
    Job.objects.filter(pk=job.pk).update(state=JobState.PAUSED)
    # its canary failed (under a threshold that let it pass): no retry while the job may still continue
    HostRun.objects.filter(job=job, wave=0).update(state=HostRunState.FAILED)
    client.force_login(alice)
    url = reverse("job_detail", kwargs={"job_id": job.pk})
    body = client.get(url).content.decode()
    assert 'action="' + reverse("job_continue", kwargs={"job_id": job.pk}) in body
    assert "waits for your approval" in body
    assert "Retry failed" not in body
    HostRun.objects.filter(job=job, server_name="mx-01").update(state=HostRunState.FAILED)
    HostRun.objects.filter(job=job).exclude(server_name="mx-01").update(state=HostRunState.SUCCEEDED)
    Job.objects.filter(pk=job.pk).update(state=JobState.FAILED)
    body = client.get(url).content.decode()
    assert "job_continue" not in body
    assert "Continue with" not in body
    link = re.search(r'href="([^"]+)">Retry failed \(1\)', body)
    assert link
    retry = client.get(link.group(1).replace("&amp;", "&"))
    assert [s.name for s in retry.context["servers"]] == ["mx-01"]
    assert retry.context["form"]["kind"].value() == "verify"
    assert retry.context["form"]["canary_size"].value() == 0
    assert retry.context["retry_of"] == job.pk


def test_continue_from_the_page(client, alice, tenant_a, sent):
    job = job_create(
        scope=MSP, actor=Actor.system("t"), kind=JobKind.VERIFY, servers=_fleet(tenant_a, 2),
        options=JobOptions(canary_size=1, pause_after_canary=True),
    )  # fmt: skip
    HostRun.objects.filter(job=job, wave=0).update(state=HostRunState.SUCCEEDED)
    Job.objects.filter(pk=job.pk).update(state=JobState.PAUSED)
    client.force_login(alice)
    response = client.post(reverse("job_continue", kwargs={"job_id": job.pk}))
    assert response.status_code == 302
    job.refresh_from_db()
    assert (job.state, job.current_wave) == (JobState.RUNNING, 1)


@pytest.mark.parametrize("page", ["job_detail", "job_log"])
def test_the_job_page_queries_do_not_grow_with_the_hosts(client, alice, tenant_a, page):
    def queries(n):
        job = job_create(scope=MSP, actor=Actor.system("t"), kind=JobKind.VERIFY, servers=_fleet_named(tenant_a, n))
        HostRun.objects.filter(job=job).update(state=HostRunState.FAILED, error_kind="agent_error")
        Job.objects.filter(pk=job.pk).update(state=JobState.FAILED)
        with CaptureQueriesContext(connection) as captured:
            assert client.get(reverse(page, kwargs={"job_id": job.pk})).status_code == 200
        return len(captured)

    client.force_login(alice)
    queries(1)  # the first request of a session loads more (session, user, memberships)
    assert queries(2) == queries(7)


_counter = iter(range(10_000))


def _fleet_named(tenant, n):
    return [ServerFactory(customer=tenant.customer, name=f"q-{next(_counter):04d}") for _ in range(n)]


def test_a_paused_job_page_keeps_polling_so_a_continue_elsewhere_shows(client, alice, tenant_a):
    job = job_create(
        scope=MSP, actor=Actor.system("t"), kind=JobKind.VERIFY, servers=_fleet(tenant_a, 2),
        options=JobOptions(canary_size=1, pause_after_canary=True),
    )  # fmt: skip
    Job.objects.filter(pk=job.pk).update(state=JobState.PAUSED)
    client.force_login(alice)
    body = client.get(reverse("job_log", kwargs={"job_id": job.pk}), headers={"HX-Request": "true"}).content.decode()
    assert 'hx-trigger="every 1s"' in body
    Job.objects.filter(pk=job.pk).update(state=JobState.SUCCEEDED)
    body = client.get(reverse("job_log", kwargs={"job_id": job.pk}), headers={"HX-Request": "true"}).content.decode()
    assert 'data-done="1"' in body


@pytest.mark.parametrize("method", ["get", "post"])
def test_selecting_another_customers_server_is_404(client, carol, tenant_a, tenant_b, method):
    client.force_login(carol)
    data = {"kind": "verify", "server": [str(tenant_a.server.pk), str(tenant_b.server.pk)], "step": "review",
            "canary_size": "0", "canary_order": "first", "failure_threshold_pct": "20",
            "max_in_flight": "20"}  # fmt: skip
    response = getattr(client, method)(reverse("job_new"), data=data)
    assert response.status_code == 404
    assert tenant_b.customer.name not in response.content.decode()
    assert not Job.objects.exists()
    data["server"] = [str(tenant_a.server.pk)]
    assert client.post(reverse("job_new"), data=data).status_code == 302
    assert [r.server_id for r in HostRun.objects.all()] == [tenant_a.server.pk]
