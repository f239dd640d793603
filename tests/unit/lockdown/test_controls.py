"""Control mappings on rules (issue 14): the model, the profile's catalogue, the built-in profile's mappings."""

from __future__ import annotations

from typing import Any

import pytest

from lockdown.exchange import build_document, document_content
from lockdown.rules import ProfileError
from lockdown.rules.builtin import load_builtin_profile
from lockdown.rules.controls import ControlRef, Framework, Relation
from lockdown.rules.profile import profile_from_data

NIST = {"framework": "nist_800_53", "id": "AC-6", "title": "Least Privilege", "source": "https://csf.tools/ac-6/"}
CIS = {
    "framework": "cis",
    "id": "2.2.4",
    "title": "Act as part of the operating system = No One",
    "benchmark": "CIS Microsoft Windows Server 2022 Benchmark",
    "version": "v4.0.0",
    "relation": "conflicts",
    "source": "https://example.org/cis",
}


def _rule(rule_id: str = "user_right.x.se_tcb", **extra: Any) -> dict[str, Any]:
    return {
        "id": rule_id,
        "type": "user_right",
        "section": "User Rights",
        "description": "IME_SYSTEM holds SeTcbPrivilege.",
        "expected": "IME_SYSTEM holds SeTcbPrivilege.",
        "right": "SeTcbPrivilege",
        "principal": "IME_SYSTEM",
        **extra,
    }


def _profile(rules: list[dict[str, Any]], **extra: Any) -> Any:
    return profile_from_data({"slug": "pp", "name": "P", "version": "1", "rules": rules, **extra})


def test_rules_name_the_catalogue_by_key_or_carry_references_inline() -> None:
    profile = _profile(
        [_rule(controls=["cis-2.2.4", NIST]), _rule("user_right.y.none")],
        controls={"cis-2.2.4": CIS},
    )
    first, second = profile.rules
    assert [c.id for c in first.controls] == ["2.2.4", "AC-6"]
    assert first.controls[0].relation is Relation.CONFLICTS
    assert first.controls[0].key == ("cis", "CIS Microsoft Windows Server 2022 Benchmark v4.0.0", "2.2.4")
    assert first.controls[1].framework is Framework.NIST_800_53
    assert first.controls[1].relation is Relation.SUPPORTS
    assert second.controls == ()


def test_an_unknown_key_names_the_rule_and_the_key() -> None:
    with pytest.raises(ProfileError, match=r"rule 'user_right.x.se_tcb', field 'controls': no control 'cis-9'"):
        _profile([_rule(controls=["cis-9"])], controls={"cis-2.2.4": CIS})


@pytest.mark.parametrize(
    ("ref", "words"),
    [
        ({**CIS, "version": None}, "names its benchmark and version"),
        ({**CIS, "framework": "stig", "benchmark": None}, "names its STIG"),
        ({**NIST, "source": "see the benchmark PDF"}, "source is a URL"),
        ({**NIST, "framework": "pci"}, "framework"),
        ({**NIST, "surprise": 1}, "surprise"),
    ],
)
def test_a_reference_without_what_an_auditor_needs_is_refused(ref: dict[str, Any], words: str) -> None:
    with pytest.raises(ProfileError, match=words):
        _profile([_rule(controls=[ref])])


def test_a_rule_without_controls_is_stored_and_exported_as_before_mappings_existed() -> None:
    rules, _ = document_content(_profile([_rule(), _rule("user_right.y.mapped", controls=[NIST])]))
    assert "controls" not in rules[0]
    assert rules[1]["controls"] == [ControlRef.model_validate(NIST).model_dump(mode="json")]
    document = build_document(slug="pp", name="P", number=1, rules=rules, notes=[])
    assert "controls" not in document["rules"][0]
    assert document["rules"][1]["controls"][0]["id"] == "AC-6"
    assert "controls" not in document  # the catalogue is expanded: the export carries references in full


def test_every_builtin_rule_maps_to_a_control_with_a_source() -> None:
    profile = load_builtin_profile()
    unmapped = [rule.id for rule in profile.rules if not rule.controls]
    assert not unmapped
    assert all(ref.source.startswith(("https://", "http://")) for rule in profile.rules for ref in rule.controls)


def test_the_guides_dangerous_rights_conflict_with_the_cis_and_stig_controls_that_forbid_them() -> None:
    rules = {rule.id: rule for rule in load_builtin_profile().rules}

    def conflicts(rule_id: str) -> set[tuple[str, str]]:
        return {(c.framework.value, c.id) for c in rules[rule_id].controls if c.relation is Relation.CONFLICTS}

    assert {("cis", "2.2.4"), ("stig", "WN22-UR-000020")} <= conflicts("user_right.se_tcb_privilege")
    assert {("cis", "2.2.15"), ("stig", "WN22-UR-000060")} <= conflicts("user_right.se_create_token_privilege")
    assert ("cis", "2.2.8") in conflicts("user_right.se_interactive_logon_right")
    assert ("cis", "2.2.6") in conflicts("user_right.se_increase_quota_privilege")
    cis = next(c for c in rules["user_right.se_tcb_privilege"].controls if c.framework is Framework.CIS)
    assert (cis.benchmark, cis.version) == ("CIS Microsoft Windows Server 2022 Benchmark", "v4.0.0")
    # the one right every server needs supports least privilege, and conflicts with nothing
    assert not conflicts("user_right.se_service_logon_right")
    deny = [rule for rule in rules.values() if rule.id.startswith("file_deny.")]
    assert all({"CM-7", "A.8.18"} <= {c.id for c in rule.controls} for rule in deny)
