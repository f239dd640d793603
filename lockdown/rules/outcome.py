"""Judged results: `RuleOutcome` per plan item, `Waiver`, and the `Summary` of a host."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, JsonValue, field_validator

from lockdown.rules.base import LockdownModel
from lockdown.rules.vocabulary import Risk, RuleAction, RuleStatus, WaiverScope


class RuleOutcome(LockdownModel):
    """One rule on one resolved target, judged by Python from observed state.

    `expected` / `observed` carry both a sentence for people (`*_text`) and structured data
    for reports and the API. When a waiver applies, `status` is `waived` and
    `underlying_status` keeps what the judgement found.
    """

    rule_id: str
    target: str
    section: str
    status: RuleStatus
    underlying_status: RuleStatus | None = None
    action: RuleAction = RuleAction.NONE
    expected_text: str
    expected: dict[str, JsonValue] = Field(default_factory=dict)
    observed_text: str
    observed: dict[str, JsonValue] = Field(default_factory=dict)
    reason: str
    risk: Risk
    risk_note: str | None = None
    waiver_justification: str | None = None


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware")
    return value


class Waiver(LockdownModel):
    """An accepted deviation, keyed by rule id so it survives new profile versions.

    The caller passes only the waivers that concern the host (its own, or its customer's);
    `scope` records which. It applies while `now < expires_at` (or forever without expiry).
    """

    rule_id: str = Field(min_length=3, max_length=120)
    scope: WaiverScope
    expires_at: datetime | None = None
    justification: str = Field(min_length=1, max_length=2000)

    _expires_aware = field_validator("expires_at")(_aware)

    def applies_at(self, now: datetime) -> bool:
        """Whether the waiver is in force at `now` (an expiry exactly at `now` has lapsed)."""
        return self.expires_at is None or now < self.expires_at


class SectionCounts(LockdownModel):
    """Outcome counts of one section of the guide."""

    section: str
    counts: dict[RuleStatus, int]


class Summary(LockdownModel):
    """Compliance of one host: counts per status and per section, and a percentage.

    `compliant_percent` = compliant / (compliant + drift + error) * 100; `not_applicable`,
    `needs_input` and `waived` are excluded from both sides. It is None when nothing counts.
    """

    total: int
    compliant_percent: float | None
    counts: dict[RuleStatus, int]
    sections: list[SectionCounts]
