"""Writes to profiles, assignments and waivers. Each checks permission, writes and audits in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Max, QuerySet

from lockdown import assignment, clock, selectors
from lockdown.choices import WaiverKind, WaiverStatus
from lockdown.exchange import content_hash, document_content, rules_judged_alike
from lockdown.models import FleetDefault, Profile, ProfileVersion, TagAssignment, Waiver
from lockdown.rules import Profile as ProfileDocument
from lockdown.rules import ProfileError, load_builtin_profile
from lockdown.rules.builtin import load_baseline_profile
from lockdown.rules.exceptions import EXCEPTION_KEY
from lockdown.rules.profile import profile_from_data
from servers.audit import Actor, audit_record
from servers.choices import Role, StaleReason
from servers.models import Customer, Server, Tag
from servers.services import server_results_mark_stale
from servers.tenancy import Action, Scope, require

# Management commands act as the MSP: they run with shell access to the deployment anyway.
SYSTEM_SCOPE = Scope(user_id=None, msp_role=Role.ADMIN)
MIN_JUSTIFICATION = 10
MAX_WAIVER_DAYS = 365


class ProfileServiceError(ValueError):
    """A profile change that cannot be made; the message says why, in words."""


class WaiverError(ValueError):
    """A waiver change that cannot be made; the message says why, in words."""


# --- Profiles and versions ------------------------------------------------------------------
def _create_version(
    *, profile: Profile, document: ProfileDocument, actor: Actor, change_note: str
) -> tuple[ProfileVersion, bool]:
    """The version holding `document`'s content: an existing identical one, or a new one."""
    rules, notes = document_content(document)
    digest = content_hash(rules, notes)
    existing = ProfileVersion.objects.filter(profile=profile, content_hash=digest).first()
    if existing is not None:
        return existing, False
    # Lock the profile row so two concurrent edits cannot pick the same number.
    Profile.objects.select_for_update().filter(pk=profile.pk).first()
    number = (ProfileVersion.objects.filter(profile=profile).aggregate(top=Max("number"))["top"] or 0) + 1
    version = ProfileVersion.objects.create(
        profile=profile,
        number=number,
        rules=rules,
        notes=notes,
        content_hash=digest,
        change_note=change_note[:500],
        created_by=actor.user,
    )
    audit_record(
        actor=actor,
        action="profile_version.create",
        obj=version,
        changes={"number": [None, number], "rules": [None, len(rules)], "content_hash": [None, digest]},
    )
    return version, True


@transaction.atomic
def builtin_profile_sync(*, actor: Actor | None = None) -> ProfileVersion:
    """Load the shipped built-in profiles (the guide's, then the current baseline); a new version of each only
    when its content changed. Returns the guide's version."""
    actor = actor or Actor.system("builtin_profile_sync")
    guide = _builtin_sync_one(load_builtin_profile(), actor)
    _builtin_sync_one(load_baseline_profile(), actor)
    return guide


def _builtin_sync_one(document: ProfileDocument, actor: Actor) -> ProfileVersion:
    profile, created = Profile.objects.get_or_create(
        slug=document.slug,
        defaults={"name": document.name, "builtin": True, "description": "Shipped with the product."},
    )
    if created:
        audit_record(actor=actor, action="profile.create", obj=profile, changes={"slug": [None, profile.slug]})
    elif not profile.builtin:
        raise ProfileServiceError(f"a profile with the built-in slug {profile.slug!r} exists and is not built-in")
    previous = ProfileVersion.objects.filter(profile=profile).order_by("-number").first()
    version, new = _create_version(profile=profile, document=document, actor=actor, change_note="Shipped profile")
    if new and not created and not (previous and rules_judged_alike(previous.rules, version.rules)):
        # (A version that only adds or changes control mappings judges every host alike: results stand.)
        # The servers that follow the built-in's latest version follow this one now.
        following = [
            pk
            for pk, e in assignment.effective_for(Server.objects.all()).items()
            if e.resolved.version_id == version.pk
        ]
        server_results_mark_stale(servers=Server.objects.filter(pk__in=following), reason=StaleReason.PROFILE_CHANGED)
    return version


def _refuse_builtin(profile: Profile) -> None:
    if profile.builtin:
        raise ProfileServiceError(
            f"{profile.slug} is the built-in profile, managed from the shipped file; clone it to change it"
        )


@transaction.atomic
def profile_version_create(
    *, scope: Scope, actor: Actor, profile: Profile, document: ProfileDocument, change_note: str = ""
) -> ProfileVersion:
    """Edit: a new version of `profile` with `document`'s content (refused when nothing changed)."""
    require(scope, Action.MANAGE_PROFILES)
    _refuse_builtin(profile)
    if document.slug != profile.slug:
        raise ProfileServiceError(f"field 'slug': this is profile {profile.slug!r}; clone it to make another profile")
    if ProfileVersion.objects.filter(profile=profile, content_hash=content_hash(*document_content(document))).exists():
        raise ProfileServiceError("nothing changed: the content is identical to an existing version")
    if document.name != profile.name:
        audit_record(actor=actor, action="profile.update", obj=profile, changes={"name": [profile.name, document.name]})
        profile.name = document.name
        profile.save(update_fields=["name"])
    version, _ = _create_version(profile=profile, document=document, actor=actor, change_note=change_note)
    return version


@transaction.atomic
def profile_create(
    *, scope: Scope, actor: Actor, document: ProfileDocument, description: str = "", change_note: str = ""
) -> ProfileVersion:
    """A new profile (slug from the document) with `document` as version 1."""
    require(scope, Action.MANAGE_PROFILES)
    if Profile.objects.filter(slug=document.slug).exists():
        raise ProfileServiceError(f"field 'slug': a profile called {document.slug!r} already exists")
    profile = Profile.objects.create(slug=document.slug, name=document.name, description=description)
    audit_record(
        actor=actor,
        action="profile.create",
        obj=profile,
        changes={"slug": [None, profile.slug], "name": [None, profile.name]},
    )
    version, _ = _create_version(profile=profile, document=document, actor=actor, change_note=change_note)
    return version


@transaction.atomic
def profile_clone(
    *, scope: Scope, actor: Actor, source: ProfileVersion, slug: str, name: str, description: str = ""
) -> ProfileVersion:
    """A new profile whose version 1 has `source`'s rules and notes."""
    require(scope, Action.MANAGE_PROFILES)
    try:
        document = profile_from_data(
            {"slug": slug, "name": name, "version": "1", "notes": source.notes, "rules": source.rules}
        )
    except ProfileError as exc:
        raise ProfileServiceError(str(exc)) from None
    version = profile_create(
        scope=scope, actor=actor, document=document, description=description, change_note=f"Cloned from {source.label}"
    )
    audit_record(actor=actor, action="profile.clone", obj=version.profile, changes={"source": [None, source.label]})
    return version


@dataclass(frozen=True)
class ImportOutcome:
    """What an import did: the version holding the content, and whether anything was created."""

    version: ProfileVersion
    created_profile: bool
    created_version: bool


@transaction.atomic
def profile_import(*, scope: Scope, actor: Actor, document: ProfileDocument, source_name: str = "") -> ImportOutcome:
    """A new version of the profile with the document's slug, or a new profile; identical content creates nothing."""
    require(scope, Action.MANAGE_PROFILES)
    note = f"Imported from {source_name}"[:500] if source_name else "Imported"
    profile = Profile.objects.filter(slug=document.slug).first()
    if profile is None:
        version = profile_create(scope=scope, actor=actor, document=document, change_note=note)
        created_profile, created_version = True, True
    else:
        _refuse_builtin(profile)
        if document.name != profile.name:
            changes = {"name": [profile.name, document.name]}
            audit_record(actor=actor, action="profile.update", obj=profile, changes=changes)
            profile.name = document.name
            profile.save(update_fields=["name"])
        version, created_version = _create_version(profile=profile, document=document, actor=actor, change_note=note)
        created_profile = False
    audit_record(
        actor=actor,
        action="profile.import",
        obj=version,
        changes={"source": [None, source_name[:200]], "created_version": [None, created_version]},
    )
    return ImportOutcome(version=version, created_profile=created_profile, created_version=created_version)


# --- Assignment -----------------------------------------------------------------------------
class AssignmentError(ValueError):
    """An assignment that cannot be made; the message says why, in words."""


def _label(version: ProfileVersion | None) -> str | None:
    return version.label if version is not None else None


def _moved(change: assignment.Change, servers: QuerySet[Server] | None = None) -> list[assignment.Move]:
    """Preview `change`, then mark stale exactly the servers it moves to another version (their stored
    results were judged by a version they no longer follow)."""
    moves = assignment.preview(change, servers)
    if moves:
        server_results_mark_stale(
            servers=Server.objects.filter(pk__in=[move.server.pk for move in moves]), reason=StaleReason.PROFILE_CHANGED
        )
    return moves


def _moved_audit(moves: list[assignment.Move]) -> dict[str, Any]:
    return {"servers_moved": [None, len(moves)]} if moves else {}


@transaction.atomic
def fleet_default_set(*, scope: Scope, actor: Actor, version: ProfileVersion | None) -> list[assignment.Move]:
    """Set (or clear, with None: the built-in's latest) the MSP default."""
    require(scope, Action.MANAGE_PROFILES)
    row, _ = FleetDefault.objects.select_for_update(of=("self",)).select_related("version__profile").get_or_create(pk=1)
    before = row.version
    moves = _moved(assignment.set_msp_default(version.pk if version is not None else None))
    row.version = version
    row.save()
    if (before.pk if before else None) != (version.pk if version else None):
        audit_record(
            actor=actor,
            action="fleet.assign_profile",
            obj=row,
            changes={"default_profile_version": [_label(before), _label(version)], **_moved_audit(moves)},
        )
    return moves


@transaction.atomic
def customer_assign_profile(
    *,
    scope: Scope,
    actor: Actor,
    customer: Customer,
    version: ProfileVersion | None,
    block_inheritance: bool | None = None,
) -> list[assignment.Move]:
    """Set (or clear, with None) the customer's default profile version, and whether the MSP default
    reaches its servers."""
    require(scope, Action.MANAGE_PROFILES, customer)
    stored = Customer.objects.select_related("default_profile_version__profile").get(pk=customer.pk)
    blocks = stored.block_inheritance if block_inheritance is None else block_inheritance
    moves = _moved(
        assignment.set_customer(customer.pk, version.pk if version is not None else None, blocks),
        Server.objects.filter(customer=customer),
    )
    customer.default_profile_version = version
    customer.block_inheritance = blocks
    customer.save(update_fields=["default_profile_version", "block_inheritance"])
    changes: dict[str, Any] = {}
    if stored.default_profile_version_id != customer.default_profile_version_id:
        changes["default_profile_version"] = [_label(stored.default_profile_version), _label(version)]
    if stored.block_inheritance != blocks:
        changes["block_inheritance"] = [stored.block_inheritance, blocks]
    if changes:
        audit_record(
            actor=actor, action="customer.assign_profile", obj=customer, changes={**changes, **_moved_audit(moves)}
        )
    return moves


@transaction.atomic
def server_assign_profile(
    *,
    scope: Scope,
    actor: Actor,
    server: Server,
    version: ProfileVersion | None,
    block_inheritance: bool | None = None,
) -> list[assignment.Move]:
    """Pin (or unpin, with None) a server's profile version, and whether anything above reaches it."""
    require(scope, Action.MANAGE_PROFILES, server.customer_id)
    stored = Server.objects.select_related("profile_version__profile").get(pk=server.pk)
    blocks = stored.block_inheritance if block_inheritance is None else block_inheritance
    moves = _moved(
        assignment.set_server(server.pk, version.pk if version is not None else None, blocks),
        Server.objects.filter(pk=server.pk),
    )
    server.profile_version = version
    server.block_inheritance = blocks
    server.save(update_fields=["profile_version", "block_inheritance", "updated_at"])
    changes: dict[str, Any] = {}
    if stored.profile_version_id != server.profile_version_id:
        changes["profile_version"] = [_label(stored.profile_version), _label(version)]
    if stored.block_inheritance != blocks:
        changes["block_inheritance"] = [stored.block_inheritance, blocks]
    if changes:
        audit_record(
            actor=actor, action="server.assign_profile", obj=server, changes={**changes, **_moved_audit(moves)}
        )
    return moves


@dataclass(frozen=True)
class TagAssignmentSpec:
    """What a tag assignment is to be (the form's and the API's cleaned input)."""

    tag: Tag
    customer: Customer | None
    version: ProfileVersion
    precedence: int
    excluded: tuple[Server, ...] = ()


def tag_assignment_rule(spec: TagAssignmentSpec, existing: TagAssignment | None = None) -> assignment.TagRule:
    """The resolver's view of `spec`; refuses an exclusion of a server the assignment would not reach."""
    outside = [
        s.name
        for s in spec.excluded
        if (spec.customer is not None and s.customer_id != spec.customer.pk)
        or not s.tags.filter(pk=spec.tag.pk).exists()
    ]
    if outside:
        raise AssignmentError(
            f"field 'excluded': {', '.join(sorted(outside))} not in this group (no tag {spec.tag.name}"
            + (f" among {spec.customer.name}'s servers)" if spec.customer else ")")
        )
    clash = TagAssignment.objects.filter(tag=spec.tag, customer=spec.customer)
    if existing is not None:
        clash = clash.exclude(pk=existing.pk)
    if clash.exists():
        whose = f"{spec.customer.name}'s servers" if spec.customer else "all customers"
        raise AssignmentError(f"field 'tag': tag {spec.tag.name} already has an assignment for {whose}; edit that one")
    return assignment.TagRule(
        id=existing.pk if existing else None,
        tag_id=spec.tag.pk,
        tag_name=spec.tag.name,
        customer_id=spec.customer.pk if spec.customer else None,
        version_id=spec.version.pk,
        precedence=spec.precedence,
        excluded=frozenset(s.pk for s in spec.excluded),
    )


def _tag_assignment_audit(a: TagAssignment | None) -> dict[str, Any] | None:
    if a is None:
        return None
    return {
        "tag": a.tag.name,
        "customer": a.customer.name if a.customer else None,
        "version": a.version.label,
        "precedence": a.precedence,
        "excluded": sorted(s.name for s in a.excluded_servers.all()),
    }


def _key(a: TagAssignment) -> tuple[int, int | None]:
    return (a.tag_id, a.customer_id)


def tag_assignment_preview(
    *, scope: Scope, spec: TagAssignmentSpec | None, existing: TagAssignment | None
) -> list[assignment.Move]:
    """What saving `spec` (None: deleting `existing`) would move, without saving."""
    for customer in {x.customer for x in (spec, existing) if x is not None}:
        _require_tag_scope(scope, customer)
    rule = tag_assignment_rule(spec, existing) if spec is not None else None
    return assignment.preview(assignment.set_tag_rule(rule, replacing=_key(existing) if existing else None))


def _require_tag_scope(scope: Scope, customer: Customer | None) -> None:
    # An MSP-wide group reaches every customer: only who may manage every customer's profiles.
    require(scope, Action.MANAGE_PROFILES, customer)
    if customer is None and scope.customers_where(Action.MANAGE_PROFILES) is not None:
        raise PermissionDenied("your role does not allow: manage_profiles (all customers)")


@transaction.atomic
def tag_assignment_save(
    *, scope: Scope, actor: Actor, spec: TagAssignmentSpec, existing: TagAssignment | None = None
) -> tuple[TagAssignment, list[assignment.Move]]:
    """Create (or change `existing` into) the assignment `spec`; exactly the servers the preview names move."""
    _require_tag_scope(scope, spec.customer)
    if existing is not None:
        _require_tag_scope(scope, existing.customer)
    rule = tag_assignment_rule(spec, existing)
    before = _tag_assignment_audit(existing)
    moves = _moved(assignment.set_tag_rule(rule, replacing=_key(existing) if existing else None))
    saved = existing or TagAssignment()
    saved.tag, saved.customer, saved.version, saved.precedence = spec.tag, spec.customer, spec.version, spec.precedence
    saved.save()
    saved.excluded_servers.set(spec.excluded)
    audit_record(
        actor=actor,
        action="tag_assignment.update" if existing else "tag_assignment.create",
        obj=saved,
        changes={"assignment": [before, _tag_assignment_audit(saved)], **_moved_audit(moves)},
    )
    return saved, moves


@transaction.atomic
def tag_assignment_delete(*, scope: Scope, actor: Actor, existing: TagAssignment) -> list[assignment.Move]:
    _require_tag_scope(scope, existing.customer)
    before = _tag_assignment_audit(existing)
    moves = _moved(assignment.set_tag_rule(None, replacing=_key(existing)))
    audit_record(
        actor=actor,
        action="tag_assignment.delete",
        obj=existing,
        changes={"assignment": [before, None], **_moved_audit(moves)},
    )
    existing.delete()
    return moves


# --- Waivers --------------------------------------------------------------------------------
def _owner(server: Server | None, customer: Customer | None) -> Customer:
    if (server is None) == (customer is None):
        raise WaiverError("a waiver is for exactly one server or one customer")
    if server is not None:
        return server.customer
    assert customer is not None
    return customer


def check_waiver_expiry(expires_at: datetime, now: datetime) -> None:
    if expires_at <= now:
        raise WaiverError("the expiry must be in the future")
    if expires_at > now + timedelta(days=MAX_WAIVER_DAYS):
        raise WaiverError(f"a waiver lasts at most {MAX_WAIVER_DAYS} days; propose a new one when it ends")


def _waiver_audit(waiver: Waiver) -> dict[str, Any]:
    changes: dict[str, Any] = {
        "rule_id": waiver.rule_id,
        "for": f"{waiver.scope.value} {waiver.subject}",
        "expires_at": waiver.expires_at.isoformat(),
    }
    if waiver.is_exception:
        changes["conflicts"] = [f"{c.get('framework')} {c.get('id')}" for c in waiver.conflicts]
    return changes


def _exception_conflicts(
    kind: WaiverKind, rule_id: str, server: Server | None, customer: Customer | None
) -> list[dict[str, Any]]:
    """The CIS/STIG controls an exception records (taken from the effective profile now, kept as JSON so the
    record survives profile changes); [] for a waiver. Refuses a key that does not fit the kind."""
    if kind != WaiverKind.EXCEPTION:
        if rule_id == EXCEPTION_KEY:
            raise WaiverError(f"{EXCEPTION_KEY} is not a rule to waive: propose it as an exception")
        return []
    if rule_id != EXCEPTION_KEY:
        raise WaiverError(
            f"an exception covers only the integrated-authentication rights ({EXCEPTION_KEY}); "
            f"{rule_id!r} can only be waived"
        )
    conflicts, has_rules = selectors.exception_conflicts_for(server=server, customer=customer)
    if not has_rules:
        raise WaiverError("the effective profile has no integrated-authentication rights for an exception to allow")
    return conflicts


@transaction.atomic
def waiver_propose(
    *,
    scope: Scope,
    actor: Actor,
    rule_id: str,
    justification: str,
    expires_at: datetime,
    allowed_rule_ids: frozenset[str],
    server: Server | None = None,
    customer: Customer | None = None,
    kind: WaiverKind = WaiverKind.WAIVER,
) -> Waiver:
    """Propose a waiver, or (kind exception, rule id `EXCEPTION_KEY`) an exception permitting the
    integrated-authentication rights; either applies only once an MSP admin other than the proposer approves it."""
    owner = _owner(server, customer)
    require(scope, Action.PROPOSE_WAIVER, owner)
    now = clock.now()
    conflicts = _exception_conflicts(kind, rule_id, server, customer)
    if kind == WaiverKind.WAIVER and rule_id not in allowed_rule_ids:
        raise WaiverError(f"rule {rule_id!r} is not in the effective profile version")
    if len(justification.strip()) < MIN_JUSTIFICATION:
        raise WaiverError(f"the justification needs at least {MIN_JUSTIFICATION} characters")
    check_waiver_expiry(expires_at, now)
    waiver = Waiver.objects.create(
        kind=kind,
        conflicts=conflicts,
        rule_id=rule_id,
        server=server,
        customer=customer,
        justification=justification.strip(),
        proposed_by=actor.user,
        proposed_at=now,
        expires_at=expires_at,
    )
    changes = _waiver_audit(waiver)
    audit_record(actor=actor, action=f"{waiver.kind}.propose", obj=waiver, customer=owner, changes=changes)
    return waiver


def _locked(waiver: Waiver) -> Waiver:
    # No select_related: PostgreSQL refuses FOR UPDATE on the nullable side of an outer join.
    return Waiver.objects.select_for_update().get(pk=waiver.pk)


@transaction.atomic
def waiver_approve(*, scope: Scope, actor: Actor, waiver: Waiver) -> Waiver:
    """Approve a pending, unexpired waiver; the proposer may not approve their own."""
    require(scope, Action.APPROVE_WAIVER, waiver.owner_customer_id)
    locked = _locked(waiver)
    now = clock.now()
    refusal = approval_refusal(user_id=actor.user.pk if actor.user else None, waiver=locked)
    if refusal:
        raise WaiverError(refusal)
    assert actor.user is not None  # approval_refusal refuses an actor without a user
    status = locked.status_at(now)
    if status != WaiverStatus.PENDING:
        raise WaiverError(f"only a pending waiver can be approved; this one is {status.label.lower()}")
    locked.approved_by = actor.user
    locked.approved_at = now
    locked.save(update_fields=["approved_by", "approved_at"])
    owner = Customer.objects.get(pk=locked.owner_customer_id)
    changes = _waiver_audit(locked)
    audit_record(actor=actor, action=f"{locked.kind}.approve", obj=locked, customer=owner, changes=changes)
    return locked


def approval_refusal(*, user_id: int | None, waiver: Waiver) -> str | None:
    """Why this user may not approve the waiver as its proposer (or the proposer's own account), or None.

    The one rule the service enforces and the pages use to hide the Approve button.
    """
    if user_id is None or (waiver.proposed_by_id is not None and waiver.proposed_by_id == user_id):
        return "a proposer cannot approve their own waiver; another MSP admin must"
    if waiver.proposed_by_id is not None and _controlled_by(user_id, waiver.proposed_by_id):
        # a second account the proposer made (or whose password or second factor they reset) is the proposer
        return (
            "this account was created or reset by the waiver's proposer, so it cannot approve it; another MSP admin "
            "must"
        )
    return None


def _controlled_by(user_id: int, proposer_id: int) -> bool:
    """Whether the proposer created this account, or reset its password or second factor (the audit trail)."""
    from django.contrib.auth import get_user_model

    from servers.models import AuditEvent

    return AuditEvent.objects.filter(
        actor_id=proposer_id,
        action__in=("user.create", "user.password_reset", "user.2fa_reset"),
        object_type=get_user_model()._meta.label_lower,
        object_id=str(user_id),
    ).exists()


@transaction.atomic
def waiver_revoke(*, scope: Scope, actor: Actor, waiver: Waiver) -> Waiver:
    """Revoke a waiver (pending or active); the rule is judged again from then on."""
    require(scope, Action.PROPOSE_WAIVER, waiver.owner_customer_id)
    locked = _locked(waiver)
    if locked.revoked_at is not None:
        raise WaiverError("this waiver is already revoked")
    locked.revoked_by = actor.user
    locked.revoked_at = clock.now()
    locked.save(update_fields=["revoked_by", "revoked_at"])
    owner = Customer.objects.get(pk=locked.owner_customer_id)
    audit_record(actor=actor, action=f"{locked.kind}.revoke", obj=locked, customer=owner, changes=_waiver_audit(locked))
    return locked


class WaiverTransition(Protocol):
    """`waiver_approve` and `waiver_revoke`: the same call shape, for one confirm view."""

    def __call__(self, *, scope: Scope, actor: Actor, waiver: Waiver) -> Waiver: ...
