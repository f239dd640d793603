"""The fleet rule view: top failing rules, and "servers failing rule X" with Waive… per row.

Thin: scope → lockdown.fleet_rules → render. Both pages cost a fixed number of queries.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from jobs.models import RuleResult
from lockdown import fleet_rules
from lockdown.rules.wording import in_words, is_registry_rule
from servers.models import Customer
from servers.selectors import visible_customers
from servers.tenancy import Action, Scope, request_scope, scoped_get

RULES_PER_PAGE = 25
SERVERS_PER_PAGE = 50


def _customer_filter(request: HttpRequest, scope: Scope) -> Customer | None:
    """The `customer` filter, if it names a customer the user may see (another tenant's is 404)."""
    raw = request.GET.get("customer", "")
    if not raw:
        return None
    return scoped_get(scope, Customer.objects.all(), customer_field="", pk=raw)


def _query_without(request: HttpRequest, *keys: str) -> str:
    query = request.GET.copy()
    for key in keys:
        query.pop(key, None)
    return query.urlencode()


@require_GET
def rule_list(request: HttpRequest) -> HttpResponse:
    """Top failing rules over the assessed servers the user may see, with a per-customer breakdown."""
    scope = request_scope(request)
    customer = _customer_filter(request, scope)
    customer_id = customer.pk if customer is not None else None
    sort = request.GET.get("sort", fleet_rules.DEFAULT_RULE_SORT)
    if sort not in fleet_rules.RULE_SORTS:
        sort = fleet_rules.DEFAULT_RULE_SORT
    page = Paginator(fleet_rules.failing_rules(scope=scope, customer_id=customer_id, sort=sort), RULES_PER_PAGE)
    page_obj = page.get_page(request.GET.get("page"))
    return render(
        request,
        "lockdown/rule_list.html",
        {
            "page": page_obj,
            "rules": fleet_rules.with_details(scope=scope, rows=list(page_obj), customer_id=customer_id),
            "coverage": fleet_rules.fleet_coverage(scope=scope, customer_id=customer_id),
            "customer": customer,
            "customers": visible_customers(scope=scope).order_by("name"),
            "sort": sort,
            "query_without_page": _query_without(request, "page"),
            "query_without_sort": _query_without(request, "sort", "page"),
        },
    )


@dataclass(frozen=True)
class FailingRow:
    """One drifted target of one server, in words, with whether the reader may waive it."""

    result: RuleResult
    expected: str
    observed: str
    reason: str
    can_waive: bool
    first_of_server: bool  # the server's name, customer, last verify and Waive… are shown once per server


@require_GET
def rule_detail(request: HttpRequest, rule_id: str) -> HttpResponse:
    """Servers failing one rule: each drifted server with expected vs observed, last verified, Waive…."""
    scope = request_scope(request)
    customer = _customer_filter(request, scope)
    customer_id = customer.pk if customer is not None else None
    summary = fleet_rules.rule_summary(scope=scope, rule_id=rule_id, customer_id=customer_id)
    if summary is None:
        raise Http404("not found")
    page = Paginator(
        fleet_rules.servers_failing(scope=scope, rule_id=rule_id, customer_id=customer_id), SERVERS_PER_PAGE
    ).get_page(request.GET.get("page"))
    rows = []
    previous: int | None = None
    for result in page:
        registry = is_registry_rule(result.rule_id)
        rows.append(
            FailingRow(
                result=result,
                expected=in_words(result.expected_text, registry=registry),
                observed=in_words(result.observed_text, registry=registry),
                reason=in_words(result.reason, registry=registry),
                can_waive=result.server is not None and scope.can(Action.PROPOSE_WAIVER, result.server.customer_id),
                first_of_server=result.server_id != previous,
            )
        )
        previous = result.server_id
    return render(
        request,
        "lockdown/rule_detail.html",
        {
            "summary": summary,
            "page": page,
            "rows": rows,
            "coverage": fleet_rules.fleet_coverage(scope=scope, customer_id=customer_id),
            "customer": customer,
            "customers": visible_customers(scope=scope).order_by("name"),
            "query_without_page": _query_without(request, "page"),
        },
    )
