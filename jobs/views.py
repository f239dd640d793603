"""Job pages: one-click actions on a server, fleet-wide jobs with a preview, live job logs."""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Iterator
from typing import Any

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse, QueryDict, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from jobs import selectors
from jobs.choices import (
    JOB_STATE_COLOURS,
    MUTATING_KINDS,
    RUN_STATE_COLOURS,
    CanaryOrder,
    HostRunState,
    JobKind,
    JobState,
)
from jobs.models import Job
from jobs.services import (
    JobOptions,
    JobRefused,
    action_for,
    job_cancel,
    job_continue,
    job_create,
    job_retry_servers,
    maintenance_window_for,
    typed_confirmation_needed,
)
from jobs.templatetags.job_tags import job_stop_reason
from lockdown import clock
from servers import selectors as server_selectors
from servers.audit import Actor
from servers.choices import ServerStatus
from servers.models import Server
from servers.tenancy import Action, request_scope, require, scoped_get


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _start(
    request: HttpRequest,
    kind: JobKind,
    servers: list[Server],
    options: JobOptions | None = None,
    description: str = "",
    typed_confirmation: str = "",
) -> HttpResponse | None:
    try:
        job = job_create(
            scope=request_scope(request),
            actor=Actor.from_request(request),
            kind=kind,
            servers=servers,
            options=options,
            description=description,
            typed_confirmation=typed_confirmation,
        )
    except JobRefused as refused:
        messages.error(request, str(refused))
        return None
    return redirect("job_detail", job_id=job.pk)


# --- One click on a server ----------------------------------------------------------------
@require_POST
def server_verify(request: HttpRequest, server_id: int) -> HttpResponse:
    scope = request_scope(request)
    server = scoped_get(scope, Server.objects.select_related("customer"), pk=server_id)
    require(scope, Action.EDIT_SERVERS, server.customer_id)
    return _start(request, JobKind.VERIFY, [server], description=f"Verify {server.name}") or redirect(
        "server_detail", server_id=server.pk
    )


@require_POST
def server_selftest(request: HttpRequest, server_id: int) -> HttpResponse:
    """The read-only agent self-test (MSP admins): a job whose log is the report's table, its JSON in the run."""
    scope = request_scope(request)
    server = scoped_get(scope, Server.objects.select_related("customer"), pk=server_id)
    require(scope, Action.SELFTEST, server.customer_id)
    return _start(request, JobKind.SELFTEST, [server], description=f"Agent self-test of {server.name}") or redirect(
        "server_detail", server_id=server.pk
    )


@require_POST
def server_discover(request: HttpRequest, server_id: int) -> HttpResponse:
    """Test connection: a discover run, with the error classes of remote/."""
    scope = request_scope(request)
    server = scoped_get(scope, Server.objects.select_related("customer"), pk=server_id)
    require(scope, Action.EDIT_SERVERS, server.customer_id)
    return _start(request, JobKind.DISCOVER, [server], description=f"Test connection to {server.name}") or redirect(
        "server_detail", server_id=server.pk
    )


@require_http_methods(["GET", "POST"])
def server_harden(request: HttpRequest, server_id: int) -> HttpResponse:
    """Preview (from the last verify) → confirm → the live job page."""
    scope = request_scope(request)
    server = scoped_get(scope, Server.objects.select_related("customer"), pk=server_id)
    require(scope, Action.HARDEN, server.customer_id)
    if request.method == "POST":
        dry_run = request.POST.get("dry_run") == "1"
        # The operator's choice (off by default): reset an adopted IME_SYSTEM's password; cannot be rolled back.
        reset = request.POST.get("reset_adopted_password") == "1"
        options = JobOptions(dry_run=dry_run, reset_adopted_password=reset)
        if request.POST.get("in_window") == "1" and not dry_run:
            try:
                not_before, not_after = maintenance_window_for([server], clock.now())
            except JobRefused as refused:
                messages.error(request, str(refused))
                return redirect("server_harden", server_id=server.pk)
            options = dataclasses.replace(options, not_before=not_before, not_after=not_after)
        return _start(request, JobKind.HARDEN, [server], options, description=f"Harden {server.name}") or redirect(
            "server_harden", server_id=server.pk
        )
    preview = selectors.harden_preview(server)
    adopted = isinstance(server.facts, dict) and bool(server.facts.get("ime_system_sid"))
    window = server.customer.maintenance_window(clock.now())
    return render(
        request,
        "jobs/server_harden.html",
        {"server": server, "preview": preview, "adopted": adopted, "window": window},
    )


@require_http_methods(["GET", "POST"])
def server_rollback(request: HttpRequest, server_id: int) -> HttpResponse:
    scope = request_scope(request)
    server = scoped_get(scope, Server.objects.select_related("customer"), pk=server_id)
    require(scope, Action.HARDEN, server.customer_id)
    if request.method == "POST":
        return _start(request, JobKind.ROLLBACK, [server], description=f"Roll back {server.name}") or redirect(
            "server_rollback", server_id=server.pk
        )
    pending = server.changes.filter(rolled_back_at__isnull=True).count()
    return render(request, "jobs/server_rollback.html", {"server": server, "pending": pending})


# --- Fleet-wide -------------------------------------------------------------------------------
class FleetJobForm(forms.Form):
    # The self-test is one server's, started from its page (MSP admins only).
    kind = forms.ChoiceField(choices=[c for c in JobKind.choices if c[0] != JobKind.SELFTEST])
    dry_run = forms.BooleanField(required=False, label="Dry run (report what would change, change nothing)")
    canary_size = forms.IntegerField(min_value=0, max_value=10_000, initial=2, label="Canary wave (hosts first)")
    canary_order = forms.ChoiceField(
        choices=[(order.value, order.label) for order in (CanaryOrder.HEALTHY_FIRST, CanaryOrder.FIRST)],
        initial=CanaryOrder.HEALTHY_FIRST.value,
        label="Canary hosts (unless you tick them in the list of servers below)",
    )
    pause_after_canary = forms.BooleanField(required=False, label="Pause for approval after the canary wave")
    failure_threshold_pct = forms.IntegerField(
        min_value=0, max_value=100, initial=20, label="Stop when more than this % of a wave fails"
    )
    max_in_flight = forms.IntegerField(min_value=1, max_value=500, initial=20, label="Hosts in flight at once")
    not_before = forms.DateTimeField(
        required=False,
        label="Start at (maintenance window, UTC)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"],
    )
    in_window = forms.BooleanField(
        required=False,
        label="In the customer's next maintenance window (servers of one customer; overrides 'Start at')",
    )


def _ids(data: Any, key: str) -> list[int]:
    return [int(v) for v in data.getlist(key) if v.isdigit()] if hasattr(data, "getlist") else []


def _selected_servers(request: HttpRequest, data: Any) -> tuple[list[Server], dict[str, Any]]:
    scope = request_scope(request)
    filters = server_selectors.ServerFilter(
        q=data.get("q", "").strip()[:100],
        customer_id=_int_or_none(data.get("customer")),
        tag=data.get("tag", "").strip()[:60],
        status=data.get("status", ""),
    )
    servers = server_selectors.server_list(scope=scope, filters=filters)
    ids = _ids(data, "server")
    if ids:
        if scope.filter(Server.objects.filter(pk__in=ids)).count() < len(set(ids)):
            raise Http404("not found")  # a server of another customer (or none): as if it did not exist
        servers = servers.filter(pk__in=ids)
    return list(servers[:5000]), {"filters": filters, "ids": ids}


def _initial(data: QueryDict) -> dict[str, Any]:
    """The form as a link prefills it (the server list's "New job for selected", a job's "Retry failed")."""
    initial: dict[str, Any] = {"kind": data.get("kind") if data.get("kind") in JobKind.values else JobKind.VERIFY}
    for name in ("canary_size", "failure_threshold_pct", "max_in_flight"):
        value = data.get(name) or ""
        if value.isdigit():
            initial[name] = int(value)
    if data.get("canary_order") in CanaryOrder.values:
        initial["canary_order"] = data["canary_order"]
    for name in ("dry_run", "pause_after_canary"):
        if data.get(name) == "1":
            initial[name] = True
    return initial


def _fleet_options(form: FleetJobForm, servers: list[Server], canary_ids: list[int]) -> JobOptions | None:
    """The options as chosen, or None with the form's error set."""
    data = form.cleaned_data
    options = JobOptions(
        dry_run=data["dry_run"],
        canary_size=data["canary_size"],
        canary_server_ids=tuple(canary_ids),
        canary_healthy_first=data["canary_order"] == CanaryOrder.HEALTHY_FIRST,
        pause_after_canary=data["pause_after_canary"],
        failure_threshold_pct=data["failure_threshold_pct"],
        max_in_flight=data["max_in_flight"],
        not_before=data.get("not_before"),
    )
    if data.get("in_window"):
        try:
            not_before, not_after = maintenance_window_for(servers, clock.now())
            options = dataclasses.replace(options, not_before=not_before, not_after=not_after)
        except JobRefused as refused:
            form.add_error("in_window", str(refused))
            return None
    try:
        options.validate()
    except JobRefused as refused:
        form.add_error(None, str(refused))
        return None
    return options


def _by_customer(servers: list[Server]) -> list[tuple[str, list[Server]]]:
    groups: dict[str, list[Server]] = {}
    for server in servers:
        groups.setdefault(server.customer.name, []).append(server)
    return sorted(groups.items())


@require_http_methods(["GET", "POST"])
def job_new(request: HttpRequest) -> HttpResponse:
    """Choose servers (customer, tag, status, selection) and a kind → preview → (harden, rollback:
    a confirmation page) → run in waves.

    One form carries the kind, the options and the selection through every step ("Choose servers"
    re-posts it), so choosing servers never resets what was already chosen.
    """
    scope = request_scope(request)
    require(scope, Action.EDIT_SERVERS)
    source = request.POST if request.method == "POST" else request.GET
    servers, chosen = _selected_servers(request, source)
    retry_of = _int_or_none(source.get("retry_of"))
    if retry_of is not None and not selectors.job_list(scope=scope).filter(pk=retry_of).exists():
        retry_of = None
    form = FleetJobForm(request.POST) if request.method == "POST" else FleetJobForm(initial=_initial(request.GET))
    step = request.POST.get("step", "")
    canary_ids = [pk for pk in _ids(source, "canary") if pk in {server.pk for server in servers}]
    if request.method == "POST" and step in ("review", "start") and form.is_valid():
        kind = JobKind(form.cleaned_data["kind"])
        if kind in MUTATING_KINDS:
            require(scope, Action.HARDEN)
        options = _fleet_options(form, servers, canary_ids)
        if options is not None and servers:
            phrase = typed_confirmation_needed(kind, len(servers), dry_run=options.dry_run)
            confirm_page = kind in (JobKind.HARDEN, JobKind.ROLLBACK) and not options.dry_run
            if step == "start" or not confirm_page:
                description = f"{kind.label}: {len(servers)} server{'' if len(servers) == 1 else 's'}"
                if retry_of is not None:
                    description = f"Retry of job #{retry_of}: {description}"
                response = _start(
                    request,
                    kind,
                    servers,
                    options,
                    description=description,
                    typed_confirmation=request.POST.get("typed_confirmation", ""),
                )
                if response is not None:
                    return response
            if confirm_page:
                return render(
                    request,
                    "jobs/job_confirm.html",
                    {
                        "form": form,
                        "kind": kind,
                        "servers": servers,
                        "by_customer": _by_customer(servers),
                        "chosen": chosen,
                        "canary_ids": canary_ids,
                        "canary_servers": [s for s in servers if s.pk in set(canary_ids)],
                        "options": options,
                        "phrase": phrase,
                        "retry_of": retry_of,
                    },
                )
    preview = selectors.fleet_preview(servers) if servers else None
    return render(
        request,
        "jobs/job_new.html",
        {
            "form": form,
            "servers": servers,
            "preview": preview,
            "chosen": chosen,
            "canary_ids": canary_ids,
            "retry_of": retry_of,
            "customers": server_selectors.visible_customers(scope=scope),
            "tags": server_selectors.visible_tags(scope=scope),
            "statuses": ServerStatus.choices,
        },
    )


# --- Job pages --------------------------------------------------------------------------------
@require_GET
def job_list(request: HttpRequest) -> HttpResponse:
    scope = request_scope(request)
    kind = request.GET.get("kind", "") if request.GET.get("kind") in JobKind.values else ""
    state = request.GET.get("state", "") if request.GET.get("state") in JobState.values else ""
    page = Paginator(selectors.job_list(scope=scope, kind=kind, state=state), 50).get_page(request.GET.get("page"))
    return render(
        request,
        "jobs/job_list.html",
        {
            "page": page,
            "kind": kind,
            "state": state,
            "kinds": JobKind.choices,
            "states": JobState.choices,
            "colours": JOB_STATE_COLOURS,
        },
    )


RUNS_PER_PAGE = 100


def _job_context(request: HttpRequest, job: Job) -> dict[str, Any]:
    """Per-state counts (one aggregate) and one page of the user's host runs, filterable by state.

    A fleet job can hold thousands of hosts: the page never renders them all at once.
    """
    scope = request_scope(request)
    visible = selectors.job_host_runs(scope=scope, job=job)
    counts = dict(visible.order_by().values_list("state").annotate(n=Count("id")).values_list("state", "n"))
    state = request.GET.get("runs", "")
    runs = visible.filter(state=state) if state in HostRunState.values else visible
    page = Paginator(runs, RUNS_PER_PAGE).get_page(request.GET.get("rp"))
    query = QueryDict(mutable=True)
    if state in HostRunState.values:
        query["runs"] = state
    if page.number > 1:
        query["rp"] = str(page.number)
    theirs = selectors.job_is_theirs(scope=scope, job=job)
    may_act = scope.can(action_for(JobKind(job.kind))) and theirs
    retry_ids = (
        [server.pk for server in job_retry_servers(scope=scope, job=job)]
        if not job.is_open and may_act and (counts.get(HostRunState.FAILED) or counts.get(HostRunState.ROLLED_BACK))
        else []
    )
    return {
        "job": job,
        "progress": selectors.job_progress(runs=visible, job=job, counts=counts, now=clock.now()),
        "can_continue": may_act
        and job.state in (JobState.PAUSED, JobState.STOPPED)
        and job.cancel_requested_at is None,
        "retry_query": _retry_query(job, retry_ids) if retry_ids else "",
        "retry_count": len(retry_ids),
        "runs": page,
        "run_page": page,
        "run_state": state if state in HostRunState.values else "",
        "run_query": query.urlencode(),
        "run_states": HostRunState.choices,
        "counts": counts,
        "run_colours": {k.value: v for k, v in RUN_STATE_COLOURS.items()},
        "job_colour": JOB_STATE_COLOURS.get(JobState(job.state), "grey"),
        "can_cancel": job.is_open and may_act,
        # a customer's users read no fleet-wide counts (the stop reason counts every host of the wave)
        "stop_reason": job_stop_reason(job, msp=scope.is_msp),
        # customer-scoped users read one sentence for any failed connection (no port scanner)
        "msp": scope.is_msp,
    }


def _retry_query(job: Job, server_ids: list[int]) -> str:
    """The new-job form prefilled with the failed hosts and the job's kind and options (no canary)."""
    query = QueryDict(mutable=True)
    query["kind"] = job.kind
    query.setlist("server", [str(pk) for pk in server_ids])
    query["canary_size"] = "0"
    query["failure_threshold_pct"] = str(job.failure_threshold_pct)
    query["max_in_flight"] = str(job.max_in_flight)
    if job.dry_run:
        query["dry_run"] = "1"
    query["retry_of"] = str(job.pk)
    return query.urlencode()


@require_GET
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    scope = request_scope(request)
    job = selectors.job_get(scope=scope, job_id=job_id)
    context = _job_context(request, job)
    events = selectors.job_events_after(scope=scope, job=job, after=0, limit=selectors.LOG_PAGE)
    context.update(events=events, cursor=events[-1].pk if events else 0)
    context["keep_polling"] = job.is_open or len(events) == selectors.LOG_PAGE
    return render(request, "jobs/job_detail.html", context)


@require_GET
def job_log(request: HttpRequest, job_id: int) -> HttpResponse:
    """htmx poll: the status panel plus log lines after the cursor; polling stops when the job ends."""
    scope = request_scope(request)
    job = selectors.job_get(scope=scope, job_id=job_id)
    after = _int_or_none(request.GET.get("after")) or 0
    events = selectors.job_events_after(scope=scope, job=job, after=after, limit=selectors.LOG_PAGE)
    context = _job_context(request, job)
    context.update(events=events, cursor=events[-1].pk if events else after)
    # Keep polling while the job runs or waits for approval (another operator may continue it), or while a
    # full page says more lines are waiting.
    context["keep_polling"] = job.is_open or len(events) == selectors.LOG_PAGE
    return render(request, "jobs/_job_update.html", context)


@require_POST
def job_cancel_view(request: HttpRequest, job_id: int) -> HttpResponse:
    scope = request_scope(request)
    job = selectors.job_get(scope=scope, job_id=job_id)
    if not selectors.job_is_theirs(scope=scope, job=job):
        raise Http404("not found")  # a fleet job with other customers' hosts is not theirs to touch
    require(scope, action_for(JobKind(job.kind)))
    job_cancel(scope=scope, actor=Actor.from_request(request), job=job)
    messages.success(
        request, "Cancellation requested: queued hosts are cancelled now, running ones stop between phases."
    )
    return redirect(reverse("job_detail", kwargs={"job_id": job.pk}))


@require_POST
def job_continue_view(request: HttpRequest, job_id: int) -> HttpResponse:
    """Start the hosts after the canary (a paused job, or one the canary threshold stopped)."""
    scope = request_scope(request)
    job = selectors.job_get(scope=scope, job_id=job_id)
    if not selectors.job_is_theirs(scope=scope, job=job):
        raise Http404("not found")  # a fleet job with other customers' hosts is not theirs to touch
    require(scope, action_for(JobKind(job.kind)))
    try:
        job_continue(scope=scope, actor=Actor.from_request(request), job=job)
    except JobRefused as refused:
        messages.error(request, str(refused))
    else:
        messages.success(request, "Continued: the hosts after the canary are starting.")
    return redirect(reverse("job_detail", kwargs={"job_id": job.pk}))


@require_GET
def server_changes_download(request: HttpRequest, server_id: int) -> StreamingHttpResponse:
    """Every change record of a server in full (the page shows the newest few, truncated), as CSV."""
    scope = request_scope(request)
    server = scoped_get(scope, Server.objects.all(), pk=server_id)

    class Echo:
        def write(self, value: str) -> str:
            return value

    writer = csv.writer(Echo())
    header = ["job", "recorded_at", "rule_id", "target", "target_kind", "before", "after", "rolled_back_at"]

    def rows() -> Iterator[str]:
        yield writer.writerow(header)
        for change in selectors.server_change_records(server):
            yield writer.writerow(
                [change.host_run.job_id, change.created_at.isoformat(), change.rule_id, _cell(change.target),
                 change.target_kind, _cell(change.before), _cell(change.after),
                 change.rolled_back_at.isoformat() if change.rolled_back_at else ""]
            )  # fmt: skip

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="changes-server-{server.pk}.csv"'
    response["Cache-Control"] = "private, no-store"
    return response


def _cell(value: str) -> str:
    """A CSV cell a spreadsheet will not run as a formula (host-supplied text is untrusted)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
