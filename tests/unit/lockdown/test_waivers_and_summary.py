"""Waivers apply until they expire (judged with the injected clock); the summary counts honestly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lockdown.rules.builtin import load_builtin_profile
from lockdown.rules.compile import compile_plan
from lockdown.rules.evaluate import evaluate, summarize
from lockdown.rules.outcome import RuleOutcome, Waiver
from lockdown.rules.vocabulary import Risk, RuleStatus, WaiverScope
from tests.unit.lockdown.factories import IME_SID, facts_2022, hardened_observations

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
RULE = "service_identity.memtas"


@pytest.fixture(scope="module")
def plan():
    return compile_plan(load_builtin_profile(), facts_2022(ime_system_sid=IME_SID))


def _drifted(plan):
    """Observations of a hardened host except MEMTAS, which reports nothing (error)."""
    return [o for o in hardened_observations(plan) if o.rule_id != RULE]


def _outcome(outcomes, rule_id=RULE):
    return next(o for o in outcomes if o.rule_id == rule_id)


def _waiver(rule_id=RULE, expires_at=None, scope=WaiverScope.SERVER):
    return Waiver(rule_id=rule_id, scope=scope, expires_at=expires_at, justification="MTA runs scripts as SYSTEM")


def test_unexpired_waiver_marks_the_outcome_waived_and_keeps_the_judged_status(plan):
    outcome = _outcome(evaluate(plan, _drifted(plan), [_waiver(expires_at=NOW + timedelta(days=1))], NOW))
    assert (outcome.status, outcome.underlying_status) == (RuleStatus.WAIVED, RuleStatus.ERROR)
    assert outcome.waiver_justification == "MTA runs scripts as SYSTEM"


def test_waiver_without_expiry_applies(plan):
    outcome = _outcome(evaluate(plan, _drifted(plan), [_waiver(scope=WaiverScope.CUSTOMER)], NOW))
    assert outcome.status is RuleStatus.WAIVED


@pytest.mark.parametrize("expires_at", [NOW - timedelta(seconds=1), NOW])
def test_expired_waiver_stops_applying(plan, expires_at):
    outcome = _outcome(evaluate(plan, _drifted(plan), [_waiver(expires_at=expires_at)], NOW))
    assert (outcome.status, outcome.underlying_status) == (RuleStatus.ERROR, None)


def test_same_waiver_lapses_when_the_clock_moves_past_expiry(plan):
    waiver = _waiver(expires_at=NOW + timedelta(hours=1))
    assert _outcome(evaluate(plan, _drifted(plan), [waiver], NOW)).status is RuleStatus.WAIVED
    later = NOW + timedelta(hours=2)
    assert _outcome(evaluate(plan, _drifted(plan), [waiver], later)).status is RuleStatus.ERROR


def test_waiver_for_another_rule_changes_nothing(plan):
    outcome = _outcome(evaluate(plan, _drifted(plan), [_waiver(rule_id="service_identity.mepops")], NOW))
    assert outcome.status is RuleStatus.ERROR


def test_waiver_leaves_not_applicable_alone(plan):
    waiver = _waiver(rule_id="preflight.indexing_service")
    outcome = _outcome(evaluate(plan, hardened_observations(plan), [waiver], NOW), "preflight.indexing_service")
    assert outcome.status is RuleStatus.NOT_APPLICABLE


def test_waiver_expiry_must_be_timezone_aware():
    with pytest.raises(ValueError, match="timezone-aware"):
        _waiver(expires_at=datetime(2026, 2, 1))  # naive on purpose


def _outcome_with(status: RuleStatus, section: str = "S") -> RuleOutcome:
    return RuleOutcome(
        rule_id="file_acl.system32.x_dll",
        target="t",
        section=section,
        status=status,
        expected_text="e",
        observed_text="o",
        reason="r",
        risk=Risk.LOW,
    )


def test_compliant_percent_excludes_not_applicable_needs_input_and_waived():
    statuses = [RuleStatus.COMPLIANT] * 3 + [RuleStatus.DRIFT, RuleStatus.ERROR]
    statuses += [RuleStatus.NOT_APPLICABLE, RuleStatus.NEEDS_INPUT, RuleStatus.WAIVED] * 5
    summary = summarize([_outcome_with(s) for s in statuses])
    assert summary.compliant_percent == 60.0
    assert summary.total == 20
    assert summary.counts[RuleStatus.WAIVED] == 5


def test_compliant_percent_is_none_when_nothing_counts():
    assert summarize([_outcome_with(RuleStatus.NOT_APPLICABLE)]).compliant_percent is None


def test_summary_counts_per_section_in_first_seen_order():
    outcomes = [
        _outcome_with(RuleStatus.DRIFT, "Registry Permissions"),
        _outcome_with(RuleStatus.COMPLIANT, "Database Changes"),
        _outcome_with(RuleStatus.COMPLIANT, "Registry Permissions"),
    ]
    sections = summarize(outcomes).sections
    assert [s.section for s in sections] == ["Registry Permissions", "Database Changes"]
    assert sections[0].counts[RuleStatus.DRIFT] == 1
    assert sections[0].counts[RuleStatus.COMPLIANT] == 1


def test_hardened_host_summarises_to_100_percent(plan):
    summary = summarize(evaluate(plan, hardened_observations(plan), [], NOW))
    assert summary.compliant_percent == 100.0
    assert summary.counts[RuleStatus.COMPLIANT] == summary.total - summary.counts[RuleStatus.NOT_APPLICABLE]


def test_evaluate_is_deterministic(plan):
    first = [o.model_dump_json() for o in evaluate(plan, _drifted(plan), [_waiver()], NOW)]
    second = [o.model_dump_json() for o in evaluate(plan, list(reversed(_drifted(plan))), [_waiver()], NOW)]
    assert first == second
