"""Compliance by framework and control, as auditors read it (issue 14).

Each server's latest outcomes (`ServerCompliance.outcomes`) are judged against the rules of the version
that judged them; each rule's `controls` say which controls the outcome counts for. Per control:

- outcomes of rules that *support* it count as the server's compliance does (compliant against
  compliant + drift + error; waived, needs_input and not_applicable are shown, not counted);
- outcomes of rules that *conflict* with it (the guide's integrated-authentication rights against CIS
  2.2.4) count as an exception when the rule is in force (compliant or waived: the right is granted),
  and not at all otherwise.

A control is `exception` while any conflicting rule is in force, else `not_met` when an outcome fails,
`met` when outcomes count and all comply, `not_assessed` when nothing counts. Five queries whatever
the fleet's size: the compliance rows, the versions that judged them (`judged_versions`), their
profiles' latest versions (two), nothing per server.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from django.db.models import Max, Q, QuerySet

from lockdown.assignment import judged_versions
from lockdown.exchange import judged_alike
from lockdown.models import ProfileVersion
from lockdown.rules.controls import FRAMEWORK_LABELS, ControlRef, Framework, Relation
from servers.models import Server

COUNTED_FAILING = frozenset({"drift", "error"})
IN_FORCE = frozenset({"compliant", "waived"})


class ControlStatus(StrEnum):
    EXCEPTION = "exception"
    NOT_MET = "not_met"
    MET = "met"
    NOT_ASSESSED = "not_assessed"

    @property
    def label(self) -> str:
        return {"exception": "Exception", "not_met": "Not met", "met": "Met", "not_assessed": "Not assessed"}[self]

    @property
    def badge(self) -> str:
        return {"exception": "orange", "not_met": "red", "met": "green", "not_assessed": "grey"}[self]


@dataclass
class ControlRow:
    """One control of one framework over the servers rolled up."""

    ref: ControlRef
    rules: set[str] = field(default_factory=set)
    compliant: int = 0
    failing: int = 0
    waived: int = 0
    needs_input: int = 0
    not_applicable: int = 0
    in_conflict: int = 0  # outcomes of conflicting rules in force
    servers: set[int] = field(default_factory=set)
    failing_servers: set[int] = field(default_factory=set)
    conflict_servers: set[int] = field(default_factory=set)

    @property
    def results_text(self) -> str:
        """The counts that are not zero, in words ("3 compliant, 1 failing, 2 in conflict")."""
        parts = [
            (self.compliant, "compliant"),
            (self.failing, "failing"),
            (self.waived, "waived"),
            (self.needs_input, "need input"),
            (self.in_conflict, "in conflict"),
            (self.not_applicable, "not applicable"),
        ]
        return ", ".join(f"{n} {words}" for n, words in parts if n) or "none"

    @property
    def rule_list(self) -> list[str]:
        return sorted(self.rules)

    @property
    def percent(self) -> float | None:
        counted = self.compliant + self.failing
        return round(100 * self.compliant / counted, 1) if counted else None

    @property
    def status(self) -> ControlStatus:
        if self.in_conflict:
            return ControlStatus.EXCEPTION
        if self.failing:
            return ControlStatus.NOT_MET
        return ControlStatus.MET if self.compliant else ControlStatus.NOT_ASSESSED

    def add(self, server_id: int, rule_id: str, status: str, relation: Relation) -> None:
        self.rules.add(rule_id)
        self.servers.add(server_id)
        if relation is Relation.CONFLICTS:
            if status in IN_FORCE:
                self.in_conflict += 1
                self.conflict_servers.add(server_id)
            elif status == "not_applicable":
                self.not_applicable += 1
            elif status == "needs_input":
                self.needs_input += 1
            return
        if status == "compliant":
            self.compliant += 1
        elif status in COUNTED_FAILING:
            self.failing += 1
            self.failing_servers.add(server_id)
        elif status == "waived":
            self.waived += 1
        elif status == "needs_input":
            self.needs_input += 1
        else:
            self.not_applicable += 1


@dataclass
class FrameworkRollup:
    framework: Framework
    controls: list[ControlRow]

    @property
    def label(self) -> str:
        return FRAMEWORK_LABELS[self.framework]

    def count(self, status: ControlStatus) -> int:
        return sum(1 for row in self.controls if row.status is status)

    @property
    def met(self) -> int:
        return self.count(ControlStatus.MET)

    @property
    def assessed(self) -> int:
        return sum(1 for row in self.controls if row.status is not ControlStatus.NOT_ASSESSED)


@dataclass
class Rollup:
    frameworks: list[FrameworkRollup]
    servers: int  # servers with a verify
    unmapped_rules: set[str]  # rules judged that map to no control

    def framework(self, framework: Framework) -> FrameworkRollup | None:
        return next((f for f in self.frameworks if f.framework is framework), None)


def _latest_versions(profile_ids: set[int]) -> dict[int, ProfileVersion]:
    """Each profile's newest version; two queries whatever their number."""
    if not profile_ids:
        return {}
    newest = ProfileVersion.objects.filter(profile_id__in=profile_ids).values("profile_id").annotate(n=Max("number"))
    query = Q()
    for row in newest:
        query |= Q(profile_id=row["profile_id"], number=row["n"])
    return {v.profile_id: v for v in ProfileVersion.objects.filter(query)}


def _rule_controls(versions: Iterable[ProfileVersion]) -> dict[tuple[int, str], tuple[ControlRef, ...]]:
    """(judged version id, rule id) → its control references, parsed once per rule.

    Mappings are what a rule means to an auditor, not what it checks: where the profile's latest version
    has the rule judged alike (`judged_alike`), its mappings stand for the older result too, so a profile
    that only gained mappings shows them before its servers are verified again."""
    versions = list(versions)
    latest = _latest_versions({v.profile_id for v in versions})
    found: dict[tuple[int, str], tuple[ControlRef, ...]] = {}
    for version in versions:
        newest = {rule["id"]: rule for rule in latest[version.profile_id].rules} if version.profile_id in latest else {}
        for rule in version.rules:
            mapped = newest.get(rule["id"])
            source = mapped if mapped is not None and judged_alike(mapped, rule) else rule
            refs = source.get("controls") or ()
            found[(version.pk, rule["id"])] = tuple(ControlRef.model_validate(ref) for ref in refs)
    return found


def _sort_key(row: ControlRow) -> tuple[Any, ...]:
    # Numbered as the frameworks number them: 2.2.4 before 2.2.15, AC-6 before AC-6(1) before CM-6.
    parts = [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in _split(row.ref.id)]
    return (row.ref.benchmark or "", row.ref.version or "", parts)


def _split(text: str) -> list[str]:
    out, current = [], ""
    for char in text:
        if char.isdigit() == current[-1:].isdigit() or not current:
            current += char
        else:
            out.append(current)
            current = char
    return [*out, current] if current else out


def controls_rollup(servers: QuerySet[Server]) -> Rollup:
    """Compliance by framework and control over `servers` (already scoped by the caller)."""
    from jobs.models import ServerCompliance

    rows = list(
        ServerCompliance.objects.filter(server__in=servers).values_list("server_id", "profile_label", "outcomes")
    )
    versions = judged_versions(label for _, label, _ in rows)
    controls = _rule_controls(versions.values())
    by_key: dict[tuple[str, str, str], ControlRow] = {}  # one row per control, whichever rules support or conflict
    unmapped: set[str] = set()
    for server_id, label, outcomes in rows:
        version = versions.get(label)
        for outcome in outcomes or []:
            rule_id = str(outcome.get("rule_id", ""))
            refs = controls.get((version.pk, rule_id), ()) if version is not None else ()
            if not refs:
                unmapped.add(rule_id)
                continue
            for ref in refs:
                row = by_key.get(ref.key)
                if row is None:
                    row = by_key[ref.key] = ControlRow(ref=ref)
                row.add(server_id, rule_id, str(outcome.get("status", "")), ref.relation)
    frameworks = []
    for framework in Framework:
        mine = sorted((row for row in by_key.values() if row.ref.framework is framework), key=_sort_key)
        if mine:
            frameworks.append(FrameworkRollup(framework, mine))
    return Rollup(frameworks=frameworks, servers=len(rows), unmapped_rules=unmapped)
