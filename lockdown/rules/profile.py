"""Profiles: a named, versioned list of rules, and their loading from YAML.

Loading validates everything and reports the *first* problem precisely: the rule id (or
its position when the id itself is missing) and the field, e.g.
`rule 'file_acl.system32.cmd_exe', field 'target': UNC paths are not allowed: ...`.
"""

from __future__ import annotations

import re
from typing import Any, Final

import yaml
from pydantic import Field, TypeAdapter, ValidationError, model_validator

from lockdown.rules.base import LockdownModel
from lockdown.rules.controls import expand_control_keys
from lockdown.rules.rule import Rule
from lockdown.rules.untrusted_text import refuse_yaml_aliases
from lockdown.rules.vocabulary import RuleType

MAX_PROFILE_BYTES: Final = 512 * 1024
_SLUG_RE: Final = re.compile(r"^[a-z0-9][a-z0-9\-]{1,62}$")
_RULE_ADAPTER: Final[TypeAdapter[Rule]] = TypeAdapter(Rule)
_TOP_LEVEL_KEYS: Final = frozenset({"slug", "name", "version", "notes", "rules", "controls"})


class ProfileError(ValueError):
    """A profile that cannot be loaded; the message names the rule id and field."""


class Profile(LockdownModel):
    """A set of rules with a name and a version label.

    `notes` records, in words, every place the profile deliberately differs from the guide.
    Rule ids are unique within a profile.
    """

    slug: str
    name: str = Field(min_length=1, max_length=200)
    version: str = Field(min_length=1, max_length=40)
    notes: list[str] = Field(default_factory=list, max_length=100)
    rules: list[Rule] = Field(min_length=1, max_length=2000)

    @model_validator(mode="after")
    def _unique_ids_and_slug(self) -> Profile:
        if not _SLUG_RE.fullmatch(self.slug):
            raise ValueError(f"slug must be lower-case letters, digits and dashes, got {self.slug!r}")
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"rule {rule.id!r}, field 'id': duplicate rule id")
            seen.add(rule.id)
        return self


def _describe(error: Any) -> tuple[str, str]:
    # pydantic puts the discriminator tag first in `loc` ("file_acl", "target"); drop it.
    loc = [str(part) for part in error["loc"]]
    if loc and loc[0] in {t.value for t in RuleType}:
        loc = loc[1:]
    field = ".".join(loc) or "(rule)"
    message = str(error["msg"]).removeprefix("Value error, ")
    return field, message


def _reject_aliases(text: str) -> None:
    try:
        refuse_yaml_aliases(text, what="profiles")
    except ValueError as exc:
        raise ProfileError(str(exc)) from None


def _validate_rule(index: int, raw: object) -> Rule:
    if not isinstance(raw, dict):
        raise ProfileError(f"rule #{index + 1}: expected a mapping, got {type(raw).__name__}")
    rule_id = raw.get("id")
    name = f"rule {rule_id!r}" if isinstance(rule_id, str) and rule_id else f"rule #{index + 1} (no id)"
    rule_type = raw.get("type")
    known = sorted(t.value for t in RuleType)
    if rule_type not in known:
        raise ProfileError(
            f"{name}, field 'type': unknown rule type {rule_type!r} (expected one of {', '.join(known)})"
        )
    try:
        return _RULE_ADAPTER.validate_python(raw)
    except ValidationError as exc:
        field, message = _describe(exc.errors()[0])
        raise ProfileError(f"{name}, field {field!r}: {message}") from None


def profile_from_data(data: object) -> Profile:
    """Validate already-parsed profile data (a mapping) into a `Profile`."""
    if not isinstance(data, dict):
        raise ProfileError("a profile is a mapping with slug, name, version, notes and rules")
    unknown = sorted(str(k) for k in data if k not in _TOP_LEVEL_KEYS)
    if unknown:
        raise ProfileError(f"profile: unknown top-level field(s) {unknown}")
    try:
        data = expand_control_keys(data)
    except ValueError as exc:
        raise ProfileError(str(exc)) from None
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise ProfileError("profile, field 'rules': a non-empty list of rules is required")
    rules = [_validate_rule(index, raw) for index, raw in enumerate(raw_rules)]
    seen: dict[str, int] = {}
    for index, rule in enumerate(rules):
        if rule.id in seen:
            raise ProfileError(
                f"rule {rule.id!r}, field 'id': duplicate rule id (rules #{seen[rule.id] + 1} and #{index + 1})"
            )
        seen[rule.id] = index
    try:
        return Profile.model_validate({**data, "rules": rules})
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "(profile)"
        raise ProfileError(f"profile, field {field!r}: {str(error['msg']).removeprefix('Value error, ')}") from None


def load_profile_text(text: str) -> Profile:
    """Parse and validate a YAML profile (size-capped, safe_load, no aliases)."""
    if len(text.encode("utf-8")) > MAX_PROFILE_BYTES:
        raise ProfileError(f"profile is larger than {MAX_PROFILE_BYTES} bytes")
    try:
        _reject_aliases(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProfileError(f"profile is not valid YAML: {exc}") from None
    return profile_from_data(data)
