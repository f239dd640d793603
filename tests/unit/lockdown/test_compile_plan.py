"""compile_plan resolves placeholders, conditions and principals from facts, deterministically."""

from __future__ import annotations

import pytest

from lockdown.rules import masks
from lockdown.rules.builtin import load_builtin_profile
from lockdown.rules.compile import compile_plan
from lockdown.rules.vocabulary import AceFlag, AceType, Condition, Judge, RuleStatus, TargetKind
from tests.unit.lockdown.factories import (
    DEFAULT_ME,
    IME_SID,
    PLESK_ME,
    STORE_SID,
    facts_2008r2,
    facts_2022,
    items_of,
    me_paths,
    only_item,
)

FACTS = {"2008r2": facts_2008r2, "2022": facts_2022}
INTEGRATED_AUTH_RIGHTS = [
    "user_right.se_tcb_privilege",
    "user_right.se_create_token_privilege",
    "user_right.se_interactive_logon_right",
    "user_right.se_increase_quota_privilege",
    "user_right.se_network_logon_right",
    "user_right.se_batch_logon_right",
]


@pytest.fixture(scope="module")
def profile():
    return load_builtin_profile()


@pytest.mark.parametrize("os_name", sorted(FACTS))
def test_system32_rule_on_x64_yields_system32_and_syswow64_items(profile, os_name):
    plan = compile_plan(profile, FACTS[os_name]())
    assert [i.target for i in items_of(plan, "file_deny.system32.cmd_exe")] == [
        r"C:\Windows\System32\cmd.exe",
        r"C:\Windows\SysWOW64\cmd.exe",
    ]


def test_system32_rule_on_x86_yields_only_system32(profile):
    plan = compile_plan(profile, facts_2008r2(arch="x86", os_build=6002))
    assert [i.target for i in items_of(plan, "file_acl.system32.ws2_32_dll")] == [r"C:\Windows\System32\WS2_32.DLL"]


def test_windows_placeholder_uses_the_host_system_root(profile):
    plan = compile_plan(profile, facts_2022(system_root=r"D:\WINNT"))
    assert only_item(plan, "file_acl.windows.config").target == r"D:\WINNT\Config"


@pytest.mark.parametrize(
    ("declared", "exception", "status", "judge"),
    [
        ("yes", "active", None, Judge.RIGHT_HELD),
        # declared, no exception in force: read (never granted), so a right still held shows as drift
        ("yes", "none", None, Judge.RIGHT_NOT_HELD),
        ("yes", "ended", None, Judge.RIGHT_NOT_HELD),
        ("no", "active", RuleStatus.NOT_APPLICABLE, Judge.RIGHT_HELD),
        ("no", "none", RuleStatus.NOT_APPLICABLE, Judge.RIGHT_HELD),
        ("unknown", "active", RuleStatus.NEEDS_INPUT, Judge.RIGHT_HELD),
        ("unknown", "none", RuleStatus.NEEDS_INPUT, Judge.RIGHT_HELD),
    ],
)
def test_integrated_auth_rights_apply_only_when_declared_and_an_exception_is_active(
    profile, declared, exception, status, judge
):
    plan = compile_plan(profile, facts_2022(integrated_auth=declared, integrated_auth_exception=exception))
    for rule in INTEGRATED_AUTH_RIGHTS:
        item = only_item(plan, rule)
        assert item.status == status, rule
        assert item.judge is judge, rule
        assert item.verify_only is (judge is Judge.RIGHT_NOT_HELD)
        assert (item.reason is None) == (status is None and judge is Judge.RIGHT_HELD)
    assert only_item(plan, "user_right.se_service_logon_right").status is None
    assert only_item(plan, "user_right.se_service_logon_right").judge is Judge.RIGHT_HELD


def test_declared_without_an_exception_the_reason_names_every_cis_and_stig_conflict(profile):
    plan = compile_plan(profile, facts_2022(integrated_auth="yes"))
    reasons = {only_item(plan, rule).reason for rule in INTEGRATED_AUTH_RIGHTS}
    assert len(reasons) == 1  # one cause for the six: the server page and reports group them
    reason = reasons.pop()
    assert reason is not None
    assert reason.startswith("integrated authentication is declared, but no approved exception covers these rights")
    assert "CIS Microsoft Windows Server 2022 Benchmark v4.0.0 2.2.3, 2.2.4, 2.2.6, 2.2.8, 2.2.15, 2.2.37" in reason
    assert "Microsoft Windows Server 2022 STIG" in reason
    assert "WN22-UR-000020, WN22-UR-000060" in reason
    assert "AC-6" not in reason  # NIST is not an exception's business: CIS and STIG are named
    assert "none of them is granted" in reason
    ended_plan = compile_plan(profile, facts_2022(integrated_auth="yes", integrated_auth_exception="ended"))
    ended = only_item(ended_plan, "user_right.se_tcb_privilege").reason
    assert ended is not None
    assert "has expired or been revoked" in ended
    assert "2.2.4" in ended
    assert "reported as drift" in ended  # says plainly what a right granted under it becomes


@pytest.mark.parametrize(
    ("declared", "status"),
    [("yes", None), ("no", RuleStatus.NOT_APPLICABLE), ("unknown", RuleStatus.NEEDS_INPUT)],
)
def test_sql_grants_follow_the_operator_declaration(profile, declared, status):
    plan = compile_plan(profile, facts_2008r2(sql_integrated=declared))
    for rule_id in ("sql_grant.login.ime_system", "sql_grant.mailenable_db.ime_system"):
        assert only_item(plan, rule_id).status == status


def test_unknown_declaration_reason_asks_the_operator(profile):
    item = only_item(compile_plan(profile, facts_2022(sql_integrated="unknown")), "sql_grant.login.ime_system")
    assert "declare whether the server uses SQL Server in integrated mode" in (item.reason or "")


@pytest.mark.parametrize("program_dir", [DEFAULT_ME, PLESK_ME])
def test_mailenable_folders_resolve_under_the_install_path(profile, program_dir):
    plan = compile_plan(profile, facts_2022(**me_paths(program_dir)))
    targets = {
        i.rule_id: i.target for i in plan.items if i.rule_id.startswith("path_acl.") and i.rule_id != "path_acl.bin"
    }
    assert targets == {
        "path_acl.store": program_dir + r"\Postoffices",
        "path_acl.queues": program_dir + r"\Queues",
        "path_acl.logging": program_dir + r"\Logging",
        "path_acl.config": program_dir + r"\Config",
        "path_acl.bad_mail": program_dir + r"\Bad Mail",
        "path_acl.backup": program_dir + r"\Backup",
    }


def test_store_comes_from_mail_root_wherever_it_is(profile):
    plan = compile_plan(profile, facts_2022(mail_root=r"E:\MailData"))
    assert only_item(plan, "path_acl.store").target == r"E:\MailData"


def test_bin_covers_bin64_where_it_exists(profile):
    with_64 = compile_plan(profile, facts_2022(bin64_exists=True))
    without = compile_plan(profile, facts_2022(bin64_exists=False))
    assert [i.target for i in items_of(with_64, "path_acl.bin")] == [DEFAULT_ME + r"\Bin", DEFAULT_ME + r"\Bin64"]
    assert [i.target for i in items_of(without, "path_acl.bin")] == [DEFAULT_ME + r"\Bin"]


def test_unknown_program_directory_makes_mailenable_folders_need_input(profile):
    plan = compile_plan(profile, facts_2022(program_dir=None, application_dir=None, config_dir=None))
    item = only_item(plan, "path_acl.queues")
    assert (item.status, item.target) == (RuleStatus.NEEDS_INPUT, "[QUEUES]")
    assert only_item(plan, "path_acl.store").status is None  # Mail Root is still known


def test_mailenable_folders_get_explicit_full_control_with_ci_oi(profile):
    item = only_item(compile_plan(profile, facts_2022()), "path_acl.queues")
    assert (item.access_mask, item.ace_type, item.judge) == (masks.FILE_FULL, AceType.ALLOW, Judge.EXPLICIT_ALLOW_ACE)
    assert item.ace_flags == [AceFlag.CONTAINER_INHERIT, AceFlag.OBJECT_INHERIT]
    assert item.target_kind is TargetKind.DIRECTORY


def test_bin_gets_read_and_execute(profile):
    assert items_of(compile_plan(profile, facts_2022()), "path_acl.bin")[0].access_mask == 0x1200A9


def test_file_grants_are_read_masks_on_the_file_only(profile):
    item = items_of(compile_plan(profile, facts_2022()), "file_acl.system32.ws2_32_dll")[0]
    assert (item.access_mask, item.ace_flags, item.judge) == (0x120089, [], Judge.EFFECTIVE_ACCESS)
    assert only_item(compile_plan(profile, facts_2022()), "file_acl.windows.config").access_mask == 0x12019F


def test_file_denies_are_deny_ace_of_read_execute_without_synchronize(profile):
    item = items_of(compile_plan(profile, facts_2022()), "file_deny.system32.cmd_exe")[0]
    assert (item.ace_type, item.access_mask, item.ace_flags) == (AceType.DENY, 0x0200A9, [])
    assert item.judge is Judge.EXPLICIT_DENY_ACE


@pytest.mark.parametrize(
    "rule_id", ["registry_acl.software_classes", "registry_acl.software_microsoft", "registry_acl.system"]
)
@pytest.mark.parametrize("os_name", sorted(FACTS))
def test_broad_registry_keys_never_get_inheritance_flags(profile, rule_id, os_name):
    item = only_item(compile_plan(profile, FACTS[os_name]()), rule_id)
    assert item.ace_flags == []
    assert (item.judge, item.access_mask) == (Judge.EFFECTIVE_ACCESS, 0x20019)


def test_mailenable_key_is_read_through_the_32bit_view_with_full_control_and_ci(profile):
    x64 = only_item(compile_plan(profile, facts_2022()), "registry_acl.mail_enable")
    x86 = only_item(compile_plan(profile, facts_2008r2(arch="x86", os_build=6002)), "registry_acl.mail_enable")
    assert x64.target == r"HKLM\SOFTWARE\WOW6432Node\Mail Enable"
    assert x86.target == r"HKLM\SOFTWARE\Mail Enable"
    assert (x64.access_mask, x64.ace_flags, x64.judge) == (
        0xF003F,
        [AceFlag.CONTAINER_INHERIT],
        Judge.EXPLICIT_ALLOW_ACE,
    )


def test_principals_are_qualified_with_the_computer_name_and_carry_known_sids(profile):
    plan = compile_plan(profile, facts_2022(ime_system_sid=IME_SID))
    item = items_of(plan, "file_deny.system32.cmd_exe")[0]
    assert (item.principal_name, item.principal_sid) == (r"MAIL01\IME_SYSTEM", IME_SID)
    assert only_item(compile_plan(profile, facts_2022()), "user_right.se_service_logon_right").principal_sid is None


def test_existing_ime_store_users_group_is_adopted(profile):
    facts = facts_2008r2(ime_system_sid=IME_SID, store_group_name="IME_STORE_USERS", store_group_sid=STORE_SID)
    plan = compile_plan(profile, facts)
    group = only_item(plan, "local_group.store_group")
    assert (group.target, group.group_sid) == (r"MAIL01\IME_STORE_USERS", STORE_SID)
    store = only_item(plan, "path_acl.store")
    assert (store.principal_name, store.principal_sid) == (r"MAIL01\IME_STORE_USERS", STORE_SID)
    member = only_item(plan, "group_member.store_group.ime_system")
    assert (member.group_name, member.principal_sid) == (r"MAIL01\IME_STORE_USERS", IME_SID)


def test_fresh_host_plans_ime_store_group(profile):
    assert only_item(compile_plan(profile, facts_2022()), "local_group.store_group").target == r"MAIL01\IME_STORE_GROUP"


def test_service_absent_from_facts_is_not_applicable(profile):
    plan = compile_plan(profile, facts_2022(services=["MESMTPCS", "MEPOPS"]))
    assert only_item(plan, "service_identity.memtas").status is RuleStatus.NOT_APPLICABLE
    assert only_item(plan, "service_identity.meimaps").status is RuleStatus.NOT_APPLICABLE
    assert only_item(plan, "service_identity.mesmtpcs").status is None


def test_indexing_service_is_not_applicable_from_server_2012_on(profile):
    modern = only_item(compile_plan(profile, facts_2022(indexing_service_present=True)), "preflight.indexing_service")
    legacy = only_item(compile_plan(profile, facts_2008r2()), "preflight.indexing_service")
    assert modern.status is RuleStatus.NOT_APPLICABLE
    assert "Server 2012" in (modern.reason or "")
    assert legacy.status is None


def test_av_exclusion_is_planned_for_the_store_only_where_defender_exists(profile):
    assert (
        only_item(compile_plan(profile, facts_2022()), "preflight.av_exclusion.store").target
        == DEFAULT_ME + r"\Postoffices"
    )
    absent = only_item(compile_plan(profile, facts_2008r2()), "preflight.av_exclusion.store")
    assert absent.status is RuleStatus.NOT_APPLICABLE


@pytest.mark.parametrize("os_name", sorted(FACTS))
def test_every_rule_has_at_least_one_item_and_keys_are_unique(profile, os_name):
    plan = compile_plan(
        profile, FACTS[os_name](sql_integrated="unknown", integrated_auth="yes", integrated_auth_exception="active")
    )
    assert {i.rule_id for i in plan.items} == {r.id for r in profile.rules}
    assert len({i.key for i in plan.items}) == len(plan.items)


def test_same_input_gives_identical_json(profile):
    first = compile_plan(profile, facts_2022(services=["MEPOPS", "MEMTAS", "MEIMAPS"]))
    second = compile_plan(load_builtin_profile(), facts_2022(services=["MEIMAPS", "MEMTAS", "MEPOPS"]))
    assert first.model_dump_json() == second.model_dump_json()


def test_plan_round_trips_through_json(profile):
    plan = compile_plan(profile, facts_2008r2(integrated_auth="yes", integrated_auth_exception="active"))
    assert type(plan).model_validate_json(plan.model_dump_json()) == plan


def test_sql_rules_name_the_instance_found_in_the_services() -> None:
    from lockdown.rules.compile import sql_data_source
    from lockdown.rules.vocabulary import RuleStatus, RuleType, Tristate

    base = facts_2022().model_copy(update={"sql_integrated": Tristate.YES})
    assert sql_data_source(base.model_copy(update={"services": ["MSSQLSERVER", "MSSQL$SQLEXPRESS"]})) == "."
    assert sql_data_source(base.model_copy(update={"services": ["MSSQL$SQLEXPRESS"]})) == ".\\SQLEXPRESS"
    two = base.model_copy(update={"services": [*base.services, "MSSQL$A", "MSSQL$B"]})
    plan = compile_plan(load_builtin_profile(), two)
    sql = [i for i in plan.items if i.rule_type is RuleType.SQL_GRANT]
    assert sql
    assert {i.status for i in sql} == {RuleStatus.NEEDS_INPUT}
    assert all("A, B" in (i.reason or "") for i in sql)


def test_only_the_integrated_authentication_rights_become_right_not_held(profile):
    """A right whose rule depends on another declaration keeps that declaration's status."""
    tcb = next(r for r in profile.rules if r.id == "user_right.se_tcb_privilege")
    other = tcb.model_copy(update={"id": "user_right.sql_only", "condition": Condition.SQL_INTEGRATED})
    custom = profile.model_copy(update={"rules": [*profile.rules, other]})
    plan = compile_plan(custom, facts_2022(integrated_auth="yes", sql_integrated="no"))
    item = only_item(plan, "user_right.sql_only")
    assert item.status is RuleStatus.NOT_APPLICABLE
    assert item.judge is Judge.RIGHT_HELD
    assert only_item(plan, "user_right.se_tcb_privilege").judge is Judge.RIGHT_NOT_HELD
