"""Reads of profiles, assignments and waivers, always through the tenancy scope.

Profiles are an MSP-wide library. MSP users read all of it; a customer-scoped user reads
the profiles that concern its customers (the built-in one, and any with a version assigned
to them or their servers), so a profile made for another customer stays invisible (404).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count, Max, Q, QuerySet
from django.http import Http404

from lockdown import assignment
from lockdown.choices import RISK_COLOURS, RISK_LABELS, WaiverKind, WaiverStatus
from lockdown.exchange import VersionDiff, build_document, diff_content
from lockdown.models import Profile, ProfileVersion, TagAssignment, Waiver
from lockdown.rules import Waiver as RuleWaiver
from lockdown.rules.builtin import DEFAULT_BUILTIN_SLUG
from lockdown.rules.controls import ControlRef
from lockdown.rules.exceptions import EXCEPTION_KEY, ExceptionState, conflicts_text, integrated_auth_conflicts
from lockdown.rules.profile import profile_from_data
from lockdown.rules.vocabulary import Condition, Risk, WaiverScope
from servers.models import Customer, Server
from servers.tenancy import Scope


# --- Profiles -------------------------------------------------------------------------------
def visible_profiles(*, scope: Scope) -> QuerySet[Profile]:
    profiles = Profile.objects.all()
    if scope.sees_everything():
        return profiles
    # A tag's assignment concerns a customer when it is the customer's own, or MSP-wide on a tag its servers carry.
    tag_assignments = scope.filter(TagAssignment.objects.all(), "customer") | scope.filter(
        TagAssignment.objects.filter(customer__isnull=True), "tag__servers__customer"
    )
    concerning = (
        scope.filter(profiles, "versions__default_for_customers")
        | scope.filter(profiles, "versions__assigned_servers__customer")
        | profiles.filter(versions__tag_assignments__in=tag_assignments.values("pk"))
        | profiles.filter(versions__fleet_default_for__isnull=False)
        | profiles.filter(builtin=True)
    )
    # A subquery, so joins through versions never duplicate rows or inflate counts.
    return profiles.filter(pk__in=concerning.values("pk"))


def profile_list(*, scope: Scope) -> QuerySet[Profile]:
    return visible_profiles(scope=scope).annotate(
        latest_number=Max("versions__number"), version_count=Count("versions")
    )


def profile_get(*, scope: Scope, profile_id: int) -> Profile:
    try:
        return visible_profiles(scope=scope).get(pk=profile_id)
    except (Profile.DoesNotExist, ValueError, TypeError):
        raise Http404("not found") from None


def version_get(*, profile: Profile, number: int) -> ProfileVersion:
    try:
        return ProfileVersion.objects.select_related("profile", "created_by").get(profile=profile, number=number)
    except ProfileVersion.DoesNotExist:
        raise Http404("not found") from None


def latest_version(profile: Profile) -> ProfileVersion | None:
    return ProfileVersion.objects.select_related("profile").filter(profile=profile).order_by("-number").first()


def latest_builtin_version() -> ProfileVersion | None:
    """The latest version of the guide's built-in profile, the fleet's fallback (see assignment.builtin_latest_id)."""
    versions = ProfileVersion.objects.select_related("profile")
    return versions.filter(profile__builtin=True, profile__slug=DEFAULT_BUILTIN_SLUG).order_by("-number").first()


def assignable_versions() -> QuerySet[ProfileVersion]:
    """Every version of the library, for MSP admins choosing an assignment."""
    return ProfileVersion.objects.select_related("profile").order_by("profile__name", "-number")


def customer_effective_profile_version(customer: Customer) -> ProfileVersion | None:
    """What a server of `customer` with no pin and no assigned tag follows (lockdown.assignment)."""
    return assignment.customer_effective(customer).version


def effective_profile_version(server: Server) -> ProfileVersion | None:
    """The version a server is judged by, as the assignment hierarchy resolves it (lockdown.assignment)."""
    return assignment.effective(server).version


def version_document(version: ProfileVersion) -> dict[str, Any]:
    """The exchange document (slug, name, version, notes, rules) of one version."""
    return build_document(
        slug=version.profile.slug,
        name=version.profile.name,
        number=version.number,
        rules=version.rules,
        notes=version.notes,
    )


def version_diff(old: ProfileVersion, new: ProfileVersion) -> VersionDiff:
    return diff_content(old.rules, old.notes, new.rules, new.notes)


@dataclass(frozen=True)
class RuleRow:
    """One rule as the version page shows it."""

    rule: dict[str, Any]
    risk_label: str
    risk_colour: str
    high_risk: bool


@dataclass(frozen=True)
class Section:
    """The rules of one heading of the guide, in profile order."""

    title: str
    rows: list[RuleRow]
    high_risk_count: int
    deviation_count: int


def version_sections(version: ProfileVersion) -> list[Section]:
    grouped: dict[str, list[RuleRow]] = {}
    for rule in version.rules:
        risk = Risk(rule.get("risk", Risk.LOW))
        row = RuleRow(
            rule=rule, risk_label=RISK_LABELS[risk], risk_colour=RISK_COLOURS[risk], high_risk=risk is Risk.HIGH
        )
        grouped.setdefault(str(rule.get("section", "")), []).append(row)
    return [
        Section(
            title=title,
            rows=rows,
            high_risk_count=sum(row.high_risk for row in rows),
            deviation_count=sum(1 for row in rows if row.rule.get("deviation")),
        )
        for title, rows in grouped.items()
    ]


def rule_ids(version: ProfileVersion | None) -> frozenset[str]:
    return frozenset(rule["id"] for rule in version.rules) if version is not None else frozenset()


def rule_ids_for_server(server: Server) -> frozenset[str]:
    return rule_ids(effective_profile_version(server))


def _customer_versions(customer: Customer) -> list[ProfileVersion]:
    """The customer's effective default and the versions its servers follow."""
    versions = [v for v in [customer_effective_profile_version(customer)] if v is not None]
    versions += [
        e.version for e in assignment.effective_for(Server.objects.filter(customer=customer)).values() if e.version
    ]
    return versions


def rule_ids_for_customer(customer: Customer) -> frozenset[str]:
    """Rules a customer-wide waiver may name: its default version's and those pinned on its servers."""
    return frozenset(rule_catalogue(_customer_versions(customer)))


def rule_catalogue(versions: Sequence[ProfileVersion | None]) -> dict[str, tuple[str, str]]:
    """id → (section, description) of every rule of these versions, for the waiver form's drop-down."""
    out: dict[str, tuple[str, str]] = {}
    for version in versions:
        for rule in version.rules if version is not None else []:
            out.setdefault(rule["id"], (str(rule.get("section") or "Other"), str(rule.get("description") or "")))
    return out


def rule_catalogue_for_customer(customer: Customer) -> dict[str, tuple[str, str]]:
    return rule_catalogue(list(_customer_versions(customer)))


# --- Waivers --------------------------------------------------------------------------------
def visible_waivers(*, scope: Scope) -> QuerySet[Waiver]:
    waivers = Waiver.objects.select_related("server__customer", "customer", "proposed_by", "approved_by", "revoked_by")
    if scope.sees_everything():
        return waivers
    return scope.filter(waivers, "customer") | scope.filter(waivers, "server__customer")


def waiver_list(*, scope: Scope, customer_id: int | None = None) -> QuerySet[Waiver]:
    waivers = visible_waivers(scope=scope)
    if customer_id is not None:
        waivers = waivers.filter(Q(customer_id=customer_id) | Q(server__customer_id=customer_id))
    return waivers.order_by("-proposed_at", "-id")


def waiver_get(*, scope: Scope, waiver_id: int) -> Waiver:
    """One waiver the user may see, or 404 (other customers' waivers do not exist)."""
    try:
        return visible_waivers(scope=scope).get(pk=waiver_id)
    except (Waiver.DoesNotExist, ValueError, TypeError):
        raise Http404("not found") from None


def _applying(now: datetime) -> Q:
    return Q(approved_at__isnull=False, revoked_at__isnull=True, expires_at__gt=now)


def _covering(server: Server) -> Q:
    return Q(server=server) | Q(customer_id=server.customer_id)


def active_waivers_for(server: Server, now: datetime) -> list[RuleWaiver]:
    """The waivers in force for `server` at `now` (its own and its customer's), as `evaluate` takes them.
    Exceptions are not waivers: they permit rules (`integrated_auth_exception_state`), never waive one."""
    rows = Waiver.objects.filter(_covering(server), kind=WaiverKind.WAIVER).filter(_applying(now))
    return [
        RuleWaiver(
            rule_id=row.rule_id,
            scope=WaiverScope.SERVER if row.server_id is not None else WaiverScope.CUSTOMER,
            expires_at=row.expires_at,
            justification=row.justification,
        )
        for row in rows.order_by("rule_id", "id")
    ]


# --- Exceptions (the integrated-authentication rights) ----------------------------------------
def _exceptions() -> QuerySet[Waiver]:
    return Waiver.objects.filter(kind=WaiverKind.EXCEPTION, rule_id=EXCEPTION_KEY)


def integrated_auth_exception_state(server: Server, now: datetime) -> ExceptionState:
    """Whether an exception (the server's own or its customer's) covers the integrated-authentication
    rights at `now`: active, ended (one was approved once and none is in force now), or none. One query."""
    approved = _exceptions().filter(_covering(server), approved_at__isnull=False)
    states = {row.status_at(now) for row in approved.only("approved_at", "revoked_at", "expires_at")}
    if WaiverStatus.ACTIVE in states:
        return ExceptionState.ACTIVE
    return ExceptionState.ENDED if states else ExceptionState.NONE


def active_exceptions(*, scope: Scope, now: datetime, customer_id: int | None = None, limit: int = 20) -> list[Waiver]:
    """At most `limit` + 1 exceptions in force at `now` that the user may see, soonest expiry first (one
    query; one more than `limit` says more are waiting): the dashboard's panel shows each until it expires."""
    rows = visible_waivers(scope=scope).filter(kind=WaiverKind.EXCEPTION).filter(_applying(now))
    if customer_id is not None:
        rows = rows.filter(Q(customer_id=customer_id) | Q(server__customer_id=customer_id))
    return list(rows.order_by("expires_at", "id")[: limit + 1])


def server_exceptions(server: Server, now: datetime) -> list[tuple[Waiver, WaiverStatus]]:
    """Every exception that covers `server` (its own and its customer's), newest first, with its status."""
    rows = _exceptions().filter(_covering(server)).select_related("server", "customer", "proposed_by", "approved_by")
    return [(row, row.status_at(now)) for row in rows.order_by("-proposed_at", "-id")]


def _conflict_record(ref: ControlRef) -> dict[str, Any]:
    return ref.model_dump(mode="json", include={"framework", "id", "title", "benchmark", "version", "source"})


def integrated_auth_conflicts_for(versions: Sequence[ProfileVersion | None]) -> tuple[list[dict[str, Any]], bool]:
    """The CIS/STIG controls these versions' integrated-authentication rules conflict with, as an exception
    records them, and whether any of the versions has such rules at all."""
    rules = [
        rule
        for version in versions
        if version is not None
        for rule in profile_from_data(version_document(version)).rules
        if rule.condition is Condition.INTEGRATED_AUTH
    ]
    return [_conflict_record(ref) for ref in integrated_auth_conflicts(rules)], bool(rules)


def exception_conflicts_for(*, server: Server | None, customer: Customer | None) -> tuple[list[dict[str, Any]], bool]:
    """What an exception for this server (its effective version) or customer (its default's and its
    servers' versions) conflicts with."""
    if server is not None:
        return integrated_auth_conflicts_for([effective_profile_version(server)])
    assert customer is not None
    return integrated_auth_conflicts_for(_customer_versions(customer))


def exception_conflict_ids(conflicts: Sequence[dict[str, Any]]) -> str:
    """A recorded conflicts list in words ("CIS ... v4.0.0 2.2.4, 2.2.15 and ... STIG WN22-UR-000020")."""
    refs = []
    for record in conflicts:
        try:
            refs.append(ControlRef.model_validate(record))
        except ValueError:
            continue  # a record written by an older release: shown as far as it still parses
    return conflicts_text(refs)
