"""Interim interface of the advisory data (the full module lands from branch h-adv)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from lockdown.rules.base import LockdownModel
from lockdown.rules.vocabulary import Edition


class AffectedRange(LockdownModel):
    introduced: str | None = None
    fixed: str | None = None
    last_affected: str | None = None


class Advisory(LockdownModel):
    id: str
    title: str
    summary: str
    cves: tuple[str, ...]
    severity: Literal["critical", "high", "medium", "low"]
    editions: tuple[Edition, ...]
    affected: tuple[AffectedRange, ...]
    sources: tuple[str, ...]
    note: str | None = None


@dataclass(frozen=True)
class AdvisoryVerdict:
    affected: tuple[Advisory, ...]
    unknown: str | None
    minimum_fixed: str | None


def parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.strip().split("."))


def _in(version: tuple[int, ...], r: AffectedRange) -> bool:
    if r.introduced and version < parse_version(r.introduced):
        return False
    if r.fixed:
        return version < parse_version(r.fixed)
    if r.last_affected:
        return version <= parse_version(r.last_affected)
    return True


def advisories_affecting(version: str | None, edition: str | None, advisories: Sequence[Advisory]) -> AdvisoryVerdict:
    if not version or not edition:
        return AdvisoryVerdict((), "the MailEnable version or edition was not read", None)
    try:
        parsed = parse_version(version)
    except ValueError:
        return AdvisoryVerdict((), f"unreadable version {version!r}", None)
    eds = {edition, "Premium"} if edition == "Enterprise" else {edition}
    hit = tuple(
        a for a in advisories if {e.value for e in a.editions} & eds and any(_in(parsed, r) for r in a.affected)
    )
    return AdvisoryVerdict(hit, None, None)
