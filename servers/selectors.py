"""Reusable reads of the inventory, always through the tenancy scope."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Prefetch, Q, QuerySet

from servers.assessment import Coverage, coverage_aggregates
from servers.choices import ServerStatus
from servers.models import AuditEvent, Credential, Customer, Server, Tag
from servers.tenancy import Scope

SERVER_SORTS = {
    "name": ("name", "customer__name"),
    "-name": ("-name", "customer__name"),
    "customer": ("customer__name", "name"),
    "-customer": ("-customer__name", "name"),
    "status": ("status", "name"),
    "-status": ("-status", "name"),
    "compliance": ("compliance_pct", "name"),
    "-compliance": ("-compliance_pct", "name"),
    "verified": ("last_verified_at", "name"),
    "-verified": ("-last_verified_at", "name"),
}


@dataclass(frozen=True)
class ServerFilter:
    """What the server list was asked for; unknown values are ignored, never an error."""

    q: str = ""
    customer_id: int | None = None
    tag: str = ""
    status: str = ""
    sort: str = "customer"


def server_list(*, scope: Scope, filters: ServerFilter) -> QuerySet[Server]:
    servers = scope.filter(Server.objects.select_related("customer", "credential")).prefetch_related(
        Prefetch("tags", queryset=Tag.objects.only("name"))
    )
    if filters.q:
        servers = servers.filter(Q(name__icontains=filters.q) | Q(address__icontains=filters.q))
    if filters.customer_id is not None:
        servers = servers.filter(customer_id=filters.customer_id)
    if filters.tag:
        servers = servers.filter(tags__name=filters.tag)
    if filters.status in ServerStatus.values:
        servers = servers.filter(status=filters.status)
    return servers.order_by(*SERVER_SORTS.get(filters.sort, SERVER_SORTS["customer"]))


def visible_customers(*, scope: Scope) -> QuerySet[Customer]:
    return scope.filter(Customer.objects.all(), customer_field="")


def visible_tags(*, scope: Scope) -> QuerySet[Tag]:
    """Tags on servers the user may see (tag names of other tenants stay hidden)."""
    return Tag.objects.filter(pk__in=scope.filter(Server.objects.all()).values("tags")).order_by("name")


@dataclass(frozen=True)
class CustomerRow:
    """One customer on the customer list: its servers, how many comply, its average with its coverage."""

    customer: Customer
    compliant_count: int
    coverage: Coverage

    @property
    def pk(self) -> int:
        return self.customer.pk

    @property
    def name(self) -> str:
        return self.customer.name

    @property
    def server_count(self) -> int:
        return self.coverage.total


def customer_list(*, scope: Scope) -> list[CustomerRow]:
    """One query: each visible customer with its figures (servers.assessment decides what an average counts)."""
    customers = visible_customers(scope=scope).annotate(
        compliant_count=Count("servers", filter=Q(servers__status=ServerStatus.COMPLIANT), distinct=True),
        **coverage_aggregates("servers__"),
    )
    return [
        CustomerRow(
            customer=customer,
            compliant_count=customer.compliant_count,
            coverage=Coverage.from_row(vars(customer)),
        )
        for customer in customers.order_by("name")
    ]


def credential_list(*, scope: Scope) -> QuerySet[Credential]:
    return scope.filter(Credential.objects.select_related("customer")).annotate(server_count=Count("servers"))


def status_counts(*, scope: Scope) -> dict[str, int]:
    counts = {status.value: 0 for status in ServerStatus}
    for status, total in scope.filter(Server.objects.all()).values_list("status").annotate(total=Count("id")):
        counts[status] = total
    return counts


def audit_list(
    *,
    scope: Scope,
    actor: str = "",
    action: str = "",
    customer_id: int | None = None,
    since: datetime | None = None,
    before: datetime | None = None,
) -> QuerySet[AuditEvent]:
    """Events the user may see, newest first; `since` inclusive, `before` exclusive (aware datetimes)."""
    events = AuditEvent.objects.all()
    if since is not None:
        events = events.filter(at__gte=since)
    if before is not None:
        events = events.filter(at__lt=before)
    if not scope.is_msp:
        events = events.filter(customer_id__in=sorted(scope.customer_ids))
    if actor:
        events = events.filter(actor_name__icontains=actor)
    if action:
        events = events.filter(action__startswith=action)
    if customer_id is not None:
        events = events.filter(customer_id=customer_id)
    return events
