"""What a plan reads from the host, and how the host's (untrusted) answers become observations:
each read once, a failed or malformed read is that item's error, a SQL refusal is needs_input."""

from __future__ import annotations

from typing import Any

import pytest

from lockdown.engine import observe, sddl
from lockdown.engine.observe import Observed, ReadError, Reads, SqlRoleNeeded, build_observations, read_steps
from lockdown.engine.program import Step, StepError, StepResult
from lockdown.rules.observed import (
    AccountObservation,
    ObservedItem,
    SearchObservation,
    ServiceObservation,
    SqlObservation,
)
from lockdown.rules.plan import Plan, PlanItem
from lockdown.rules.vocabulary import (
    AceType,
    Condition,
    Judge,
    PreflightCheck,
    RuleStatus,
    RuleType,
    TargetKind,
)

IME = "S-1-5-21-1-2-3-1002"
STORE = "S-1-5-21-1-2-3-1003"
ADMINS = "S-1-5-32-544"
USERS = "S-1-5-32-545"
ME_BIN = "C:\\Program Files (x86)\\Mail Enable\\Bin"


def item(rule_id: str, rule_type: RuleType, target: str, **fields: Any) -> PlanItem:
    data: dict[str, Any] = {
        "rule_id": rule_id,
        "rule_type": rule_type,
        "section": "s",
        "description": "d",
        "expected": "e",
        "target": target,
        "target_kind": TargetKind.DIRECTORY,
        "condition": Condition.ALWAYS,
        "risk": "low",
        "judge": Judge.EXPLICIT_ALLOW_ACE,
    }
    data.update(fields)
    return PlanItem.model_validate(data)


def plan_of(*items: PlanItem) -> Plan:
    return Plan(profile_slug="p", profile_version="1", computer_name="HOST", items=list(items))


def ok(step_id: str, op: str, result: dict[str, Any] | None) -> StepResult:
    return StepResult(id=step_id, op=op, status="ok", result=result)


def refused(step_id: str, op: str, code: str, message: str) -> StepResult:
    return StepResult(id=step_id, op=op, status="error", error=StepError(code=code, message=message))


def acl(rule_id: str = "acl", target: str = ME_BIN, **fields: Any) -> PlanItem:
    defaults: dict[str, Any] = {
        "principal_name": "HOST\\IME_SYSTEM",
        "access_mask": 0x1200A9,
        "ace_type": AceType.ALLOW,
    }
    data = {**defaults, **fields}
    return item(rule_id, data.pop("rule_type", RuleType.FILE_ACL), target, **data)


def user(rule_id: str = "user", target: str = "HOST\\IME_SYSTEM", **fields: Any) -> PlanItem:
    return item(
        rule_id, RuleType.LOCAL_USER, target, target_kind=TargetKind.USER, judge=Judge.ACCOUNT_ENABLED, **fields
    )


def sql_item(rule_id: str = "sql", **fields: Any) -> PlanItem:
    defaults: dict[str, Any] = {
        "target_kind": TargetKind.SQL_DATABASE,
        "judge": Judge.SQL_PERMISSIONS,
        "principal_name": "HOST\\IME_SYSTEM",
        "sql_database": "MailEnable",
    }
    return item(rule_id, RuleType.SQL_GRANT, "MailEnable", **{**defaults, **fields})


def observe_one(plan_item: PlanItem, answers: dict[tuple[Any, ...], StepResult | dict[str, Any]]) -> ObservedItem:
    """The observation of one item, the host answering each read (by key) with a result or a step."""
    plan = plan_of(plan_item)
    reads = read_steps(plan, "r")
    results: dict[str, StepResult] = {}
    for key, answer in answers.items():
        step_id = reads.ids[key]
        op = next(s.op for s in reads.steps if s.id == step_id)
        results[step_id] = (
            answer.model_copy(update={"id": step_id}) if isinstance(answer, StepResult) else ok(step_id, op, answer)
        )
    (obs,) = build_observations(plan, Observed(reads, results))
    return obs


# --- names ------------------------------------------------------------------------------------


def test_short_name_and_local_account() -> None:
    assert observe.short_name("HOST\\IME_SYSTEM") == "IME_SYSTEM"
    assert observe.short_name("IME_SYSTEM") == "IME_SYSTEM"
    assert observe.short_name("A\\B\\C") == "C"
    assert observe.local_account("host\\IME_SYSTEM", "HOST") == "IME_SYSTEM"
    assert observe.local_account("HOST\\IME_SYSTEM", "host") == "IME_SYSTEM"
    assert observe.local_account("IME_SYSTEM", "HOST") == "IME_SYSTEM"
    assert observe.local_account("BUILTIN\\Administrators", "HOST") is None
    assert observe.local_account("NT AUTHORITY\\SYSTEM", "HOST") is None
    assert observe.local_account("HOSTX\\IME_SYSTEM", "HOST") is None
    assert observe.local_account("HOST\\a\\b", "HOST") == "a\\b"
    assert observe.local_account(None, "HOST") is None
    assert observe.local_account("", "HOST") is None


def test_acl_reads_and_sql_instance() -> None:
    key = acl(target="HKLM\\SOFTWARE\\Mail Enable", target_kind=TargetKind.REGISTRY_KEY)
    assert observe.acl_read_args(key) == {"kind": "key", "path": "HKLM\\SOFTWARE\\Mail Enable", "view": 64}
    assert observe.acl_read_args(acl()) == {"kind": "path", "path": ME_BIN}
    assert observe.acl_read_args(acl(target_kind=TargetKind.FILE)) == {"kind": "path", "path": ME_BIN}
    assert observe.sql_instance(sql_item()) == "."
    assert observe.sql_instance(sql_item(sql_instance=".\\SQLEXPRESS")) == ".\\SQLEXPRESS"


def test_sql_role_needed_carries_the_sql_error_code() -> None:
    exc = SqlRoleNeeded("sql_229")
    assert exc.code == "sql_229"
    assert exc.args == ("sql_229",)
    assert str(exc) == "sql_229"


# --- the reads --------------------------------------------------------------------------------


def test_each_object_is_read_once_whatever_the_case_of_its_name() -> None:
    reads = Reads(prefix="o", plan=plan_of())
    first = reads.sd({"kind": "path", "path": ME_BIN})
    assert first == "o1"
    assert reads.sd({"kind": "path", "path": ME_BIN.upper()}) == "o1"
    assert reads.sd({"kind": "key", "path": "HKLM\\SOFTWARE\\X", "view": 64}) == "o2"
    assert reads.sd({"kind": "key", "path": "HKLM\\SOFTWARE\\X", "view": 32}) == "o3"
    assert reads.sd({"kind": "path", "path": "HKLM\\SOFTWARE\\X"}) == "o4"
    assert reads.user("IME_SYSTEM") == reads.user("ime_system") == "o5"
    assert reads.group("IME_GROUP") == reads.group("Ime_Group") == "o6"
    assert reads.user("IME_GROUP") == "o7"  # a user and a group of one name are two reads
    assert reads.lsa("SeServiceLogonRight") == reads.lsa("SeServiceLogonRight") == "o8"
    assert reads.sql("permissions", {"database": "MailEnable", "login": "H\\I"}) == "o9"
    assert reads.sql("permissions", {"login": "H\\I", "database": "MailEnable"}, ".") == "o9"
    assert reads.sql("permissions", {"database": "MailEnable", "login": "H\\I"}, ".\\SQLEXPRESS") == "o10"
    assert reads.sql("permissions", {"database": "MailEnable", "login": "H\\I"}, ".\\sqlexpress") == "o10"
    assert reads.sql("user_exists", {"database": "MailEnable", "login": "H\\I"}) == "o11"
    assert reads.defender() == reads.defender() == "o12"
    assert [(s.id, s.op) for s in reads.steps][:3] == [("o1", "sd_read"), ("o2", "sd_read"), ("o3", "sd_read")]
    assert reads.steps[0].args == {"kind": "path", "path": ME_BIN}  # the first spelling is read
    assert reads.steps[4] == Step(id="o5", op="user_get", args={"name": "IME_SYSTEM"})
    assert reads.steps[5] == Step(id="o6", op="group_get", args={"name": "IME_GROUP"})
    assert reads.steps[7] == Step(id="o8", op="lsa_enum", args={"right": "SeServiceLogonRight"})
    assert reads.steps[8].args == {
        "instance": ".",
        "statement": "permissions",
        "params": {"database": "MailEnable", "login": "H\\I"},
    }
    assert reads.steps[9].args["instance"] == ".\\SQLEXPRESS"
    assert reads.steps[11] == Step(id="o12", op="defender_get", args={})
    assert len(reads.steps) == 12


def _every_kind() -> Plan:
    return plan_of(
        acl("acl-1", principal_name="HOST\\IME_SYSTEM"),
        acl("acl-2", target=ME_BIN.lower(), principal_name="BUILTIN\\Users"),
        acl(
            "key-1",
            target="HKLM\\SOFTWARE\\Mail Enable",
            rule_type=RuleType.REGISTRY_ACL,
            target_kind=TargetKind.REGISTRY_KEY,
        ),
        user("user-1", principal_name="HOST\\IME_SYSTEM"),
        user("user-2", target="IME_ADMIN"),
        item(
            "group-1", RuleType.LOCAL_GROUP, "HOST\\IME_GROUP", target_kind=TargetKind.GROUP, judge=Judge.GROUP_EXISTS
        ),
        item(
            "member-1",
            RuleType.GROUP_MEMBER,
            "HOST\\IME_GROUP\\HOST\\IME_SYSTEM",
            target_kind=TargetKind.MEMBERSHIP,
            judge=Judge.GROUP_HAS_MEMBER,
            group_name="HOST\\IME_GROUP",
            principal_name="HOST\\IME_SYSTEM",
        ),
        item(
            "right-1", RuleType.USER_RIGHT, "SeServiceLogonRight", target_kind=TargetKind.RIGHT, judge=Judge.RIGHT_HELD
        ),
        item(
            "right-2",
            RuleType.USER_RIGHT,
            "Log on as a service",
            target_kind=TargetKind.RIGHT,
            judge=Judge.RIGHT_HELD,
            right="SeBatchLogonRight",
        ),
        sql_item("sql-1", sql_instance=".\\SQLEXPRESS"),
        item(
            "svc-1",
            RuleType.SERVICE_IDENTITY,
            "MEPOPS",
            target_kind=TargetKind.SERVICE,
            judge=Judge.SERVICE_RUNS_AS,
            principal_name="HOST\\IME_SYSTEM",
        ),
        item(
            "av-1",
            RuleType.PREFLIGHT,
            ME_BIN,
            target_kind=TargetKind.AV_EXCLUSION,
            judge=Judge.AV_EXCLUSION_COVERS,
            preflight_check=PreflightCheck.AV_EXCLUSION,
        ),
        item(
            "search-1",
            RuleType.PREFLIGHT,
            "WSearch",
            target_kind=TargetKind.SERVICE,
            judge=Judge.SERVICE_STOPPED_DURING_JOB,
            preflight_check=PreflightCheck.WINDOWS_SEARCH_STOPPED,
        ),
        item(
            "skipped-1",
            RuleType.LOCAL_USER,
            "HOST\\IME_OTHER",
            target_kind=TargetKind.USER,
            judge=Judge.ACCOUNT_ENABLED,
            principal_name="HOST\\IME_OTHER",
            status=RuleStatus.NOT_APPLICABLE,
            reason="not on this host",
        ),
    )


def test_read_steps_read_what_the_actionable_items_need_once_each() -> None:
    plan = _every_kind()
    reads = read_steps(plan, "r", services=["MEPOPS", "MEMTAS"])
    sql = {"database": "MailEnable", "login": "HOST\\IME_SYSTEM"}
    instance = ".\\SQLEXPRESS"
    assert [(s.op, s.args) for s in reads.steps] == [
        ("sid_lookup", {"names": ["BUILTIN\\Users", "HOST\\IME_SYSTEM"]}),
        ("user_get", {"name": "IME_SYSTEM"}),
        ("sd_read", {"kind": "path", "path": ME_BIN}),
        ("sd_read", {"kind": "key", "path": "HKLM\\SOFTWARE\\Mail Enable", "view": 64}),
        ("user_get", {"name": "IME_ADMIN"}),
        ("group_get", {"name": "IME_GROUP"}),
        ("lsa_enum", {"right": "SeServiceLogonRight"}),
        ("lsa_enum", {"right": "SeBatchLogonRight"}),
        ("sql", {"instance": instance, "statement": "login_exists", "params": {"login": "HOST\\IME_SYSTEM"}}),
        ("sql", {"instance": instance, "statement": "user_exists", "params": sql}),
        ("sql", {"instance": instance, "statement": "permissions", "params": sql}),
        ("defender_get", {}),
        ("service_get", {"names": ["MEMTAS", "MEPOPS", "WSearch"]}),
    ]
    assert [s.id for s in reads.steps] == [f"r{n}" for n in range(1, 14)]
    assert observe.principal_names(plan) == ["BUILTIN\\Users", "HOST\\IME_SYSTEM"]
    assert observe.service_names(plan) == ["MEPOPS", "WSearch"]
    assert [i.rule_id for i in observe.actionable(plan)] == [i.rule_id for i in plan.items[:-1]]


def test_a_plan_without_principals_or_services_reads_no_sids_and_no_services() -> None:
    plan = plan_of(user("user-1", target="IME_ADMIN"))
    reads = read_steps(plan, "r")
    assert reads.steps == [Step(id="r1", op="user_get", args={"name": "IME_ADMIN"})]
    assert Observed(reads, {}).sids() == {}
    assert read_steps(plan_of(), "r").steps == []
    assert read_steps(plan_of(), "r", services=["MEMTAS"]).steps == [
        Step(id="r1", op="service_get", args={"names": ["MEMTAS"]})
    ]


def test_the_search_services_are_read_with_the_indexing_service() -> None:
    plan = plan_of(
        item(
            "idx",
            RuleType.PREFLIGHT,
            "CiSvc",
            target_kind=TargetKind.SERVICE,
            judge=Judge.SERVICE_STOPPED_DURING_JOB,
            preflight_check=PreflightCheck.INDEXING_SERVICE_STOPPED,
        )
    )
    assert observe.service_names(plan) == ["CiSvc"]
    assert read_steps(plan, "r").steps == [Step(id="r1", op="service_get", args={"names": ["CiSvc"]})]
    # sorted as Windows compares names: case-insensitively
    assert read_steps(plan, "r", services=["MEMTAS", "bits"]).steps[0].args == {"names": ["bits", "CiSvc", "MEMTAS"]}


# --- what a read returned ---------------------------------------------------------------------


def test_a_failed_or_missing_read_is_the_items_error() -> None:
    key = ("user", "ime_admin")
    target = user(target="IME_ADMIN")
    assert observe_one(target, {}).error == "not read"
    denied = refused("x", "user_get", "win32_5", "Access is denied")
    assert observe_one(target, {key: denied}).error == "Access is denied [win32_5]"
    skipped = StepResult(id="x", op="user_get", status="skipped")
    assert observe_one(target, {key: skipped}).error == "read step skipped"
    assert observe_one(target, {key: ok("x", "user_get", None)}).error == "read step ok"
    expect_failed = StepResult(id="x", op="user_get", status="expect_failed", result={"exists": True})
    assert observe_one(target, {key: expect_failed}).error == "read step expect_failed"
    long = refused("x", "user_get", "win32_5", "m" * 4096)
    assert observe_one(target, {key: long}).error == ("m" * 4096 + " [win32_5]")[:4096]


def test_an_error_is_the_first_line_of_the_message() -> None:
    # a malformed SID from the host fails the observation's validation (a multi-line message)
    obs = observe_one(
        item("g", RuleType.GROUP_MEMBER, "HOST\\G", target_kind=TargetKind.MEMBERSHIP, judge=Judge.GROUP_HAS_MEMBER),
        {("group", "g"): {"exists": True, "sid": STORE, "members": ["S-1-X"]}},
    )
    assert obs == ObservedItem(rule_id="g", target="HOST\\G", error="1 validation error for ObservedItem")


def test_malformed_answers_are_errors_never_crashes() -> None:
    key = ("user", "ime_admin")
    target = user(target="IME_ADMIN")
    assert observe_one(target, {key: {"exists": True, "flags": "many"}}).error == (
        "invalid literal for int() with base 10: 'many'"
    )
    assert observe_one(target, {key: {"exists": True, "flags": [1]}}).error == (
        "int() argument must be a string, a bytes-like object or a real number, not 'list'"
    )
    member = item("m", RuleType.GROUP_MEMBER, "G", target_kind=TargetKind.MEMBERSHIP, judge=Judge.GROUP_HAS_MEMBER)
    gkey = ("group", "g")
    assert observe_one(member, {gkey: {"exists": True, "members": "S-1-5-18"}}).error == "expected a list of strings"
    assert observe_one(member, {gkey: {"exists": True, "members": [18]}}).error == "expected a list of strings"
    assert observe_one(member, {gkey: {"exists": True, "members": ["S-1-5-18", None]}}).error == (
        "expected a list of strings"
    )
    sd = acl(principal_name=None)
    skey = ("sd", "path", ME_BIN.casefold(), None)
    assert observe_one(sd, {skey: {"exists": True, "sddl": None}}).error == "sd_read: no sddl"
    assert observe_one(sd, {skey: {"exists": True, "sddl": "O:SYD:(X;;FA;;;SY)"}}).error == (
        "unsupported ACE 'X;;FA;;;SY'"
    )


def test_an_error_without_a_message_is_named_by_its_type(monkeypatch: pytest.MonkeyPatch) -> None:
    def parse(text: str) -> None:
        raise sddl.SddlError()

    monkeypatch.setattr(sddl, "parse", parse)
    skey = ("sd", "path", ME_BIN.casefold(), None)
    assert observe_one(acl(principal_name=None), {skey: {"exists": True, "sddl": "O:SY"}}).error == "SddlError"


def test_build_observations_keeps_plan_order_and_only_actionable_items() -> None:
    plan = plan_of(
        user("u-1", target="IME_ADMIN"),
        user("u-2", target="IME_OTHER", status=RuleStatus.NEEDS_INPUT, reason="r"),
        user("u-3", target="IME_ADMIN2"),
    )
    reads = read_steps(plan, "r")
    results = {"r1": ok("r1", "user_get", {"exists": False}), "r2": refused("r2", "user_get", "exception", "boom")}
    assert build_observations(plan, Observed(reads, results)) == [
        ObservedItem(rule_id="u-1", target="IME_ADMIN", account=AccountObservation(exists=False)),
        ObservedItem(rule_id="u-3", target="IME_ADMIN2", error="boom [exception]"),
    ]


# --- SIDs and groups --------------------------------------------------------------------------


def _sid_reads(answer: StepResult | None) -> Observed:
    plan = plan_of(acl(principal_name="HOST\\IME_SYSTEM"))
    reads = read_steps(plan, "r")
    return Observed(reads, {"r1": answer} if answer is not None else {})


def test_sids_are_looked_up_by_name_in_any_case_and_upper_cased() -> None:
    obs = _sid_reads(ok("r1", "sid_lookup", {"sids": {"HOST\\IME_SYSTEM": IME.lower(), "HOST\\Gone": None}}))
    assert obs.sids() == {"host\\ime_system": IME, "host\\gone": None}
    assert obs.sid_of("host\\IME_SYSTEM") == IME
    assert obs.sid_of("HOST\\GONE") is None
    assert obs.sid_of("HOST\\unknown") is None
    assert obs.sid_of(None) is None
    assert obs.sid_of("") is None
    empty = _sid_reads(ok("r1", "sid_lookup", {"sids": {"HOST\\IME_SYSTEM": ""}}))
    assert empty.sids() == {"host\\ime_system": None}
    assert _sid_reads(ok("r1", "sid_lookup", {"sids": None})).sids() == {}


def test_a_bad_sid_lookup_is_an_error_and_an_unknown_sid_for_the_item() -> None:
    bad = _sid_reads(ok("r1", "sid_lookup", {"sids": ["HOST\\IME_SYSTEM"]}))
    with pytest.raises(ReadError, match=r"^sid_lookup: sids is not an object$"):
        bad.sids()
    assert bad.sid_of("HOST\\IME_SYSTEM") is None
    assert _sid_reads(None).sid_of("HOST\\IME_SYSTEM") is None


def test_groups_of_a_local_principal_come_from_its_user_read() -> None:
    plan = plan_of(acl(principal_name="HOST\\IME_SYSTEM"))
    reads = read_steps(plan, "r")

    def groups(user_answer: StepResult | None, principal: str | None = "HOST\\IME_SYSTEM") -> list[str]:
        results = {"r2": user_answer} if user_answer is not None else {}
        return Observed(reads, results).groups_of(principal)

    assert groups(ok("r2", "user_get", {"exists": True, "groups": [USERS.lower(), ADMINS]})) == [USERS, ADMINS]
    assert groups(ok("r2", "user_get", {"exists": True, "groups": None})) == []
    assert groups(ok("r2", "user_get", {"exists": False, "groups": [USERS]})) == []
    assert groups(refused("r2", "user_get", "win32_5", "denied")) == []
    assert groups(None) == []
    assert groups(ok("r2", "user_get", {"exists": True, "groups": [USERS]}), "BUILTIN\\Users") == []
    assert groups(ok("r2", "user_get", {"exists": True, "groups": [USERS]}), None) == []


# --- one observation per kind -----------------------------------------------------------------


def test_acl_observation() -> None:
    target = acl(principal_name="HOST\\IME_SYSTEM")
    sids = ok("x", "sid_lookup", {"sids": {"HOST\\IME_SYSTEM": IME}})
    skey = ("sd", "path", ME_BIN.casefold(), None)
    sd = {"exists": True, "object": "directory", "owner": ADMINS, "sddl": f"O:BAD:AI(A;OICIID;FA;;;{IME.lower()})"}
    member_of = {"exists": True, "sid": IME, "groups": [USERS]}
    obs = observe_one(target, {("sids",): sids, skey: sd, ("user", "ime_system"): member_of})
    assert obs.exists is True
    assert obs.owner_sid == ADMINS
    assert obs.protected is False
    assert obs.dacl is not None
    assert [(a.sid, a.mask, a.inherited) for a in obs.dacl] == [(IME, 0x1F01FF, True)]
    assert obs.principal_sid == IME
    assert obs.principal_group_sids == [USERS]
    # the principal does not resolve: no groups either
    unknown = ok("x", "sid_lookup", {"sids": {"HOST\\IME_SYSTEM": None}})
    obs = observe_one(target, {("sids",): unknown, skey: sd, ("user", "ime_system"): member_of})
    assert (obs.principal_sid, obs.principal_group_sids) == (None, [])
    assert observe_one(target, {("sids",): sids, skey: {"exists": False}}) == ObservedItem(
        rule_id="acl", target=ME_BIN, exists=False
    )


def test_local_user_observation() -> None:
    target = user(principal_name="HOST\\IME_SYSTEM", target="ignored")
    key = ("user", "ime_system")
    disabled = {"exists": True, "sid": IME, "flags": 0x10202, "groups": []}
    assert observe_one(target, {key: disabled}) == ObservedItem(
        rule_id="user",
        target="ignored",
        account=AccountObservation(exists=True, sid=IME, enabled=False, user_flags=0x10202),
        principal_sid=IME,
    )
    enabled = observe_one(target, {key: {"exists": True, "sid": IME, "flags": 0x10200}})
    assert enabled.account == AccountObservation(exists=True, sid=IME, enabled=True, user_flags=0x10200)
    no_flags = observe_one(target, {key: {"exists": True, "sid": IME, "flags": None}})
    assert no_flags.account == AccountObservation(exists=True, sid=IME, enabled=True, user_flags=0)
    assert observe_one(target, {key: {"exists": False}}) == ObservedItem(
        rule_id="user", target="ignored", account=AccountObservation(exists=False)
    )
    by_target = observe_one(user(target="HOST\\IME_ADMIN"), {("user", "ime_admin"): {"exists": False}})
    assert by_target.account == AccountObservation(exists=False)


def test_group_and_membership_observations() -> None:
    group = item("grp", RuleType.LOCAL_GROUP, "HOST\\IME_GROUP", target_kind=TargetKind.GROUP, judge=Judge.GROUP_EXISTS)
    gkey = ("group", "ime_group")
    assert observe_one(group, {gkey: {"exists": True, "sid": STORE, "members": []}}) == ObservedItem(
        rule_id="grp", target="HOST\\IME_GROUP", account=AccountObservation(exists=True, sid=STORE)
    )
    assert observe_one(group, {gkey: {"exists": False}}).account == AccountObservation(exists=False)
    named = item(
        "grp2",
        RuleType.LOCAL_GROUP,
        "ignored",
        target_kind=TargetKind.GROUP,
        judge=Judge.GROUP_EXISTS,
        group_name="HOST\\IME_GROUP",
    )
    assert observe_one(named, {gkey: {"exists": False}}).account == AccountObservation(exists=False)

    member = item(
        "mem",
        RuleType.GROUP_MEMBER,
        "HOST\\IME_GROUP",
        target_kind=TargetKind.MEMBERSHIP,
        judge=Judge.GROUP_HAS_MEMBER,
        principal_name="HOST\\IME_SYSTEM",
    )
    sids = {"sids": {"HOST\\IME_SYSTEM": IME}}
    obs = observe_one(member, {("sids",): sids, gkey: {"exists": True, "sid": STORE, "members": [IME.lower(), ADMINS]}})
    assert obs == ObservedItem(
        rule_id="mem", target="HOST\\IME_GROUP", group_member_sids=[IME, ADMINS], principal_sid=IME
    )
    gone = observe_one(member, {("sids",): sids, gkey: {"exists": False, "members": [ADMINS]}})
    assert (gone.group_member_sids, gone.principal_sid) == ([], IME)
    by_group_name = member.model_copy(update={"group_name": "IME_GROUP", "target": "x"})
    assert observe_one(by_group_name, {("sids",): sids, gkey: {"exists": True, "members": []}}).group_member_sids == []


def test_user_right_observation() -> None:
    right = item(
        "r",
        RuleType.USER_RIGHT,
        "SeServiceLogonRight",
        target_kind=TargetKind.RIGHT,
        judge=Judge.RIGHT_HELD,
        principal_name="HOST\\IME_SYSTEM",
    )
    sids = {"sids": {"HOST\\IME_SYSTEM": IME}}
    obs = observe_one(right, {("sids",): sids, ("lsa", "SeServiceLogonRight"): {"sids": [IME.lower()]}})
    assert obs == ObservedItem(rule_id="r", target="SeServiceLogonRight", right_holder_sids=[IME], principal_sid=IME)
    none = observe_one(right, {("sids",): sids, ("lsa", "SeServiceLogonRight"): {"sids": None}})
    assert none.right_holder_sids == []
    named = right.model_copy(update={"right": "SeBatchLogonRight"})
    assert observe_one(named, {("sids",): sids, ("lsa", "SeBatchLogonRight"): {"sids": []}}).right_holder_sids == []


def _sql_keys(instance: str = ".") -> tuple[tuple[Any, ...], ...]:
    params = (("database", "MailEnable"), ("login", "HOST\\IME_SYSTEM"))
    return (
        ("sql", instance, "login_exists", (("login", "HOST\\IME_SYSTEM"),)),
        ("sql", instance, "user_exists", params),
        ("sql", instance, "permissions", params),
    )


def test_sql_observation() -> None:
    login, user_, perms = _sql_keys()
    sids = {"sids": {"HOST\\IME_SYSTEM": IME}}
    rows = {"rows": [["CONNECT"], ["SELECT"], [], "INSERT", [7, "x"]]}
    obs = observe_one(
        sql_item(), {("sids",): sids, login: {"rows": [["HOST\\IME_SYSTEM"]]}, user_: {"rows": []}, perms: rows}
    )
    assert obs == ObservedItem(
        rule_id="sql",
        target="MailEnable",
        sql=SqlObservation(login_exists=True, user_exists=False, permissions=["CONNECT", "SELECT", "7"]),
        principal_sid=IME,
    )
    nothing = observe_one(sql_item(), {("sids",): sids, login: {"rows": None}, user_: {"rows": [["u"]]}, perms: {}})
    assert nothing.sql == SqlObservation(login_exists=False, user_exists=True, permissions=[])
    bad = observe_one(sql_item(), {("sids",): sids, login: {"rows": {"a": 1}}, user_: {"rows": []}, perms: {}})
    assert bad.error == "sql: rows is not a list"


def test_sql_observation_of_a_named_instance_and_database() -> None:
    target = sql_item(sql_instance=".\\SQLEXPRESS", sql_database=None, principal_name=None)
    params = (("database", "MailEnable"), ("login", ""))
    answers: dict[tuple[Any, ...], StepResult | dict[str, Any]] = {
        ("sql", ".\\sqlexpress", "login_exists", (("login", ""),)): {"rows": []},
        ("sql", ".\\sqlexpress", "user_exists", params): {"rows": []},
        ("sql", ".\\sqlexpress", "permissions", params): {"rows": [["CONNECT"]]},
    }
    obs = observe_one(target, answers)
    assert obs.sql == SqlObservation(permissions=["CONNECT"])
    assert obs.principal_sid is None


@pytest.mark.parametrize(
    ("code", "what", "failing"),
    [
        ("sql_18456", "log in to SQL Server", 0),
        ("sql_229", "read the permission catalog", 2),
        ("sql_300", "read the permission catalog", 1),
        ("sql_15247", "create logins and users", 0),
    ],
)
def test_a_sql_refusal_of_the_winrm_account_needs_input(code: str, what: str, failing: int) -> None:
    keys = _sql_keys(".\\sqlexpress")
    answers: dict[tuple[Any, ...], StepResult | dict[str, Any]] = {key: {"rows": []} for key in keys}
    answers[keys[failing]] = refused("x", "sql", code, "refused")
    obs = observe_one(sql_item(sql_instance=".\\SQLEXPRESS"), answers)
    assert obs == ObservedItem(
        rule_id="sql",
        target="MailEnable",
        needs_input=f"the WinRM account cannot {what} on .\\SQLEXPRESS: give it the sysadmin server role (or "
        "securityadmin plus db_owner on MailEnable), or harden SQL by hand",
    )


def test_any_other_sql_error_is_the_items_error() -> None:
    assert observe_one(sql_item(), {}).error == "not read"
    keys = _sql_keys()
    answers: dict[tuple[Any, ...], StepResult | dict[str, Any]] = {key: {"rows": []} for key in keys}
    answers[keys[2]] = refused("x", "sql", "sql_208", "Invalid object name 'sys.database_permissions'.")
    obs = observe_one(sql_item(), answers)
    assert obs.error == "Invalid object name 'sys.database_permissions'. [sql_208]"
    assert obs.needs_input is None


def _service_item(**fields: Any) -> PlanItem:
    defaults: dict[str, Any] = {
        "target_kind": TargetKind.SERVICE,
        "judge": Judge.SERVICE_RUNS_AS,
        "principal_name": "HOST\\IME_SYSTEM",
    }
    return item("svc", RuleType.SERVICE_IDENTITY, "MEPOPS", **{**defaults, **fields})


def test_service_identity_observation() -> None:
    sids = {"sids": {"HOST\\IME_SYSTEM": IME}}
    entry = {
        "name": "mepops",
        "exists": True,
        "display_name": "MailEnable POP",
        "start_name": ".\\IME_SYSTEM",
        "start_name_sid": IME,
        "state": "Running",
        "start_mode": "Auto",
    }
    services = {"services": [entry, "junk", {"name": "MEIMAPS", "exists": True}]}
    obs = observe_one(_service_item(), {("sids",): sids, ("services",): services})
    assert obs == ObservedItem(
        rule_id="svc",
        target="MEPOPS",
        service=ServiceObservation(
            exists=True, start_name=".\\IME_SYSTEM", start_name_sid=IME, state="Running", start_mode="Auto"
        ),
        principal_sid=IME,
    )
    absent = {"services": [{**entry, "exists": False}]}
    assert observe_one(_service_item(), {("sids",): sids, ("services",): absent}) == ObservedItem(
        rule_id="svc", target="MEPOPS", service=ServiceObservation(exists=False)
    )
    missing = {"services": [{"exists": True, "state": "Running"}]}
    assert observe_one(_service_item(), {("sids",): sids, ("services",): missing}).service == ServiceObservation(
        exists=False
    )
    assert observe_one(_service_item(), {("sids",): sids, ("services",): {"services": None}}).service == (
        ServiceObservation(exists=False)
    )
    bad = observe_one(_service_item(), {("sids",): sids, ("services",): {"services": {"MEPOPS": entry}}})
    assert bad.error == "service_get: services is not a list"


def _av_item() -> PlanItem:
    return item(
        "av",
        RuleType.PREFLIGHT,
        ME_BIN,
        target_kind=TargetKind.AV_EXCLUSION,
        judge=Judge.AV_EXCLUSION_COVERS,
        preflight_check=PreflightCheck.AV_EXCLUSION,
    )


def test_av_exclusion_observation() -> None:
    paths = {"installed": True, "paths": [ME_BIN, "c:\\data"]}
    assert observe_one(_av_item(), {("defender",): paths}) == ObservedItem(
        rule_id="av", target=ME_BIN, av_exclusions=[ME_BIN, "c:\\data"]
    )
    assert observe_one(_av_item(), {("defender",): {"installed": True, "paths": None}}).av_exclusions == []
    assert observe_one(_av_item(), {("defender",): {"installed": False, "paths": [ME_BIN]}}) == ObservedItem(
        rule_id="av", target=ME_BIN, error="Get-MpPreference: Microsoft Defender is not running on this host"
    )
    assert observe_one(_av_item(), {("defender",): {}}).error == (
        "Get-MpPreference: Microsoft Defender is not running on this host"
    )


def test_search_service_observation() -> None:
    search = item(
        "search",
        RuleType.PREFLIGHT,
        "WSearch",
        target_kind=TargetKind.SERVICE,
        judge=Judge.SERVICE_STOPPED_DURING_JOB,
        preflight_check=PreflightCheck.WINDOWS_SEARCH_STOPPED,
    )
    running = {"services": [{"name": "wsearch", "exists": True, "state": "Running"}]}
    assert observe_one(search, {("services",): running}) == ObservedItem(
        rule_id="search", target="WSearch", search=SearchObservation(present=True, state_before="Running")
    )
    absent = {"services": [{"name": "WSearch", "exists": False, "state": "Stopped"}]}
    assert observe_one(search, {("services",): absent}).search == SearchObservation(present=False)
    assert observe_one(search, {("services",): {"services": []}}).search == SearchObservation(present=False)
    no_state = {"services": [{"name": "WSearch", "exists": True}]}
    assert observe_one(search, {("services",): no_state}).search == SearchObservation(present=True)
