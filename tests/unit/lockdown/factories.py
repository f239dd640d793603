"""Facts and observations for the lockdown rule tests (no Django, no database)."""

from __future__ import annotations

from typing import Any

from lockdown.rules import masks
from lockdown.rules.facts import Facts
from lockdown.rules.observed import (
    AccountObservation,
    Ace,
    ObservedItem,
    SearchObservation,
    ServiceObservation,
    SqlObservation,
)
from lockdown.rules.plan import Plan, PlanItem
from lockdown.rules.principals import BUILTIN_USERS
from lockdown.rules.vocabulary import AceType, Judge, PreflightCheck

IME_SID = "S-1-5-21-1004336348-1177238915-682003330-1001"
STORE_SID = "S-1-5-21-1004336348-1177238915-682003330-1002"
OTHER_SID = "S-1-5-21-1004336348-1177238915-682003330-1003"
DEFAULT_ME = r"C:\Program Files (x86)\Mail Enable"
PLESK_ME = r"C:\Program Files (x86)\Plesk\Mail Servers\Mail Enable"
ME_SERVICES = ["MEMTAS", "MESMTPCS", "MEPOPS", "MEIMAPS", "MELCS", "MEPOCS"]


def me_paths(program_dir: str = DEFAULT_ME) -> dict[str, Any]:
    """MailEnable's registry directory values for an install under `program_dir`."""
    return {
        "program_dir": program_dir,
        "application_dir": program_dir + r"\Bin",
        "config_dir": program_dir + r"\Config",
        "mail_root": program_dir + r"\Postoffices",
    }


def facts_2022(**overrides: Any) -> Facts:
    """Windows Server 2022 x64, MailEnable 10 in the default folder, nothing declared yet."""
    data: dict[str, Any] = {
        "computer_name": "MAIL01",
        "system_root": r"C:\Windows",
        "os_caption": "Microsoft Windows Server 2022 Standard",
        "os_build": 20348,
        "arch": "x64",
        "domain_role": "standalone_server",
        "powershell_version": "5.1.20348.1",
        "mailenable_version": "10.43",
        "mailenable_edition": "Professional",
        **me_paths(),
        "bin64_exists": True,
        "services": ME_SERVICES,
        "windows_search_present": True,
        "defender_present": True,
        "sql_integrated": "no",
        "integrated_auth": "no",
    }
    data.update(overrides)
    return Facts.model_validate(data)


def facts_2008r2(**overrides: Any) -> Facts:
    """Windows Server 2008 R2 x64 (build 7601), older MailEnable, Indexing Service present."""
    data: dict[str, Any] = {
        "os_caption": "Microsoft Windows Server 2008 R2 Enterprise",
        "os_build": 7601,
        "powershell_version": "2.0",
        "mailenable_version": "6.5",
        "bin64_exists": False,
        "indexing_service_present": True,
        "windows_search_present": False,
        "defender_present": False,
    }
    data.update(overrides)
    return facts_2022(**data)


def items_of(plan: Plan, rule_id: str) -> list[PlanItem]:
    """The plan items of one rule, in plan order."""
    return [item for item in plan.items if item.rule_id == rule_id]


def only_item(plan: Plan, rule_id: str) -> PlanItem:
    """The single plan item of a rule that resolves to exactly one target."""
    found = items_of(plan, rule_id)
    assert len(found) == 1, found
    return found[0]


def observe(item: PlanItem, **fields: Any) -> ObservedItem:
    """An observation for `item` carrying `fields` (the principal resolves to IME_SID)."""
    return ObservedItem.model_validate(
        {"rule_id": item.rule_id, "target": item.target, "principal_sid": IME_SID, **fields}
    )


def hardened_observation(item: PlanItem) -> ObservedItem:
    """What a correctly hardened host reports for `item`."""
    sid = item.principal_sid or IME_SID
    want = item.access_mask or 0
    users_read = Ace(sid=BUILTIN_USERS, type=AceType.ALLOW, mask=masks.FILE_READ_EXECUTE, inherited=True)
    if item.judge in {Judge.EFFECTIVE_ACCESS, Judge.EXPLICIT_ALLOW_ACE}:
        dacl = [Ace(sid=sid, type=AceType.ALLOW, mask=want, flags=item.ace_flags), users_read]
        return observe(item, exists=True, dacl=dacl)
    if item.judge is Judge.EXPLICIT_DENY_ACE:
        return observe(item, exists=True, dacl=[Ace(sid=sid, type=AceType.DENY, mask=want), users_read])
    if item.judge is Judge.ACCOUNT_ENABLED:
        return observe(item, account=AccountObservation(exists=True, sid=sid, enabled=True, user_flags=0x10200))
    if item.judge is Judge.GROUP_EXISTS:
        return observe(item, account=AccountObservation(exists=True, sid=item.group_sid or STORE_SID))
    if item.judge is Judge.GROUP_HAS_MEMBER:
        return observe(item, group_member_sids=[sid])
    if item.judge is Judge.RIGHT_HELD:
        return observe(item, right_holder_sids=[sid])
    if item.judge in {Judge.SQL_LOGIN_AND_USER, Judge.SQL_PERMISSIONS}:
        return observe(item, sql=SqlObservation(login_exists=True, user_exists=True, permissions=item.sql_permissions))
    if item.judge is Judge.SERVICE_RUNS_AS:
        service = ServiceObservation(exists=True, start_name=r".\IME_SYSTEM", start_name_sid=sid, state="Running")
        return observe(item, service=service)
    if item.preflight_check is PreflightCheck.AV_EXCLUSION:
        return observe(item, av_exclusions=[item.target])
    search = SearchObservation(present=True, state_before="Running", state_during_job="Stopped", state_after="Running")
    return observe(item, search=search)


def hardened_observations(plan: Plan) -> list[ObservedItem]:
    """Observations of a fully hardened host for every actionable plan item."""
    return [hardened_observation(item) for item in plan.items if item.status is None]
