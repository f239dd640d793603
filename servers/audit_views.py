"""The audit log: readable diffs, filters (dates in the user's time zone, action, actor, customer),
pagination and a spreadsheet-safe CSV of the filtered rows. MSP admins only (Action.VIEW_AUDIT).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

from django import forms
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from reports.documents import csv_cell
from servers import selectors
from servers.audit import SECRET_FIELD_NAMES
from servers.audit_diff import ChangeRow, change_rows
from servers.models import AuditEvent, Customer
from servers.tenancy import Action, Scope, request_scope, require

PAGE_SIZE = 100
CSV_COLUMNS = ["at", "actor", "source_ip", "action", "object_type", "object_id", "object", "customer", "changes"]
CSV_CELL_LIMIT = 8000


class AuditFilterForm(forms.Form):
    """What the audit log was asked for; a field that does not validate is ignored (and said)."""

    since = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    action = forms.ChoiceField(label="Action", required=False)
    actor = forms.CharField(label="Who", required=False, max_length=150)
    customer = forms.ModelChoiceField(label="Customer", required=False, queryset=Customer.objects.none())

    def __init__(self, *args: object, scope: Scope, actions: list[str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        # "server." matches every server.* action (the selector filters by prefix), then each action.
        prefixes = sorted({a.split(".", 1)[0] + "." for a in actions if "." in a})
        choices = [("", "All"), *((p, f"{p}* (all)") for p in prefixes), *((a, a) for a in actions)]
        self.fields["action"].choices = choices  # type: ignore[attr-defined]
        customers = self.fields["customer"]
        customers.queryset = selectors.visible_customers(scope=scope).order_by("name")  # type: ignore[attr-defined]
        customers.empty_label = "All"  # type: ignore[attr-defined]


@dataclass(frozen=True)
class AuditFilters:
    actor: str = ""
    action: str = ""
    customer_id: int | None = None
    since: date | None = None
    until: date | None = None


def _filters(form: AuditFilterForm) -> AuditFilters:
    form.is_valid()
    data = form.cleaned_data  # only the fields that validated
    customer = data.get("customer")
    return AuditFilters(
        actor=(data.get("actor") or "").strip(),
        action=data.get("action") or "",
        customer_id=customer.pk if customer is not None else None,
        since=data.get("since"),
        until=data.get("until"),
    )


def _local_midnight(day: date) -> datetime:
    """The start of `day` in the user's time zone (the middleware activated it)."""
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


def filtered_events(scope: Scope, filters: AuditFilters) -> QuerySet[AuditEvent]:
    return selectors.audit_list(
        scope=scope,
        actor=filters.actor,
        action=filters.action,
        customer_id=filters.customer_id,
        since=_local_midnight(filters.since) if filters.since else None,
        # "to" a day includes that whole day
        before=_local_midnight(filters.until + timedelta(days=1)) if filters.until else None,
    )


def _form(request: HttpRequest, scope: Scope) -> AuditFilterForm:
    actions = list(AuditEvent.objects.order_by("action").values_list("action", flat=True).distinct())
    return AuditFilterForm(request.GET, scope=scope, actions=actions)


@dataclass(frozen=True)
class AuditRow:
    event: AuditEvent
    changes: list[ChangeRow]

    @property
    def actor_parts(self) -> list[str]:
        """ "builtin_profile_sync" in pieces after each _ . @, so a narrow column breaks there, not mid-word."""
        return re.split(r"(?<=[_.@])", self.event.actor_name or "system")


def _rows(events: object) -> list[AuditRow]:
    return [AuditRow(e, change_rows(e.changes, hidden=SECRET_FIELD_NAMES)) for e in events]  # type: ignore[attr-defined]


def _query_without(request: HttpRequest, *keys: str) -> str:
    query = request.GET.copy()
    for key in keys:
        query.pop(key, None)
    return query.urlencode()


@require_GET
def audit_list(request: HttpRequest) -> HttpResponse:
    scope = request_scope(request)
    require(scope, Action.VIEW_AUDIT)
    form = _form(request, scope)
    filters = _filters(form)
    page = Paginator(filtered_events(scope, filters), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "servers/audit_list.html",
        {
            "form": form,
            "page": page,
            "rows": _rows(page),
            "query_without_page": _query_without(request, "page"),
        },
    )


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_lines(events: QuerySet[AuditEvent], tz: tzinfo) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for event in events.iterator(chunk_size=500):
        changes = "; ".join(row.text for row in change_rows(event.changes, hidden=SECRET_FIELD_NAMES))
        yield writer.writerow(
            [
                csv_cell(timezone.localtime(event.at, tz).isoformat(timespec="seconds")),
                csv_cell(event.actor_name or "system"),
                csv_cell(event.source_ip),
                csv_cell(event.action),
                csv_cell(event.object_type),
                csv_cell(event.object_id),
                csv_cell(event.object_repr),
                csv_cell(event.customer_name),
                csv_cell(changes, CSV_CELL_LIMIT),
            ]
        )


@require_GET
def audit_export(request: HttpRequest) -> StreamingHttpResponse:
    """The filtered rows as CSV (every page), cells that a spreadsheet would run as formulas escaped."""
    scope = request_scope(request)
    require(scope, Action.VIEW_AUDIT)
    events = filtered_events(scope, _filters(_form(request, scope)))
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    # The rows are written after the view returns, when the user's time zone is no longer active: pass it.
    tz = timezone.get_current_timezone()
    response = StreamingHttpResponse(_csv_lines(events, tz), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.csv"'
    return response
