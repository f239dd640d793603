"""What to read for a plan, and the observations (`ObservedItem`) built from what was read.

One read step per distinct object (a file read once however many rules name it), all in one
program; `build_observations` turns the step results into the per-item observations that
`lockdown.rules.evaluate` judges. Everything here is Python: the host only read.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import ValidationError

from lockdown.engine import iisconfig, sddl
from lockdown.engine.program import Step, StepResult
from lockdown.rules.observed import (
    AccountObservation,
    ObservedItem,
    SearchObservation,
    ServiceObservation,
    SqlObservation,
)
from lockdown.rules.plan import Plan, PlanItem
from lockdown.rules.vocabulary import (
    VERIFY_ONLY_TYPES,
    WORKER_PROBE_TYPES,
    Judge,
    PreflightCheck,
    RuleType,
    TargetKind,
    ValueCheck,
)

UF_ACCOUNTDISABLE: Final = 0x2
UF_PASSWD_CANT_CHANGE: Final = 0x40
UF_DONT_EXPIRE_PASSWD: Final = 0x10000
ACL_TYPES: Final = frozenset({RuleType.REGISTRY_ACL, RuleType.FILE_ACL, RuleType.FILE_DENY, RuleType.PATH_ACL})
MAX_VALUE_TEXT: Final = 4096
SEARCH_CHECKS: Final = frozenset({PreflightCheck.WINDOWS_SEARCH_STOPPED, PreflightCheck.INDEXING_SERVICE_STOPPED})
# 64-bit PowerShell opens a key as named; compile_plan already put WOW6432Node in 32-bit paths.
REGISTRY_VIEW: Final = 64
SQL_INSTANCE_DEFAULT: Final = "."
ME_KEY: Final = "HKLM\\SOFTWARE\\Mail Enable\\Mail Enable"
ME_VALUES: Final = (
    "Program Directory",
    "Application Directory",
    "Configuration Directory",
    "Mail Root",
    "Enterprise Version",
    "Professional Version",
    "Standard Version",
    "Version",
)
ME_VERSION_VALUES: Final = ("Enterprise Version", "Professional Version", "Standard Version", "Version")


def edition_and_version(values: Mapping[str, Any]) -> tuple[str, str | None]:
    """MailEnable's edition and version from its key's values (mailenable-facts.md §2: `Enterprise Version`,
    `Professional Version`, else `Version`); the key exists, so it is at least Standard."""

    def text(name: str) -> str | None:
        value = values.get(name)
        return value[:40] if isinstance(value, str) and value else None

    for candidate in ("Enterprise", "Professional"):
        found = text(f"{candidate} Version")
        if found:
            return candidate, found
    return "Standard", text("Standard Version") or text("Version")


def short_name(name: str) -> str:
    return name.rsplit("\\", 1)[-1]


def local_account(name: str | None, computer: str) -> str | None:
    """The short name of a local account (`HOST\\x` or a bare name), else None (BUILTIN, NT AUTHORITY)."""
    if not name:
        return None
    if "\\" not in name:
        return name
    domain, _, short = name.partition("\\")
    return short if domain.upper() == computer.upper() else None


def acl_read_args(item: PlanItem) -> dict[str, Any]:
    if item.target_kind is TargetKind.REGISTRY_KEY:
        return {"kind": "key", "path": item.target, "view": REGISTRY_VIEW}
    return {"kind": "path", "path": item.target}


def sql_instance(item: PlanItem) -> str:
    return item.sql_instance or SQL_INSTANCE_DEFAULT


# SQL errors that mean the WinRM account may not read or change what the rule needs: not a host
# fault but an input the operator must give (Microsoft Learn, "Database engine events and errors").
SQL_NEEDS_ROLE: Final = {
    "sql_18456": "log in to SQL Server",  # Login failed for user
    "sql_229": "read the permission catalog",  # The %ls permission was denied
    "sql_300": "read the permission catalog",  # VIEW SERVER STATE / VIEW DEFINITION permission denied
    "sql_15247": "create logins and users",  # User does not have permission to perform this action
}
SQL_ROLE_TEXT: Final = (
    "the WinRM account cannot {what} on {instance}: give it the sysadmin server role (or securityadmin "
    "plus db_owner on {database}), or harden SQL by hand"
)


def _sql_params(item: PlanItem) -> dict[str, str]:
    return {"database": item.sql_database or item.target, "login": item.principal_name or ""}


@dataclass
class Reads:
    """The read steps of one observation, keyed so the same object is read once."""

    prefix: str
    plan: Plan
    steps: list[Step] = field(default_factory=list)
    ids: dict[tuple[Any, ...], str] = field(default_factory=dict)
    extra_services: set[str] = field(default_factory=set)

    def _add(self, key: tuple[Any, ...], op: str, args: dict[str, Any]) -> str:
        if key not in self.ids:
            step_id = f"{self.prefix}{len(self.ids) + 1}"
            self.ids[key] = step_id
            self.steps.append(Step(id=step_id, op=op, args=args))
        return self.ids[key]

    def sd(self, args: dict[str, Any]) -> str:
        return self._add(("sd", args["kind"], args["path"].casefold(), args.get("view")), "sd_read", args)

    def user(self, name: str) -> str:
        return self._add(("user", name.casefold()), "user_get", {"name": name})

    def group(self, name: str) -> str:
        return self._add(("group", name.casefold()), "group_get", {"name": name})

    def lsa(self, right: str) -> str:
        return self._add(("lsa", right), "lsa_enum", {"right": right})

    def sql(self, statement: str, params: dict[str, str], instance: str = SQL_INSTANCE_DEFAULT) -> str:
        key = ("sql", instance.casefold(), statement, tuple(sorted(params.items())))
        return self._add(key, "sql", {"instance": instance, "statement": statement, "params": params})

    def defender(self) -> str:
        return self._add(("defender",), "defender_get", {})

    def registry(self, path: str, view: int, names: list[str] | None) -> str:
        key = ("reg", path.casefold(), view, tuple(names) if names is not None else None)
        return self._add(key, "registry_read", {"path": path, "view": view, "names": names})

    def file(self, path: str) -> str:
        args = {"path": path, "max_bytes": iisconfig.MAX_CONFIG_BYTES}
        return self._add(("file", path.casefold()), "file_read", args)


def actionable(plan: Plan) -> list[PlanItem]:
    return [item for item in plan.items if item.status is None]


def principal_names(plan: Plan) -> list[str]:
    items = actionable(plan)
    return sorted(
        {item.principal_name for item in items if item.principal_name}
        | {name for item in items for name in item.allowed_names}
    )


def value_names(item: PlanItem) -> list[str] | None:
    """What a registry_value item reads: its one value, or every value (None) for key_has_values."""
    return None if item.value_check is ValueCheck.KEY_HAS_VALUES or not item.value_name else [item.value_name]


def service_names(plan: Plan) -> list[str]:
    return sorted(
        {item.target for item in actionable(plan) if item.rule_type is RuleType.SERVICE_IDENTITY}
        | {item.target for item in actionable(plan) if item.preflight_check in SEARCH_CHECKS}
    )


def read_steps(plan: Plan, prefix: str, *, services: Iterable[str] = ()) -> Reads:
    """Every read the plan's actionable items need, plus the named services' states."""
    reads = Reads(prefix=prefix, plan=plan)
    names = principal_names(plan)
    if names:
        reads._add(("sids",), "sid_lookup", {"names": names})
    for name in names:
        local = local_account(name, plan.computer_name)
        if local is not None:
            reads.user(local)
    for item in actionable(plan):
        kind = item.rule_type
        if kind in ACL_TYPES:
            reads.sd(acl_read_args(item))
        elif kind is RuleType.LOCAL_USER:
            reads.user(short_name(item.principal_name or item.target))
        elif kind in (RuleType.LOCAL_GROUP, RuleType.GROUP_MEMBER):
            reads.group(short_name(item.group_name or item.target))
        elif kind is RuleType.USER_RIGHT:
            reads.lsa(item.right or item.target)
        elif kind is RuleType.SQL_GRANT:
            params = _sql_params(item)
            instance = sql_instance(item)
            reads.sql("login_exists", {"login": params["login"]}, instance)
            reads.sql("user_exists", params, instance)
            reads.sql("permissions", params, instance)
        elif kind is RuleType.PREFLIGHT and item.judge is Judge.AV_EXCLUSION_COVERS:
            reads.defender()
        elif kind is RuleType.REGISTRY_VALUE:
            reads.registry(item.target, REGISTRY_VIEW, value_names(item))
        elif kind is RuleType.REGISTRY_ACL_ONLY:
            reads.sd(acl_read_args(item))
        elif kind is RuleType.MAILENABLE_VERSION:
            reads.registry(ME_KEY, 32, list(ME_VERSION_VALUES))
        elif kind is RuleType.IIS_IP_RESTRICTION:
            reads.file(item.target)
    wanted = sorted(set(service_names(plan)) | set(services), key=str.casefold)
    if wanted:
        reads._add(("services",), "service_get", {"names": wanted})
    return reads


class ReadError(Exception):
    """A read step failed, or its result does not have the contract's shape."""


class SqlRoleNeeded(Exception):
    """SQL Server refused the WinRM account: the operator must grant a role (needs_input)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _result(results: Mapping[str, StepResult], step_id: str | None) -> dict[str, Any]:
    if step_id is None or step_id not in results:
        raise ReadError("not read")
    step = results[step_id]
    if step.status != "ok" or step.result is None:
        error = step.error
        raise ReadError(f"{error.message} [{error.code}]" if error is not None else f"read step {step.status}")
    return step.result


def _str_list(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ReadError("expected a list of strings")
    return [v.upper() if v.upper().startswith("S-1-") else v for v in value]


@dataclass
class Observed:
    """The results of one read set, with lookups by object."""

    reads: Reads
    results: Mapping[str, StepResult]

    def get(self, key: tuple[Any, ...]) -> dict[str, Any]:
        return _result(self.results, self.reads.ids.get(key))

    def sids(self) -> dict[str, str | None]:
        if ("sids",) not in self.reads.ids:
            return {}
        data = self.get(("sids",)).get("sids") or {}
        if not isinstance(data, dict):
            raise ReadError("sid_lookup: sids is not an object")
        return {str(k).casefold(): (str(v).upper() if v else None) for k, v in data.items()}

    def sid_of(self, name: str | None) -> str | None:
        if not name:
            return None
        try:
            return self.sids().get(name.casefold())
        except ReadError:
            return None

    def user(self, name: str) -> dict[str, Any]:
        return self.get(("user", name.casefold()))

    def group(self, name: str) -> dict[str, Any]:
        return self.get(("group", name.casefold()))

    def sd(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.get(("sd", args["kind"], args["path"].casefold(), args.get("view")))

    def file(self, path: str) -> dict[str, Any]:
        return self.get(("file", path.casefold()))

    def registry(self, path: str, view: int, names: list[str] | None) -> dict[str, Any]:
        return self.get(("reg", path.casefold(), view, tuple(names) if names is not None else None))

    def services(self) -> dict[str, dict[str, Any]]:
        data = self.get(("services",)).get("services") or []
        if not isinstance(data, list):
            raise ReadError("service_get: services is not a list")
        return {str(s.get("name", "")).casefold(): s for s in data if isinstance(s, dict)}

    def groups_of(self, principal: str | None) -> list[str]:
        local = local_account(principal, self.reads.plan.computer_name)
        if local is None:
            return []
        try:
            data = self.user(local)
        except ReadError:
            return []
        return _str_list(data.get("groups")) if data.get("exists") else []

    def sql_rows(self, statement: str, params: dict[str, str], instance: str) -> list[Any]:
        key = ("sql", instance.casefold(), statement, tuple(sorted(params.items())))
        step_id = self.reads.ids.get(key)
        step = self.results.get(step_id) if step_id is not None else None
        if step is not None and step.error is not None and step.error.code in SQL_NEEDS_ROLE:
            raise SqlRoleNeeded(step.error.code)
        rows = self.get(key).get("rows") or []
        if not isinstance(rows, list):
            raise ReadError("sql: rows is not a list")
        return rows


def _registry_values(data: dict[str, Any]) -> dict[str, int | str | list[str]]:
    """A registry_read's values, untrusted: only the contract's shapes (DWORD/QWORD int, string, string list)."""
    raw = data.get("values") or {}
    if not isinstance(raw, dict):
        raise ReadError("registry_read: values is not an object")
    values: dict[str, int | str | list[str]] = {}
    for name, value in list(raw.items())[:500]:
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            values[str(name)[:MAX_VALUE_TEXT]] = value
        elif isinstance(value, str):
            values[str(name)[:MAX_VALUE_TEXT]] = value[:MAX_VALUE_TEXT]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            values[str(name)[:MAX_VALUE_TEXT]] = [v[:MAX_VALUE_TEXT] for v in value[:100]]
    return values


def _observe_web_access(item: PlanItem, data: dict[str, Any], base: dict[str, Any]) -> ObservedItem:
    """applicationHost.config's bytes, parsed here; only the access facts leave (never the file's text)."""
    if not data.get("exists"):
        return ObservedItem(**base, exists=False)
    if data.get("truncated"):
        return ObservedItem(**base, error="applicationHost.config is larger than 4 MiB; not judged")
    try:
        raw = base64.b64decode(str(data.get("data") or ""), validate=True)
        access = iisconfig.application_access(raw, item.iis_application or "")
    except (ValueError, binascii.Error) as exc:
        return ObservedItem(**base, error=f"applicationHost.config: {str(exc)[:300]}")
    return ObservedItem(**base, exists=True, web_access=access)


def _observe_verify_only(item: PlanItem, obs: Observed, base: dict[str, Any]) -> ObservedItem:
    kind = item.rule_type
    if kind is RuleType.REGISTRY_VALUE:
        data = obs.registry(item.target, REGISTRY_VIEW, value_names(item))
        if not data.get("exists"):
            return ObservedItem(**base, exists=False)
        return ObservedItem(**base, exists=True, values=_registry_values(data))
    if kind is RuleType.IIS_IP_RESTRICTION:
        return _observe_web_access(item, obs.file(item.target), base)
    if kind is RuleType.MAILENABLE_VERSION:
        data = obs.registry(ME_KEY, 32, list(ME_VERSION_VALUES))
        if not data.get("exists"):
            return ObservedItem(**base, exists=False)
        edition, version = edition_and_version(_registry_values(data))
        return ObservedItem(**base, exists=True, mailenable_edition=edition, mailenable_version=version)
    # registry_acl_only: the DACL, and the SIDs the allowed names resolved to
    data = obs.sd(acl_read_args(item))
    if not data.get("exists"):
        return ObservedItem(**base, exists=False)
    text = data.get("sddl")
    if not isinstance(text, str):
        raise ReadError("sd_read: no sddl")
    descriptor = sddl.parse(text)
    resolved = sorted({s for s in (obs.sid_of(n) for n in item.allowed_names) if s})
    return ObservedItem(
        **base,
        exists=True,
        owner_sid=descriptor.owner,
        dacl=list(descriptor.aces),
        protected=descriptor.protected,
        allowed_sids=resolved,
    )


def _observe_item(item: PlanItem, obs: Observed) -> ObservedItem:
    base: dict[str, Any] = {"rule_id": item.rule_id, "target": item.target}
    sid = obs.sid_of(item.principal_name)
    kind = item.rule_type
    if kind in VERIFY_ONLY_TYPES:
        return _observe_verify_only(item, obs, base)
    if kind in ACL_TYPES:
        data = obs.sd(acl_read_args(item))
        if not data.get("exists"):
            return ObservedItem(**base, exists=False)
        text = data.get("sddl")
        if not isinstance(text, str):
            raise ReadError("sd_read: no sddl")
        descriptor = sddl.parse(text)
        return ObservedItem(
            **base,
            exists=True,
            owner_sid=descriptor.owner,
            dacl=list(descriptor.aces),
            protected=descriptor.protected,
            principal_sid=sid,
            principal_group_sids=obs.groups_of(item.principal_name) if sid else [],
        )
    if kind is RuleType.LOCAL_USER:
        data = obs.user(short_name(item.principal_name or item.target))
        if not data.get("exists"):
            return ObservedItem(**base, account=AccountObservation(exists=False))
        flags = int(data.get("flags") or 0)
        account = AccountObservation(
            exists=True, sid=data.get("sid"), enabled=not flags & UF_ACCOUNTDISABLE, user_flags=flags
        )
        return ObservedItem(**base, account=account, principal_sid=data.get("sid"))
    if kind is RuleType.LOCAL_GROUP:
        data = obs.group(short_name(item.group_name or item.target))
        if not data.get("exists"):
            return ObservedItem(**base, account=AccountObservation(exists=False))
        return ObservedItem(**base, account=AccountObservation(exists=True, sid=data.get("sid")))
    if kind is RuleType.GROUP_MEMBER:
        data = obs.group(short_name(item.group_name or item.target))
        members = _str_list(data.get("members")) if data.get("exists") else []
        return ObservedItem(**base, group_member_sids=members, principal_sid=sid)
    if kind is RuleType.USER_RIGHT:
        data = obs.get(("lsa", item.right or item.target))
        return ObservedItem(**base, right_holder_sids=_str_list(data.get("sids")), principal_sid=sid)
    if kind is RuleType.SQL_GRANT:
        params = _sql_params(item)
        instance = sql_instance(item)
        try:
            login = bool(obs.sql_rows("login_exists", {"login": params["login"]}, instance))
            user = bool(obs.sql_rows("user_exists", params, instance))
            rows = obs.sql_rows("permissions", params, instance)
        except SqlRoleNeeded as exc:
            what = SQL_NEEDS_ROLE[exc.code]
            text = SQL_ROLE_TEXT.format(what=what, instance=instance, database=params["database"])
            return ObservedItem(**base, needs_input=text)
        perms = [str(row[0]) for row in rows if isinstance(row, list) and row]
        sql = SqlObservation(login_exists=login, user_exists=user, permissions=perms)
        return ObservedItem(**base, sql=sql, principal_sid=sid)
    if kind is RuleType.SERVICE_IDENTITY:
        svc = obs.services().get(item.target.casefold())
        if svc is None or not svc.get("exists"):
            return ObservedItem(**base, service=ServiceObservation(exists=False))
        service = ServiceObservation(
            exists=True,
            start_name=svc.get("start_name"),
            start_name_sid=svc.get("start_name_sid"),
            state=svc.get("state"),
            start_mode=svc.get("start_mode"),
        )
        return ObservedItem(**base, service=service, principal_sid=sid)
    if item.judge is Judge.AV_EXCLUSION_COVERS:
        data = obs.get(("defender",))
        if not data.get("installed"):
            return ObservedItem(**base, error="Get-MpPreference: Microsoft Defender is not running on this host")
        return ObservedItem(**base, av_exclusions=_str_list(data.get("paths")))
    svc = obs.services().get(item.target.casefold())
    present = svc is not None and bool(svc.get("exists"))
    state = svc.get("state") if svc is not None and present else None
    return ObservedItem(**base, search=SearchObservation(present=present, state_before=state))


def build_observations(plan: Plan, observed: Observed) -> list[ObservedItem]:
    """One `ObservedItem` per actionable plan item, in plan order; a failed read is the item's error."""
    items = []
    for item in actionable(plan):
        if item.rule_type in WORKER_PROBE_TYPES:
            continue  # the worker observes these itself (lockdown.engine.probes)
        try:
            items.append(_observe_item(item, observed))
        except (ReadError, sddl.SddlError, ValidationError, ValueError, TypeError) as exc:
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            items.append(ObservedItem(rule_id=item.rule_id, target=item.target, error=text[:4096]))
    return items
