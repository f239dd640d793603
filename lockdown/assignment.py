"""Which profile version each server follows: the assignment hierarchy, its preview, and what the last
observation says a server's compliance would be against another version.

Most specific wins:
1. a version pinned on the server;
2. the server blocks inheritance → the built-in profile's latest;
3. a tag's assignment (a server group): the customer's own before an MSP-wide one, then the lower
   precedence, then the tag's name; a server excluded from an assignment falls through it;
4. the customer's default;
5. the MSP default, unless the customer blocks inheritance;
6. the built-in profile's latest version.

`resolve` is pure: a preview resolves the same servers against the state as it is and as a change would
make it, with no write and no host contact, and applying the change marks stale exactly the servers the
preview names. Reading a fleet's effective profiles is a constant number of queries.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from django.db.models import Q, QuerySet

from lockdown.exchange import judged_alike
from lockdown.models import FleetDefault, ProfileVersion, TagAssignment
from lockdown.rules.builtin import DEFAULT_BUILTIN_SLUG
from lockdown.rules.evaluate import summarize
from lockdown.rules.outcome import RuleOutcome
from servers.models import Customer, Server


class Source(StrEnum):
    SERVER = "server"
    TAG = "tag"
    CUSTOMER = "customer"
    MSP = "msp"
    BUILTIN = "builtin"


@dataclass(frozen=True)
class TagRule:
    """One tag assignment, as the resolver sees it."""

    tag_id: int
    tag_name: str
    customer_id: int | None
    version_id: int
    precedence: int = 100
    excluded: frozenset[int] = frozenset()
    id: int | None = None

    @property
    def key(self) -> tuple[int, int | None]:
        return (self.tag_id, self.customer_id)


@dataclass(frozen=True)
class State:
    """Every assignment in force: what `resolve` reads. A change is a new State (`dataclasses.replace`)."""

    builtin_version_id: int | None
    msp_version_id: int | None = None
    tag_rules: tuple[TagRule, ...] = ()
    customers: Mapping[int, tuple[int | None, bool]] = field(default_factory=dict)  # id → (default, blocks)
    servers: Mapping[int, tuple[int | None, bool]] = field(default_factory=dict)  # id → (pin, blocks)


@dataclass(frozen=True)
class Node:
    """A server as the hierarchy places it."""

    server_id: int
    customer_id: int
    tag_ids: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Resolved:
    """The version a server follows (None: there is no profile at all yet) and where it comes from."""

    version_id: int | None
    source: Source
    rule: TagRule | None = None  # the tag assignment it comes from
    excluded_from: tuple[TagRule, ...] = ()  # tag assignments that would apply but exclude it
    blocked_by: str = ""  # "server" or "customer" when a block decided it


def _tag_order(rule: TagRule) -> tuple[bool, int, str]:
    return (rule.customer_id is None, rule.precedence, rule.tag_name)


def resolve(node: Node, state: State) -> Resolved:
    pin, server_blocks = state.servers.get(node.server_id, (None, False))
    if pin is not None:
        return Resolved(pin, Source.SERVER)
    if server_blocks:
        return Resolved(state.builtin_version_id, Source.BUILTIN, blocked_by="server")
    applicable = [
        rule for rule in state.tag_rules if rule.tag_id in node.tag_ids and rule.customer_id in (None, node.customer_id)
    ]
    excluded = tuple(sorted((r for r in applicable if node.server_id in r.excluded), key=_tag_order))
    live = sorted((r for r in applicable if node.server_id not in r.excluded), key=_tag_order)
    if live:
        return Resolved(live[0].version_id, Source.TAG, rule=live[0], excluded_from=excluded)
    default, customer_blocks = state.customers.get(node.customer_id, (None, False))
    if default is not None:
        return Resolved(default, Source.CUSTOMER, excluded_from=excluded)
    if state.msp_version_id is not None and not customer_blocks:
        return Resolved(state.msp_version_id, Source.MSP, excluded_from=excluded)
    blocked = "customer" if customer_blocks and state.msp_version_id is not None else ""
    return Resolved(state.builtin_version_id, Source.BUILTIN, excluded_from=excluded, blocked_by=blocked)


def describe(resolved: Resolved) -> str:
    """Where it comes from, in the words of the pages."""
    if resolved.source is Source.SERVER:
        text = "pinned on this server"
    elif resolved.source is Source.TAG:
        assert resolved.rule is not None
        whose = "this customer's servers" if resolved.rule.customer_id is not None else "all customers"
        text = f"tag {resolved.rule.tag_name} ({whose})"
    elif resolved.source is Source.CUSTOMER:
        text = "the customer's default"
    elif resolved.source is Source.MSP:
        text = "the MSP default"
    else:
        text = "the built-in profile's latest version"
    if resolved.blocked_by == "server":
        text += ": this server blocks inheritance"
    elif resolved.blocked_by == "customer":
        text += ": the customer blocks the MSP default"
    if resolved.excluded_from:
        text += "; excluded from tag " + ", ".join(rule.tag_name for rule in resolved.excluded_from)
    return text


# --- Reading the state ----------------------------------------------------------------------
def builtin_latest_id() -> int | None:
    """The guide's built-in profile's latest version: every server follows it until something else is assigned
    (the current baseline, also built in, is opt-in)."""
    versions = ProfileVersion.objects.filter(profile__builtin=True, profile__slug=DEFAULT_BUILTIN_SLUG)
    return versions.order_by("-number").values_list("pk", flat=True).first()


def tag_rules() -> tuple[TagRule, ...]:
    excluded: dict[int, set[int]] = {}
    through = TagAssignment.excluded_servers.through.objects.values_list("tagassignment_id", "server_id")
    for assignment_id, server_id in through:
        excluded.setdefault(assignment_id, set()).add(server_id)
    return tuple(
        TagRule(
            id=a.pk,
            tag_id=a.tag_id,
            tag_name=a.tag.name,
            customer_id=a.customer_id,
            version_id=a.version_id,
            precedence=a.precedence,
            excluded=frozenset(excluded.get(a.pk, ())),
        )
        for a in TagAssignment.objects.select_related("tag")
    )


def load_state(servers: QuerySet[Server]) -> tuple[State, list[Node]]:
    """The state in force and the nodes of `servers` (a constant number of queries, whatever their number)."""
    rows = list(servers.values_list("pk", "customer_id", "profile_version_id", "block_inheritance"))
    ids = [row[0] for row in rows]
    tags: dict[int, set[int]] = {}
    for server_id, tag_id in Server.tags.through.objects.filter(server_id__in=ids).values_list("server_id", "tag_id"):
        tags.setdefault(server_id, set()).add(tag_id)
    customers = {
        pk: (default, blocks)
        for pk, default, blocks in Customer.objects.filter(pk__in={row[1] for row in rows}).values_list(
            "pk", "default_profile_version_id", "block_inheritance"
        )
    }
    state = State(
        builtin_version_id=builtin_latest_id(),
        msp_version_id=FleetDefault.objects.filter(pk=1).values_list("version_id", flat=True).first(),
        tag_rules=tag_rules(),
        customers=customers,
        servers={pk: (pin, blocks) for pk, _, pin, blocks in rows},
    )
    nodes = [
        Node(server_id=pk, customer_id=customer_id, tag_ids=frozenset(tags.get(pk, ()))) for pk, customer_id, *_ in rows
    ]
    return state, nodes


@dataclass(frozen=True)
class Effective:
    resolved: Resolved
    version: ProfileVersion | None

    @property
    def source_text(self) -> str:
        return describe(self.resolved)


def versions_by_id(ids: Iterable[int | None]) -> dict[int, ProfileVersion]:
    wanted = {pk for pk in ids if pk is not None}
    return {v.pk: v for v in ProfileVersion.objects.select_related("profile").filter(pk__in=wanted)} if wanted else {}


def effective_for(servers: QuerySet[Server]) -> dict[int, Effective]:
    """Server id → the version it follows and where from."""
    state, nodes = load_state(servers)
    resolved = {node.server_id: resolve(node, state) for node in nodes}
    versions = versions_by_id(r.version_id for r in resolved.values())
    return {
        pk: Effective(r, versions.get(r.version_id) if r.version_id is not None else None) for pk, r in resolved.items()
    }


def effective(server: Server) -> Effective:
    return effective_for(Server.objects.filter(pk=server.pk))[server.pk]


def customer_effective(customer: Customer) -> Effective:
    """What a server of `customer` with no pin and no assigned tag follows."""
    state, _ = load_state(Server.objects.none())
    state = dataclasses.replace(
        state,
        customers={customer.pk: (customer.default_profile_version_id, customer.block_inheritance)},
    )
    resolved = resolve(Node(server_id=0, customer_id=customer.pk), state)
    version = versions_by_id([resolved.version_id]).get(resolved.version_id or 0)
    return Effective(resolved, version)


# --- What the last observation says ---------------------------------------------------------
@dataclass(frozen=True)
class Prediction:
    """A server's compliance against a version, judged from its last verify alone: outcomes of rules the
    two versions define identically carry over; a rule that is new or changed waits for the next verify."""

    percent: float | None
    carried_rules: int
    to_verify: int
    never_verified: bool = False


def _rules_by_id(rules: Any) -> dict[str, Any]:
    return {str(rule.get("id")): rule for rule in rules if isinstance(rule, dict)} if isinstance(rules, list) else {}


def predict(outcomes: Sequence[Mapping[str, Any]], judged_by: Any, against: Any) -> Prediction:
    """`outcomes` were judged against the rules `judged_by` (a version's `rules`, or None when unknown);
    what would `against`'s rules give?"""
    old, new = _rules_by_id(judged_by), _rules_by_id(against)
    same = {rule_id for rule_id, rule in new.items() if judged_alike(old.get(rule_id), rule)}
    kept = [RuleOutcome.model_validate(o) for o in outcomes if str(o.get("rule_id")) in same]
    return Prediction(
        percent=summarize(kept).compliant_percent,
        carried_rules=len({o.rule_id for o in kept}),
        to_verify=len(new) - len({o.rule_id for o in kept}),
    )


# --- Preview --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Move:
    """A server whose version a change would change."""

    server: Server
    before: Effective
    after: Effective
    current_percent: float | None
    predicted: Prediction


Change = Callable[[State], State]


def _label_key(label: str) -> tuple[str, int] | None:
    slug, _, number = label.rpartition(" v")
    return (slug, int(number)) if slug and number.isdigit() else None


def judged_versions(labels: Iterable[str]) -> dict[str, ProfileVersion]:
    """The versions the stored compliance rows were judged by, by their "slug vN" label; one query.
    (A row records the label it was judged by; a version deleted since is missing.)"""
    keys = {label: key for label in labels if (key := _label_key(label))}
    if not keys:
        return {}
    query = Q()
    for slug, number in set(keys.values()):
        query |= Q(profile__slug=slug, number=number)
    found = {(v.profile.slug, v.number): v for v in ProfileVersion.objects.select_related("profile").filter(query)}
    return {label: found[key] for label, key in keys.items() if key in found}


def preview(change: Change, servers: QuerySet[Server] | None = None) -> list[Move]:
    """The servers (of `servers`, default all) that `change` moves to another version, with their
    compliance now and as their last observation says it would be. Reads only; contacts no host."""
    queryset = servers if servers is not None else Server.objects.all()
    state, nodes = load_state(queryset)
    after_state = change(state)
    pairs = {node.server_id: (resolve(node, state), resolve(node, after_state)) for node in nodes}
    moved = {pk: pair for pk, pair in pairs.items() if pair[0].version_id != pair[1].version_id}
    if not moved:
        return []
    rows = (
        Server.objects.select_related("customer", "compliance").filter(pk__in=moved).order_by("customer__name", "name")
    )
    servers_by_id = {s.pk: s for s in rows}
    judged = judged_versions(s.compliance.profile_label for s in servers_by_id.values() if hasattr(s, "compliance"))
    versions = versions_by_id(r.version_id for pair in moved.values() for r in pair)
    moves = []
    for server in servers_by_id.values():
        before, after = moved[server.pk]
        target = versions.get(after.version_id or 0)
        compliance = getattr(server, "compliance", None)
        if compliance is None:
            prediction = Prediction(None, 0, len(target.rules) if target else 0, never_verified=True)
        else:
            source = judged.get(compliance.profile_label)
            prediction = predict(compliance.outcomes, source.rules if source else None, target.rules if target else [])
        moves.append(
            Move(
                server=server,
                before=Effective(before, versions.get(before.version_id or 0)),
                after=Effective(after, target),
                current_percent=server.compliance_pct,
                predicted=prediction,
            )
        )
    return moves


# --- Changes --------------------------------------------------------------------------------
def set_msp_default(version_id: int | None) -> Change:
    return lambda state: dataclasses.replace(state, msp_version_id=version_id)


def set_tag_rule(rule: TagRule | None, *, replacing: tuple[int, int | None] | None = None) -> Change:
    """Put `rule` in force (None: remove), in place of the assignment keyed `replacing` (tag, customer)."""
    keys = {k for k in (replacing, rule.key if rule else None) if k is not None}

    def change(state: State) -> State:
        rules = tuple(r for r in state.tag_rules if r.key not in keys)
        return dataclasses.replace(state, tag_rules=(*rules, rule) if rule is not None else rules)

    return change


def set_customer(customer_id: int, default: int | None, blocks: bool) -> Change:
    return lambda state: dataclasses.replace(state, customers={**state.customers, customer_id: (default, blocks)})


def set_server(server_id: int, pin: int | None, blocks: bool) -> Change:
    return lambda state: dataclasses.replace(state, servers={**state.servers, server_id: (pin, blocks)})
