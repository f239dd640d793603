"""evaluate recomputes every status from observed SIDs, masks and flags; agent claims count for nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lockdown.rules import masks
from lockdown.rules.builtin import load_builtin_profile
from lockdown.rules.compile import compile_plan
from lockdown.rules.evaluate import evaluate
from lockdown.rules.observed import AccountObservation, Ace, ServiceObservation, SqlObservation
from lockdown.rules.principals import AUTHENTICATED_USERS, BUILTIN_USERS, LOCAL_SYSTEM
from lockdown.rules.vocabulary import AceFlag, AceType, RuleAction, RuleStatus
from tests.unit.lockdown.factories import (
    IME_SID,
    OTHER_SID,
    STORE_SID,
    facts_2008r2,
    facts_2022,
    hardened_observations,
    items_of,
    observe,
    only_item,
)

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
CI_OI = [AceFlag.CONTAINER_INHERIT, AceFlag.OBJECT_INHERIT]


@pytest.fixture(scope="module")
def plan():
    return compile_plan(load_builtin_profile(), facts_2022(ime_system_sid=IME_SID, sql_integrated="yes"))


def judge(plan, item, obs):
    """The outcome of one item given one observation."""
    outcomes = evaluate(plan, [obs], [], NOW)
    return next(o for o in outcomes if (o.rule_id, o.target) == item.key)


def grant(plan):
    return items_of(plan, "file_acl.system32.ws2_32_dll")[0]


def test_grant_is_compliant_through_users_without_an_ace_for_the_account(plan):
    item = grant(plan)
    users_rx = Ace(sid=BUILTIN_USERS, type=AceType.ALLOW, mask=0x1200A9, inherited=True)
    assert judge(plan, item, observe(item, exists=True, dacl=[users_rx])).status is RuleStatus.COMPLIANT


def test_grant_is_compliant_through_an_observed_group_membership(plan):
    item = grant(plan)
    obs = observe(
        item,
        exists=True,
        dacl=[Ace(sid=OTHER_SID, type=AceType.ALLOW, mask=0x1200A9)],
        principal_group_sids=[OTHER_SID],
    )
    assert judge(plan, item, obs).status is RuleStatus.COMPLIANT


def test_grant_via_an_unrelated_group_is_drift(plan):
    item = grant(plan)
    obs = observe(item, exists=True, dacl=[Ace(sid=OTHER_SID, type=AceType.ALLOW, mask=0x1200A9)])
    outcome = judge(plan, item, obs)
    assert outcome.status is RuleStatus.DRIFT
    assert "0x00120089" in outcome.reason


def test_grant_through_generic_read_is_compliant(plan):
    item = grant(plan)
    obs = observe(item, exists=True, dacl=[Ace(sid=AUTHENTICATED_USERS, type=AceType.ALLOW, mask=masks.GENERIC_READ)])
    assert judge(plan, item, obs).status is RuleStatus.COMPLIANT


def test_inherit_only_grant_does_not_count_for_the_object(plan):
    item = grant(plan)
    ace = Ace(sid=BUILTIN_USERS, type=AceType.ALLOW, mask=0x1200A9, flags=[AceFlag.INHERIT_ONLY, *CI_OI])
    assert judge(plan, item, observe(item, exists=True, dacl=[ace])).status is RuleStatus.DRIFT


def test_a_deny_on_the_account_defeats_a_group_grant(plan):
    item = grant(plan)
    dacl = [
        Ace(sid=IME_SID, type=AceType.DENY, mask=0x1),
        Ace(sid=BUILTIN_USERS, type=AceType.ALLOW, mask=0x1200A9, inherited=True),
    ]
    assert judge(plan, item, observe(item, exists=True, dacl=dacl)).status is RuleStatus.DRIFT


def test_observation_claiming_compliance_without_the_ace_is_drift(plan):
    item = items_of(plan, "file_deny.system32.cmd_exe")[0]
    obs = observe(
        item,
        exists=True,
        compliant=True,
        action="changed",
        effective_mask=0,
        dacl=[Ace(sid=BUILTIN_USERS, type=AceType.ALLOW, mask=0x1200A9, inherited=True)],
    )
    outcome = judge(plan, item, obs)
    assert outcome.status is RuleStatus.DRIFT
    assert outcome.action is RuleAction.CHANGED  # the claim is reported, not believed


@pytest.mark.parametrize("mask", [0x0200A9, 0x1200A9, 0x1F01FF])
def test_deny_is_compliant_with_an_explicit_deny_ace_covering_the_mask(plan, mask):
    item = items_of(plan, "file_deny.system32.cmd_exe")[0]
    obs = observe(item, exists=True, dacl=[Ace(sid=IME_SID, type=AceType.DENY, mask=mask)])
    assert judge(plan, item, obs).status is RuleStatus.COMPLIANT


@pytest.mark.parametrize(
    "ace",
    [
        Ace(sid=BUILTIN_USERS, type=AceType.DENY, mask=0x1F01FF),  # a group, not the account
        Ace(sid=IME_SID, type=AceType.DENY, mask=0x20),  # execute only: does not cover
        Ace(sid=IME_SID, type=AceType.DENY, mask=0x1F01FF, inherited=True),  # not explicit
        Ace(sid=IME_SID, type=AceType.ALLOW, mask=0x0200A9),  # wrong type
    ],
)
def test_deny_needs_an_explicit_deny_for_the_accounts_own_sid(plan, ace):
    item = items_of(plan, "file_deny.system32.cmd_exe")[0]
    assert judge(plan, item, observe(item, exists=True, dacl=[ace])).status is RuleStatus.DRIFT


def test_inherited_ace_on_a_mailenable_folder_is_not_enough(plan):
    item = only_item(plan, "path_acl.queues")
    obs = observe(
        item, exists=True, dacl=[Ace(sid=IME_SID, type=AceType.ALLOW, mask=0x1F01FF, inherited=True, flags=CI_OI)]
    )
    outcome = judge(plan, item, obs)
    assert outcome.status is RuleStatus.DRIFT
    assert "inherited" in outcome.reason


def test_explicit_folder_ace_without_ci_oi_is_drift(plan):
    item = only_item(plan, "path_acl.queues")
    obs = observe(item, exists=True, dacl=[Ace(sid=IME_SID, type=AceType.ALLOW, mask=0x1F01FF)])
    outcome = judge(plan, item, obs)
    assert outcome.status is RuleStatus.DRIFT
    assert "container_inherit" in outcome.reason


def test_explicit_folder_ace_with_ci_oi_and_extra_bits_is_compliant(plan):
    item = items_of(plan, "path_acl.bin")[0]  # wants ReadAndExecute; FullControl covers it
    obs = observe(item, exists=True, dacl=[Ace(sid=IME_SID, type=AceType.ALLOW, mask=0x1F01FF, flags=CI_OI)])
    assert judge(plan, item, obs).status is RuleStatus.COMPLIANT


def test_folder_grant_to_another_sid_is_drift(plan):
    item = only_item(plan, "path_acl.queues")
    obs = observe(item, exists=True, dacl=[Ace(sid=OTHER_SID, type=AceType.ALLOW, mask=0x1F01FF, flags=CI_OI)])
    assert judge(plan, item, obs).status is RuleStatus.DRIFT


def test_broad_registry_key_is_compliant_through_users_read(plan):
    item = only_item(plan, "registry_acl.system")
    obs = observe(item, exists=True, dacl=[Ace(sid=BUILTIN_USERS, type=AceType.ALLOW, mask=0x20019, flags=CI_OI)])
    assert judge(plan, item, obs).status is RuleStatus.COMPLIANT


def test_registry_generic_read_maps_to_readkey(plan):
    item = only_item(plan, "registry_acl.software_classes")
    obs = observe(item, exists=True, dacl=[Ace(sid=BUILTIN_USERS, type=AceType.ALLOW, mask=masks.GENERIC_READ)])
    assert judge(plan, item, obs).status is RuleStatus.COMPLIANT


def test_missing_observation_is_error(plan):
    item = grant(plan)
    outcome = next(o for o in evaluate(plan, [], [], NOW) if (o.rule_id, o.target) == item.key)
    assert (outcome.status, outcome.reason) == (RuleStatus.ERROR, "no observation")


def test_absent_file_is_not_applicable(plan):
    item = items_of(plan, "file_deny.system32.edlin_exe")[1]
    outcome = judge(plan, item, observe(item, exists=False))
    assert (outcome.status, outcome.reason) == (RuleStatus.NOT_APPLICABLE, "absent on this host")


def test_observation_with_error_text_is_error_even_if_it_claims_compliance(plan):
    item = grant(plan)
    outcome = judge(plan, item, observe(item, exists=True, dacl=[], error="Access is denied", compliant=True))
    assert outcome.status is RuleStatus.ERROR
    assert "Access is denied" in outcome.reason


def test_duplicate_observations_for_one_item_are_error(plan):
    item = grant(plan)
    obs = observe(item, exists=True, dacl=[Ace(sid=BUILTIN_USERS, type=AceType.ALLOW, mask=0x1200A9)])
    outcome = next(o for o in evaluate(plan, [obs, obs], [], NOW) if (o.rule_id, o.target) == item.key)
    assert outcome.status is RuleStatus.ERROR


def test_principal_that_does_not_exist_is_drift():
    plan = compile_plan(load_builtin_profile(), facts_2022())  # no IME_SYSTEM SID in the facts
    item = only_item(plan, "path_acl.queues")
    obs = observe(item, exists=True, dacl=[], principal_sid=None)
    assert judge(plan, item, obs).status is RuleStatus.DRIFT


def test_planned_not_applicable_and_needs_input_items_keep_their_status_without_observation():
    plan = compile_plan(load_builtin_profile(), facts_2022(sql_integrated="unknown", integrated_auth="no"))
    outcomes = {o.rule_id: o for o in evaluate(plan, [], [], NOW)}
    assert outcomes["sql_grant.login.ime_system"].status is RuleStatus.NEEDS_INPUT
    assert outcomes["user_right.se_tcb_privilege"].status is RuleStatus.NOT_APPLICABLE
    assert outcomes["user_right.se_tcb_privilege"].reason


def test_recreated_account_with_a_new_sid_is_drift(plan):
    item = only_item(plan, "local_user.ime_system")
    obs = observe(item, account=AccountObservation(exists=True, sid=OTHER_SID, enabled=True))
    assert judge(plan, item, obs).status is RuleStatus.DRIFT


def test_disabled_or_missing_account_is_drift(plan):
    item = only_item(plan, "local_user.ime_system")
    assert judge(plan, item, observe(item, account=AccountObservation(exists=False))).status is RuleStatus.DRIFT
    disabled = AccountObservation(exists=True, sid=IME_SID, enabled=False)
    assert judge(plan, item, observe(item, account=disabled)).status is RuleStatus.DRIFT


def test_right_is_judged_by_sid_among_the_holders(plan):
    item = only_item(plan, "user_right.se_service_logon_right")
    assert judge(plan, item, observe(item, right_holder_sids=[LOCAL_SYSTEM, IME_SID])).status is RuleStatus.COMPLIANT
    assert judge(plan, item, observe(item, right_holder_sids=[LOCAL_SYSTEM])).status is RuleStatus.DRIFT


def test_service_running_as_localsystem_is_drift(plan):
    item = only_item(plan, "service_identity.memtas")
    svc = ServiceObservation(exists=True, start_name="LocalSystem", start_name_sid=LOCAL_SYSTEM)
    assert judge(plan, item, observe(item, service=svc)).status is RuleStatus.DRIFT
    svc = ServiceObservation(exists=True, start_name=r".\IME_SYSTEM", start_name_sid=IME_SID)
    assert judge(plan, item, observe(item, service=svc)).status is RuleStatus.COMPLIANT


def test_sql_permissions_must_all_be_present(plan):
    item = only_item(plan, "sql_grant.mailenable_db.ime_system")
    partial = SqlObservation(login_exists=True, user_exists=True, permissions=["insert", "DELETE", "EXECUTE"])
    outcome = judge(plan, item, observe(item, sql=partial))
    assert (outcome.status, outcome.reason) == (RuleStatus.DRIFT, "missing permissions UPDATE")
    full = SqlObservation(permissions=["SELECT", "INSERT", "DELETE", "EXECUTE", "UPDATE"])
    assert judge(plan, item, observe(item, sql=full)).status is RuleStatus.COMPLIANT


def test_av_exclusion_of_a_parent_folder_covers_the_store(plan):
    item = only_item(plan, "preflight.av_exclusion.store")
    parent = item.target.rsplit("\\", 1)[0].upper() + "\\"
    assert judge(plan, item, observe(item, av_exclusions=[parent])).status is RuleStatus.COMPLIANT
    assert judge(plan, item, observe(item, av_exclusions=[item.target + "X"])).status is RuleStatus.DRIFT


def test_fully_hardened_2008r2_host_with_ime_store_users_is_compliant_everywhere():
    facts = facts_2008r2(
        ime_system_sid=IME_SID,
        store_group_name="IME_STORE_USERS",
        store_group_sid=STORE_SID,
        integrated_auth="yes",
        integrated_auth_exception="active",
    )
    plan = compile_plan(load_builtin_profile(), facts)
    statuses = {o.status for o in evaluate(plan, hardened_observations(plan), [], NOW)}
    assert statuses == {RuleStatus.COMPLIANT, RuleStatus.NOT_APPLICABLE}


def test_naive_now_is_refused(plan):
    with pytest.raises(ValueError, match="timezone-aware"):
        evaluate(plan, [], [], datetime(2026, 1, 1))  # naive on purpose


@pytest.mark.parametrize("exception", ["none", "ended"])
def test_a_right_no_exception_covers_is_drift_while_held_and_needs_input_when_not(exception):
    declared = compile_plan(
        load_builtin_profile(), facts_2022(integrated_auth="yes", integrated_auth_exception=exception)
    )
    item = only_item(declared, "user_right.se_tcb_privilege")
    sid = item.principal_sid or IME_SID
    held = judge(declared, item, observe(item, right_holder_sids=["S-1-5-32-544", sid]))
    assert held.status is RuleStatus.DRIFT
    assert held.reason.startswith(f"{item.principal_name} still holds SeTcbPrivilege, which no exception covers now")
    assert "harden does not remove it" in held.reason
    assert "CIS Microsoft Windows Server 2022 Benchmark" in held.reason  # the conflicts, from the plan's reason
    not_held = judge(declared, item, observe(item, right_holder_sids=["S-1-5-32-544"]))
    assert not_held.status is RuleStatus.NEEDS_INPUT
    assert not_held.reason == item.reason
    assert judge(declared, item, observe(item)).status is RuleStatus.ERROR  # no holders read
