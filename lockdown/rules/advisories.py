"""MailEnable security advisories as data, and which of them a host's version and edition fall under.

The advisory file (shipped as `lockdown/advisories/mailenable.yaml`, replaceable by an MSP import
without a release) lists each advisory with its CVE ids, severity, editions, affected version ranges
and sources. `advisories_affecting(version, edition, advisories)` judges one host from its
discovered facts (`mailenable_version`, `mailenable_edition`).

Versions are compared as tuples of integers: MailEnable numbers its builds 8.64, 9.84, 10.41 →
10.42, and old ones "1.5018"; "10.0" and "10" are the same version. A range is
`[introduced, fixed)`, or `[introduced, last_affected]` when the fixed build is not published;
a missing `introduced` means "every earlier version".

Editions: the registry tells `Enterprise Version`, `Professional Version` or `Version` (Standard)
apart, but not Enterprise Premium from Enterprise (standards-and-advisories §1.1). So an advisory
for Premium only is counted against an Enterprise host as *possibly* affecting it, and the verdict
says so (`premium_assumed`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import date
from importlib import resources
from typing import Any, Final, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from lockdown.rules.base import LockdownModel
from lockdown.rules.untrusted_text import refuse_deep_nesting, refuse_yaml_aliases
from lockdown.rules.vocabulary import Edition

MAX_ADVISORY_BYTES: Final = 256 * 1024
_VERSION_RE: Final = re.compile(r"^\d{1,6}(?:\.\d{1,6}){0,3}$")
_ID_RE: Final = re.compile(r"^[a-z0-9][a-z0-9._\-]{1,79}$")
_CVE_RE: Final = re.compile(r"^CVE-\d{4}-\d{4,7}$")


class AdvisoryError(ValueError):
    """An advisory file that cannot be loaded; the message names the advisory id and field."""


VersionKey = tuple[int, ...]


def parse_version(text: str) -> VersionKey:
    """ "10.42" -> (10, 42), "1.5018" -> (1, 5018); surrounding blanks allowed, anything else raises ValueError."""
    if not isinstance(text, str):
        raise ValueError(f"a version is text like '10.42', got {type(text).__name__}")
    stripped = text.strip()
    if not _VERSION_RE.fullmatch(stripped):
        raise ValueError(f"not a MailEnable version number: {text[:40]!r}")
    return tuple(int(part) for part in stripped.split("."))


def _key(version: VersionKey) -> VersionKey:
    """The comparable form: trailing zero parts dropped, so 10.0 == 10."""
    parts = list(version)
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def _version_field(value: object) -> object:
    # YAML reads `fixed: 10.40` as the number 10.4: refuse numbers instead of guessing what was meant.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(f"write versions as quoted text ('{value}'): YAML reads an unquoted 10.40 as the number 10.4")
    if isinstance(value, str):
        parse_version(value)
        return value.strip()
    return value


class AffectedRange(LockdownModel):
    """Affected versions: [introduced, fixed), or [introduced, last_affected] when the fixed build is not published.

    `introduced` missing: every earlier version. Exactly one of `fixed` and `last_affected` is set: a
    source always names the builds it saw affected, and an open-ended range would fail every host for ever.
    """

    introduced: str | None = None
    fixed: str | None = None
    last_affected: str | None = None

    @field_validator("introduced", "fixed", "last_affected", mode="before")
    @classmethod
    def _versions(cls, value: object) -> object:
        return _version_field(value)

    @model_validator(mode="after")
    def _bounds(self) -> AffectedRange:
        if (self.fixed is None) == (self.last_affected is None):
            raise ValueError("give exactly one of 'fixed' (the first fixed build) and 'last_affected'")
        if self.introduced is not None:
            low = _key(parse_version(self.introduced))
            if self.fixed is not None and not low < _key(parse_version(self.fixed)):
                raise ValueError(f"'introduced' {self.introduced} is not below 'fixed' {self.fixed}")
            if self.last_affected is not None and not low <= _key(parse_version(self.last_affected)):
                raise ValueError(f"'introduced' {self.introduced} is above 'last_affected' {self.last_affected}")
        return self

    def contains(self, version: VersionKey) -> bool:
        v = _key(version)
        if self.introduced is not None and v < _key(parse_version(self.introduced)):
            return False
        if self.fixed is not None:
            return v < _key(parse_version(self.fixed))
        assert self.last_affected is not None
        return v <= _key(parse_version(self.last_affected))

    def describe(self) -> str:
        """In words, e.g. '10.0 up to (not including) 10.42', 'up to and including 10.55'."""
        start = f"{self.introduced} " if self.introduced else ""
        if self.fixed is not None:
            return f"{start}up to (not including) {self.fixed}" if start else f"before {self.fixed}"
        return f"{start}up to and including {self.last_affected}"


class Advisory(LockdownModel):
    """One advisory: the CVEs it covers, which editions and versions it affects, and where that is stated."""

    id: str = Field(description="Stable, e.g. 'cve-2022-42135'")
    title: str = Field(min_length=1, max_length=200)
    summary: str = Field(min_length=1, max_length=2000)
    cves: tuple[str, ...] = Field(min_length=1, max_length=50)
    severity: Literal["critical", "high", "medium", "low"]
    editions: tuple[Edition, ...] = Field(min_length=1, max_length=4)
    affected: tuple[AffectedRange, ...] = Field(min_length=1, max_length=50)
    sources: tuple[str, ...] = Field(min_length=1, max_length=20)
    note: str | None = Field(default=None, max_length=2000)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _ID_RE.fullmatch(value):
            raise ValueError(f"an advisory id is lower-case letters, digits, '.', '_' and '-', got {value[:80]!r}")
        return value

    @field_validator("cves")
    @classmethod
    def _cves(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cve in value:
            if not _CVE_RE.fullmatch(cve):
                raise ValueError(f"not a CVE id (CVE-YYYY-NNNN): {cve[:40]!r}")
        if len(set(value)) != len(value):
            raise ValueError("a CVE id is listed twice")
        return value

    @field_validator("editions")
    @classmethod
    def _editions(cls, value: tuple[Edition, ...]) -> tuple[Edition, ...]:
        if len(set(value)) != len(value):
            raise ValueError("an edition is listed twice")
        return value

    @field_validator("sources")
    @classmethod
    def _sources(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for url in value:
            if not url.startswith("https://") or len(url) > 500 or len(url) < 12 or any(c.isspace() for c in url):
                raise ValueError(f"a source is an https:// URL, got {url[:80]!r}")
        return value

    def applies_to(self, version: VersionKey) -> bool:
        return any(r.contains(version) for r in self.affected)

    @property
    def premium_only(self) -> bool:
        return set(self.editions) == {Edition.PREMIUM}


class AdvisoryFile(LockdownModel):
    """The advisory file: a schema version, the date it was last updated, and the advisories (unique ids)."""

    schema_version: Literal[1]
    updated: date
    advisories: tuple[Advisory, ...] = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _unique_ids(self) -> AdvisoryFile:
        seen: set[str] = set()
        for advisory in self.advisories:
            if advisory.id in seen:
                raise ValueError(f"advisory {advisory.id!r}, field 'id': duplicate advisory id")
            seen.add(advisory.id)
        return self


class AdvisoryVerdict(LockdownModel):
    """Which advisories affect one host.

    `affected`: the advisories that apply to the host's version and edition, including those for
    Enterprise Premium only on a host the registry calls Enterprise (their ids are in `premium_assumed`).
    `unknown`: why the verdict is incomplete (version or edition not read, or unreadable); then
    `affected` holds only what applies whatever the edition, or nothing when the version is unknown.
    `minimum_fixed`: the lowest published version from which on no advisory for the host's edition(s)
    affects any build (None when there is none to compute: no advisory applies to the edition, or the
    newest affected range ends at a `last_affected` build whose fix is not published).
    """

    affected: tuple[Advisory, ...] = ()
    premium_assumed: tuple[str, ...] = ()
    unknown: str | None = None
    minimum_fixed: str | None = None

    @property
    def cves(self) -> tuple[str, ...]:
        return tuple(cve for advisory in self.affected for cve in advisory.cves)


_EDITION_NAMES: Final[dict[str, Edition]] = {
    "standard": Edition.STANDARD,
    "professional": Edition.PROFESSIONAL,
    "enterprise": Edition.ENTERPRISE,
    "premium": Edition.PREMIUM,
    "enterprise premium": Edition.PREMIUM,
}


def host_edition(edition: str | None) -> Edition | None:
    """The edition a host's `mailenable_edition` names ('Standard', 'Professional', 'Enterprise'; an operator
    may say 'Enterprise Premium'), or None when it names none."""
    if edition is None:
        return None
    return _EDITION_NAMES.get(" ".join(edition.split()).casefold())


def possible_editions(edition: Edition | None) -> frozenset[Edition]:
    """The editions a host may be: a host the registry calls Enterprise may be Enterprise Premium."""
    if edition is None:
        return frozenset(Edition)
    if edition is Edition.ENTERPRISE:
        # The registry writes `Enterprise Version` for Enterprise Premium too (§1.1).
        return frozenset({Edition.ENTERPRISE, Edition.PREMIUM})
    return frozenset({edition})


def minimum_fixed_version(advisories: Sequence[Advisory]) -> str | None:
    """The lowest published version from which on none of `advisories` affects any build, or None."""
    top: tuple[VersionKey, AffectedRange] | None = None
    for advisory in advisories:
        for r in advisory.affected:
            bound = r.fixed if r.fixed is not None else r.last_affected
            assert bound is not None
            key = _key(parse_version(bound))
            # On a tie, a last_affected bound wins: that build itself is still affected.
            if top is None or key > top[0] or (key == top[0] and r.last_affected is not None):
                top = (key, r)
    if top is None or top[1].fixed is None:
        return None
    return top[1].fixed


def advisories_affecting(version: str | None, edition: str | None, advisories: Sequence[Advisory]) -> AdvisoryVerdict:
    """Which of `advisories` affect a host with this MailEnable `version` and `edition` (its discovered facts)."""
    known = host_edition(edition)
    possible = possible_editions(known)
    relevant = [a for a in advisories if possible & set(a.editions)]
    minimum = minimum_fixed_version(relevant)
    if version is None or not version.strip():
        return AdvisoryVerdict(unknown="MailEnable's version was not read (run discovery)", minimum_fixed=minimum)
    try:
        key = parse_version(version)
    except ValueError:
        return AdvisoryVerdict(
            unknown=f"MailEnable's version {version[:40]!r} is not a version number", minimum_fixed=minimum
        )
    unknown = None
    if known is None:
        unknown = (
            "MailEnable's edition was not read"
            if edition is None or not edition.strip()
            else f"MailEnable's edition {edition[:40]!r} is not one MailEnable ships"
        )
    affected: list[Advisory] = []
    assumed: list[str] = []
    for advisory in relevant:
        if not advisory.applies_to(key):
            continue
        editions = set(advisory.editions)
        if known is None:
            if editions >= possible:  # applies whatever the edition
                affected.append(advisory)
        elif known in editions:
            affected.append(advisory)
        else:  # an Enterprise host and an advisory for Premium (and not Enterprise)
            affected.append(advisory)
            assumed.append(advisory.id)
    return AdvisoryVerdict(
        affected=tuple(affected), premium_assumed=tuple(assumed), unknown=unknown, minimum_fixed=minimum
    )


def _advisory_name(data: object, index: int) -> str:
    raw = data.get("advisories") if isinstance(data, dict) else None
    item = raw[index] if isinstance(raw, list) and 0 <= index < len(raw) else None
    advisory_id = item.get("id") if isinstance(item, dict) else None
    return f"advisory {advisory_id!r}" if isinstance(advisory_id, str) and advisory_id else f"advisory #{index + 1}"


def _describe(error: Any, data: object) -> str:
    loc = [part for part in error["loc"]]
    message = str(error["msg"]).removeprefix("Value error, ")
    if message.startswith("advisory "):  # already names the advisory (duplicate ids)
        return message
    if len(loc) >= 2 and loc[0] == "advisories" and isinstance(loc[1], int):
        field = ".".join(str(part) for part in loc[2:]) or "(advisory)"
        return f"{_advisory_name(data, loc[1])}, field {field!r}: {message}"
    field = ".".join(str(part) for part in loc) or "(file)"
    return f"advisory file, field {field!r}: {message}"


def advisory_file_from_data(data: object) -> AdvisoryFile:
    """Validate parsed data (a mapping) into an `AdvisoryFile`; the first problem is an `AdvisoryError`."""
    if not isinstance(data, dict):
        raise AdvisoryError("an advisory file is a mapping with schema_version, updated and advisories")
    try:
        return AdvisoryFile.model_validate(data)
    except ValidationError as exc:
        raise AdvisoryError(_describe(exc.errors()[0], data)) from None


def load_advisory_document(text: str) -> AdvisoryFile:
    """Parse and validate an advisory file, YAML or JSON (JSON when it starts with '{'): size-capped, no NUL,
    no YAML aliases, bounded nesting, safe_load. Every failure is an `AdvisoryError` that says what is wrong."""
    if "\x00" in text:
        raise AdvisoryError("the advisory file contains a NUL character")
    if len(text.encode("utf-8")) > MAX_ADVISORY_BYTES:
        raise AdvisoryError(f"the advisory file is larger than {MAX_ADVISORY_BYTES:,} bytes")
    try:
        refuse_deep_nesting(text, what="the advisory file")
        if text.lstrip().startswith("{"):
            try:
                data = json.loads(text)
            except ValueError as exc:
                raise AdvisoryError(f"the advisory file is not valid JSON: {exc}") from None
        else:
            refuse_yaml_aliases(text, what="advisory files")
            data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AdvisoryError(f"the advisory file is not valid YAML: {exc}") from None
    except RecursionError:
        raise AdvisoryError("the advisory file is nested too deeply") from None
    except AdvisoryError:
        raise
    except ValueError as exc:
        raise AdvisoryError(str(exc)) from None
    return advisory_file_from_data(data)


class AdvisoryDiff(LockdownModel):
    """Advisory ids added, removed and changed between two files."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


def advisory_diff(old: Sequence[Advisory], new: Sequence[Advisory]) -> AdvisoryDiff:
    before = {a.id: a for a in old}
    after = {a.id: a for a in new}
    return AdvisoryDiff(
        added=tuple(sorted(set(after) - set(before))),
        removed=tuple(sorted(set(before) - set(after))),
        changed=tuple(sorted(i for i in set(before) & set(after) if before[i] != after[i])),
    )


BUILTIN_PACKAGE: Final = "lockdown.advisories"
BUILTIN_FILE: Final = "mailenable.yaml"


def builtin_advisory_text() -> str:
    """The text of the shipped advisory file."""
    return resources.files(BUILTIN_PACKAGE).joinpath(BUILTIN_FILE).read_text(encoding="utf-8")


def load_builtin_advisories() -> AdvisoryFile:
    """Load and validate the shipped `lockdown/advisories/mailenable.yaml`."""
    return load_advisory_document(builtin_advisory_text())
