"""`compile_plan(profile, facts) -> Plan`: resolve every rule for one host.

Pure and deterministic: the same profile and facts give byte-identical JSON. Items follow
the profile's rule order; a rule that expands to several targets ([SYSTEM32] on x64, [BIN]
with Bin64) keeps System32-before-SysWOW64 / Bin-before-Bin64 order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from lockdown.rules import masks
from lockdown.rules.advisories import Advisory, host_edition, possible_editions
from lockdown.rules.controls import ControlRef
from lockdown.rules.exceptions import ExceptionState, integrated_auth_conflicts, not_covered_reason
from lockdown.rules.facts import Facts
from lockdown.rules.plan import Plan, PlanItem
from lockdown.rules.principals import is_valid_sid, qualify
from lockdown.rules.profile import Profile
from lockdown.rules.rule import (
    FileAclRule,
    FileDenyRule,
    GroupMemberRule,
    IisIpRestrictionRule,
    LocalGroupRule,
    LocalUserRule,
    MailEnableVersionRule,
    PathAclRule,
    PreflightRule,
    RegistryAclOnlyRule,
    RegistryAclRule,
    RegistryValueRule,
    Rule,
    ServiceIdentityRule,
    SmtpProbeRule,
    SqlGrantRule,
    UserRightRule,
    VerifyOnlyRule,
)
from lockdown.rules.targets import STORE_GROUP, STORE_GROUP_NAME, iis_config_path, join_path
from lockdown.rules.vocabulary import (
    AceFlag,
    AceType,
    Arch,
    Condition,
    Judge,
    PreflightCheck,
    RegistryScope,
    RuleStatus,
    RuleType,
    TargetKind,
    Tristate,
)

# Windows Server 2012 is build 9200; the Indexing Service (cisvc) ended with 2008 R2.
FIRST_BUILD_WITHOUT_INDEXING_SERVICE: Final = 9200
_FOLDER_FLAGS: Final = [AceFlag.CONTAINER_INHERIT, AceFlag.OBJECT_INHERIT]
SMTP_SERVICE: Final = "MESMTPCS"  # MailEnable's SMTP connector service (mailenable-facts.md)
_ME_PLACEHOLDERS: Final = {"[QUEUES]": "Queues", "[LOGGING]": "Logging", "[BADMAIL]": "Bad Mail", "[BACKUP]": "Backup"}


class UnresolvedError(Exception):
    """A placeholder the facts cannot resolve; the item becomes needs_input/not_applicable."""

    def __init__(self, status: RuleStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class _Principal:
    name: str
    sid: str | None


def _condition_status(condition: Condition, facts: Facts, conflicts: list[ControlRef]) -> tuple[RuleStatus, str] | None:
    """None when the rule applies; else the plan's status and reason. The integrated-authentication rights
    conflict with `conflicts` (CIS, STIG): declared yes, they apply only under an active exception."""
    if condition is Condition.ALWAYS:
        return None
    if condition is Condition.INTEGRATED_AUTH:
        declared, what = facts.integrated_auth, "integrated authentication"
        if declared is Tristate.YES and facts.integrated_auth_exception is not ExceptionState.ACTIVE:
            return RuleStatus.NEEDS_INPUT, not_covered_reason(facts.integrated_auth_exception, conflicts)
    else:
        declared, what = facts.sql_integrated, "SQL Server in integrated mode"
    if declared is Tristate.YES:
        return None
    if declared is Tristate.NO:
        return RuleStatus.NOT_APPLICABLE, f"the server is declared not to use {what}"
    return RuleStatus.NEEDS_INPUT, f"declare whether the server uses {what} (currently unknown)"


def _uncovered_right(rule: Rule, facts: Facts) -> bool:
    """An integrated-authentication right on a host declared to use it, with no exception in force."""
    return (
        isinstance(rule, UserRightRule)
        and rule.condition is Condition.INTEGRATED_AUTH
        and facts.integrated_auth is Tristate.YES
        and facts.integrated_auth_exception is not ExceptionState.ACTIVE
    )


def _edition_status(rule: Rule, facts: Facts) -> tuple[RuleStatus, str] | None:
    if not rule.editions:
        return None
    edition = host_edition(facts.mailenable_edition)
    if edition is None:
        return RuleStatus.NOT_APPLICABLE, "no MailEnable edition was found on this host"
    if possible_editions(edition) & set(rule.editions):
        return None
    names = ", ".join(e.value for e in rule.editions)
    return (
        RuleStatus.NOT_APPLICABLE,
        f"MailEnable {facts.mailenable_edition} does not have this feature (only {names}; the rule's deviation "
        "gives the source)",
    )


def sql_data_source(facts: Facts) -> str:
    r"""The SqlClient Data Source of the host's SQL Server, from its service names: the default
    instance's service is MSSQLSERVER, a named instance's MSSQL$<name> (Microsoft Learn, "SQL
    Server Service - Windows service names"; "Connect to a named instance": Data Source=.\<name>).
    The default instance wins; several named instances and no default cannot be chosen between."""
    if "MSSQLSERVER" in facts.services:
        return "."
    named = sorted(name.split("$", 1)[1] for name in facts.services if name.startswith("MSSQL$"))
    if len(named) == 1:
        return f".\\{named[0]}"
    if named:
        raise UnresolvedError(
            RuleStatus.NEEDS_INPUT,
            f"several SQL Server instances ({', '.join(named)}) and no default one: the plan cannot choose",
        )
    return "."  # none found: the connection will say so (the operator declared SQL integrated)


def _program_dir(facts: Facts, placeholder: str) -> str:
    if facts.program_dir is None:
        raise UnresolvedError(
            RuleStatus.NEEDS_INPUT, f"{placeholder}: MailEnable's Program Directory is unknown (run discover)"
        )
    return facts.program_dir


def resolve_file_target(target: str, facts: Facts) -> list[str]:
    """Resolve a profile file target into one or more absolute paths (see module docs)."""
    head, sep, rest = target.partition("\\")
    if not head.startswith("["):
        return [target]
    bases: list[str]
    if head == "[SYSTEM32]":
        bases = [join_path(facts.system_root, "System32")]
        if facts.arch is Arch.X64:
            bases.append(join_path(facts.system_root, "SysWOW64"))
    elif head == "[SYSWOW64]":
        if facts.arch is not Arch.X64:
            raise UnresolvedError(RuleStatus.NOT_APPLICABLE, "there is no SysWOW64 on 32-bit Windows")
        bases = [join_path(facts.system_root, "SysWOW64")]
    elif head == "[WINDOWS]":
        bases = [facts.system_root]
    elif head == "[MAILENABLE]":
        bases = [_program_dir(facts, head)]
    elif head == "[BIN]":
        program = _program_dir(facts, head)
        bases = [facts.application_dir or join_path(program, "Bin")]
        if facts.bin64_exists:
            bases.append(join_path(program, "Bin64"))
    elif head == "[CONFIG]":
        bases = [facts.config_dir or join_path(_program_dir(facts, head), "Config")]
    elif head == "[STORE]":
        if facts.mail_root is None:
            raise UnresolvedError(
                RuleStatus.NEEDS_INPUT, "MailEnable's Mail Root (the store) is unknown (run discover)"
            )
        bases = [facts.mail_root]
    elif head in _ME_PLACEHOLDERS:
        bases = [join_path(_program_dir(facts, head), _ME_PLACEHOLDERS[head])]
    else:  # validation refuses unknown placeholders; this guards hand-built rules
        raise UnresolvedError(RuleStatus.NEEDS_INPUT, f"unknown placeholder {head}")
    return [join_path(base, rest) if sep and rest else base for base in bases]


def resolve_registry_target(rule: RegistryAclRule | RegistryValueRule | RegistryAclOnlyRule, facts: Facts) -> str:
    """The key path to open from 64-bit PowerShell: a 32-bit-view key lives under WOW6432Node on x64."""
    prefix = "HKLM\\SOFTWARE\\"
    if rule.wow64_32bit_view and facts.arch is Arch.X64 and rule.target.upper().startswith(prefix):
        return f"{prefix}WOW6432Node\\{rule.target[len(prefix) :]}"
    return rule.target


def _principal(value: str, facts: Facts) -> _Principal:
    if value == STORE_GROUP:
        # Adopt the group an earlier hardening created (IME_STORE_USERS) rather than add a second one.
        name = facts.store_group_name or STORE_GROUP_NAME
        return _Principal(qualify(computer_name=facts.computer_name, account=name), facts.store_group_sid)
    if is_valid_sid(value):
        return _Principal(value, value)
    sid = facts.ime_system_sid if value.upper() == "IME_SYSTEM" else None
    return _Principal(qualify(computer_name=facts.computer_name, account=value), sid)


def _base_fields(rule: Rule) -> dict[str, object]:
    return {
        "rule_id": rule.id,
        "rule_type": RuleType(rule.type),
        "section": rule.section,
        "description": rule.description,
        "expected": rule.expected,
        "condition": rule.condition,
        "risk": rule.risk,
        "risk_note": rule.risk_note,
        "judge": rule.judge,
    }


def _rule_items(rule: Rule, facts: Facts) -> list[dict[str, object]]:
    """The rule-specific fields of each item (one per resolved target)."""
    if isinstance(rule, RegistryAclRule):
        who = _principal(rule.principal, facts)
        flags = [AceFlag.CONTAINER_INHERIT] if rule.scope is RegistryScope.KEY_AND_SUBKEYS else []
        return [
            {
                "target": resolve_registry_target(rule, facts),
                "target_kind": TargetKind.REGISTRY_KEY,
                "principal_name": who.name,
                "principal_sid": who.sid,
                "access_name": rule.access,
                "access_mask": masks.registry_allow_mask(rule.access),
                "ace_type": AceType.ALLOW,
                "ace_flags": flags,
            }
        ]
    if isinstance(rule, FileAclRule | FileDenyRule | PathAclRule):
        who = _principal(rule.principal, facts)
        deny = isinstance(rule, FileDenyRule)
        folder = isinstance(rule, PathAclRule) or (isinstance(rule, FileAclRule) and rule.folder)
        return [
            {
                "target": path,
                "target_kind": TargetKind.DIRECTORY if folder else TargetKind.FILE,
                "principal_name": who.name,
                "principal_sid": who.sid,
                "access_name": rule.access,
                "access_mask": masks.file_deny_mask(rule.access) if deny else masks.file_allow_mask(rule.access),
                "ace_type": AceType.DENY if deny else AceType.ALLOW,
                "ace_flags": list(_FOLDER_FLAGS) if folder else [],
            }
            for path in resolve_file_target(rule.target, facts)
        ]
    if isinstance(rule, LocalUserRule):
        who = _principal(rule.name, facts)
        return [
            {
                "target": who.name,
                "target_kind": TargetKind.USER,
                "principal_name": who.name,
                "principal_sid": who.sid,
                "password_never_expires": rule.password_never_expires,
            }
        ]
    if isinstance(rule, LocalGroupRule):
        group = _principal(rule.name, facts)
        return [
            {"target": group.name, "target_kind": TargetKind.GROUP, "group_name": group.name, "group_sid": group.sid}
        ]
    if isinstance(rule, GroupMemberRule):
        group, member = _principal(rule.group, facts), _principal(rule.member, facts)
        return [
            {
                "target": group.name,
                "target_kind": TargetKind.MEMBERSHIP,
                "group_name": group.name,
                "group_sid": group.sid,
                "principal_name": member.name,
                "principal_sid": member.sid,
            }
        ]
    if isinstance(rule, UserRightRule):
        who = _principal(rule.principal, facts)
        return [
            {
                "target": rule.right,
                "target_kind": TargetKind.RIGHT,
                "right": rule.right,
                "principal_name": who.name,
                "principal_sid": who.sid,
            }
        ]
    if isinstance(rule, SqlGrantRule):
        who = _principal(rule.principal, facts)
        return [
            {
                "target": rule.database,
                "target_kind": TargetKind.SQL_DATABASE,
                "sql_database": rule.database,
                "sql_instance": sql_data_source(facts),
                "sql_permissions": sorted(rule.permissions),
                "principal_name": who.name,
                "principal_sid": who.sid,
            }
        ]
    if isinstance(rule, VerifyOnlyRule):
        return _verify_only_items(rule, facts)
    if isinstance(rule, ServiceIdentityRule):
        who = _principal(rule.account, facts)
        if rule.service.upper() not in facts.services:
            raise UnresolvedError(RuleStatus.NOT_APPLICABLE, f"service {rule.service} is not installed on this host")
        return [
            {
                "target": rule.service,
                "target_kind": TargetKind.SERVICE,
                "service_display_name": rule.display_name,
                "principal_name": who.name,
                "principal_sid": who.sid,
            }
        ]
    return _preflight_items(rule, facts)


def _verify_only_items(rule: VerifyOnlyRule, facts: Facts) -> list[dict[str, object]]:
    common: dict[str, object] = {"remedy": rule.remedy}
    if isinstance(rule, RegistryValueRule):
        return [
            {
                **common,
                "target": resolve_registry_target(rule, facts),
                "target_kind": TargetKind.REGISTRY_VALUE,
                "value_name": rule.value_name,
                "value_check": rule.check,
                "value_equals": rule.equals,
                "value_minimum": rule.minimum,
                "value_maximum": rule.maximum,
                "value_when_absent": rule.when_absent,
            }
        ]
    if isinstance(rule, RegistryAclOnlyRule):
        allowed = [_principal(p, facts) for p in rule.allowed]
        return [
            {
                **common,
                "target": resolve_registry_target(rule, facts),
                "target_kind": TargetKind.REGISTRY_KEY,
                "allowed_names": [p.name for p in allowed if p.sid is None],
                "allowed_sids": sorted({p.sid for p in allowed if p.sid is not None}),
            }
        ]
    if isinstance(rule, SmtpProbeRule):
        if SMTP_SERVICE not in facts.services:
            raise UnresolvedError(RuleStatus.NOT_APPLICABLE, f"the SMTP service ({SMTP_SERVICE}) is not installed")
        return [
            {
                **common,
                "target": "SMTP",
                "target_kind": TargetKind.SMTP_PORT,
                "smtp_check": rule.check,
                "min_days_valid": rule.min_days_valid,
            }
        ]
    if isinstance(rule, IisIpRestrictionRule):
        if not facts.management_networks:
            raise UnresolvedError(
                RuleStatus.NEEDS_INPUT,
                f"set the customer's management networks: who may reach {rule.application} is judged against them",
            )
        return [
            {
                **common,
                "target": iis_config_path(facts.system_root),
                "target_kind": TargetKind.IIS_CONFIG,
                "iis_application": rule.application,
                "allowed_networks": list(facts.management_networks),
            }
        ]
    assert isinstance(rule, MailEnableVersionRule)
    return [{**common, "target": "MailEnable", "target_kind": TargetKind.PRODUCT}]


def _preflight_items(rule: PreflightRule, facts: Facts) -> list[dict[str, object]]:
    if rule.check is PreflightCheck.AV_EXCLUSION:
        if not facts.defender_present:
            raise UnresolvedError(
                RuleStatus.NOT_APPLICABLE,
                "Windows Defender is not present; exclude the store in any third-party scanner by hand",
            )
        return [
            {"target": path, "target_kind": TargetKind.AV_EXCLUSION, "preflight_check": rule.check}
            for path in resolve_file_target(rule.target, facts)
        ]
    if rule.check is PreflightCheck.INDEXING_SERVICE_STOPPED:
        if facts.os_build >= FIRST_BUILD_WITHOUT_INDEXING_SERVICE:
            raise UnresolvedError(
                RuleStatus.NOT_APPLICABLE, "the Indexing Service does not exist from Windows Server 2012 on"
            )
        if not facts.indexing_service_present:
            raise UnresolvedError(RuleStatus.NOT_APPLICABLE, "the Indexing Service is not installed")
    elif not facts.windows_search_present:
        raise UnresolvedError(RuleStatus.NOT_APPLICABLE, "Windows Search is not installed")
    return [{"target": rule.target, "target_kind": TargetKind.SERVICE, "preflight_check": rule.check}]


def _unresolved_item(rule: Rule, facts: Facts, status: RuleStatus, reason: str) -> list[dict[str, object]]:
    """Items for a rule that will not be acted on: still one per target where that is knowable."""
    kind, targets = _nominal_targets(rule, facts)
    return [{"target": t, "target_kind": kind, "status": status, "reason": reason} for t in targets]


def _nominal_targets(rule: Rule, facts: Facts) -> tuple[TargetKind, list[str]]:
    if isinstance(rule, RegistryAclRule):
        return TargetKind.REGISTRY_KEY, [resolve_registry_target(rule, facts)]
    if isinstance(rule, FileAclRule | FileDenyRule | PathAclRule):
        folder = isinstance(rule, PathAclRule) or (isinstance(rule, FileAclRule) and rule.folder)
        try:
            paths = resolve_file_target(rule.target, facts)
        except UnresolvedError:
            paths = [rule.target]
        return (TargetKind.DIRECTORY if folder else TargetKind.FILE), paths
    if isinstance(rule, LocalUserRule):
        return TargetKind.USER, [_principal(rule.name, facts).name]
    if isinstance(rule, LocalGroupRule):
        return TargetKind.GROUP, [_principal(rule.name, facts).name]
    if isinstance(rule, GroupMemberRule):
        return TargetKind.MEMBERSHIP, [_principal(rule.group, facts).name]
    if isinstance(rule, UserRightRule):
        return TargetKind.RIGHT, [rule.right]
    if isinstance(rule, SqlGrantRule):
        return TargetKind.SQL_DATABASE, [rule.database]
    if isinstance(rule, ServiceIdentityRule):
        return TargetKind.SERVICE, [rule.service]
    if isinstance(rule, RegistryValueRule):
        return TargetKind.REGISTRY_VALUE, [resolve_registry_target(rule, facts)]
    if isinstance(rule, RegistryAclOnlyRule):
        return TargetKind.REGISTRY_KEY, [resolve_registry_target(rule, facts)]
    if isinstance(rule, SmtpProbeRule):
        return TargetKind.SMTP_PORT, ["SMTP"]
    if isinstance(rule, MailEnableVersionRule):
        return TargetKind.PRODUCT, ["MailEnable"]
    if isinstance(rule, IisIpRestrictionRule):
        return TargetKind.IIS_CONFIG, [iis_config_path(facts.system_root)]
    if rule.check is PreflightCheck.AV_EXCLUSION:
        return TargetKind.AV_EXCLUSION, [rule.target]
    return TargetKind.SERVICE, [rule.target]


def compile_plan(profile: Profile, facts: Facts, advisories: Sequence[Advisory] = ()) -> Plan:
    """Resolve every rule of `profile` against `facts` into a `Plan`.

    Rules whose condition is false become `not_applicable`, rules that depend on an
    operator-declared fact still `unknown` become `needs_input`; both carry a reason.
    The integrated-authentication rights, declared yes, stay `needs_input` unless
    `facts.integrated_auth_exception` is active (`lockdown.rules.exceptions`).
    A service absent from `facts.services` is `not_applicable`, and so is a rule for a feature the
    host's MailEnable edition does not have. `advisories` (the imported advisory file) travel in the
    `mailenable_version` items that judge the host's version against them.
    """
    items: list[PlanItem] = []
    conflicts = integrated_auth_conflicts(profile.rules)
    for rule in profile.rules:
        base = _base_fields(rule)
        decided = _edition_status(rule, facts) or _condition_status(rule.condition, facts, conflicts)
        if decided is not None and _uncovered_right(rule, facts):
            # Declared, but no exception in force: never granted, and read, so one still held is drift.
            base = {**base, "judge": Judge.RIGHT_NOT_HELD, "reason": decided[1]}
            decided = None
        if decided is not None:
            specifics = _unresolved_item(rule, facts, *decided)
        else:
            try:
                specifics = _rule_items(rule, facts)
            except UnresolvedError as unresolved:
                specifics = _unresolved_item(rule, facts, unresolved.status, unresolved.reason)
        if isinstance(rule, MailEnableVersionRule):
            specifics = [{**fields, "advisories": list(advisories)} for fields in specifics]
        items.extend(PlanItem.model_validate({**base, **fields}) for fields in specifics)
    return Plan(
        profile_slug=profile.slug,
        profile_version=profile.version,
        computer_name=facts.computer_name,
        items=items,
    )
