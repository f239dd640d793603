"""The MailEnable advisories in force: imports (services), the current set and the fleet's exposure (selectors).

The set in force is the newest `AdvisoryDocument`. An MSP admin replaces it by importing a file (page or
`manage.py import_advisories`); the shipped file is loaded on migrate and replaces the set in force only
when its `updated` date is later (or, for a built-in set in force, on the same date with other content:
a correction shipped in a release), so upgrading never undoes a newer MSP import.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models.fields.json import KT

from lockdown import clock
from lockdown.exchange import canonical_json
from lockdown.models import AdvisoryDocument
from lockdown.rules.advisories import (
    Advisory,
    AdvisoryDiff,
    AdvisoryFile,
    advisories_affecting,
    advisory_diff,
    load_advisory_document,
    load_builtin_advisories,
)
from servers.audit import Actor, audit_record
from servers.models import Server
from servers.tenancy import Action, Scope, require


@dataclass(frozen=True)
class AdvisoryImportOutcome:
    """What an import did: the document in force afterwards, whether it is new, and the ids that changed."""

    document: AdvisoryDocument
    created: bool
    diff: AdvisoryDiff


def document_hash(document: AdvisoryFile) -> str:
    """sha256 of the canonical JSON of a validated file: equal content, equal hash, whatever the key order."""
    return hashlib.sha256(canonical_json(document.model_dump(mode="json")).encode("utf-8")).hexdigest()


def _stored(row: AdvisoryDocument | None) -> AdvisoryFile | None:
    return AdvisoryFile.model_validate(row.document) if row is not None else None


def _store(
    *, document: AdvisoryFile, actor: Actor, source_name: str, builtin: bool, current: AdvisoryDocument | None
) -> AdvisoryImportOutcome:
    before = _stored(current)
    digest = document_hash(document)
    diff = advisory_diff(before.advisories if before else (), document.advisories)
    audited: dict[str, Any] = {"source": [None, source_name[:200]], "updated": [None, document.updated.isoformat()]}
    if current is not None and current.content_hash == digest:
        audit_record(
            actor=actor, action="advisories.import", obj=current, changes={**audited, "created": [None, False]}
        )
        return AdvisoryImportOutcome(document=current, created=False, diff=diff)
    row = AdvisoryDocument.objects.create(
        document=document.model_dump(mode="json"),
        content_hash=digest,
        updated=document.updated,
        source_name=source_name[:200],
        builtin=builtin,
        imported_by=actor.user,
        imported_at=clock.now(),
    )
    audit_record(
        actor=actor,
        action="advisories.import",
        obj=row,
        changes={
            **audited,
            "updated": [before.updated.isoformat() if before else None, document.updated.isoformat()],
            "created": [None, True],
            "added": [None, list(diff.added)],
            "removed": [None, list(diff.removed)],
            "changed": [None, list(diff.changed)],
        },
    )
    return AdvisoryImportOutcome(document=row, created=True, diff=diff)


def _locked_current() -> AdvisoryDocument | None:
    # Lock the row in force so two concurrent imports diff against the same predecessor one after the other.
    return AdvisoryDocument.objects.select_for_update().order_by("-id").first()


@transaction.atomic
def advisories_import(*, scope: Scope, actor: Actor, text: str, source_name: str = "") -> AdvisoryImportOutcome:
    """Validate `text` (YAML or JSON) and make it the advisory set in force; the content already in force
    creates nothing. MSP admins only. Raises `AdvisoryError` (nothing saved) for a file that does not validate."""
    require(scope, Action.MANAGE_PROFILES)
    document = load_advisory_document(text)
    return _store(document=document, actor=actor, source_name=source_name, builtin=False, current=_locked_current())


@transaction.atomic
def builtin_advisories_sync(*, actor: Actor | None = None) -> AdvisoryImportOutcome | None:
    """Load the shipped advisory file when it is newer than the set in force (None: the set in force stays).

    Decided by the files' `updated` dates: a shipped file of an earlier or the same date never replaces an
    MSP import; it replaces a built-in set of the same date whose content differs (a correction)."""
    shipped = load_builtin_advisories()
    current = _locked_current()
    if current is not None:
        newer = shipped.updated > current.updated
        corrected = current.builtin and shipped.updated == current.updated
        if not (newer or corrected) or current.content_hash == document_hash(shipped):
            return None
    return _store(
        document=shipped,
        actor=actor or Actor.system("builtin_advisories_sync"),
        source_name="shipped mailenable.yaml",
        builtin=True,
        current=current,
    )


# --- Selectors -------------------------------------------------------------------------------
def current_advisory_document() -> AdvisoryDocument | None:
    """The imported file in force (one query), or None before any was loaded."""
    return AdvisoryDocument.objects.select_related("imported_by").order_by("-id").first()


def current_advisories() -> tuple[Advisory, ...]:
    """The advisories in force (one query); the shipped file's while none is stored (a database not migrated
    with the lockdown app's post-migrate sync)."""
    data = AdvisoryDocument.objects.order_by("-id").values_list("document", flat=True).first()
    if data is None:
        return load_builtin_advisories().advisories
    return AdvisoryFile.model_validate(data).advisories


@dataclass(frozen=True)
class AdvisoryExposure:
    """One advisory and how many of the reader's servers it affects by their discovered facts."""

    advisory: Advisory
    servers: int  # affected, including those only if Enterprise Premium
    possibly: int  # of those: Enterprise hosts, affected only if they are Enterprise Premium


@dataclass(frozen=True)
class FleetExposure:
    """Per advisory, the servers affected; and how many servers could not be judged (version or edition unread)."""

    advisories: list[AdvisoryExposure]
    servers: int
    not_judged: int


def _text(value: object) -> str | None:
    # Facts are host output: anything but a short string is treated as not read.
    return value if isinstance(value, str) and len(value) <= 40 else None


def fleet_exposure(*, scope: Scope, advisories: Sequence[Advisory]) -> FleetExposure:
    """How many of the servers `scope` sees each advisory affects (one query, whatever the fleet's size)."""
    # KT: the values as text. A plain `facts__mailenable_version` comes back JSON-decoded on SQLite, so the
    # string "10.40" would arrive as the number 10.4.
    servers = scope.filter(Server.objects.all()).annotate(
        version=KT("facts__mailenable_version"), edition=KT("facts__mailenable_edition")
    )
    pairs: Counter[tuple[str | None, str | None]] = Counter(
        (_text(version), _text(edition)) for version, edition in servers.values_list("version", "edition")
    )
    affected: Counter[str] = Counter()
    possibly: Counter[str] = Counter()
    not_judged = 0
    for (version, edition), count in pairs.items():
        verdict = advisories_affecting(version, edition, advisories)
        if verdict.unknown is not None:
            not_judged += count
        for advisory in verdict.affected:
            affected[advisory.id] += count
            if advisory.id in verdict.premium_assumed:
                possibly[advisory.id] += count
    return FleetExposure(
        advisories=[AdvisoryExposure(a, affected[a.id], possibly[a.id]) for a in advisories],
        servers=sum(pairs.values()),
        not_judged=not_judged,
    )
