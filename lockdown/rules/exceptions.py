"""The guide's integrated-authentication rights as one recorded exception (issue 14).

The rules with `condition: integrated_auth` (the six IME_SYSTEM rights: SeTcbPrivilege,
SeCreateTokenPrivilege, ...) do what CIS and STIG controls forbid. They are off by default: a server
declared to use integrated authentication gets them only while an approved, unrevoked, unexpired
exception (`EXCEPTION_KEY`, for the server or its customer) covers it. The caller reads that from the
database and states it in `Facts.integrated_auth_exception`; this module only names the state and the
conflicts, so `lockdown.rules` stays pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum
from typing import Final

from lockdown.rules.controls import ControlRef, Framework, Relation
from lockdown.rules.rule import Rule
from lockdown.rules.vocabulary import Condition

# The one key an exception may have: the integrated-authentication rights, as a unit.
EXCEPTION_KEY: Final = "exception.integrated_auth"
# The frameworks whose conflicts an exception records and names (the auditors' benchmarks).
RECORDED_FRAMEWORKS: Final = (Framework.CIS, Framework.STIG)


class ExceptionState(StrEnum):
    """Whether an approved exception covers the integrated-authentication rights on one host now."""

    NONE = "none"  # never approved for this server or its customer
    ACTIVE = "active"  # approved, not revoked, not expired
    ENDED = "ended"  # one was approved once; every such one has expired or been revoked since


def integrated_auth_conflicts(rules: Iterable[Rule]) -> list[ControlRef]:
    """The CIS and STIG controls the integrated-authentication rules conflict with, once each, in the
    profile's order (CIS first, then STIG)."""
    found: dict[tuple[str, str, str], ControlRef] = {}
    for rule in rules:
        if rule.condition is not Condition.INTEGRATED_AUTH:
            continue
        for ref in rule.controls:
            if ref.relation is Relation.CONFLICTS and ref.framework in RECORDED_FRAMEWORKS:
                found.setdefault(ref.key, ref)
    return sorted(found.values(), key=_citation_order)


def _citation_order(ref: ControlRef) -> tuple[int, str, list[tuple[int, str]]]:
    # As the frameworks number them: CIS before STIG, 2.2.4 before 2.2.15.
    parts = [(int(p), "") if p.isdigit() else (-1, p) for p in re.split(r"(\d+)", ref.id) if p]
    return (RECORDED_FRAMEWORKS.index(ref.framework), ref.benchmark or "", parts)


def conflicts_text(conflicts: Iterable[ControlRef]) -> str:
    """ "CIS Microsoft Windows Server 2022 Benchmark v4.0.0 2.2.4, 2.2.15 and Microsoft Windows Server 2022
    STIG WN22-UR-000020": the ids grouped by benchmark, as an auditor cites them."""
    groups: dict[str, list[str]] = {}
    for ref in conflicts:
        benchmark = ref.benchmark or ref.framework.label
        version = ref.version or ""
        name = f"{benchmark} {version if version.lower().startswith('v') else 'v' + version}" if version else benchmark
        groups.setdefault(name, []).append(ref.id)
    parts = [f"{name} {', '.join(ids)}" for name, ids in groups.items()]
    if len(parts) <= 1:
        return parts[0] if parts else "no recorded CIS or STIG control"
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def not_covered_reason(state: ExceptionState, conflicts: Iterable[ControlRef]) -> str:
    """Why a server declared to use integrated authentication gets none of the rights: the words every
    page and report shows on the six results."""
    against = conflicts_text(conflicts)
    if state is ExceptionState.ENDED:
        return (
            "integrated authentication is declared, but the exception that allowed these rights has expired or "
            f"been revoked and no approved exception covers them now; they conflict with {against}. None of them "
            "is granted again, and one still held from the ended exception is reported as drift until it is taken "
            "away: roll the server back (or remove it on the host), or have a new exception approved"
        )
    return (
        "integrated authentication is declared, but no approved exception covers these rights; they conflict with "
        f"{against}, so none of them is granted until an MSP admin approves an exception"
    )
