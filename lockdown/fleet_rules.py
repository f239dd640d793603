"""The fleet rule view's reads: top failing rules, and the servers failing one rule.

"Current result" of a (server, rule id, target): its newest `RuleResult` row. The runner writes
a row whenever an outcome changes (plus periodic snapshots, and a not-applicable row when a rule
leaves the server's profile), so the newest row per key is what the server's last verify found.
Only servers `servers.assessment` calls *assessed* (read, and not stale) are counted; the rest
are reported beside the figures, never mixed into them.

Every figure is aggregated in SQL over the user's scope, so both pages cost the same number of
queries for 3 or 3,000 servers (tests/integration/lockdown/test_fleet_rules.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Exists, Max, OuterRef, Q, QuerySet

from jobs.models import RuleResult
from lockdown.models import ProfileVersion
from lockdown.rules.vocabulary import RuleStatus
from servers.assessment import Coverage, assessed_q, coverage_aggregates
from servers.models import Server
from servers.tenancy import Scope

RULE_SORTS = {
    "-failing": ("-failing", "rule_id"),
    "failing": ("failing", "rule_id"),
    "rule": ("rule_id",),
    "-rule": ("-rule_id",),
    "section": ("section", "rule_id"),
}
DEFAULT_RULE_SORT = "-failing"


def visible_servers(*, scope: Scope, customer_id: int | None = None) -> QuerySet[Server]:
    servers = scope.filter(Server.objects.all())
    if customer_id is not None:
        servers = servers.filter(customer_id=customer_id)
    return servers


def current_results(*, scope: Scope, customer_id: int | None = None) -> QuerySet[RuleResult]:
    """The newest result per (server, rule, target) of the assessed servers the user may see."""
    newer = RuleResult.objects.filter(
        server_id=OuterRef("server_id"), rule_id=OuterRef("rule_id"), target=OuterRef("target")
    ).filter(Q(created_at__gt=OuterRef("created_at")) | Q(created_at=OuterRef("created_at"), pk__gt=OuterRef("pk")))
    assessed = visible_servers(scope=scope, customer_id=customer_id).filter(assessed_q())
    return RuleResult.objects.filter(server_id__in=assessed.values("pk")).exclude(Exists(newer))


def fleet_coverage(*, scope: Scope, customer_id: int | None = None) -> Coverage:
    """How many of the visible servers the figures stand on (one aggregate)."""
    row = visible_servers(scope=scope, customer_id=customer_id).aggregate(**coverage_aggregates())
    return Coverage.from_row(row)


def rule_titles(rule_ids: set[str]) -> dict[str, str]:
    """Each rule id's description from the newest profile version that has it (one query).

    Only ids the user already has results for are asked, so no other customer's rule leaks.
    """
    titles: dict[str, str] = {}
    if not rule_ids:
        return titles
    for rules in ProfileVersion.objects.order_by("-created_at", "-pk").values_list("rules", flat=True).iterator():
        for rule in rules or []:
            rule_id = rule.get("id")
            if rule_id in rule_ids and rule_id not in titles:
                titles[rule_id] = str(rule.get("description", ""))
        if len(titles) == len(rule_ids):
            break
    return titles


@dataclass(frozen=True)
class CustomerCount:
    customer_id: int
    name: str
    failing: int


@dataclass
class FailingRule:
    """One rule on the Rules page: on how many assessed servers it fails, of how many it applies to."""

    rule_id: str
    section: str
    failing: int
    checked: int
    title: str = ""
    customers: list[CustomerCount] = field(default_factory=list)


def _rule_counts(results: QuerySet[RuleResult]) -> Any:
    # A server counts once per rule, however many targets ([SYSTEM32] gives System32 and SysWOW64).
    return results.values("rule_id").annotate(
        failing=Count("server_id", filter=Q(status=RuleStatus.DRIFT), distinct=True),
        checked=Count("server_id", filter=~Q(status=RuleStatus.NOT_APPLICABLE), distinct=True),
        section=Max("section"),
    )


def failing_rules(*, scope: Scope, customer_id: int | None = None, sort: str = DEFAULT_RULE_SORT) -> QuerySet[Any]:
    """Rules that fail on at least one assessed server, as value rows (paginate, then `with_details`)."""
    order = RULE_SORTS.get(sort, RULE_SORTS[DEFAULT_RULE_SORT])
    rows: QuerySet[Any] = _rule_counts(current_results(scope=scope, customer_id=customer_id))
    return rows.filter(failing__gt=0).order_by(*order)


def with_details(*, scope: Scope, rows: list[dict[str, Any]], customer_id: int | None = None) -> list[FailingRule]:
    """Titles and the per-customer breakdown of one page of `failing_rules` (two queries)."""
    rules = [FailingRule(r["rule_id"], r["section"] or "", r["failing"], r["checked"]) for r in rows]
    if not rules:
        return rules
    by_id = {rule.rule_id: rule for rule in rules}
    titles = rule_titles(set(by_id))
    per_customer = (
        current_results(scope=scope, customer_id=customer_id)
        .filter(rule_id__in=sorted(by_id), status=RuleStatus.DRIFT)
        .values("rule_id", "server__customer_id", "server__customer__name")
        .annotate(failing=Count("server_id", distinct=True))
        .order_by("rule_id", "-failing", "server__customer__name")
    )
    for row in per_customer:
        by_id[row["rule_id"]].customers.append(
            CustomerCount(row["server__customer_id"], row["server__customer__name"], row["failing"])
        )
    for rule in rules:
        rule.title = titles.get(rule.rule_id, "")
    return rules


@dataclass(frozen=True)
class RuleSummary:
    """One rule across the user's assessed servers."""

    rule_id: str
    title: str
    section: str
    failing: int
    checked: int


def rule_summary(*, scope: Scope, rule_id: str, customer_id: int | None = None) -> RuleSummary | None:
    """None when no server the user may see has ever had a result for the rule (the page is 404);
    the counts are of `customer_id`'s servers when given."""
    seen = RuleResult.objects.filter(rule_id=rule_id, server_id__in=visible_servers(scope=scope).values("pk"))
    if not seen.exists():
        return None
    results = current_results(scope=scope, customer_id=customer_id).filter(rule_id=rule_id)
    counts = _rule_counts(results).order_by("rule_id").first()
    titles = rule_titles({rule_id})
    return RuleSummary(
        rule_id=rule_id,
        title=titles.get(rule_id, ""),
        section=(counts or {}).get("section") or "",
        failing=(counts or {}).get("failing", 0),
        checked=(counts or {}).get("checked", 0),
    )


def servers_failing(*, scope: Scope, rule_id: str, customer_id: int | None = None) -> QuerySet[RuleResult]:
    """The drifted current results of one rule, with their server and customer (one query per page)."""
    return (
        current_results(scope=scope, customer_id=customer_id)
        .filter(rule_id=rule_id, status=RuleStatus.DRIFT)
        .select_related("server__customer")
        .order_by("server__customer__name", "server__name", "target")
    )
