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
AUTH_URL_NAMES = {"login", "logout", "health", "two_factor_setup", "two_factor_verify", "password_change"}
# Public on purpose: an external auditor without an account checks a report there (bounded upload);
# tests/integration/reports/test_verify_page.py covers it, anonymous and signed in.
PUBLIC_URL_NAMES = {"report_verify"}

# The action each page needs; object pages check it against the object's customer.
URL_ACTIONS: dict[str, Action] = {
    "job_list": Action.VIEW,
    "job_new": Action.EDIT_SERVERS,
    "job_detail": Action.VIEW,
    "job_log": Action.VIEW,
    "job_cancel": Action.EDIT_SERVERS,
    "job_continue": Action.EDIT_SERVERS,
    "server_verify": Action.EDIT_SERVERS,
    "server_discover": Action.EDIT_SERVERS,
    "server_selftest": Action.SELFTEST,
    "server_harden": Action.HARDEN,
    "server_rollback": Action.HARDEN,
    "server_changes_download": Action.VIEW,
    "server_rotate_password": Action.HARDEN,
    "customer_schedule": Action.EDIT_SERVERS,
    "customer_alert_settings": Action.HARDEN,
    "customer_report_schedule": Action.HARDEN,
    "alert_list": Action.VIEW,
    "alert_acknowledge": Action.EDIT_SERVERS,
    "dashboard": Action.VIEW,
    "server_list": Action.VIEW,
    "server_create": Action.EDIT_SERVERS,
    "server_import": Action.EDIT_SERVERS,
    "server_import_template": Action.EDIT_SERVERS,
    "api_token_list": Action.VIEW,
    "api_token_revoke": Action.VIEW,
    "onboarding_script": Action.VIEW,
    "server_import_detail": Action.EDIT_SERVERS,
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
    "audit_export": Action.VIEW_AUDIT,
    "profile_list": Action.VIEW,
    "profile_create": Action.MANAGE_PROFILES,
    "profile_import": Action.MANAGE_PROFILES,
    "profile_detail": Action.VIEW,
    "profile_diff": Action.VIEW,
    "profile_compare": Action.VIEW,
    "version_detail": Action.VIEW,
    "version_edit": Action.MANAGE_PROFILES,
    "version_clone": Action.MANAGE_PROFILES,
    "version_export": Action.VIEW,
    "customer_profile_assign": Action.MANAGE_PROFILES,
    "server_profile_assign": Action.MANAGE_PROFILES,
    # lockdown.assignment: the hierarchy; a customer's tag assignment is that customer's object.
    "assignment_list": Action.VIEW,
    "fleet_default_edit": Action.MANAGE_PROFILES,
    "tag_assignment_create": Action.MANAGE_PROFILES,
    "tag_assignment_edit": Action.MANAGE_PROFILES,
    "tag_assignment_delete": Action.MANAGE_PROFILES,
    "waiver_list": Action.VIEW,
    # the fleet rule view: counts over the servers the user sees; a rule only others have is 404.
    "rule_list": Action.VIEW,
    "control_list": Action.VIEW,
    # the advisories in force are MSP-wide data; the counts are of the servers the reader sees.
    "advisory_list": Action.VIEW,
    "advisory_import": Action.MANAGE_PROFILES,
    "rule_detail": Action.VIEW,
    "waiver_detail": Action.VIEW,
    "waiver_approve": Action.APPROVE_WAIVER,
    "waiver_revoke": Action.PROPOSE_WAIVER,
    "customer_waiver_propose": Action.PROPOSE_WAIVER,
    "server_waiver_propose": Action.PROPOSE_WAIVER,
    # reports app: anyone who may see a customer may make and download its reports.
    "report_list": Action.VIEW,
    "report_create": Action.VIEW,
    "report_detail": Action.VIEW,
    "report_download": Action.VIEW,
    "report_evidence": Action.VIEW,
    "report_signature": Action.VIEW,
    "signing_key": Action.VIEW,
    "preferences": Action.VIEW,
    # users and memberships: MSP admins only; a user is "of" the customers they are a member of.
    "user_list": Action.MANAGE_USERS,
    "user_create": Action.MANAGE_USERS,
    "user_detail": Action.MANAGE_USERS,
    "user_membership_add": Action.MANAGE_USERS,
    "user_membership_remove": Action.MANAGE_USERS,
    "user_deactivate": Action.MANAGE_USERS,
    "user_reactivate": Action.MANAGE_USERS,
    "user_password_reset": Action.MANAGE_USERS,
    "user_2fa_reset": Action.MANAGE_USERS,
}
# Actions that only accept POST: a GET is 405 whoever asks.
POST_ONLY = {
    "api_token_revoke",
    "server_verify",
    "server_discover",
    "server_selftest",
    "job_cancel",
    "job_continue",
    "report_create",
    "alert_acknowledge",
    "user_membership_remove",
    "user_deactivate",
    "user_reactivate",
    "user_password_reset",
    "user_2fa_reset",
}
GET_ONLY = {
    "server_import_template",
    "onboarding_script",
    "server_changes_download",
    "job_list",
    "job_detail",
    "job_log",
    "alert_list",
    "dashboard",
    "server_list",
    "server_detail",
    "customer_list",
    "customer_detail",
    "credential_list",
    "audit_list",
    "audit_export",
    "profile_list",
    "assignment_list",
    "profile_detail",
    "profile_diff",
    "profile_compare",
    "version_detail",
    "version_export",
    "waiver_list",
    "waiver_detail",
    "rule_list",
    "control_list",
    "advisory_list",
    "rule_detail",
    "report_list",
    "report_detail",
    "report_download",
    "report_evidence",
    "report_signature",
    "signing_key",
    "user_list",
    "user_detail",
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
            if str(entry.pattern).startswith("api/v1/"):
                continue  # the API: token-authenticated, walked by tests/integration/api/test_api_walker.py
            routes.extend(_walk(entry.url_patterns, prefix + str(entry.pattern)))
        elif entry.name:
            params = tuple(re.findall(r"<(?:\w+:)?(\w+)>", prefix + str(entry.pattern)))
            routes.append(Route(entry.name, params))
    return routes


ROUTES = [route for route in _walk(get_resolver().url_patterns) if route.name not in AUTH_URL_NAMES | PUBLIC_URL_NAMES]


@pytest.fixture(autouse=True)
def _exceptions(request):
    """Each tenant also has an approved exception (the integrated-authentication rights), so the dashboard,
    the customer and server pages and the lists render theirs and must not show the other customer's."""
    from tests.factories import tenant_exception

    for name in ("tenant_a", "tenant_b"):
        if name in request.fixturenames:
            tenant_exception(request.getfixturevalue(name))


def test_every_route_has_an_expected_action_and_factories_for_its_parameters() -> None:
    for route in ROUTES:
        assert route.name in URL_ACTIONS, f"{route.name}: add it to URL_ACTIONS with the action it needs"
        for param in route.params:
            assert param in URL_PARAMETER_FACTORIES, f"{route.name}: no factory for URL parameter {param!r}"


# Pages that belong to one user, not to a customer: 404 for everyone else whatever their role
# (tests/integration/servers/test_csv_import.py::test_an_import_page_is_its_uploaders_only).
UPLOADER_ONLY = {"server_import_detail", "api_token_revoke"}
CASES = [
    pytest.param(route, role, id=f"{route.name}-{role}")
    for route in ROUTES
    if route.name not in UPLOADER_ONLY
    for role in ROLE_USERS
]
# GET and the htmx partial first: a POST may delete the object it names.
METHODS = ("GET", "HTMX", "POST")


def _expected(route: Route, scope, tenant, method: str) -> set[int]:
    action = URL_ACTIONS[route.name]
    visible = tenant is None or scope.sees_everything() or tenant.customer.pk in scope.customer_ids
    allowed = scope.can(action, tenant.customer if tenant else None)
    if method == "POST" and route.name in GET_ONLY:
        return {405}
    if method != "POST" and route.name in POST_ONLY:
        return {405}
    if not visible:
        return {404}
    if not allowed:
        return {403}
    if method == "POST":
        return {200, 302, 400}
    return {200}


@pytest.mark.django_db
@pytest.mark.parametrize(("route", "role"), CASES)
def test_route_answers_as_the_permission_table_says(client, make_role_user, tenant_a, tenant_b, route, role):
    """Each role × owner (A, B) × method (GET, htmx partial, POST) of one URL."""
    user = make_role_user(role)
    client.force_login(user)
    scope = scope_for_user(user)
    b_names = (
        tenant_b.customer.name,
        tenant_b.server.name,
        tenant_b.credential.name,
        tenant_b.server.address,
        tenant_b.tag.name,
    )
    problems: list[str] = []
    for tenant in (tenant_a, tenant_b) if route.params else (None,):
        kwargs = {param: URL_PARAMETER_FACTORIES[param](tenant) for param in route.params} if tenant else {}
        url = reverse(route.name, kwargs=kwargs)
        for method in METHODS:
            if method == "POST":
                response = client.post(url, data={})
            else:
                response = client.get(url, headers={"HX-Request": "true"} if method == "HTMX" else {})
            expected = _expected(route, scope, tenant, method)
            if response.status_code not in expected:
                problems.append(f"{method} {url}: {response.status_code}, expected {sorted(expected)}")
            if not scope.sees_everything() and response.status_code == 200:
                raw = b"".join(response.streaming_content) if response.streaming else response.content
                body = raw.decode()
                problems.extend(f"{method} {url} shows customer B's {name!r}" for name in b_names if name in body)
    assert not problems, f"as {role}:\n" + "\n".join(problems)


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


def _fleet_job(tenant_a, tenant_b, *, extra_b: int = 4):
    """A running fleet-wide verify over A's server and five of B's (B's names must never show to A)."""
    from jobs.choices import JobKind, JobState
    from jobs.models import HostRun, Job

    job = Job.objects.create(
        kind=JobKind.VERIFY,
        state=JobState.RUNNING,
        description="Fleet verify",
        stop_reason="Wave 1: 4 of 6 hosts failed (67 % > 20 %); the remaining hosts were not started.",
    )
    runs = [HostRun(job=job, server=tenant_a.server, server_name=tenant_a.server.name, customer=tenant_a.customer,
                    customer_name=tenant_a.customer.name)]  # fmt: skip
    runs += [
        HostRun(
            job=job,
            server=tenant_b.server,
            server_name=f"{tenant_b.server.name}-{n}",
            customer=tenant_b.customer,
            customer_name=tenant_b.customer.name,
            state="failed",
            error_kind="unreachable",
            error_message=f"{tenant_b.server.address} refused",
        )
        for n in range(1 + extra_b)
    ]
    HostRun.objects.bulk_create(runs)
    return job


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["customer_operator", "customer_viewer"])
def test_a_fleet_job_shows_a_customer_only_their_hosts_and_is_not_theirs_to_cancel(
    client, make_role_user, tenant_a, tenant_b, role
):
    job = _fleet_job(tenant_a, tenant_b)
    client.force_login(make_role_user(role))
    b_names = (tenant_b.customer.name, tenant_b.server.name, tenant_b.server.address)
    pages = {
        "list": client.get(reverse("job_list")).content.decode(),
        "dashboard": client.get(reverse("dashboard")).content.decode(),
        "detail": client.get(reverse("job_detail", kwargs={"job_id": job.pk})).content.decode(),
        "log": client.get(
            reverse("job_log", kwargs={"job_id": job.pk}), headers={"HX-Request": "true"}
        ).content.decode(),
    }
    for page, body in pages.items():
        assert not [name for name in b_names if name in body], page
        assert "4 of 6" not in body, page  # the wave's fleet-wide count
    # a fleet job over other customers' hosts is titled by its kind and the reader's own count (job_title)
    row = pages["list"].split("Verify across the MSP&#x27;s fleet: 1 of your server")[1].split("</tr>")[0]
    assert "Fleet verify" not in pages["list"]
    assert ">1<" in row.replace(" ", "") or "<td>1</td>" in row  # one host: theirs, not six
    assert 'action="' + reverse("job_cancel", kwargs={"job_id": job.pk}) not in pages["detail"]
    response = client.post(reverse("job_cancel", kwargs={"job_id": job.pk}))
    assert response.status_code == 404
    job.refresh_from_db()
    assert job.cancel_requested_at is None
    # Paused after its canary, it is not theirs to continue either, nor to retry (no link, B's hosts unseen).
    type(job).objects.filter(pk=job.pk).update(state="paused")
    detail = client.get(reverse("job_detail", kwargs={"job_id": job.pk})).content.decode()
    assert 'action="' + reverse("job_continue", kwargs={"job_id": job.pk}) not in detail
    assert client.post(reverse("job_continue", kwargs={"job_id": job.pk})).status_code == 404
    job.refresh_from_db()
    assert job.state == "paused"
    type(job).objects.filter(pk=job.pk).update(state="failed")
    assert "Retry failed" not in client.get(reverse("job_detail", kwargs={"job_id": job.pk})).content.decode()


@pytest.mark.django_db
def test_an_msp_operator_sees_the_whole_fleet_job_and_may_cancel_it(client, make_role_user, tenant_a, tenant_b):
    job = _fleet_job(tenant_a, tenant_b)
    client.force_login(make_role_user("msp_operator"))
    detail = client.get(reverse("job_detail", kwargs={"job_id": job.pk})).content.decode()
    assert tenant_b.server.name in detail
    assert "4 of 6" in detail
    assert client.post(reverse("job_cancel", kwargs={"job_id": job.pk})).status_code == 302
    job.refresh_from_db()
    assert job.cancel_requested_at is not None
