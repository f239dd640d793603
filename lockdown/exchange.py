"""Profile documents in and out: canonical hashing, YAML/JSON export, size-capped parsing, diff.

Everything here is a pure function of documents; the database side lives in services and
selectors. Parsing always ends in `lockdown.rules.profile_from_data`, whose errors name the
rule id and the field.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import yaml

from lockdown.choices import ExportFormat
from lockdown.rules import Profile as ProfileDocument
from lockdown.rules import ProfileError, load_profile_text
from lockdown.rules.profile import MAX_PROFILE_BYTES, profile_from_data
from lockdown.rules.untrusted_text import refuse_deep_nesting


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _without_empty_controls(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # A rule with no control mapping is stored (and hashed, and exported) as before mappings existed.
    return [{k: v for k, v in rule.items() if k != "controls" or v} for rule in rules]


# Rule fields that say what a rule means to an auditor, not what the engine checks: two rules equal but
# for these judge a host alike, so a result of one stands for the other.
NOT_JUDGED: frozenset[str] = frozenset({"controls"})


def judged_alike(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Whether two stored rules judge a host alike (equal but for `NOT_JUDGED` fields)."""
    if a is None or b is None:
        return False
    return {k: v for k, v in a.items() if k not in NOT_JUDGED} == {k: v for k, v in b.items() if k not in NOT_JUDGED}


def rules_judged_alike(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> bool:
    """Whether two versions' rules judge every host alike: the same rules, equal but for `NOT_JUDGED`."""
    before = {rule.get("id"): rule for rule in old}
    return len(before) == len(new) and all(judged_alike(before.get(rule.get("id")), rule) for rule in new)


def document_content(document: ProfileDocument) -> tuple[list[dict[str, Any]], list[str]]:
    """The stored parts of a validated document: rules (as JSON data) and notes."""
    data = document.model_dump(mode="json")
    return _without_empty_controls(data["rules"]), data["notes"]


def content_hash(rules: list[dict[str, Any]], notes: list[str]) -> str:
    """sha256 of the canonical JSON of {notes, rules}: equal content, equal hash, whatever the key order."""
    return hashlib.sha256(canonical_json({"notes": notes, "rules": rules}).encode("utf-8")).hexdigest()


def build_document(*, slug: str, name: str, number: int, rules: list[Any], notes: list[str]) -> dict[str, Any]:
    """The exchange form of one version, re-validated so keys come out in the models' order."""
    validated = profile_from_data({"slug": slug, "name": name, "version": str(number), "notes": notes, "rules": rules})
    document = validated.model_dump(mode="json", exclude_none=True)
    return {**document, "rules": _without_empty_controls(document["rules"])}


class _NoAliasDumper(yaml.SafeDumper):
    # Our loader refuses aliases, so the dumper must never write one.
    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_document(document: dict[str, Any], fmt: str) -> str:
    if fmt == ExportFormat.JSON:
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    return yaml.dump(document, Dumper=_NoAliasDumper, sort_keys=False, allow_unicode=True, width=120)


def guess_format(filename: str, text: str) -> str:
    lower = filename.lower()
    if lower.endswith(".json"):
        return ExportFormat.JSON
    if lower.endswith((".yaml", ".yml")):
        return ExportFormat.YAML
    return ExportFormat.JSON if text.lstrip().startswith("{") else ExportFormat.YAML


def _check_flow_depth(text: str) -> None:
    # PyYAML's parser is quadratic in the depth of [ { nesting: refuse deep nesting before parsing.
    try:
        refuse_deep_nesting(text, what="profile")
    except ValueError as exc:
        raise ProfileError(str(exc)) from None


def parse_document(text: str, fmt: str) -> ProfileDocument:
    """Parse and validate a YAML or JSON profile; every failure is a `ProfileError`."""
    if "\x00" in text:
        raise ProfileError("the profile contains a NUL character")
    if len(text.encode("utf-8")) > MAX_PROFILE_BYTES:
        raise ProfileError(f"profile is larger than {MAX_PROFILE_BYTES} bytes")
    _check_flow_depth(text)
    try:
        if fmt == ExportFormat.JSON:
            try:
                data = json.loads(text)
            except ValueError as exc:
                raise ProfileError(f"profile is not valid JSON: {exc}") from None
            return profile_from_data(data)
        return load_profile_text(text)
    except RecursionError:
        raise ProfileError("profile is nested too deeply") from None


def decode_upload(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ProfileError(f"the file is not UTF-8 (byte {exc.start + 1})") from None


@dataclass(frozen=True)
class RuleChange:
    """One rule present in both versions whose fields differ: {field: (old, new)}."""

    rule_id: str
    fields: dict[str, tuple[Any, Any]]


@dataclass(frozen=True)
class VersionDiff:
    """Rules added, removed and changed between two versions (by rule id), and notes changes."""

    added: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)
    changed: list[RuleChange] = field(default_factory=list)
    notes_added: list[str] = field(default_factory=list)
    notes_removed: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.notes_added or self.notes_removed)


def diff_content(
    old_rules: list[dict[str, Any]], old_notes: list[str], new_rules: list[dict[str, Any]], new_notes: list[str]
) -> VersionDiff:
    old = {rule["id"]: rule for rule in old_rules}
    new = {rule["id"]: rule for rule in new_rules}
    changed: list[RuleChange] = []
    for rule_id, new_rule in new.items():
        old_rule = old.get(rule_id)
        if old_rule is None:
            continue
        fields = {
            name: (old_rule.get(name), new_rule.get(name))
            for name in sorted(set(old_rule) | set(new_rule))
            if old_rule.get(name) != new_rule.get(name)
        }
        if fields:
            changed.append(RuleChange(rule_id=rule_id, fields=fields))
    return VersionDiff(
        added=[rule for rule_id, rule in new.items() if rule_id not in old],
        removed=[rule for rule_id, rule in old.items() if rule_id not in new],
        changed=changed,
        notes_added=[note for note in new_notes if note not in old_notes],
        notes_removed=[note for note in old_notes if note not in new_notes],
    )
