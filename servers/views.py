"""Inventory pages. Thin: scope → selector or form → service → redirect or render."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import ProtectedError, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods

from servers import selectors, services
from servers.assessment import assessment_of
from servers.audit import Actor
from servers.choices import SERVER_STATUS_COLOURS, ServerStatus
from servers.csv_import import ALL_COLUMNS, read_upload, server_import_start, template_csv
from servers.forms import CredentialForm, CustomerForm, ServerForm, ServerImportForm
from servers.maintenance import days_label, parse_days
from servers.models import Credential, Customer, Server, ServerImport
from servers.tenancy import Action, request_scope, require, scoped_get
from servers.twofactor import recent_second_factor

PAGE_SIZE = 50


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _page(request: HttpRequest, items: Any, size: int = PAGE_SIZE) -> Any:
    return Paginator(items, size).get_page(request.GET.get("page"))


# --- Dashboard ------------------------------------------------------------------------------
DASHBOARD_CUSTOMERS = 25


@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    """Fleet compliance: summary, trend, worst servers, recent jobs, alerts, expiring waivers.

    Every panel is one query (aggregates and LIMITs), so the page costs the same for 3 or
    10,000 servers (tests/integration/reports/test_query_counts.py).
    """
    from jobs.choices import JOB_STATE_COLOURS
    from lockdown import clock
    from lockdown import selectors as lockdown_selectors
    from reports import selectors as report_selectors
    from reports.charts import trend_svg

    scope = request_scope(request)
    summary = report_selectors.fleet_summary(scope=scope)
    trend = report_selectors.compliance_trend(scope=scope, summary=summary, tz=timezone.get_current_timezone())
    return render(
        request,
        "servers/dashboard.html",
        {
            "summary": summary,
            "not_assessed": report_selectors.not_assessed_causes(scope=scope) if summary.total else [],
            "customers": summary.customers[:DASHBOARD_CUSTOMERS],
            "more_customers": len(summary.customers) > DASHBOARD_CUSTOMERS,
            "trend": trend,
            "chart": trend_svg(trend, chart_id="fleet-trend", title="Average compliance of the fleet, last 30 days"),
            "worst": report_selectors.worst_servers(scope=scope) if summary.total else [],
            "recent_jobs": report_selectors.recent_jobs(scope=scope) if summary.total else [],
            "expiring": report_selectors.expiring_waivers(scope=scope) if summary.total else [],
            "exceptions": lockdown_selectors.active_exceptions(scope=scope, now=clock.now()) if summary.total else [],
            "alerts": report_selectors.open_alerts(scope=scope),
            "status_colours": {k.value: v for k, v in SERVER_STATUS_COLOURS.items()},
            "job_colours": {k.value: v for k, v in JOB_STATE_COLOURS.items()},
        },
    )


# --- Servers --------------------------------------------------------------------------------
@require_GET
def server_list(request: HttpRequest) -> HttpResponse:
    from jobs.choices import JobKind

    scope = request_scope(request)
    filters = selectors.ServerFilter(
        q=request.GET.get("q", "").strip()[:100],
        customer_id=_int_or_none(request.GET.get("customer")),
        tag=request.GET.get("tag", "").strip()[:60],
        status=request.GET.get("status", ""),
        sort=request.GET.get("sort", "customer"),
    )
    page = _page(request, selectors.server_list(scope=scope, filters=filters))
    context = {
        "page": page,
        "filters": filters,
        "customers": selectors.visible_customers(scope=scope),
        "tags": selectors.visible_tags(scope=scope),
        "statuses": ServerStatus.choices,
        "status_colours": {k.value: v for k, v in SERVER_STATUS_COLOURS.items()},
        # "New job for selected": the kinds a fleet job may have (the new-job page confirms it)
        "job_kinds": [(k.value, k.label) for k in (JobKind.VERIFY, JobKind.HARDEN, JobKind.ROLLBACK, JobKind.DISCOVER)],
        "query_without_page": _query_without(request, "page"),
        "query_without_sort": _query_without(request, "sort", "page"),
    }
    partial = bool(getattr(request, "htmx", False))
    template = "servers/_server_table.html" if partial else "servers/server_list.html"
    return render(request, template, context)


def _query_without(request: HttpRequest, *keys: str) -> str:
    query = request.GET.copy()
    for key in keys:
        query.pop(key, None)
    return query.urlencode()


@require_http_methods(["GET", "POST"])
def server_create(request: HttpRequest) -> HttpResponse:
    """Add a server; "Save and test connection" starts a discover of it at once (?customer= preselects one)."""
    scope = request_scope(request)
    require(scope, Action.EDIT_SERVERS)
    initial_customer = _int_or_none(request.GET.get("customer"))
    form = ServerForm(request.POST or None, scope=scope, initial_customer=initial_customer)
    if request.method == "POST" and form.is_valid():
        data = {k: v for k, v in form.cleaned_data.items() if k != "tags_text"}
        server = services.server_create(
            scope=scope, actor=Actor.from_request(request), data=data, tags=form.cleaned_data["tags_text"]
        )
        messages.success(request, f"Server {server.name} added.")
        if request.POST.get("then") == "test":
            return _test_connection(request, server)
        return redirect("server_detail", server_id=server.pk)
    return render(request, "servers/server_form.html", {"form": form, "creating": True})


def _test_connection(request: HttpRequest, server: Server) -> HttpResponse:
    """The server page's "Test connection" (a discover job), right after saving."""
    from jobs.choices import JobKind
    from jobs.services import JobRefused, job_create

    try:
        job = job_create(
            scope=request_scope(request),
            actor=Actor.from_request(request),
            kind=JobKind.DISCOVER,
            servers=[server],
            description=f"Test connection to {server.name}",
        )
    except JobRefused as refused:
        messages.error(request, f"The connection was not tested: {refused}")
        return redirect("server_detail", server_id=server.pk)
    return redirect("job_detail", job_id=job.pk)


@require_GET
def onboarding_script(request: HttpRequest) -> HttpResponse:
    """The script a customer runs once on a server (WinRM HTTPS listener, firewall rule): no secret in it."""
    from lockdown.agent import ONBOARDING_FILE, read_ps1

    response = HttpResponse(read_ps1(ONBOARDING_FILE).encode("utf-8"), content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="Enable-FleetLockdownWinRM.ps1"'
    return response


@require_GET
def server_import_template(request: HttpRequest) -> HttpResponse:
    """A CSV with the import's columns and one example row for the first customer the user may add servers to."""
    scope = request_scope(request)
    require(scope, Action.EDIT_SERVERS)
    allowed = scope.customers_where(Action.EDIT_SERVERS)
    customers = Customer.objects.order_by("name")
    if allowed is not None:
        customers = customers.filter(pk__in=sorted(allowed))
    first = customers.values_list("name", flat=True).first()
    response = HttpResponse(template_csv(first or "Your customer's name"), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="servers-template.csv"'
    return response


@require_GET
def server_detail(request: HttpRequest, server_id: int) -> HttpResponse:
    scope = request_scope(request)
    server = scoped_get(scope, Server.objects.select_related("customer", "credential"), pk=server_id)
    from jobs.selectors import ComplianceFilter, server_compliance_page, server_recent_runs
    from lockdown import clock
    from lockdown import selectors as lockdown_selectors
    from reports import selectors as report_selectors
    from reports.charts import trend_svg

    page = server_compliance_page(server, ComplianceFilter.from_query(request.GET))
    exceptions = lockdown_selectors.server_exceptions(server, clock.now())
    trend = report_selectors.server_trend(server=server, tz=timezone.get_current_timezone())
    return render(
        request,
        "servers/server_detail.html",
        {
            "server": server,
            "tags": server.tags.all(),
            "can_edit": scope.can(Action.EDIT_SERVERS, server.customer_id),
            "can_harden": scope.can(Action.HARDEN, server.customer_id),
            "can_selftest": scope.can(Action.SELFTEST, server.customer_id),
            "can_waive": scope.can(Action.PROPOSE_WAIVER, server.customer_id),
            "status_colour": SERVER_STATUS_COLOURS[ServerStatus(server.status)],
            "assessment": assessment_of(server, msp=scope.is_msp),
            "compliance": page.compliance,
            "page": page,
            "trend": trend,
            "chart": trend_svg(
                trend, chart_id="server-trend", title=f"Compliance of {server.name}, last 30 days", one_server=True
            ),
            "recent_runs": server_recent_runs(server),
            "exceptions": exceptions,
            "exception_active": any(status == "active" for _, status in exceptions),
        },
    )


@require_http_methods(["GET", "POST"])
def server_edit(request: HttpRequest, server_id: int) -> HttpResponse:
    scope = request_scope(request)
    server = scoped_get(scope, Server.objects.select_related("customer"), pk=server_id)
    require(scope, Action.EDIT_SERVERS, server.customer_id)
    form = ServerForm(request.POST or None, instance=server, scope=scope)
    if request.method == "POST" and form.is_valid():
        data = {k: v for k, v in form.cleaned_data.items() if k != "tags_text"}
        services.server_update(
            scope=scope,
            actor=Actor.from_request(request),
            server=server,
            data=data,
            tags=form.cleaned_data["tags_text"],
        )
        messages.success(request, f"Server {server.name} saved.")
        return redirect("server_detail", server_id=server.pk)
    return render(request, "servers/server_form.html", {"form": form, "server": server, "creating": False})


@require_http_methods(["GET", "POST"])
def server_delete(request: HttpRequest, server_id: int) -> HttpResponse:
    scope = request_scope(request)
    server = scoped_get(scope, Server.objects.select_related("customer"), pk=server_id)
    require(scope, Action.EDIT_SERVERS, server.customer_id)
    if request.method == "POST":
        name = server.name
        services.server_delete(scope=scope, actor=Actor.from_request(request), server=server)
        messages.success(request, f"Server {name} deleted.")
        return redirect("server_list")
    return render(request, "servers/confirm_delete.html", {"object": server, "kind": "server"})


@require_http_methods(["GET", "POST"])
def server_import(request: HttpRequest) -> HttpResponse:
    """Upload: the file is checked here (size, UTF-8, header), its rows by a worker (server_import_detail)."""
    scope = request_scope(request)
    require(scope, Action.EDIT_SERVERS)
    form = ServerImportForm(request.POST or None, request.FILES or None)
    errors: list[str] = []
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        text, errors = read_upload(upload)
        if text is not None:
            record = server_import_start(
                scope=scope, user=request.user, filename=upload.name or "servers.csv", text=text
            )
            return redirect("server_import_detail", import_id=record.pk)
    status = 400 if errors else 200
    recent = ServerImport.objects.filter(created_by_id=request.user.pk).order_by("-created_at")[:5]
    return render(
        request,
        "servers/server_import.html",
        {"form": form, "errors": errors, "columns": ALL_COLUMNS, "recent": recent},
        status=status,
    )


@require_GET
def server_import_detail(request: HttpRequest, import_id: int) -> HttpResponse:
    """One import's progress and row errors; only the user who uploaded it sees it (others: 404)."""
    record = get_object_or_404(ServerImport.objects.defer("content"), pk=import_id, created_by_id=request.user.pk)
    return render(request, "servers/server_import_detail.html", {"record": record, "errors": record.errors})


# --- Customers ------------------------------------------------------------------------------
@require_GET
def customer_list(request: HttpRequest) -> HttpResponse:
    scope = request_scope(request)
    return render(request, "servers/customer_list.html", {"customers": selectors.customer_list(scope=scope)})


@require_GET
def customer_detail(request: HttpRequest, customer_id: int) -> HttpResponse:
    """One customer's summary, trend, servers (searchable, paginated), reports, expiring waivers and exceptions."""
    from lockdown import clock
    from lockdown import selectors as lockdown_selectors
    from reports import selectors as report_selectors
    from reports.charts import trend_svg

    scope = request_scope(request)
    customer = scoped_get(scope, Customer.objects.all(), customer_field="", pk=customer_id)
    summary = report_selectors.fleet_summary(scope=scope, customer_id=customer.pk)
    trend = report_selectors.compliance_trend(
        scope=scope, summary=summary, customer_id=customer.pk, tz=timezone.get_current_timezone()
    )
    q = request.GET.get("q", "").strip()[:100]
    servers = Server.objects.filter(customer=customer).select_related("credential").order_by("name")
    if q:
        servers = servers.filter(Q(name__icontains=q) | Q(address__icontains=q))
    return render(
        request,
        "servers/customer_detail.html",
        {
            "customer": customer,
            "maintenance_days": days_label(parse_days(customer.maintenance_days)),
            "summary": summary,
            "not_assessed": report_selectors.not_assessed_causes(scope=scope, customer_id=customer.pk),
            "trend": trend,
            "chart": trend_svg(trend, chart_id="customer-trend", title=f"Average compliance of {customer.name}"),
            "q": q,
            "page": _page(request, servers),
            "query_without_page": _query_without(request, "page"),
            "status_colours": {k.value: v for k, v in SERVER_STATUS_COLOURS.items()},
            "can_manage": scope.can(Action.MANAGE_CUSTOMERS),
            "can_edit_servers": scope.can(Action.EDIT_SERVERS, customer.pk),
            "can_harden": scope.can(Action.HARDEN, customer.pk),
            "can_propose_waiver": scope.can(Action.PROPOSE_WAIVER, customer.pk),
            "reports": list(report_selectors.visible_reports(scope=scope, customer_id=customer.pk)[:10]),
            "expiring": report_selectors.expiring_waivers(scope=scope, customer_id=customer.pk),
            "exceptions": lockdown_selectors.active_exceptions(scope=scope, now=clock.now(), customer_id=customer.pk),
        },
    )


@require_http_methods(["GET", "POST"])
def customer_create(request: HttpRequest) -> HttpResponse:
    scope = request_scope(request)
    require(scope, Action.MANAGE_CUSTOMERS)
    form = CustomerForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        customer = services.customer_create(scope=scope, actor=Actor.from_request(request), **form.cleaned_data)
        messages.success(request, f"Customer {customer.name} added.")
        return redirect("customer_detail", customer_id=customer.pk)
    return render(request, "servers/customer_form.html", {"form": form, "creating": True})


@require_http_methods(["GET", "POST"])
def customer_edit(request: HttpRequest, customer_id: int) -> HttpResponse:
    scope = request_scope(request)
    customer = scoped_get(scope, Customer.objects.all(), customer_field="", pk=customer_id)
    require(scope, Action.MANAGE_CUSTOMERS)
    form = CustomerForm(request.POST or None, instance=customer)
    if request.method == "POST" and form.is_valid():
        services.customer_update(
            scope=scope, actor=Actor.from_request(request), customer=customer, data=form.cleaned_data
        )
        messages.success(request, f"Customer {customer.name} saved.")
        return redirect("customer_detail", customer_id=customer.pk)
    return render(request, "servers/customer_form.html", {"form": form, "customer": customer, "creating": False})


# --- Credentials (MSP admins only; secrets are write-only) ----------------------------------
@require_GET
def credential_list(request: HttpRequest) -> HttpResponse:
    scope = request_scope(request)
    require(scope, Action.MANAGE_CREDENTIALS)
    return render(request, "servers/credential_list.html", {"credentials": selectors.credential_list(scope=scope)})


@require_http_methods(["GET", "POST"])
@recent_second_factor
@sensitive_post_parameters("secret")
def credential_create(request: HttpRequest) -> HttpResponse:
    scope = request_scope(request)
    require(scope, Action.MANAGE_CREDENTIALS)
    form = CredentialForm(request.POST or None, scope=scope)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        credential = services.credential_create(
            scope=scope,
            actor=Actor.from_request(request),
            customer=data["customer"],
            name=data["name"],
            username=data["username"],
            auth=data["auth"],
            secret=data["secret"],
        )
        messages.success(request, f"Credential {credential.name} stored (encrypted).")
        return redirect("credential_list")
    return render(request, "servers/credential_form.html", {"form": form, "creating": True})


@require_http_methods(["GET", "POST"])
@recent_second_factor
@sensitive_post_parameters("secret")
def credential_edit(request: HttpRequest, credential_id: int) -> HttpResponse:
    scope = request_scope(request)
    credential = scoped_get(scope, Credential.objects.select_related("customer"), pk=credential_id)
    require(scope, Action.MANAGE_CREDENTIALS, credential.customer_id)
    form = CredentialForm(request.POST or None, instance=credential, scope=scope, replacing=True)
    if request.method == "POST" and form.is_valid():
        services.credential_update(
            scope=scope,
            actor=Actor.from_request(request),
            credential=credential,
            data=form.cleaned_data,
            secret=form.cleaned_data.get("secret", ""),
        )
        messages.success(request, f"Credential {credential.name} saved.")
        return redirect("credential_list")
    return render(request, "servers/credential_form.html", {"form": form, "credential": credential, "creating": False})


@require_http_methods(["GET", "POST"])
@recent_second_factor
def credential_delete(request: HttpRequest, credential_id: int) -> HttpResponse:
    scope = request_scope(request)
    credential = scoped_get(scope, Credential.objects.select_related("customer"), pk=credential_id)
    require(scope, Action.MANAGE_CREDENTIALS, credential.customer_id)
    if request.method == "POST":
        try:
            services.credential_delete(scope=scope, actor=Actor.from_request(request), credential=credential)
        except ProtectedError:
            messages.error(request, f"Credential {credential.name} is used by servers; assign them another first.")
            return redirect("credential_list")
        messages.success(request, "Credential deleted.")
        return redirect("credential_list")
    return render(request, "servers/confirm_delete.html", {"object": credential, "kind": "credential"})
