"""Report pages: ask for a report, list and download them (tenant-scoped), the public key, preferences."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from reports import selectors, signing
from reports.forms import ReportForm, TimeZoneForm
from reports.middleware import SESSION_KEY
from reports.models import Report, ReportFormat, UserPreference
from reports.services import ReportRefused, report_create
from servers.audit import Actor
from servers.tenancy import Scope, request_scope, scoped_get


def _report_form(scope: Scope, data: object = None, customer: str | None = None) -> ReportForm:
    initial = {"customer": customer} if customer else {}
    return ReportForm(
        data, initial=initial, customers=selectors.report_customers(scope=scope), allow_fleet=scope.is_msp
    )


def _list(request: HttpRequest, form: ReportForm, status: int = 200) -> HttpResponse:
    scope = request_scope(request)
    page = Paginator(selectors.visible_reports(scope=scope).select_related("customer"), 50).get_page(
        request.GET.get("page")
    )
    return render(request, "reports/report_list.html", {"form": form, "page": page}, status=status)


@require_GET
def report_list(request: HttpRequest) -> HttpResponse:
    return _list(request, _report_form(request_scope(request), customer=request.GET.get("customer")))


@require_POST
def report_create_view(request: HttpRequest) -> HttpResponse:
    scope = request_scope(request)
    form = _report_form(scope, request.POST)
    if not form.is_valid():
        return _list(request, form, status=400)
    start, end = form.period()
    try:
        report = report_create(
            scope=scope,
            actor=Actor.from_request(request),
            customer=form.chosen_customer(),
            fmt=ReportFormat(form.cleaned_data["format"]),
            period_start=start,
            period_end=end,
            tz_name=str(timezone.get_current_timezone_name()),
        )
    except ReportRefused as refused:
        form.add_error(None, str(refused))
        return _list(request, form, status=400)
    messages.success(request, f"Report {report.filename} is ready and signed.")
    return redirect("report_list")


def _report(request: HttpRequest, report_id: int) -> Report:
    return scoped_get(request_scope(request), Report.objects.all(), pk=report_id)


def _attachment(data: bytes | memoryview, filename: str, content_type: str) -> HttpResponse:
    response = HttpResponse(bytes(data), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "private, no-store"
    return response


@require_GET
def report_download(request: HttpRequest, report_id: int) -> HttpResponse:
    report = _report(request, report_id)
    content_type = "application/pdf" if report.format == ReportFormat.PDF else "text/csv; charset=utf-8"
    return _attachment(report.content, report.filename, content_type)


@require_GET
def report_evidence(request: HttpRequest, report_id: int) -> HttpResponse:
    report = _report(request, report_id)
    return _attachment(report.evidence, report.evidence_filename, "application/json")


@require_GET
def report_signature(request: HttpRequest, report_id: int) -> HttpResponse:
    report = _report(request, report_id)
    return _attachment(report.signature.encode("ascii"), report.signature_filename, "application/json")


@require_GET
def signing_key(request: HttpRequest) -> HttpResponse:
    key = signing.installation_key()
    return render(
        request,
        "reports/signing_key.html",
        {"key": key, "pem": signing.public_key_pem(key), "format": signing.FORMAT},
    )


@require_http_methods(["GET", "POST"])
def preferences(request: HttpRequest) -> HttpResponse:
    current = request.session.get(SESSION_KEY, "UTC")
    form = TimeZoneForm(request.POST or None, initial={"time_zone": current})
    if request.method == "POST":
        if form.is_valid():
            name = form.cleaned_data["time_zone"]
            UserPreference.objects.update_or_create(user_id=int(request.user.pk or 0), defaults={"time_zone": name})
            request.session[SESSION_KEY] = name
            messages.success(request, f"Times are now shown in {name}.")
            return redirect("preferences")
        return render(request, "reports/preferences.html", {"form": form}, status=400)
    return render(request, "reports/preferences.html", {"form": form})
