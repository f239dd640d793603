"""The exact steps an apply program makes for each drifted rule, the record each journals, and the
inverse of each change (in the program's on_failure, and in a later rollback).

Every step written here changes a customer's host, so the tests pin the arguments byte for byte:
the DACL text written and the one it expects to find, the account flags set and cleared, the
SQL statement and its parameters, the step that undoes each change and the step it waits for.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from lockdown.engine import sddl
from lockdown.engine.changes import (
    ACCOUNT_DESCRIPTION,
    GROUP_DESCRIPTION,
    TRUSTED_INSTALLER,
    ApplyBuilder,
    HostNow,
    Planned,
    acl_inverse,
    build_apply,
    change_read_args,
    dumps,
    is_builtin_service_account,
    merged_dacl,
    records_from,
    search_items,
    simple_inverse,
    substitute,
    var,
)
from lockdown.engine.observe import Observed, Reads
from lockdown.engine.program import Step, StepError, StepResult
from lockdown.rules.contract import ChangeRecord
from lockdown.rules.observed import (
    AccountObservation,
    Ace,
    ObservedItem,
    ServiceObservation,
    SqlObservation,
)
from lockdown.rules.plan import Plan, PlanItem
from lockdown.rules.vocabulary import (
    AceFlag,
    AceType,
    Condition,
    Judge,
    PreflightCheck,
    Risk,
    RuleType,
    TargetKind,
)

HOST = "HOST"
IME = "S-1-5-21-1-2-3-1002"
OTHER = "S-1-5-21-1-2-3-1005"
SYSTEM = "S-1-5-18"
ADMINS = "S-1-5-32-544"
DIR = "C:\\MailEnable\\Bin"
KEY = "HKLM\\SOFTWARE\\Mail Enable"

JUDGES = {
    RuleType.PREFLIGHT: Judge.AV_EXCLUSION_COVERS,
    RuleType.LOCAL_USER: Judge.ACCOUNT_ENABLED,
    RuleType.LOCAL_GROUP: Judge.GROUP_EXISTS,
    RuleType.GROUP_MEMBER: Judge.GROUP_HAS_MEMBER,
    RuleType.USER_RIGHT: Judge.RIGHT_HELD,
    RuleType.FILE_ACL: Judge.EXPLICIT_ALLOW_ACE,
    RuleType.FILE_DENY: Judge.EXPLICIT_DENY_ACE,
    RuleType.REGISTRY_ACL: Judge.EXPLICIT_ALLOW_ACE,
    RuleType.PATH_ACL: Judge.EXPLICIT_ALLOW_ACE,
    RuleType.SQL_GRANT: Judge.SQL_PERMISSIONS,
    RuleType.SERVICE_IDENTITY: Judge.SERVICE_RUNS_AS,
}
KINDS = {
    RuleType.PREFLIGHT: TargetKind.AV_EXCLUSION,
    RuleType.LOCAL_USER: TargetKind.USER,
    RuleType.LOCAL_GROUP: TargetKind.GROUP,
    RuleType.GROUP_MEMBER: TargetKind.MEMBERSHIP,
    RuleType.USER_RIGHT: TargetKind.RIGHT,
    RuleType.FILE_ACL: TargetKind.DIRECTORY,
    RuleType.FILE_DENY: TargetKind.FILE,
    RuleType.REGISTRY_ACL: TargetKind.REGISTRY_KEY,
    RuleType.PATH_ACL: TargetKind.DIRECTORY,
    RuleType.SQL_GRANT: TargetKind.SQL_DATABASE,
    RuleType.SERVICE_IDENTITY: TargetKind.SERVICE,
}


def _item(rule_type: RuleType, target: str, rule_id: str = "r1", **fields: Any) -> PlanItem:
    data: dict[str, Any] = {
        "rule_id": rule_id,
        "rule_type": rule_type,
        "section": "s",
        "description": "d",
        "expected": "e",
        "target": target,
        "target_kind": KINDS[rule_type],
        "condition": Condition.ALWAYS,
        "risk": Risk.LOW,
        "judge": JUDGES[rule_type],
    }
    data.update(fields)
    return PlanItem.model_validate(data)


def _acl(target: str = DIR, rule_id: str = "acl", rule_type: RuleType = RuleType.FILE_ACL, **fields: Any) -> PlanItem:
    data: dict[str, Any] = {"principal_name": "HOST\\IME_SYSTEM", "access_mask": 0x1200A9, "ace_type": AceType.ALLOW}
    data.update(fields)
    return _item(rule_type, target, rule_id, **data)


def _observed(
    items: list[PlanItem],
    sids: dict[str, str | None] | None = None,
    sds: list[tuple[dict[str, Any], dict[str, Any] | None]] = (),  # type: ignore[assignment]
) -> Observed:
    plan = Plan(profile_slug="p", profile_version="1", computer_name=HOST, items=items)
    reads = Reads(prefix="r", plan=plan)
    results: dict[str, StepResult] = {}
    if sids is not None:
        sid_id = reads._add(("sids",), "sid_lookup", {"names": list(sids)})
        results[sid_id] = StepResult(id=sid_id, op="sid_lookup", status="ok", result={"sids": sids})
    for args, data in sds:
        sd_id = reads.sd(args)
        if data is None:
            error = StepError(code="win32_5", message="denied")
            results[sd_id] = StepResult(id=sd_id, op="sd_read", status="error", error=error)
        else:
            results[sd_id] = StepResult(id=sd_id, op="sd_read", status="ok", result=data)
    return Observed(reads, results)


def _builder(observed: Observed | None = None, **fields: Any) -> ApplyBuilder:
    return ApplyBuilder(computer=HOST, observed=observed or _observed([]), items={}, **fields)


def _obs(item: PlanItem, **fields: Any) -> ObservedItem:
    return ObservedItem(rule_id=item.rule_id, target=item.target, **fields)


def _journal(step: Step) -> dict[str, Any]:
    assert step.journal is not None
    return step.journal


# --- small helpers --------------------------------------------------------------------------------


def test_dumps_is_sorted_compact_json_and_var_is_a_placeholder() -> None:
    assert dumps({"b": [1, None], "a": "x"}) == '{"a":"x","b":[1,null]}'
    assert var("SID_1") == "{{SID_1}}"


@pytest.mark.parametrize(
    ("name", "builtin"),
    [(None, True), ("", True), ("LocalSystem", True), (".\\LOCALSYSTEM", True), ("NT AUTHORITY\\SYSTEM", True),
     ("NT AUTHORITY\\LocalService", True), ("nt authority\\local service", True),
     ("NT AUTHORITY\\NetworkService", True), ("NT AUTHORITY\\Network Service", True),
     (".\\IME_SYSTEM", False), ("HOST\\Administrator", False), ("LocalSystem2", False)],
)  # fmt: skip
def test_builtin_service_accounts_need_no_password(name: str | None, builtin: bool) -> None:
    assert is_builtin_service_account(name) is builtin


def test_search_items_are_the_search_and_indexing_preflights() -> None:
    items = [
        _item(RuleType.PREFLIGHT, "WSearch", "a", preflight_check=PreflightCheck.WINDOWS_SEARCH_STOPPED),
        _item(RuleType.PREFLIGHT, "C:\\x", "b", preflight_check=PreflightCheck.AV_EXCLUSION),
        _item(RuleType.PREFLIGHT, "CiSvc", "c", preflight_check=PreflightCheck.INDEXING_SERVICE_STOPPED),
        _item(RuleType.PREFLIGHT, "none", "d"),
    ]
    assert [i.rule_id for i in search_items(items)] == ["a", "c"]


def test_substitute_fills_every_variable_and_keeps_none() -> None:
    assert substitute(None, {"A": "x"}) is None
    assert substitute("{{A}}-{{B}}-{{A}}-{{C}}", {"A": "1", "B": "2"}) == "1-2-1-{{C}}"


# --- merging ACEs like .NET's AddAccessRule ----------------------------------------------------


def _ace(sid: str, mask: int, kind: AceType = AceType.ALLOW, *flags: AceFlag) -> Ace:
    return Ace(sid=sid, type=kind, mask=mask, flags=list(flags))


def test_merge_keeps_apart_aces_that_differ_in_type_or_flags() -> None:
    existing = [_ace(IME, 0x1, AceType.DENY), _ace(IME, 0x2, AceType.ALLOW, AceFlag.CONTAINER_INHERIT)]
    add = [(_ace(IME, 0x4), None), (_ace(IME, 0x8, AceType.ALLOW, AceFlag.OBJECT_INHERIT), None)]
    merged = merged_dacl(existing, add)
    assert [(a.type, a.mask, a.flags) for a, _ in merged] == [
        (AceType.DENY, 0x1, []),
        (AceType.ALLOW, 0x2, [AceFlag.CONTAINER_INHERIT]),
        (AceType.ALLOW, 0x4, []),
        (AceType.ALLOW, 0x8, [AceFlag.OBJECT_INHERIT]),
    ]


def test_merge_matches_flags_in_any_order_and_ors_only_the_first_match() -> None:
    both = (AceFlag.CONTAINER_INHERIT, AceFlag.OBJECT_INHERIT)
    existing = [_ace(IME, 0x1, AceType.ALLOW, *both), _ace(IME, 0x2, AceType.ALLOW, *reversed(both))]
    merged = merged_dacl(existing, [(_ace(IME, 0x10, AceType.ALLOW, *reversed(both)), None)])
    assert [a.mask for a, _ in merged] == [0x11, 0x2]
    assert [v for _, v in merged] == [None, None]


def test_merge_of_a_deny_goes_after_the_denies_before_the_first_allow_or_last() -> None:
    existing = [_ace(OTHER, 0x1, AceType.DENY), _ace(SYSTEM, 0x1F01FF), _ace(OTHER, 0x2)]
    merged = merged_dacl(existing, [(_ace(IME, 0x4, AceType.DENY), None)])
    assert [(a.sid, a.type) for a, _ in merged] == [
        (OTHER, AceType.DENY),
        (IME, AceType.DENY),
        (SYSTEM, AceType.ALLOW),
        (OTHER, AceType.ALLOW),
    ]
    only_denies = merged_dacl([_ace(OTHER, 0x1, AceType.DENY)], [(_ace(IME, 0x4, AceType.DENY), None)])
    assert [a.sid for a, _ in only_denies] == [OTHER, IME]
    assert [a.sid for a, _ in merged_dacl([], [(_ace(IME, 0x4, AceType.DENY), None)])] == [IME]


def test_merge_of_a_placeholder_matches_by_variable_not_by_sid() -> None:
    placeholder = _ace("S-1-0-0", 0x1)
    merged = merged_dacl([_ace("S-1-0-0", 0x8)], [(placeholder, "{{SID_1}}"), (_ace("S-1-0-0", 0x2), "{{SID_1}}")])
    assert [(a.sid, a.mask, v) for a, v in merged] == [("S-1-0-0", 0x8, None), ("S-1-0-0", 0x3, "{{SID_1}}")]
    deny = merged_dacl([_ace(SYSTEM, 0x1)], [(_ace("S-1-0-0", 0x4, AceType.DENY), "{{SID_1}}")])
    assert deny[0] == (_ace("S-1-0-0", 0x4, AceType.DENY), "{{SID_1}}")


def test_merge_does_not_change_the_aces_it_was_given() -> None:
    existing = [_ace(IME, 0x1)]
    merged_dacl(existing, [(_ace(IME, 0x2), None)])
    assert existing == [_ace(IME, 0x1)]


# --- accounts ---------------------------------------------------------------------------------


def _user(**fields: Any) -> PlanItem:
    return _item(RuleType.LOCAL_USER, "HOST\\IME_SYSTEM", "user", principal_name="HOST\\IME_SYSTEM", **fields)


def test_a_missing_user_is_created_with_its_record_and_deleted_by_its_inverse() -> None:
    item = _user(password_never_expires=True)
    builder = _builder()
    builder.local_user(item, _obs(item))
    (step,) = builder.steps
    assert step.id == "c1.user_create"
    assert step.op == "user_create"
    assert step.bind == {"SID_1": "sid"}
    assert step.args == {
        "name": "IME_SYSTEM",
        "password": "{{SERVICE_PASSWORD}}",
        "flags": 0x40 | 0x10000,
        "description": ACCOUNT_DESCRIPTION,
    }
    created = '{"flags":65600,"name":"IME_SYSTEM","sid":"{{SID_1}}"}'
    assert _journal(step) == {
        "rule_id": "user",
        "target": "HOST\\IME_SYSTEM",
        "target_kind": "user",
        "before": None,
        "after": created,
        "created_object": True,
        "sequence": 0,
    }
    assert builder.planned == [
        Planned("c1.user_create", "user", "HOST\\IME_SYSTEM", TargetKind.USER, None, created, created=True)
    ]
    (undo,) = builder.undo
    assert undo == Step(
        id="u.c1.user_create",
        op="user_delete",
        args={"name": "IME_SYSTEM", "sid": "{{SID_1}}"},
        when_done="c1.user_create",
    )
    assert builder.sid_vars == {"ime_system": "SID_1", "host\\ime_system": "SID_1"}
    assert builder.problems == {}


def test_a_created_user_that_may_expire_gets_only_cannot_change_password() -> None:
    item = _item(RuleType.LOCAL_USER, "IME_ADMIN", "user", password_never_expires=False)
    builder = _builder()
    builder.local_user(item, _obs(item, account=AccountObservation(exists=False)))
    assert builder.steps[0].args["flags"] == 0x40
    assert builder.steps[0].args["name"] == "IME_ADMIN"
    assert builder.sid_vars == {"ime_admin": "SID_1", "host\\ime_admin": "SID_1", "": "SID_1"}


def test_an_existing_user_is_enabled_and_set_to_never_expire_and_its_inverse_undoes_exactly_that() -> None:
    item = _user(password_never_expires=True)
    builder = _builder()
    builder.local_user(item, _obs(item, account=AccountObservation(exists=True, sid=IME, user_flags=0x202)))
    (step,) = builder.steps
    assert (step.id, step.op) == ("c1.user_flags", "user_set_flags")
    assert step.args == {"name": "IME_SYSTEM", "set": 0x10000, "clear": 0x2}
    journal = _journal(step)
    assert journal["before"] == dumps({"name": "IME_SYSTEM", "sid": IME, "flags": 0x202})
    assert journal["after"] == dumps({"name": "IME_SYSTEM", "sid": IME, "flags": 0x10200})
    assert journal["created_object"] is False
    assert journal["target_kind"] == "user"
    (undo,) = builder.undo
    assert undo == Step(
        id="u.c1.user_flags",
        op="user_set_flags",
        args={"name": "IME_SYSTEM", "set": 0x2, "clear": 0x10000},
        when_done="c1.user_flags",
    )
    assert builder.sid_vars == {}
    assert builder.planned == [
        Planned(
            "c1.user_flags",
            "user",
            "HOST\\IME_SYSTEM",
            TargetKind.USER,
            journal["before"],
            journal["after"],
        )
    ]


def test_an_existing_user_that_may_expire_is_only_enabled() -> None:
    item = _user(password_never_expires=None)
    builder = _builder()
    builder.local_user(item, _obs(item, account=AccountObservation(exists=True, sid=IME, user_flags=0x10202)))
    assert builder.steps[0].args == {"name": "IME_SYSTEM", "set": 0, "clear": 0x2}
    assert builder.undo[0].args == {"name": "IME_SYSTEM", "set": 0x2, "clear": 0}


def test_an_existing_user_with_unknown_flags_gets_never_expire() -> None:
    item = _user(password_never_expires=True)
    builder = _builder()
    builder.local_user(item, _obs(item, account=AccountObservation(exists=True, sid=IME)))
    assert builder.steps[0].args == {"name": "IME_SYSTEM", "set": 0x10000, "clear": 0}
    assert _journal(builder.steps[0])["before"] == dumps({"name": "IME_SYSTEM", "sid": IME, "flags": 0})


@pytest.mark.parametrize(("flags", "never_expires"), [(0x10200, True), (0x200, False), (0x10200, False)])
def test_a_user_already_enabled_with_the_flags_wanted_is_left_alone(flags: int, never_expires: bool) -> None:
    item = _user(password_never_expires=never_expires)
    builder = _builder()
    builder.local_user(item, _obs(item, account=AccountObservation(exists=True, sid=IME, user_flags=flags)))
    assert builder.steps == []
    assert builder.planned == []


def test_a_missing_group_is_created_and_its_members_refer_to_its_new_sid() -> None:
    group = _item(RuleType.LOCAL_GROUP, "HOST\\IME_STORE", "group", group_name="HOST\\IME_STORE")
    builder = _builder()
    builder.local_group(group, _obs(group))
    (step,) = builder.steps
    assert (step.id, step.op) == ("c1.group_create", "group_create")
    assert step.bind == {"SID_1": "sid"}
    assert step.args == {"name": "IME_STORE", "description": GROUP_DESCRIPTION}
    journal = _journal(step)
    assert journal["before"] is None
    assert journal["after"] == '{"name":"IME_STORE","sid":"{{SID_1}}"}'
    assert journal["created_object"] is True
    assert journal["target_kind"] == "group"
    assert builder.undo == [
        Step(
            id="u.c1.group_create",
            op="group_delete",
            args={"name": "IME_STORE", "sid": "{{SID_1}}"},
            when_done="c1.group_create",
        )
    ]
    assert builder.sid_vars == {"ime_store": "SID_1", "host\\ime_store": "SID_1"}
    member = _item(RuleType.GROUP_MEMBER, "HOST\\Users", "m", principal_name="ime_store", group_name="Users")
    builder.group_member(member, _obs(member, group_member_sids=[OTHER]))
    assert builder.steps[1].args == {"group": "Users", "sid": "{{SID_1}}"}


def test_a_group_without_group_name_is_named_by_its_target() -> None:
    group = _item(RuleType.LOCAL_GROUP, "IME_STORE", "group")
    builder = _builder()
    builder.local_group(group, _obs(group, account=AccountObservation(exists=False)))
    assert builder.steps[0].args["name"] == "IME_STORE"
    assert builder.sid_vars == {"ime_store": "SID_1", "host\\ime_store": "SID_1", "": "SID_1"}


def test_an_existing_group_is_left_alone() -> None:
    group = _item(RuleType.LOCAL_GROUP, "IME_STORE", "group")
    builder = _builder()
    builder.local_group(group, _obs(group, account=AccountObservation(exists=True, sid=OTHER)))
    assert builder.steps == []
    assert builder.sid_vars == {}


def test_accounts_created_in_one_program_get_distinct_variables() -> None:
    user = _user()
    group = _item(RuleType.LOCAL_GROUP, "HOST\\IME_STORE", "group", group_name="IME_STORE")
    builder = _builder()
    builder.local_user(user, _obs(user))
    builder.local_group(group, _obs(group))
    (user_var,), (group_var,) = builder.steps[0].bind, builder.steps[1].bind
    assert user_var != group_var
    assert builder.steps[1].id == "c2.group_create"
    assert _journal(builder.steps[1])["sequence"] == 1
    assert builder.sid_vars["ime_store"] == group_var
    assert builder.sid_vars["ime_system"] == user_var


# --- membership and rights -------------------------------------------------------------------------


def test_principal_is_a_created_account_variable_then_the_plan_sid_then_the_looked_up_sid() -> None:
    observed = _observed([], sids={"HOST\\IME_SYSTEM": IME.lower(), "HOST\\NOBODY": None})
    builder = _builder(observed)
    looked_up = _item(RuleType.USER_RIGHT, "SeServiceLogonRight", principal_name="host\\ime_system")
    assert builder.principal(looked_up) == IME
    assert builder.principal(looked_up.model_copy(update={"principal_sid": OTHER})) == OTHER
    assert builder.principal(looked_up.model_copy(update={"principal_name": "HOST\\NOBODY"})) is None
    assert builder.principal(looked_up.model_copy(update={"principal_name": None})) is None
    builder.sid_vars["host\\ime_system"] = "SID_3"
    assert builder.principal(looked_up.model_copy(update={"principal_sid": OTHER})) == "{{SID_3}}"


def test_a_member_is_added_with_the_membership_it_makes_and_removed_by_its_inverse() -> None:
    item = _item(RuleType.GROUP_MEMBER, "HOST\\IME_STORE", "m", principal_name="x", principal_sid=IME)
    builder = _builder()
    builder.group_member(item, _obs(item, group_member_sids=[OTHER]))
    (step,) = builder.steps
    assert (step.id, step.op, step.args) == ("c1.member_add", "group_member_add", {"group": "IME_STORE", "sid": IME})
    journal = _journal(step)
    assert journal["target_kind"] == "membership"
    assert journal["before"] == json.dumps({"members": [OTHER]}, separators=(",", ":"))
    assert journal["after"] == json.dumps({"members": [OTHER, IME]}, separators=(",", ":"))
    assert builder.undo == [
        Step(
            id="u.c1.member_add",
            op="group_member_remove",
            args={"group": "IME_STORE", "sid": IME},
            when_done="c1.member_add",
        )
    ]


def test_a_member_of_an_unread_group_and_a_named_group() -> None:
    item = _item(RuleType.GROUP_MEMBER, "x", "m", principal_sid=IME, group_name="HOST\\Store")
    builder = _builder()
    builder.group_member(item, _obs(item))
    assert builder.steps[0].args == {"group": "Store", "sid": IME}
    assert _journal(builder.steps[0])["before"] == '{"members":[]}'


def test_a_principal_with_no_sid_is_a_problem_not_a_step() -> None:
    observed = _observed([], sids={"HOST\\NOBODY": None})
    builder = _builder(observed)
    member = _item(RuleType.GROUP_MEMBER, "HOST\\IME_STORE", "m", principal_name="HOST\\NOBODY")
    right = _item(RuleType.USER_RIGHT, "SeServiceLogonRight", "r", principal_name="HOST\\NOBODY")
    builder.group_member(member, _obs(member))
    builder.user_right(right, _obs(right))
    message = "HOST\\NOBODY does not exist on this host (no SID to grant to)"
    assert builder.problems == {member.key: message, right.key: message}
    assert builder.steps == []
    assert builder.undo == []


def test_a_right_is_granted_with_the_holders_it_makes_and_revoked_by_its_inverse() -> None:
    item = _item(RuleType.USER_RIGHT, "logon", "r", principal_sid=IME, right="SeServiceLogonRight")
    builder = _builder()
    builder.user_right(item, _obs(item, right_holder_sids=[OTHER]))
    (step,) = builder.steps
    assert (step.id, step.op) == ("c1.lsa_add", "lsa_add")
    assert step.args == {"sid": IME, "right": "SeServiceLogonRight"}
    journal = _journal(step)
    assert journal["target_kind"] == "right"
    assert journal["target"] == "logon"
    assert journal["before"] == dumps({"right": "SeServiceLogonRight", "holders": [OTHER]})
    assert journal["after"] == dumps({"right": "SeServiceLogonRight", "holders": [OTHER, IME]})
    assert builder.undo == [
        Step(
            id="u.c1.lsa_add",
            op="lsa_remove",
            args={"sid": IME, "right": "SeServiceLogonRight"},
            when_done="c1.lsa_add",
        )
    ]


def test_a_right_named_by_its_target() -> None:
    item = _item(RuleType.USER_RIGHT, "SeBatchLogonRight", "r", principal_sid=IME)
    builder = _builder()
    builder.user_right(item, _obs(item))
    assert builder.steps[0].args == {"sid": IME, "right": "SeBatchLogonRight"}
    assert _journal(builder.steps[0])["before"] == dumps({"right": "SeBatchLogonRight", "holders": []})


# --- ACLs -----------------------------------------------------------------------------------------------


def _sd(text: str, obj: str | None = "directory", exists: bool = True) -> dict[str, Any]:
    return {"exists": exists, "object": obj, "sddl": text}


def _acl_builder(
    items: list[PlanItem], data: dict[str, Any] | None, sids: dict[str, str | None] | None = None
) -> ApplyBuilder:
    from lockdown.engine.observe import acl_read_args

    observed = _observed(items, sids or {"HOST\\IME_SYSTEM": IME}, [(acl_read_args(items[0]), data)])
    return _builder(observed)


def test_an_allow_is_merged_into_the_dacl_written_with_the_dacl_read_as_expected() -> None:
    text = "O:BAD:AI(A;OICI;FA;;;SY)(A;OICIID;FR;;;BU)"
    item = _acl(ace_flags=[AceFlag.OBJECT_INHERIT, AceFlag.CONTAINER_INHERIT])
    builder = _acl_builder([item], _sd(text))
    builder.acl_object([item])
    (step,) = builder.steps
    new = f"D:AI(A;OICI;0x1f01ff;;;S-1-5-18)(A;OICI;0x1200a9;;;{IME})"
    assert step.id == "c1.dacl"
    assert step.op == "dacl_write"
    assert step.args == {
        "kind": "path",
        "path": DIR,
        "object": "directory",
        "sddl": new,
        "expected": text,
        "take_ownership": False,
    }
    assert step.bind == {"AFTER_C1": "after"}
    journal = _journal(step)
    assert journal == {
        "rule_id": "acl",
        "target": DIR,
        "target_kind": "directory",
        "before": text,
        "after": "O:BA" + new,
        "created_object": False,
        "sequence": 0,
    }
    assert builder.planned == [Planned("c1.dacl", "acl", DIR, TargetKind.DIRECTORY, text, "O:BA" + new, written=new)]
    assert builder.undo == [
        Step(
            id="u.c1.dacl",
            op="dacl_write",
            args={
                "kind": "path",
                "path": DIR,
                "object": "directory",
                "sddl": "D:AI(A;OICI;0x1f01ff;;;S-1-5-18)",
                "expected": "{{AFTER_C1}}",
                "take_ownership": False,
            },
            when_done="c1.dacl",
        )
    ]


def test_a_deny_goes_before_the_first_allow_and_protection_is_kept() -> None:
    text = f"O:SYD:PAI(D;;0x1;;;{OTHER})(A;;FA;;;SY)"
    item = _acl(target="C:\\ME\\a.exe", rule_type=RuleType.FILE_DENY, ace_type=AceType.DENY, access_mask=0x1200A9)
    builder = _acl_builder([item], _sd(text, obj="file"))
    builder.acl_object([item])
    (step,) = builder.steps
    assert step.args["sddl"] == f"D:PAI(D;;0x1;;;{OTHER})(D;;0x1200a9;;;{IME})(A;;0x1f01ff;;;S-1-5-18)"
    assert step.args["object"] == "file"
    assert _journal(step)["target_kind"] == "file"
    assert builder.undo[0].args["sddl"] == f"D:PAI(D;;0x1;;;{OTHER})(A;;0x1f01ff;;;S-1-5-18)"


def test_a_trustedinstaller_object_is_written_taking_ownership_and_so_is_its_undo() -> None:
    text = f"O:{TRUSTED_INSTALLER}D:PAI(A;;FA;;;{TRUSTED_INSTALLER})"
    item = _acl()
    builder = _acl_builder([item], _sd(text, obj=None))
    builder.acl_object([item])
    (step,) = builder.steps
    assert step.args["take_ownership"] is True
    assert step.args["object"] == "file"  # the host did not say: a file
    assert builder.undo[0].args["take_ownership"] is True
    assert _journal(step)["after"] == f"O:{TRUSTED_INSTALLER}" + step.args["sddl"]
    assert _journal(step)["target_kind"] == "file"


def test_a_registry_key_is_written_through_the_64_bit_view() -> None:
    text = "O:SYD:PAI(A;CI;KA;;;SY)"
    item = _acl(target=KEY, rule_type=RuleType.REGISTRY_ACL, access_mask=0x20019, ace_flags=[AceFlag.CONTAINER_INHERIT])
    builder = _acl_builder([item], _sd(text, obj="key"))
    builder.acl_object([item])
    (step,) = builder.steps
    assert step.args == {
        "kind": "key",
        "path": KEY,
        "view": 64,
        "object": "key",
        "sddl": f"D:PAI(A;CI;0xf003f;;;S-1-5-18)(A;CI;0x20019;;;{IME})",
        "expected": text,
        "take_ownership": False,
    }
    assert _journal(step)["target_kind"] == "registry_key"
    assert builder.undo[0].args["view"] == 64


def test_an_ace_type_not_given_is_an_allow_and_a_mask_not_given_is_zero() -> None:
    text = "O:SYD:AI"
    item = _acl(ace_type=None, access_mask=None)
    builder = _acl_builder([item], _sd(text))
    builder.acl_object([item])
    assert builder.steps[0].args["sddl"] == f"D:AI(A;;0x0;;;{IME})"


def test_an_ace_for_an_account_this_program_creates_is_written_with_its_variable() -> None:
    text = "O:SYD:AI(A;;FA;;;SY)"
    item = _acl()
    builder = _acl_builder([item], _sd(text), sids={})
    builder.sid_vars["host\\ime_system"] = "SID_1"
    builder.acl_object([item])
    (step,) = builder.steps
    assert step.args["sddl"] == "D:AI(A;;0x1f01ff;;;S-1-5-18)(A;;0x1200a9;;;{{SID_1}})"
    assert _journal(step)["after"] == "O:SY" + step.args["sddl"]


def test_every_rule_on_one_object_is_one_write_with_a_record_each() -> None:
    text = "O:SYD:AI(A;;FA;;;SY)"
    read = _acl(rule_id="read", access_mask=0x1200A9)
    write = _acl(rule_id="write", access_mask=0x116, ace_flags=[])
    deny = _acl(rule_id="deny", ace_type=AceType.DENY, access_mask=0x40)
    builder = _acl_builder([read, write, deny], _sd(text))
    builder.acl_object([read, write, deny])
    (step,) = builder.steps
    new = f"D:AI(D;;0x40;;;{IME})(A;;0x1f01ff;;;S-1-5-18)(A;;0x1201bf;;;{IME})"
    assert step.args["sddl"] == new
    assert len(builder.undo) == 1
    assert [(p.rule_id, p.step_id, p.before, p.after, p.written) for p in builder.planned] == [
        ("read", "c1.dacl", text, "O:SY" + new, new),
        ("write", "c1.dacl", text, "O:SY" + new, new),
        ("deny", "c1.dacl", text, "O:SY" + new, new),
    ]
    assert _journal(step)["rule_id"] == "read"


def test_a_rule_on_an_object_with_no_sid_is_a_problem_and_the_next_rule_carries_the_journal() -> None:
    text = "O:SYD:AI(A;;FA;;;SY)"
    nobody = _acl(rule_id="nobody", principal_name="HOST\\NOBODY")
    mine = _acl(rule_id="mine")
    builder = _acl_builder([nobody, mine], _sd(text), sids={"HOST\\IME_SYSTEM": IME, "HOST\\NOBODY": None})
    builder.acl_object([nobody, mine])
    assert builder.problems == {nobody.key: "HOST\\NOBODY does not exist on this host (no SID to grant to)"}
    (step,) = builder.steps
    assert _journal(step)["rule_id"] == "mine"
    assert [p.rule_id for p in builder.planned] == ["mine"]
    assert len(builder.undo) == 1


def test_a_second_object_gets_its_own_write_after_an_earlier_one() -> None:
    from lockdown.engine.observe import acl_read_args

    first, second = _acl(target="C:\\a", rule_id="a"), _acl(target="C:\\b", rule_id="b")
    sds = [(acl_read_args(first), _sd("O:SYD:AI")), (acl_read_args(second), _sd("O:SYD:AI"))]
    builder = _builder(_observed([first, second], {"HOST\\IME_SYSTEM": IME}, sds))
    builder.acl_object([first])
    builder.acl_object([second])
    assert [s.id for s in builder.steps] == ["c1.dacl", "c2.dacl"]
    assert [_journal(s)["sequence"] for s in builder.steps] == [0, 1]
    assert builder.steps[1].bind == {"AFTER_C2": "after"}
    assert builder.undo[1].args["expected"] == "{{AFTER_C2}}"


@pytest.mark.parametrize(
    "data",
    [None, _sd("O:SYD:AI", exists=False), {"exists": True, "object": "file", "sddl": None}, {"sddl": "O:SYD:AI"}],
)
def test_an_object_not_read_absent_or_without_sddl_gets_no_write(data: dict[str, Any] | None) -> None:
    item = _acl()
    builder = _acl_builder([item], data)
    builder.acl_object([item])
    assert builder.steps == []
    assert builder.planned == []
    assert builder.problems == {}


def test_an_object_whose_only_rule_has_no_sid_gets_no_write() -> None:
    item = _acl(principal_name="HOST\\NOBODY")
    builder = _acl_builder([item], _sd("O:SYD:AI"), sids={"HOST\\NOBODY": None})
    builder.acl_object([item])
    assert builder.steps == []
    assert builder._n == 0
    assert list(builder.problems) == [item.key]


# --- SQL -----------------------------------------------------------------------------------------------


def _sql_item(judge: Judge, **fields: Any) -> PlanItem:
    data: dict[str, Any] = {"principal_name": "HOST\\IME_SYSTEM", "judge": judge}
    data.update(fields)
    return _item(RuleType.SQL_GRANT, "MailEnable", "sql", **data)


def test_a_missing_login_and_user_are_created_and_dropped_by_their_inverses() -> None:
    item = _sql_item(Judge.SQL_LOGIN_AND_USER, sql_database="MEdb", sql_instance=".\\SQLEXPRESS")
    builder = _builder()
    builder.sql(item, _obs(item, sql=SqlObservation(login_exists=False, user_exists=False)))
    login, user = builder.steps
    assert login.id == "c1.sql_login"
    assert login.op == "sql"
    assert login.args == {
        "instance": ".\\SQLEXPRESS",
        "statement": "create_login",
        "params": {"login": "HOST\\IME_SYSTEM"},
    }
    assert user.id == "c3.sql_user"
    assert user.args == {
        "instance": ".\\SQLEXPRESS",
        "statement": "create_user",
        "params": {"database": "MEdb", "user": "HOST\\IME_SYSTEM", "login": "HOST\\IME_SYSTEM"},
    }
    assert _journal(login) == {
        "rule_id": "sql",
        "target": "MailEnable",
        "target_kind": "sql_database",
        "before": '{"login":null}',
        "after": dumps({"login": "HOST\\IME_SYSTEM", "login_created": True, "instance": ".\\SQLEXPRESS"}),
        "created_object": True,
        "sequence": 0,
    }
    journal = _journal(user)
    assert journal["before"] == '{"user":null}'
    assert journal["after"] == dumps({"user": "HOST\\IME_SYSTEM", "user_created": True, "instance": ".\\SQLEXPRESS"})
    assert journal["created_object"] is True
    assert journal["sequence"] == 1
    assert builder.undo == [
        Step(
            id="u.c1.sql_login",
            op="sql",
            args={"instance": ".\\SQLEXPRESS", "statement": "drop_login", "params": {"login": "HOST\\IME_SYSTEM"}},
            when_done="c1.sql_login",
        ),
        Step(
            id="u.c3.sql_user",
            op="sql",
            args={
                "instance": ".\\SQLEXPRESS",
                "statement": "drop_user",
                "params": {"database": "MEdb", "user": "HOST\\IME_SYSTEM"},
            },
            when_done="c3.sql_user",
        ),
    ]


def test_only_what_is_missing_of_login_and_user_is_created() -> None:
    item = _sql_item(Judge.SQL_LOGIN_AND_USER)
    builder = _builder()
    builder.sql(item, _obs(item, sql=SqlObservation(login_exists=True, user_exists=False)))
    (step,) = builder.steps
    assert step.args["statement"] == "create_user"
    assert step.args["instance"] == "."
    assert step.args["params"]["database"] == "MailEnable"
    other = _builder()
    other.sql(item, _obs(item, sql=SqlObservation(login_exists=False, user_exists=True)))
    assert [s.args["statement"] for s in other.steps] == ["create_login"]
    done = _builder()
    done.sql(item, _obs(item, sql=SqlObservation(login_exists=True, user_exists=True, permissions=[])))
    assert done.steps == []


def test_missing_permissions_are_granted_one_by_one_and_revoked_by_their_inverses() -> None:
    item = _sql_item(Judge.SQL_PERMISSIONS, sql_permissions=["SELECT", "UPDATE", "INSERT"])
    builder = _builder()
    builder.sql(item, _obs(item, sql=SqlObservation(login_exists=True, user_exists=True, permissions=["select"])))
    insert, update = builder.steps
    assert insert.id == "c1.sql_grant"
    assert insert.args == {
        "instance": ".",
        "statement": "grant",
        "params": {"database": "MailEnable", "permission": "INSERT", "user": "HOST\\IME_SYSTEM"},
    }
    assert update.id == "c3.sql_grant"
    assert update.args["params"]["permission"] == "UPDATE"
    assert _journal(insert)["before"] == dumps({"user": "HOST\\IME_SYSTEM", "permissions": ["SELECT"]})
    assert _journal(insert)["after"] == dumps(
        {"user": "HOST\\IME_SYSTEM", "permissions": ["INSERT", "SELECT"], "instance": "."}
    )
    assert _journal(insert)["created_object"] is False
    assert _journal(update)["after"] == dumps(
        {"user": "HOST\\IME_SYSTEM", "permissions": ["SELECT", "UPDATE"], "instance": "."}
    )
    assert builder.undo[0] == Step(
        id="u.c1.sql_grant",
        op="sql",
        args={
            "instance": ".",
            "statement": "revoke",
            "params": {"database": "MailEnable", "permission": "INSERT", "user": "HOST\\IME_SYSTEM"},
        },
        when_done="c1.sql_grant",
    )


def test_sql_not_observed_or_without_a_principal() -> None:
    item = _sql_item(Judge.SQL_PERMISSIONS, sql_permissions=["SELECT"], principal_name=None)
    builder = _builder()
    builder.sql(item, _obs(item))
    assert builder.steps == []
    builder.sql(item, _obs(item, sql=SqlObservation()))
    assert builder.steps[0].args["params"] == {"database": "MailEnable", "permission": "SELECT", "user": ""}


# --- services --------------------------------------------------------------------------------------


def _svc_item(**fields: Any) -> PlanItem:
    data: dict[str, Any] = {"principal_name": ".\\IME_SYSTEM", "principal_sid": IME}
    data.update(fields)
    return _item(RuleType.SERVICE_IDENTITY, "MEMTAS", "svc", **data)


def _svc(**fields: Any) -> ServiceObservation:
    data: dict[str, Any] = {"exists": True, "start_name": "LocalSystem", "state": "Running", "start_mode": "Auto"}
    data.update(fields)
    return ServiceObservation(**data)


def test_a_service_is_moved_to_the_account_and_put_back_by_its_inverse() -> None:
    item = _svc_item()
    builder = _builder()
    builder.service(item, _obs(item, service=_svc()))
    (step,) = builder.steps
    assert step.id == "c1.svc_change"
    assert step.op == "service_change"
    assert step.expect == {"return_value": 0}
    assert step.critical is False
    assert step.args == {"name": "MEMTAS", "start_name": ".\\IME_SYSTEM", "password": "{{SERVICE_PASSWORD}}"}
    before = {"start_name": "LocalSystem", "state": "Running", "start_mode": "Auto"}
    journal = _journal(step)
    assert journal["target_kind"] == "service"
    assert journal["before"] == dumps(before)
    assert journal["after"] == dumps({**before, "start_name": ".\\IME_SYSTEM"})
    assert builder.undo == [
        Step(
            id="u.c1.svc_change",
            op="service_change",
            args={"name": "MEMTAS", "start_name": "LocalSystem", "password": ""},
            when_done="c1.svc_change",
        )
    ]
    assert builder.services_changed == ["MEMTAS"]
    assert builder.problems == {}


def test_a_stopped_service_is_moved_but_not_restarted_and_a_nameless_one_goes_back_to_localsystem() -> None:
    item = _svc_item()
    builder = _builder()
    builder.service(item, _obs(item, service=_svc(start_name=None, state="Stopped")))
    assert builder.undo[0].args == {"name": "MEMTAS", "start_name": "LocalSystem", "password": ""}
    assert builder.services_changed == []
    other = _builder()
    other.service(item, _obs(item, service=_svc(start_name="NT AUTHORITY\\NetworkService")))
    assert other.undo[0].args["start_name"] == "NT AUTHORITY\\NetworkService"


def test_a_service_not_there_is_left_alone() -> None:
    item = _svc_item()
    builder = _builder()
    builder.service(item, _obs(item))
    builder.service(item, _obs(item, service=_svc(exists=False)))
    assert builder.steps == []
    assert builder.problems == {}


def test_a_service_whose_account_has_no_sid_is_a_problem() -> None:
    item = _svc_item(principal_sid=None, principal_name=".\\NOBODY")
    builder = _builder()
    builder.service(item, _obs(item, service=_svc()))
    assert builder.problems == {item.key: ".\\NOBODY does not exist on this host (no SID to grant to)"}
    assert builder.steps == []


def test_a_service_running_as_another_account_is_not_moved() -> None:
    item = _svc_item()
    builder = _builder()
    builder.service(item, _obs(item, service=_svc(start_name=".\\Someone")))
    assert builder.problems == {
        item.key: "MEMTAS runs as .\\Someone; its password is not known here, so it could not be put back by a "
        "rollback: change it by hand or declare the rule waived"
    }
    assert builder.steps == []


ADOPTED = (
    ".\\IME_SYSTEM exists but the stored service password does not match it (an adopted account, e.g. made by "
    "MEInstaller): choose 'reset the adopted account's password' to move the service"
)


def test_an_adopted_account_with_a_wrong_password_is_a_problem_unless_reset() -> None:
    item = _svc_item()
    builder = _builder(adopted_password_ok=False)
    builder.service(item, _obs(item, service=_svc()))
    assert builder.problems == {item.key: ADOPTED}
    assert builder.steps == []
    for fields in ({"adopted_password_ok": False, "reset_adopted_password": True}, {"adopted_password_ok": None},
                   {"adopted_password_ok": True}):  # fmt: skip
        moved = _builder(**fields)
        moved.service(item, _obs(item, service=_svc()))
        assert moved.problems == {}
        assert len(moved.steps) == 1


def test_an_account_this_program_creates_or_created_is_not_adopted() -> None:
    item = _svc_item()
    created = _builder(adopted_password_ok=False)
    created.created_sids.add(IME)
    created.service(item, _obs(item, service=_svc()))
    assert created.problems == {}
    assert len(created.steps) == 1
    new = _builder(adopted_password_ok=False)
    new.sid_vars[".\\ime_system"] = "SID_1"
    new.service(item, _obs(item, service=_svc()))
    assert new.problems == {}
    assert len(new.steps) == 1


# --- preflight ---------------------------------------------------------------------------------------


def test_a_missing_av_exclusion_is_added_and_removed_by_its_inverse() -> None:
    item = _item(RuleType.PREFLIGHT, "C:\\MailEnable", "av", preflight_check=PreflightCheck.AV_EXCLUSION)
    builder = _builder()
    builder.preflight(item, _obs(item, av_exclusions=["D:\\x"]))
    (step,) = builder.steps
    assert (step.id, step.op, step.args) == ("c1.av_add", "defender_add", {"path": "C:\\MailEnable"})
    journal = _journal(step)
    assert journal["target_kind"] == "av_exclusion"
    assert journal["before"] == dumps({"paths": ["D:\\x"]})
    assert journal["after"] == dumps({"paths": ["D:\\x", "C:\\MailEnable"]})
    assert builder.undo == [
        Step(id="u.c1.av_add", op="defender_remove", args={"path": "C:\\MailEnable"}, when_done="c1.av_add")
    ]


def test_other_preflights_and_an_unread_defender_make_no_step() -> None:
    av = _item(RuleType.PREFLIGHT, "C:\\MailEnable", "av")
    search = _item(RuleType.PREFLIGHT, "WSearch", "s", judge=Judge.SERVICE_STOPPED_DURING_JOB)
    builder = _builder()
    builder.preflight(av, _obs(av))
    builder.preflight(search, _obs(search, av_exclusions=[]))
    assert builder.steps == []


# --- a whole apply, phase by phase --------------------------------------------------------------------


def test_build_apply_orders_the_phases_and_writes_each_object_once_before_sql() -> None:
    from lockdown.engine.observe import acl_read_args

    svc = _svc_item()
    sql = _sql_item(Judge.SQL_PERMISSIONS, sql_permissions=["SELECT"])
    acl_a = _acl(target="C:\\ME", rule_id="acl-a")
    acl_b = _acl(target="c:\\me", rule_id="acl-b", access_mask=0x116)
    key = _acl(target="C:\\ME", rule_id="key", rule_type=RuleType.REGISTRY_ACL)
    right = _item(RuleType.USER_RIGHT, "SeServiceLogonRight", "right", principal_sid=IME)
    member = _item(RuleType.GROUP_MEMBER, "IME_STORE", "member", principal_name="HOST\\IME_SYSTEM")
    group = _item(RuleType.LOCAL_GROUP, "IME_STORE", "group")
    user = _user()
    av = _item(RuleType.PREFLIGHT, "C:\\ME", "av")
    skipped = _item(RuleType.USER_RIGHT, "SeBatchLogonRight", "failed", principal_sid=IME)
    unobserved = _item(RuleType.USER_RIGHT, "SeTcbPrivilege", "unobserved", principal_sid=IME)
    drifted = [svc, sql, acl_a, right, key, member, acl_b, group, user, av, skipped, unobserved]
    sds = [(acl_read_args(acl_a), _sd("O:SYD:AI")), (acl_read_args(key), _sd("O:SYD:AI", obj="key"))]
    observed = _observed(drifted, {}, sds)
    items = {i.key: _obs(i) for i in drifted if i is not unobserved}
    items[sql.key] = _obs(sql, sql=SqlObservation())
    items[svc.key] = _obs(svc, service=_svc())
    items[av.key] = _obs(av, av_exclusions=[])
    items[skipped.key] = _obs(skipped, error="could not read")
    builder = ApplyBuilder(computer=HOST, observed=observed, items=items)
    build_apply(builder, drifted)
    assert [(s.id, s.journal and s.journal["rule_id"]) for s in builder.steps] == [
        ("c1.av_add", "av"),
        ("c2.user_create", "user"),
        ("c3.group_create", "group"),
        ("c4.member_add", "member"),
        ("c5.lsa_add", "right"),
        ("c6.dacl", "acl-a"),
        ("c7.dacl", "key"),
        ("c8.sql_grant", "sql"),
        ("c10.svc_change", "svc"),
    ]
    assert builder.steps[3].args["sid"] == "{{SID_1}}"  # the user created just before
    assert builder.steps[5].args["sddl"] == "D:AI(A;;0x1201bf;;;{{SID_1}})"  # both rules on C:\ME, merged
    assert builder.steps[6].args["kind"] == "key"
    assert [p.rule_id for p in builder.planned] == [
        "av", "user", "group", "member", "right", "acl-a", "acl-b", "key", "sql", "svc"
    ]  # fmt: skip
    assert [p.step_id for p in builder.planned] == [
        "c1.av_add", "c2.user_create", "c3.group_create", "c4.member_add", "c5.lsa_add", "c6.dacl", "c6.dacl",
        "c7.dacl", "c8.sql_grant", "c10.svc_change",
    ]  # fmt: skip
    assert [p.kind for p in builder.planned] == [
        TargetKind.AV_EXCLUSION, TargetKind.USER, TargetKind.GROUP, TargetKind.MEMBERSHIP, TargetKind.RIGHT,
        TargetKind.DIRECTORY, TargetKind.DIRECTORY, TargetKind.REGISTRY_KEY, TargetKind.SQL_DATABASE,
        TargetKind.SERVICE,
    ]  # fmt: skip
    assert [p.created for p in builder.planned] == [False, True, True] + [False] * 7
    assert [p.target for p in builder.planned] == [i.target for i in (av, user, group, member, right, acl_a, acl_b,
                                                                       key, sql, svc)]  # fmt: skip


def test_build_apply_writes_acls_that_come_last_at_the_end() -> None:
    from lockdown.engine.observe import acl_read_args

    right = _item(RuleType.USER_RIGHT, "SeServiceLogonRight", "right", principal_sid=IME)
    acl = _acl()
    observed = _observed([acl, right], {"HOST\\IME_SYSTEM": IME}, [(acl_read_args(acl), _sd("O:SYD:AI"))])
    builder = ApplyBuilder(computer=HOST, observed=observed, items={acl.key: _obs(acl), right.key: _obs(right)})
    build_apply(builder, [acl, right])
    assert [s.op for s in builder.steps] == ["lsa_add", "dacl_write"]


# --- the records of what changed ------------------------------------------------------------------------


def _ran(step_id: str, result: dict[str, Any] | None, status: str = "ok") -> StepResult:
    return StepResult.model_validate({"id": step_id, "op": "x", "status": status, "result": result})


def test_records_are_the_changed_steps_in_program_order_with_variables_filled_in() -> None:
    planned = [
        Planned("c1.user_create", "user", "HOST\\IME", TargetKind.USER, None, '{"sid":"{{SID_1}}"}', created=True),
        Planned("c2.lsa_add", "right", "SeServiceLogonRight", TargetKind.RIGHT, "b", "a"),
        Planned("c3.member_add", "member", "G", TargetKind.MEMBERSHIP, "b", "a"),
        Planned("c4.lsa_add", "gone", "SeX", TargetKind.RIGHT, "b", "a"),
        Planned("c5.svc_change", "svc", "MEMTAS", TargetKind.SERVICE, "b2", "{{SID_1}} {{OTHER}}"),
        Planned("c6.lsa_add", "noresult", "SeY", TargetKind.RIGHT, "b", "a"),
    ]
    results = {
        "c1.user_create": _ran("c1.user_create", {"changed": True, "sid": IME}),
        "c2.lsa_add": _ran("c2.lsa_add", {"changed": False}),
        "c3.member_add": _ran("c3.member_add", {}),
        "c5.svc_change": _ran("c5.svc_change", {"changed": True}, status="error"),
        "c6.lsa_add": _ran("c6.lsa_add", None, status="error"),
    }
    records = records_from(planned, results, {"SID_1": IME}, "job-7")
    assert records == [
        ChangeRecord(
            rule_id="user",
            target="HOST\\IME",
            target_kind=TargetKind.USER,
            sequence=0,
            before=None,
            after=f'{{"sid":"{IME}"}}',
            created_object=True,
            job_id="job-7",
        ),
        ChangeRecord(
            rule_id="svc",
            target="MEMTAS",
            target_kind=TargetKind.SERVICE,
            sequence=4,
            before="b2",
            after=f"{IME} {{{{OTHER}}}}",
            created_object=False,
            job_id="job-7",
        ),
    ]


@pytest.mark.parametrize("kind", [TargetKind.FILE, TargetKind.DIRECTORY, TargetKind.REGISTRY_KEY])
def test_an_acl_record_takes_the_hosts_read_back_else_what_was_written(kind: TargetKind) -> None:
    planned = [
        Planned("c1.dacl", "a", "C:\\x", kind, "O:SYD:AI", "O:SYD:AI(A;;0x1;;;{{SID_1}})", written="D:AI"),
        Planned("c1.dacl", "b", "C:\\x", kind, "O:SYD:AI", "O:SYD:AI(A;;0x1;;;{{SID_1}})", written="D:AI"),
        Planned("c2.dacl", "c", "C:\\y", kind, "O:SYD:AI", "O:SYD:AI(A;;0x2;;;{{SID_1}})", written="D:AI"),
    ]
    results = {
        "c1.dacl": _ran("c1.dacl", {"changed": True, "after": f"O:SYD:AI(A;;0x1;;;{IME})(A;ID;FA;;;SY)"}),
        "c2.dacl": _ran("c2.dacl", {"changed": True, "after": None}),
    }
    records = records_from(planned, results, {"SID_1": IME}, "j")
    assert [(r.rule_id, r.sequence, r.after, r.target_kind) for r in records] == [
        ("a", 0, f"O:SYD:AI(A;;0x1;;;{IME})(A;ID;FA;;;SY)", kind),
        ("b", 1, f"O:SYD:AI(A;;0x1;;;{IME})(A;ID;FA;;;SY)", kind),
        ("c", 2, f"O:SYD:AI(A;;0x2;;;{IME})", kind),
    ]


def test_a_non_acl_record_ignores_an_after_in_the_result() -> None:
    planned = [Planned("c1.lsa_add", "r", "SeX", TargetKind.RIGHT, "b", "mine")]
    records = records_from(planned, {"c1.lsa_add": _ran("c1.lsa_add", {"changed": True, "after": "x"})}, {}, "j")
    assert records[0].after == "mine"


# --- undoing an ACL change ------------------------------------------------------------------------------


def _acl_change(before: str | None, after: str | None, kind: TargetKind = TargetKind.DIRECTORY) -> ChangeRecord:
    return ChangeRecord(
        rule_id="r", target="C:\\x", target_kind=kind, sequence=0, before=before, after=after, job_id="j"
    )


ARGS = {"kind": "path", "path": "C:\\x"}


def test_acl_inverse_removes_our_new_ace_and_writes_the_rest_with_the_current_dacl_expected() -> None:
    before = "O:BAD:PAI(A;;FA;;;SY)"
    after = f"O:BAD:PAI(A;;FA;;;SY)(A;OICI;0x1200a9;;;{IME})"
    now = f"O:BAD:PAI(A;;FA;;;SY)(A;OICI;0x1200a9;;;{IME})(A;ID;FR;;;BU)"
    inverse = acl_inverse(_acl_change(before, after), {"exists": True, "object": "directory", "sddl": now}, ARGS, "u3")
    assert inverse.steps == [
        Step(
            id="u3",
            op="dacl_write",
            args={
                "kind": "path",
                "path": "C:\\x",
                "object": "directory",
                "sddl": "D:PAI(A;;0x1f01ff;;;S-1-5-18)",
                "expected": now,
                "take_ownership": False,
            },
            expect={"conflict": False},
        )
    ]
    assert inverse.restart == []
    assert inverse.note == ""


def test_acl_inverse_shrinks_a_merged_ace_with_the_same_flags_only() -> None:
    before = f"O:BAD:AI(A;CI;0x1;;;{IME})(A;;0x1;;;{IME})"
    after = f"O:BAD:AI(A;CI;0x7;;;{IME})(A;;0x1;;;{IME})"
    now = f"O:BAD:AI(A;;0x1;;;{IME})(A;CI;0x7;;;{IME})"
    inverse = acl_inverse(_acl_change(before, after), {"exists": True, "sddl": now}, ARGS, "u0")
    (step,) = inverse.steps
    assert step.args["sddl"] == f"D:AI(A;;0x1;;;{IME})(A;CI;0x1;;;{IME})"
    assert step.args["object"] == "file"


def test_acl_inverse_reads_masks_of_split_aces_as_one() -> None:
    # the same (type, SID, flags) twice in `after` counts as the OR of the two masks
    before = "O:BAD:AI"
    after = f"O:BAD:AI(A;;0x1;;;{IME})(A;;0x6;;;{IME})(A;ID;0x8;;;{IME})"
    now_split = f"O:BAD:AI(A;;0x7;;;{IME})"
    inverse = acl_inverse(_acl_change(before, after), {"exists": True, "sddl": now_split}, ARGS, "u0")
    assert inverse.steps[0].args["sddl"] == "D:AI"


def test_acl_inverse_of_a_change_with_no_before_removes_every_ace_after_added() -> None:
    after = f"O:BAD:AI(A;;0x1;;;{IME})(D;;0x2;;;{OTHER})"
    now = f"O:BAD:AI(D;;0x2;;;{OTHER})(A;;0x1;;;{IME})(A;;0x4;;;{SYSTEM})"
    inverse = acl_inverse(_acl_change(None, after), {"exists": True, "sddl": now}, ARGS, "u0")
    assert inverse.steps[0].args["sddl"] == "D:AI(A;;0x4;;;S-1-5-18)"


def test_acl_inverse_removes_only_the_first_of_two_identical_aces() -> None:
    after = f"O:BAD:AI(A;;0x1;;;{IME})"
    now = f"O:BAD:AI(A;;0x1;;;{IME})(A;;0x1;;;{IME})"
    inverse = acl_inverse(_acl_change("O:BAD:AI", after), {"exists": True, "sddl": now}, ARGS, "u0")
    assert inverse.steps[0].args["sddl"] == f"D:AI(A;;0x1;;;{IME})"


def test_acl_inverse_of_an_object_gone_or_already_undone_is_no_step() -> None:
    change = _acl_change("O:BAD:AI", f"O:BAD:AI(A;;0x1;;;{IME})")
    gone = acl_inverse(change, {"exists": False}, ARGS, "u0")
    assert gone.steps == []
    assert gone.note == "C:\\x no longer exists"
    undone = acl_inverse(change, {"exists": True, "sddl": "O:BAD:AI"}, ARGS, "u0")
    assert undone.steps == []
    assert undone.note == "our ACEs are no longer there"
    same = acl_inverse(_acl_change("O:BAD:AI(A;;0x1;;;SY)", "O:BAD:AI(A;;0x1;;;SY)"), {"exists": True,
                       "sddl": "O:BAD:AI(A;;0x1;;;SY)"}, ARGS, "u0")  # fmt: skip
    assert same.steps == []
    empty = acl_inverse(_acl_change("", ""), {"exists": True, "sddl": "O:BAD:AI(A;;0x1;;;SY)"}, ARGS, "u0")
    assert empty.steps == []


def test_acl_inverse_on_a_key_keeps_the_read_args() -> None:
    key_args = {"kind": "key", "path": KEY, "view": 64}
    after = f"O:SYD:PAI(A;CI;0x20019;;;{IME})"
    inverse = acl_inverse(_acl_change("O:SYD:PAI", after, TargetKind.REGISTRY_KEY),
                          {"exists": True, "object": "key", "sddl": after}, key_args, "u0")  # fmt: skip
    assert inverse.steps[0].args == {
        "kind": "key",
        "path": KEY,
        "view": 64,
        "object": "key",
        "sddl": "D:PAI",
        "expected": after,
        "take_ownership": False,
    }


def test_acl_inverse_takes_ownership_only_of_what_trustedinstaller_owns_now() -> None:
    before = f"O:{TRUSTED_INSTALLER}D:PAI"
    after = f"O:{TRUSTED_INSTALLER}D:PAI(A;;0x1;;;{IME})"
    now_admins = f"O:BAD:PAI(A;;0x1;;;{IME})"
    inverse = acl_inverse(_acl_change(before, after), {"exists": True, "sddl": now_admins}, ARGS, "u0")
    assert inverse.steps[0].args["take_ownership"] is False


def test_change_read_args_per_kind() -> None:
    assert change_read_args(_acl_change(None, None, TargetKind.REGISTRY_KEY)) == {
        "kind": "key",
        "path": "C:\\x",
        "view": 64,
    }
    assert change_read_args(_acl_change(None, None, TargetKind.FILE)) == {"kind": "path", "path": "C:\\x"}
    assert change_read_args(_acl_change(None, None, TargetKind.DIRECTORY)) == {"kind": "path", "path": "C:\\x"}
    assert change_read_args(_acl_change(None, None, TargetKind.SERVICE)) is None


# --- undoing the other changes ----------------------------------------------------------------------------


def _change(kind: TargetKind, target: str, before: Any, after: Any, created: bool = False) -> ChangeRecord:
    return ChangeRecord(
        rule_id="r",
        target=target,
        target_kind=kind,
        sequence=0,
        before=None if before is None else json.dumps(before),
        after=None if after is None else json.dumps(after),
        created_object=created,
        job_id="j",
    )


def test_a_created_user_is_deleted_only_with_its_sid() -> None:
    change = _change(TargetKind.USER, "HOST\\IME_SYSTEM", None, {"name": "IME_SYSTEM", "sid": IME}, created=True)
    assert simple_inverse(change, "u0", HostNow()).steps == [
        Step(id="u0", op="user_delete", args={"name": "IME_SYSTEM", "sid": IME})
    ]
    nameless = _change(TargetKind.USER, "HOST\\IME_SYSTEM", None, {"sid": IME}, created=True)
    assert simple_inverse(nameless, "u0", HostNow()).steps[0].args == {"name": "IME_SYSTEM", "sid": IME}


def test_user_flags_with_nothing_recorded_are_zero() -> None:
    change = _change(TargetKind.USER, "HOST\\IME_SYSTEM", None, {"flags": 0x10000})
    (step,) = simple_inverse(change, "u0", HostNow()).steps
    assert (step.id, step.op) == ("u0", "user_set_flags")
    assert step.args == {"name": "IME_SYSTEM", "set": 0, "clear": 0x10000}
    empty = _change(TargetKind.USER, "IME", {}, None)
    assert simple_inverse(empty, "u0", HostNow()).steps[0].args == {"name": "IME", "set": 0, "clear": 0}


def test_a_created_group_is_deleted_and_a_group_found_is_kept() -> None:
    created = _change(TargetKind.GROUP, "HOST\\IME_STORE", None, {"name": "IME_STORE", "sid": OTHER}, created=True)
    assert simple_inverse(created, "u0", HostNow()).steps == [
        Step(id="u0", op="group_delete", args={"name": "IME_STORE", "sid": OTHER})
    ]
    nameless = _change(TargetKind.GROUP, "HOST\\IME_STORE", None, {"sid": OTHER}, created=True)
    assert simple_inverse(nameless, "u0", HostNow()).steps[0].args["name"] == "IME_STORE"
    found = _change(TargetKind.GROUP, "HOST\\IME_STORE", None, {"name": "IME_STORE", "sid": OTHER})
    assert simple_inverse(found, "u0", HostNow()).steps == []


def test_membership_inverse_of_a_group_not_read_removes_every_member_added_in_order() -> None:
    change = _change(TargetKind.MEMBERSHIP, "HOST\\G", {"members": [OTHER]}, {"members": [OTHER, IME, SYSTEM]})
    steps = simple_inverse(change, "u2", HostNow()).steps
    assert steps == [
        Step(id="u2.0", op="group_member_remove", args={"group": "G", "sid": SYSTEM}),
        Step(id="u2.1", op="group_member_remove", args={"group": "G", "sid": IME}),
    ]
    nothing_before = _change(TargetKind.MEMBERSHIP, "G", {}, {"members": [IME]})
    assert [s.args["sid"] for s in simple_inverse(nothing_before, "u", HostNow(groups={"g": [IME]})).steps] == [IME]


def test_right_inverse_removes_every_holder_added_unless_the_right_was_read() -> None:
    change = _change(TargetKind.RIGHT, "SeX", {"right": "SeServiceLogonRight"}, {"holders": [IME, OTHER]})
    steps = simple_inverse(change, "u1", HostNow(rights={"sex": [OTHER]})).steps
    assert steps == [Step(id="u1.0", op="lsa_remove", args={"sid": OTHER, "right": "SeX"})]
    unread = simple_inverse(change, "u1", HostNow()).steps
    assert [(s.id, s.args["sid"]) for s in unread] == [("u1.0", IME), ("u1.1", OTHER)]
    named = _change(TargetKind.RIGHT, "logon", {"holders": []}, {"right": "SeServiceLogonRight", "holders": [IME]})
    assert simple_inverse(named, "u", HostNow(rights={"seservicelogonright": [IME]})).steps[0].args == {
        "sid": IME,
        "right": "SeServiceLogonRight",
    }


def test_av_exclusion_inverse_removes_the_paths_added() -> None:
    change = _change(TargetKind.AV_EXCLUSION, "C:\\ME", {"paths": ["D:\\x"]}, {"paths": ["D:\\x", "C:\\ME", "B:\\"]})
    assert simple_inverse(change, "u4", HostNow()).steps == [
        Step(id="u4.0", op="defender_remove", args={"path": "B:\\"}),
        Step(id="u4.1", op="defender_remove", args={"path": "C:\\ME"}),
    ]
    none_before = _change(TargetKind.AV_EXCLUSION, "C:\\ME", None, {"paths": ["C:\\ME"]})
    assert [s.args for s in simple_inverse(none_before, "u", HostNow()).steps] == [{"path": "C:\\ME"}]
    assert simple_inverse(_change(TargetKind.AV_EXCLUSION, "C:\\ME", None, {}), "u", HostNow()).steps == []


def test_sql_permissions_inverse_revokes_each_permission_added() -> None:
    change = _change(
        TargetKind.SQL_DATABASE,
        "MEdb",
        {"user": "U", "permissions": ["SELECT"]},
        {"user": "U", "permissions": ["UPDATE", "SELECT", "INSERT"], "instance": ".\\SQLEXPRESS"},
    )
    assert simple_inverse(change, "u5", HostNow()).steps == [
        Step(
            id="u5.0",
            op="sql",
            args={
                "instance": ".\\SQLEXPRESS",
                "statement": "revoke",
                "params": {"database": "MEdb", "permission": "INSERT", "user": "U"},
            },
        ),
        Step(
            id="u5.1",
            op="sql",
            args={
                "instance": ".\\SQLEXPRESS",
                "statement": "revoke",
                "params": {"database": "MEdb", "permission": "UPDATE", "user": "U"},
            },
        ),
    ]
    bare = _change(TargetKind.SQL_DATABASE, "MEdb", None, {"user": "U", "permissions": ["SELECT"]})
    assert simple_inverse(bare, "u", HostNow()).steps[0].args["instance"] == "."


def test_sql_created_user_and_login_are_dropped() -> None:
    user = _change(TargetKind.SQL_DATABASE, "MEdb", {"user": None}, {"user": "U", "user_created": True}, True)
    assert simple_inverse(user, "u6", HostNow()).steps == [
        Step(
            id="u6",
            op="sql",
            args={"instance": ".", "statement": "drop_user", "params": {"database": "MEdb", "user": "U"}},
        )
    ]
    login = _change(TargetKind.SQL_DATABASE, "MEdb", {"login": None},
                    {"login": "L", "login_created": True, "instance": ".\\X"}, True)  # fmt: skip
    assert simple_inverse(login, "u7", HostNow()).steps == [
        Step(id="u7", op="sql", args={"instance": ".\\X", "statement": "drop_login", "params": {"login": "L"}})
    ]
    neither = _change(TargetKind.SQL_DATABASE, "MEdb", None, {"user": "U", "user_created": False})
    assert simple_inverse(neither, "u", HostNow()).steps == []


def _svc_change(before: Any, after: Any) -> ChangeRecord:
    return _change(TargetKind.SERVICE, "MEMTAS", before, after)


def test_service_inverse_checks_the_service_now() -> None:
    change = _svc_change({"start_name": "NT AUTHORITY\\NetworkService"}, {"start_name": ".\\IME_SYSTEM"})
    now = HostNow(services={"memtas": {"exists": True, "start_name": ".\\ime_system", "state": "Stopped"}})
    inverse = simple_inverse(change, "u8", now)
    assert inverse.steps == [
        Step(
            id="u8",
            op="service_change",
            args={"name": "MEMTAS", "start_name": "NT AUTHORITY\\NetworkService", "password": ""},
            expect={"return_value": 0},
        )
    ]
    assert inverse.restart == []
    gone = simple_inverse(change, "u8", HostNow())
    assert (gone.steps, gone.note) == ([], "MEMTAS no longer exists")
    missing = simple_inverse(change, "u8", HostNow(services={"memtas": {"exists": False}}))
    assert (missing.steps, missing.note) == ([], "MEMTAS no longer exists")
    moved = HostNow(services={"memtas": {"exists": True, "start_name": ".\\Other"}})
    assert simple_inverse(change, "u8", moved).note == "MEMTAS runs as .\\Other now: left alone"


def test_service_inverse_of_a_service_that_had_no_name_or_a_custom_account() -> None:
    now = HostNow(services={"memtas": {"exists": True, "start_name": ".\\IME_SYSTEM", "state": "Running"}})
    nameless = simple_inverse(_svc_change({}, {"start_name": ".\\IME_SYSTEM"}), "u", now)
    assert nameless.steps[0].args["start_name"] == "LocalSystem"
    assert nameless.restart == ["MEMTAS"]
    custom = simple_inverse(_svc_change({"start_name": ".\\Bob"}, {"start_name": ".\\IME_SYSTEM"}), "u", now)
    assert custom.steps == []
    assert custom.note == "cannot restore MEMTAS to .\\Bob: its password is not known"
    both_empty = HostNow(services={"memtas": {"exists": True, "start_name": None}})
    assert len(simple_inverse(_svc_change(None, {}), "u", both_empty).steps) == 1


def test_an_acl_change_has_no_simple_inverse() -> None:
    assert simple_inverse(_acl_change(None, None, TargetKind.FILE), "u", HostNow()).steps == []


def test_the_sddl_module_is_used_for_the_written_text() -> None:
    # guard: what acl_object writes parses back to the ACEs merged
    text = sddl.dacl_text(merged_dacl([_ace(SYSTEM, 0x1F01FF)], [(_ace(IME, 0x1), None)]), protected=True)
    assert [a.sid for a in sddl.parse("O:SY" + text).aces] == [SYSTEM, IME]


@pytest.mark.parametrize(
    ("kind", "target"),
    [(TargetKind.MEMBERSHIP, "G"), (TargetKind.RIGHT, "SeX"), (TargetKind.AV_EXCLUSION, "C:\\ME")],
)
def test_an_inverse_of_a_record_with_nothing_in_it_is_no_step(kind: TargetKind, target: str) -> None:
    assert simple_inverse(_change(kind, target, {}, {}), "u", HostNow()).steps == []
    assert simple_inverse(_change(kind, target, None, None), "u", HostNow()).steps == []


def test_sql_permissions_inverse_of_permissions_recorded_as_a_tuple_of_nothing() -> None:
    change = _change(TargetKind.SQL_DATABASE, "MEdb", {}, {"user": "U", "permissions": []})
    assert simple_inverse(change, "u", HostNow()).steps == []


def test_user_and_group_inverses_use_the_recorded_name_over_the_target() -> None:
    # the account may have been created under a name that differs from the rule's target
    user = _change(TargetKind.USER, "HOST\\ime_system", None, {"name": "IME_SYS2", "sid": IME}, created=True)
    assert simple_inverse(user, "u0", HostNow()).steps[0].args == {"name": "IME_SYS2", "sid": IME}
    flags = _change(TargetKind.USER, "HOST\\ime_system", {"flags": 2}, {"name": "IME_SYS2", "flags": 0x10000})
    assert simple_inverse(flags, "u0", HostNow()).steps[0].args == {"name": "IME_SYS2", "set": 2, "clear": 0x10000}
    group = _change(TargetKind.GROUP, "HOST\\ime_store", None, {"name": "IME_STORE2", "sid": OTHER}, created=True)
    assert simple_inverse(group, "u0", HostNow()).steps[0].args == {"name": "IME_STORE2", "sid": OTHER}


def test_sql_records_belong_to_their_steps() -> None:
    login = _sql_item(Judge.SQL_LOGIN_AND_USER)
    builder = _builder()
    builder.sql(login, _obs(login, sql=SqlObservation()))
    grant = _sql_item(Judge.SQL_PERMISSIONS, sql_permissions=["SELECT"])
    builder.sql(grant, _obs(grant, sql=SqlObservation()))
    assert [(p.step_id, p.kind, p.created) for p in builder.planned] == [
        ("c1.sql_login", TargetKind.SQL_DATABASE, True),
        ("c3.sql_user", TargetKind.SQL_DATABASE, True),
        ("c5.sql_grant", TargetKind.SQL_DATABASE, False),
    ]
    assert [s.id for s in builder.steps] == [p.step_id for p in builder.planned]
    assert {(p.rule_id, p.target) for p in builder.planned} == {("sql", "MailEnable")}


def test_a_step_with_no_record_is_not_journalled_but_its_inverse_still_waits_for_it() -> None:
    builder = _builder()
    step = Step(id="c9.sleep", op="sleep", args={"seconds": 1})
    builder._mutate(step, None, [Step(id="u.c9.sleep", op="sleep", args={"seconds": 0})])
    assert builder.steps[0].journal is None
    assert builder.planned == []
    assert builder.undo[0].when_done == "c9.sleep"
