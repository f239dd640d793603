"""The built-in profile loads and encodes the guide's flaws; bad profiles fail precisely."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import yaml

from lockdown.rules.builtin import load_builtin_profile
from lockdown.rules.profile import MAX_PROFILE_BYTES, ProfileError, load_profile_text
from lockdown.rules.rule import FileAclRule, FileDenyRule, ServiceIdentityRule, UserRightRule
from lockdown.rules.vocabulary import Condition, Risk


@pytest.fixture(scope="module")
def profile():
    return load_builtin_profile()


def test_builtin_profile_has_its_slug_name_and_every_rule_type(profile):
    assert (profile.slug, profile.name) == ("mailenable-hardened", "MailEnable hardened server")
    assert Counter(r.type for r in profile.rules) == {
        "registry_acl": 4,
        "file_acl": 42,  # 43 rows, msafd.dll twice
        "file_deny": 33,  # 32 rows + nbtstat.exe
        "local_user": 1,
        "local_group": 1,
        "group_member": 1,
        "user_right": 7,
        "sql_grant": 2,
        "service_identity": 4,
        "path_acl": 7,
        "preflight": 3,
    }


def test_msafd_dll_is_one_rule(profile):
    assert [r.id for r in profile.rules if isinstance(r, FileAclRule) and r.target.lower().endswith("msafd.dll")] == [
        "file_acl.system32.msafd_dll"
    ]


def test_nbstat_typo_row_is_kept_and_nbtstat_is_added(profile):
    denies = {r.target: r for r in profile.rules if isinstance(r, FileDenyRule)}
    assert r"[SYSTEM32]\nbstat.exe" in denies
    added = denies[r"[SYSTEM32]\nbtstat.exe"]
    assert added.seed_row is None
    assert "typo" in (added.deviation or "")


def test_system_equivalent_privileges_are_high_risk_and_integrated_auth_only(profile):
    rights = {r.right: r for r in profile.rules if isinstance(r, UserRightRule)}
    for right in ("SeTcbPrivilege", "SeCreateTokenPrivilege"):
        assert rights[right].risk is Risk.HIGH
        assert "SYSTEM-equivalent" in (rights[right].risk_note or "")
    assert rights["SeServiceLogonRight"].condition is Condition.ALWAYS
    assert {r for r, rule in rights.items() if rule.condition is Condition.INTEGRATED_AUTH} == set(rights) - {
        "SeServiceLogonRight"
    }


def test_mail_transfer_agent_move_follows_the_table_and_says_so(profile):
    mta = next(r for r in profile.rules if isinstance(r, ServiceIdentityRule) and r.service == "MEMTAS")
    assert "table" in (mta.deviation or "")


def test_profile_notes_record_each_deviation_from_the_guide(profile):
    notes = " ".join(profile.notes)
    for phrase in ("nbtstat.exe", "msafd.dll", "not_applicable", "Mail Transfer Agent", "SeTcbPrivilege", "SysWOW64"):
        assert phrase in notes


def _rule(**overrides: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "id": "file_acl.system32.example_dll",
        "type": "file_acl",
        "section": "File System Permissions (Access Granted)",
        "description": "d",
        "expected": "e",
        "target": r"[SYSTEM32]\example.dll",
        "principal": "IME_SYSTEM",
        "access": "READ",
    }
    rule.update(overrides)
    return rule


def _text(*rules: dict[str, Any], **top: Any) -> str:
    doc: dict[str, Any] = {"slug": "test-profile", "name": "Test", "version": "1", "rules": list(rules)}
    doc.update(top)
    return yaml.safe_dump(doc)


def test_a_minimal_valid_profile_loads():
    assert load_profile_text(_text(_rule())).rules[0].id == "file_acl.system32.example_dll"


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (
            _rule(type="file_grant"),
            "rule 'file_acl.system32.example_dll', field 'type': unknown rule type 'file_grant'",
        ),
        (_rule(target=r"System32\cmd.exe"), "field 'target': relative paths are not allowed"),
        (_rule(target=r"\\fileserver\share\x.dll"), "field 'target': UNC paths are not allowed"),
        (_rule(target=r"[SYSTEM32]\*.dll"), "field 'target': wildcards are not allowed"),
        (_rule(target="[SYSTEM32]\\cmd\x07.exe"), "field 'target': control characters are not allowed"),
        (_rule(target=r"[SYSTEM32]\..\x.dll"), "field 'target': '.' and '..' segments are not allowed"),
        (_rule(target=r"[NOWHERE]\x.dll"), "field 'target': unknown placeholder [NOWHERE]"),
        (_rule(principal="S-1-5-21-abc"), "field 'principal': malformed SID: 'S-1-5-21-abc'"),
        (_rule(principal="IME/SYSTEM"), "field 'principal': not an account name"),
        (_rule(access="WRITE_ALL"), "field 'access'"),
        (_rule(colour="red"), "field 'colour'"),
        (_rule(risk="high"), "risk_note is required"),
        (
            _rule(id="user_right.se_fly", type="user_right", right="SeFlyPrivilege", target=None, access=None),
            "rule 'user_right.se_fly', field 'right': unknown right name 'SeFlyPrivilege'",
        ),
        (
            _rule(
                id="registry_acl.bad",
                type="registry_acl",
                target=r"HKCU\Software",
                scope="key_only",
                judge="effective_access",
            ),
            "rule 'registry_acl.bad', field 'target': registry targets must start with HKLM",
        ),
    ],
)
def test_bad_rule_gives_a_precise_error_naming_rule_and_field(rule, expected):
    rule = {k: v for k, v in rule.items() if v is not None}
    with pytest.raises(ProfileError) as raised:
        load_profile_text(_text(rule))
    message = str(raised.value)
    assert expected in message
    assert f"rule '{rule['id']}'" in message


def test_duplicate_rule_ids_are_refused_naming_the_id():
    with pytest.raises(ProfileError, match=r"rule 'file_acl\.system32\.example_dll', field 'id': duplicate rule id"):
        load_profile_text(_text(_rule(), _rule(target=r"[SYSTEM32]\other.dll")))


def test_rule_without_id_is_named_by_position():
    rule = _rule()
    del rule["id"]
    with pytest.raises(ProfileError, match=r"rule #2 \(no id\), field 'id'"):
        load_profile_text(_text(_rule(id="file_acl.system32.first"), rule))


def test_oversized_profile_is_refused_before_parsing():
    with pytest.raises(ProfileError, match="larger than"):
        load_profile_text("#" * (MAX_PROFILE_BYTES + 1))


def test_yaml_aliases_are_refused():
    text = "slug: &s test-profile\nname: *s\nversion: '1'\nrules: []\n"
    with pytest.raises(ProfileError, match="aliases"):
        load_profile_text(text)


def test_yaml_tags_that_build_python_objects_are_refused():
    with pytest.raises(ProfileError, match="not valid YAML"):
        load_profile_text("!!python/object/apply:os.system ['true']\n")


def test_unknown_top_level_field_is_refused():
    with pytest.raises(ProfileError, match=r"unknown top-level field\(s\) \['rulez'\]"):
        load_profile_text(_text(_rule(), rulez=[]))
