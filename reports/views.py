"""Report pages: ask for a report, list and download them (tenant-scoped), the public key, preferences."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from reports import selectors, signing
from reports.forms import ReportForm, ReportScheduleForm, TimeZoneForm, VerifyReportForm
from reports.middleware import SESSION_KEY
from reports.models import Report, ReportFormat, ReportSchedule, UserPreference
from reports.services import ReportRefused, report_request
from servers.audit import Actor
from servers.models import Customer
from servers.tenancy import Action, Scope, request_scope, require, scoped_get


def _report_form(scope: Scope, data: object = None, customer: str | None = None) -> ReportForm:
    initial = {"customer": customer} if customer else {}
    return ReportForm(
        data, initial=initial, customers=selectors.report_customers(scope=scope), allow_fleet=scope.is_msp
    )


def _list(request: HttpRequest, form: ReportForm | None, status: int = 200) -> HttpResponse:
    scope = request_scope(request)
    page = Paginator(selectors.visible_reports(scope=scope).select_related("customer"), 50).get_page(
        request.GET.get("page")
    )
    context = {"form": form, "page": page, "any_active": any(r.is_active for r in page)}
    if request.headers.get("HX-Request") == "true":
        # The list's poll while a report is being built: the table only; it stops polling when none is.
        return render(request, "reports/_report_table_poll.html", context)
    return render(request, "reports/report_list.html", context, status=status)


@require_GET
def report_list(request: HttpRequest) -> HttpResponse:
    if request.headers.get("HX-Request") == "true":
        return _list(request, None)
    return _list(request, _report_form(request_scope(request), customer=request.GET.get("customer")))


@require_POST
def report_create_view(request: HttpRequest) -> HttpResponse:
    scope = request_scope(request)
    form = _report_form(scope, request.POST)
    if not form.is_valid():
        return _list(request, form, status=400)
    start, end = form.period()
    try:
        report = report_request(
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
    messages.success(request, f"Report {report.filename} is queued: it is built in the background.")
    return redirect("report_detail", report_id=report.pk)


@require_GET
def report_detail(request: HttpRequest, report_id: int) -> HttpResponse:
    """One report's status and progress (polled with htmx while it is built), its downloads when ready."""
    report = scoped_get(
        request_scope(request), Report.objects.defer("content", "evidence").select_related("signing_key"), pk=report_id
    )
    partial = request.headers.get("HX-Request") == "true"
    template = "reports/_report_status.html" if partial else "reports/report_detail.html"
    return render(request, template, {"report": report})


def _report(request: HttpRequest, report_id: int) -> Report:
    """A report the user may see, and only once it is ready: its files are empty before."""
    report = scoped_get(request_scope(request), Report.objects.all(), pk=report_id)
    if not report.is_ready:
        raise Http404("This report is not ready.")
    return report


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


@login_not_required
@require_http_methods(["GET", "POST"])
def report_verify(request: HttpRequest) -> HttpResponse:
    """Anyone, also without an account (an external auditor), uploads a report and its .sig and reads
    a verdict: the same check as `manage.py verify_report` (signing.verify_bytes), against our key."""
    form = VerifyReportForm(request.POST or None, request.FILES or None)
    key = signing.installation_key()
    verdict = None
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["report"]
        data = b"".join(upload.chunks())
        verdict = signing.verdict_for(data, upload.name or "", form.cleaned_data["signature"], key.public_key_bytes)
    status = 400 if request.method == "POST" and not form.is_valid() else 200
    context = {"form": form, "verdict": verdict, "key": key}
    return render(request, "reports/report_verify.html", context, status=status)


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


@require_http_methods(["GET", "POST"])
def customer_report_schedule(request: HttpRequest, customer_id: int) -> HttpResponse:
    """The customer's scheduled report: who may harden its servers sets it (as its alert recipients)."""
    from reports.schedules import report_schedule_save

    scope = request_scope(request)
    customer = scoped_get(scope, Customer.objects.all(), customer_field="", pk=customer_id)
    require(scope, Action.HARDEN, customer.pk)
    current = ReportSchedule.objects.filter(customer=customer).select_related("last_report").first()
    initial = (
        {"frequency": current.frequency, "format": current.format, "recipients": "\n".join(current.recipients)}
        if current
        else {}
    )
    form = ReportScheduleForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        report_schedule_save(
            scope=scope,
            actor=Actor.from_request(request),
            customer=customer,
            frequency=form.cleaned_data["frequency"],
            fmt=form.cleaned_data["format"],
            recipients=form.cleaned_data["recipients"],
        )
        messages.success(request, "Report schedule saved.")
        return redirect("customer_report_schedule", customer_id=customer.pk)
    status = 400 if request.method == "POST" else 200
    context = {"customer": customer, "form": form, "schedule": current}
    return render(request, "reports/customer_report_schedule.html", context, status=status)
