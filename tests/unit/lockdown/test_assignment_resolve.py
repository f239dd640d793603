"""The assignment hierarchy, pure: which version a server follows and why, and what its last observation
predicts against another version."""

from __future__ import annotations

import dataclasses
from typing import Any

from lockdown.assignment import Node, Source, State, TagRule, describe, predict, resolve, set_tag_rule

BUILTIN, MSP, CUSTOMER, TAG_FLEET, TAG_OWN, PIN = 1, 2, 3, 4, 5, 6
SERVER, OTHER_SERVER, ACME, GLOBEX = 10, 11, 100, 200
PLESK, EU = 1000, 2000

NODE = Node(server_id=SERVER, customer_id=ACME, tag_ids=frozenset({PLESK, EU}))


def _state(**overrides: Any) -> State:
    return dataclasses.replace(State(builtin_version_id=BUILTIN), **overrides)


def _rule(tag_id: int = PLESK, version: int = TAG_FLEET, **overrides: Any) -> TagRule:
    names = {PLESK: "plesk", EU: "eu-west"}
    return TagRule(
        **{"tag_id": tag_id, "tag_name": names[tag_id], "customer_id": None, "version_id": version, **overrides}
    )


def test_with_nothing_assigned_a_server_follows_the_builtin() -> None:
    found = resolve(NODE, _state())
    assert (found.version_id, found.source, found.blocked_by) == (BUILTIN, Source.BUILTIN, "")
    assert describe(found) == "the built-in profile's latest version"


def test_each_level_overrides_the_one_above() -> None:
    state = _state(msp_version_id=MSP)
    assert resolve(NODE, state).source is Source.MSP
    state = dataclasses.replace(state, customers={ACME: (CUSTOMER, False)})
    assert (resolve(NODE, state).version_id, resolve(NODE, state).source) == (CUSTOMER, Source.CUSTOMER)
    state = dataclasses.replace(state, tag_rules=(_rule(),))
    assert (resolve(NODE, state).version_id, resolve(NODE, state).source) == (TAG_FLEET, Source.TAG)
    state = dataclasses.replace(state, servers={SERVER: (PIN, False)})
    assert (resolve(NODE, state).version_id, resolve(NODE, state).source) == (PIN, Source.SERVER)
    assert describe(resolve(NODE, state)) == "pinned on this server"


def test_a_tag_assignment_reaches_only_servers_with_the_tag_and_of_its_customer() -> None:
    untagged = Node(server_id=OTHER_SERVER, customer_id=ACME)
    assert resolve(untagged, _state(tag_rules=(_rule(),))).source is Source.BUILTIN
    globex_only = _rule(customer_id=GLOBEX)
    assert resolve(NODE, _state(tag_rules=(globex_only,))).source is Source.BUILTIN
    acme_only = _rule(customer_id=ACME)
    found = resolve(NODE, _state(tag_rules=(acme_only,)))
    assert found.source is Source.TAG
    assert describe(found) == "tag plesk (this customer's servers)"


def test_a_customers_own_tag_assignment_wins_then_the_lower_precedence_then_the_name() -> None:
    fleet_first = _rule(PLESK, TAG_FLEET, precedence=1)
    own_later = _rule(EU, TAG_OWN, precedence=50, customer_id=ACME)
    assert resolve(NODE, _state(tag_rules=(fleet_first, own_later))).version_id == TAG_OWN
    low, high = _rule(PLESK, TAG_FLEET, precedence=20), _rule(EU, TAG_OWN, precedence=10)
    assert resolve(NODE, _state(tag_rules=(low, high))).version_id == TAG_OWN
    tie_a, tie_b = _rule(PLESK, TAG_FLEET, precedence=10), _rule(EU, TAG_OWN, precedence=10)
    assert resolve(NODE, _state(tag_rules=(tie_a, tie_b))).version_id == TAG_OWN  # "eu-west" < "plesk"


def test_an_excluded_server_falls_through_to_the_next_level_and_says_so() -> None:
    excluding = _rule(excluded=frozenset({SERVER}))
    state = _state(tag_rules=(excluding,), customers={ACME: (CUSTOMER, False)})
    found = resolve(NODE, state)
    assert (found.version_id, found.source) == (CUSTOMER, Source.CUSTOMER)
    assert describe(found) == "the customer's default; excluded from tag plesk"
    other = Node(server_id=OTHER_SERVER, customer_id=ACME, tag_ids=frozenset({PLESK}))
    assert resolve(other, state).version_id == TAG_FLEET  # the exclusion is of one server only
    second = _rule(EU, TAG_OWN, precedence=200)
    assert resolve(NODE, dataclasses.replace(state, tag_rules=(excluding, second))).version_id == TAG_OWN


def test_a_customer_that_blocks_inheritance_skips_only_the_msp_default() -> None:
    state = _state(msp_version_id=MSP, customers={ACME: (None, True)})
    found = resolve(NODE, state)
    assert (found.version_id, found.blocked_by) == (BUILTIN, "customer")
    assert describe(found).endswith("the customer blocks the MSP default")
    assert resolve(NODE, dataclasses.replace(state, tag_rules=(_rule(),))).version_id == TAG_FLEET
    no_default = _state(customers={ACME: (None, True)})
    assert resolve(NODE, no_default).blocked_by == ""  # nothing was blocked: no MSP default


def test_a_server_that_blocks_inheritance_follows_its_pin_or_the_builtin() -> None:
    state = _state(msp_version_id=MSP, tag_rules=(_rule(),), customers={ACME: (CUSTOMER, False)})
    blocked = dataclasses.replace(state, servers={SERVER: (None, True)})
    found = resolve(NODE, blocked)
    assert (found.version_id, found.blocked_by) == (BUILTIN, "server")
    pinned = dataclasses.replace(state, servers={SERVER: (PIN, True)})
    assert resolve(NODE, pinned).version_id == PIN


def test_a_tag_rule_change_replaces_the_one_of_the_same_tag_and_customer() -> None:
    state = _state(tag_rules=(_rule(), _rule(EU, TAG_OWN, customer_id=ACME)))
    changed = set_tag_rule(_rule(version=PIN), replacing=(PLESK, None))(state)
    assert sorted(r.version_id for r in changed.tag_rules) == [TAG_OWN, PIN]
    removed = set_tag_rule(None, replacing=(EU, ACME))(state)
    assert [r.key for r in removed.tag_rules] == [(PLESK, None)]


def _outcome(rule_id: str, status: str, target: str = "t") -> dict[str, Any]:
    return {
        "rule_id": rule_id,
        "target": target,
        "section": "S",
        "status": status,
        "underlying_status": "drift" if status == "waived" else None,
        "action": "none",
        "expected_text": "",
        "expected": {},
        "observed_text": "",
        "observed": {},
        "reason": "",
        "risk": "low",
        "risk_note": None,
        "waiver_justification": None,
    }


RULE_A, RULE_B, RULE_C = ({"id": name, "expected": "x"} for name in ("a", "b", "c"))


def test_identical_rules_carry_their_outcomes_and_new_or_changed_ones_wait_for_a_verify() -> None:
    outcomes = [_outcome("a", "compliant"), _outcome("a", "drift", "t2"), _outcome("b", "drift")]
    same = predict(outcomes, [RULE_A, RULE_B], [RULE_A, RULE_B])
    assert (same.percent, same.carried_rules, same.to_verify) == (33.3, 2, 0)  # summarize rounds to 0.1
    changed_b = {**RULE_B, "expected": "stricter"}
    found = predict(outcomes, [RULE_A, RULE_B], [RULE_A, changed_b, RULE_C])
    assert (found.percent, found.carried_rules, found.to_verify) == (50.0, 1, 2)
    dropped = predict(outcomes, [RULE_A, RULE_B], [RULE_A])
    assert (dropped.percent, dropped.to_verify) == (50.0, 0)
    # a rule that only gained control mappings judges alike: its outcomes carry
    mapped_b = {**RULE_B, "controls": [{"framework": "nist_800_53", "id": "CM-6"}]}
    remapped = predict(outcomes, [RULE_A, RULE_B], [RULE_A, mapped_b])
    assert (remapped.percent, remapped.carried_rules, remapped.to_verify) == (33.3, 2, 0)


def test_without_the_version_they_were_judged_by_nothing_carries() -> None:
    found = predict([_outcome("a", "compliant")], None, [RULE_A])
    assert (found.percent, found.carried_rules, found.to_verify) == (None, 0, 1)
