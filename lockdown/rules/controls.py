"""Control mappings: which auditor's control a rule serves (or conflicts with), with its source.

Every rule may carry `controls`, each a `ControlRef`: a framework (CIS Benchmarks, DISA STIG, NIST
SP 800-53 r5, ISO/IEC 27001:2022 Annex A, CIS Controls), the control's id and title, and where the
mapping comes from. CIS numbering differs between benchmark versions and Windows releases, so a CIS
reference names its benchmark and version, as a STIG reference names its STIG.

A rule that does what a control forbids (the guide's integrated-authentication rights against CIS
2.2.4 "Act as part of the operating system = No One") maps with relation `conflicts`: the rule in
force is the control not met, an exception an auditor must see.

A profile file may declare its references once, in a top-level `controls` mapping, and name them by
key in its rules; `expand_control_keys` resolves the keys before validation, so a stored version and
its exported document carry every reference in full.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Final

from pydantic import Field, field_validator, model_validator

from lockdown.rules.base import LockdownModel

_KEY_RE: Final = re.compile(r"^[a-z0-9][a-z0-9._\-]{1,79}$")


class Framework(StrEnum):
    CIS = "cis"
    STIG = "stig"
    NIST_800_53 = "nist_800_53"
    ISO_27001 = "iso_27001"
    CIS_CONTROLS = "cis_controls"

    @property
    def label(self) -> str:
        return FRAMEWORK_LABELS[self]


FRAMEWORK_LABELS: Final[dict[Framework, str]] = {
    Framework.CIS: "CIS Benchmark",
    Framework.STIG: "DISA STIG",
    Framework.NIST_800_53: "NIST SP 800-53 Rev. 5",
    Framework.ISO_27001: "ISO/IEC 27001:2022 Annex A",
    Framework.CIS_CONTROLS: "CIS Critical Security Controls",
}


class Relation(StrEnum):
    SUPPORTS = "supports"  # the rule in force helps meet the control
    CONFLICTS = "conflicts"  # the rule in force is the control not met (a recorded exception)


class ControlRef(LockdownModel):
    """One control a rule maps to, and the source of the mapping."""

    framework: Framework
    id: str = Field(min_length=1, max_length=40, description="As the framework numbers it: 2.2.4, AC-6(1), A.8.2")
    title: str = Field(min_length=1, max_length=200)
    benchmark: str | None = Field(default=None, max_length=200, description="CIS and STIG: which benchmark")
    version: str | None = Field(default=None, max_length=40, description="CIS: the benchmark's version")
    level: str | None = Field(default=None, max_length=60, description="CIS profile level, STIG category")
    relation: Relation = Relation.SUPPORTS
    source: str = Field(min_length=12, max_length=500, description="Where the mapping comes from (a URL)")
    note: str | None = Field(default=None, max_length=500)

    @field_validator("source")
    @classmethod
    def _source_is_a_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")) or any(c.isspace() for c in value):
            raise ValueError(f"a control's source is a URL, got {value!r}")
        return value

    @model_validator(mode="after")
    def _benchmarks_name_their_version(self) -> ControlRef:
        if self.framework is Framework.CIS and not (self.benchmark and self.version):
            raise ValueError("a CIS reference names its benchmark and version (numbering differs between them)")
        if self.framework is Framework.STIG and not self.benchmark:
            raise ValueError("a STIG reference names its STIG")
        return self

    @property
    def key(self) -> tuple[str, str, str]:
        """What identifies the control across rules: framework, benchmark (and version), id."""
        benchmark = " ".join(part for part in (self.benchmark, self.version) if part)
        return (self.framework.value, benchmark, self.id)


def expand_control_keys(data: dict[str, Any]) -> dict[str, Any]:
    """`data` with its top-level `controls` catalogue removed and every rule's control keys replaced
    by the catalogue's entries. Raises ValueError naming the rule and the key."""
    catalogue = data.get("controls", {})
    if not isinstance(catalogue, dict):
        raise ValueError("profile, field 'controls': a mapping of key → control")
    for key in catalogue:
        if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
            raise ValueError(f"profile, field 'controls': keys are lower-case words, got {key!r}")
    rules = data.get("rules")
    expanded = {k: v for k, v in data.items() if k != "controls"}
    if not isinstance(rules, list):
        return expanded
    out: list[Any] = []
    for index, rule in enumerate(rules):
        refs = rule.get("controls") if isinstance(rule, dict) else None
        if not isinstance(refs, list):
            out.append(rule)
            continue
        name = f"rule {rule.get('id')!r}" if rule.get("id") else f"rule #{index + 1} (no id)"
        resolved = []
        for ref in refs:
            if isinstance(ref, str):
                if ref not in catalogue:
                    raise ValueError(f"{name}, field 'controls': no control {ref!r} in the profile's controls")
                resolved.append(catalogue[ref])
            else:
                resolved.append(ref)
        out.append({**rule, "controls": resolved})
    expanded["rules"] = out
    return expanded
