"""Writes to profiles, assignments and waivers. Each checks permission, writes and audits in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.db import transaction
from django.db.models import Max

from lockdown import clock
from lockdown.choices import WaiverStatus
from lockdown.exchange import content_hash, document_content
from lockdown.models import Profile, ProfileVersion, Waiver
from lockdown.rules import Profile as ProfileDocument
from lockdown.rules import ProfileError, load_builtin_profile
from lockdown.rules.profile import profile_from_data
from servers.audit import Actor, audit_record
from servers.choices import Role, StaleReason
from servers.models import Customer, Server
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
    """Load the shipped YAML into the built-in profile; a new version only when its content changed."""
    actor = actor or Actor.system("builtin_profile_sync")
    document = load_builtin_profile()
    profile, created = Profile.objects.get_or_create(
        slug=document.slug,
        defaults={"name": document.name, "builtin": True, "description": "Shipped with the product."},
    )
    if created:
        audit_record(actor=actor, action="profile.create", obj=profile, changes={"slug": [None, profile.slug]})
    elif not profile.builtin:
        raise ProfileServiceError(f"a profile with the built-in slug {profile.slug!r} exists and is not built-in")
    version, new = _create_version(profile=profile, document=document, actor=actor, change_note="Shipped profile")
    if new and not created:
        # Servers without a pin whose customer has no default follow the built-in's latest version.
        server_results_mark_stale(
            servers=Server.objects.filter(profile_version__isnull=True, customer__default_profile_version__isnull=True),
            reason=StaleReason.PROFILE_CHANGED,
        )
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
def _label(version: ProfileVersion | None) -> str | None:
    return version.label if version is not None else None


@transaction.atomic
def customer_assign_profile(
    *, scope: Scope, actor: Actor, customer: Customer, version: ProfileVersion | None
) -> Customer:
    """Set (or clear, with None) the customer's default profile version."""
    require(scope, Action.MANAGE_PROFILES, customer)
    stored = Customer.objects.select_related("default_profile_version__profile").get(pk=customer.pk)
    before = _label(stored.default_profile_version)
    customer.default_profile_version = version
    customer.save(update_fields=["default_profile_version"])
    if stored.default_profile_version_id != (version.pk if version is not None else None):
        # Its servers without a pin of their own are judged by another version now.
        server_results_mark_stale(
            servers=Server.objects.filter(customer=customer, profile_version__isnull=True),
            reason=StaleReason.PROFILE_CHANGED,
        )
    audit_record(
        actor=actor,
        action="customer.assign_profile",
        obj=customer,
        changes={"default_profile_version": [before, _label(version)]},
    )
    return customer


@transaction.atomic
def server_assign_profile(*, scope: Scope, actor: Actor, server: Server, version: ProfileVersion | None) -> Server:
    """Pin (or unpin, with None) a server's profile version."""
    require(scope, Action.MANAGE_PROFILES, server.customer_id)
    stored = Server.objects.select_related("profile_version__profile").get(pk=server.pk)
    before = _label(stored.profile_version)
    server.profile_version = version
    server.save(update_fields=["profile_version", "updated_at"])
    if stored.profile_version_id != (version.pk if version is not None else None):
        server_results_mark_stale(servers=Server.objects.filter(pk=server.pk), reason=StaleReason.PROFILE_CHANGED)
    audit_record(
        actor=actor, action="server.assign_profile", obj=server, changes={"profile_version": [before, _label(version)]}
    )
    return server


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
    return {
        "rule_id": waiver.rule_id,
        "for": f"{waiver.scope.value} {waiver.subject}",
        "expires_at": waiver.expires_at.isoformat(),
    }


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
) -> Waiver:
    """Propose a waiver; it applies only once an MSP admin other than the proposer approves it."""
    owner = _owner(server, customer)
    require(scope, Action.PROPOSE_WAIVER, owner)
    now = clock.now()
    if rule_id not in allowed_rule_ids:
        raise WaiverError(f"rule {rule_id!r} is not in the effective profile version")
    if len(justification.strip()) < MIN_JUSTIFICATION:
        raise WaiverError(f"the justification needs at least {MIN_JUSTIFICATION} characters")
    check_waiver_expiry(expires_at, now)
    waiver = Waiver.objects.create(
        rule_id=rule_id,
        server=server,
        customer=customer,
        justification=justification.strip(),
        proposed_by=actor.user,
        proposed_at=now,
        expires_at=expires_at,
    )
    audit_record(actor=actor, action="waiver.propose", obj=waiver, customer=owner, changes=_waiver_audit(waiver))
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
    audit_record(actor=actor, action="waiver.approve", obj=locked, customer=owner, changes=_waiver_audit(locked))
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
    audit_record(actor=actor, action="waiver.revoke", obj=locked, customer=owner, changes=_waiver_audit(locked))
    return locked


class WaiverTransition(Protocol):
    """`waiver_approve` and `waiver_revoke`: the same call shape, for one confirm view."""

    def __call__(self, *, scope: Scope, actor: Actor, waiver: Waiver) -> Waiver: ...
