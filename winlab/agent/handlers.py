"""The agent's handlers in Python: one per (mode x rule type), with the PowerShell's semantics.

Every apply handler follows the agent contract: observe -> compare numerically (SIDs, masks,
flags) -> if not compliant: snapshot, change, re-observe. A failure of one item (access denied
on one object, an account that cannot be resolved) is reported on that item and the run goes on.
Rollback handlers are per target kind (a ChangeRecord names its target kind, not its rule type)
and undo only what `after` added relative to `before`, leaving changes made by others alone.

`HANDLERS[(mode, rule_type)]` is the table the conformance check reads (`lockdown/agent`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Final

from lockdown.rules.contract import ChangeRecord, RotationReport
from lockdown.rules.observed import (
    AccountObservation,
    ObservedItem,
    SearchObservation,
    ServiceObservation,
    SqlObservation,
)
from lockdown.rules.plan import PlanItem
from lockdown.rules.vocabulary import AceType, AgentMode, Judge, RuleAction, RuleType, TargetKind
from winlab.agent.context import (
    AgentRun,
    ItemError,
    ace_flags_to_model,
    dumps,
    error_text,
    failed_item,
    observed_ace,
)
from winlab.windows import security as sec
from winlab.windows import sids
from winlab.windows.accounts import UF_ACCOUNTDISABLE, UF_DONT_EXPIRE_PASSWD, UF_PASSWD_CANT_CHANGE
from winlab.windows.errors import (
    ERROR_LOGON_FAILURE,
    HRESULT_DEFENDER_UNAVAILABLE,
    STATUS_NO_MORE_ENTRIES,
    NtStatusError,
    Win32Error,
)
from winlab.windows.registry import view_path
from winlab.windows.services import LOCAL_SYSTEM_NAMES, WMI_SUCCESS
from winlab.windows.sql import SqlError, SqlSession
from winlab.windows.tokens import LogonType
from winlab.windows.tree import SecuredTree

Handler = Callable[[AgentRun, PlanItem], ObservedItem]
RollbackHandler = Callable[[AgentRun, ChangeRecord], ChangeRecord]
_ERRORS: Final = (Win32Error, SqlError, ItemError)
_IMPLICIT: Final = frozenset({sids.EVERYONE, sids.AUTHENTICATED_USERS, sids.USERS})
_WMI_TEXT: Final = {2: "access denied", 15: "logon failed", 21: "invalid parameter", 22: "invalid service account"}


def _short(name: str) -> str:
    return name.rsplit("\\", 1)[-1]


# --- the apply skeleton ---------------------------------------------------------------------------
Observe = Callable[[AgentRun, PlanItem], ObservedItem]
Judged = Callable[[AgentRun, PlanItem, ObservedItem], bool | None]
Change = Callable[[AgentRun, PlanItem, ObservedItem], None]


def _observe_safely(observe: Observe, run: AgentRun, item: PlanItem) -> ObservedItem:
    try:
        return observe(run, item)
    except _ERRORS as exc:
        return failed_item(item, error_text(exc))


def _apply(run: AgentRun, item: PlanItem, observe: Observe, judged: Judged, change: Change) -> ObservedItem:
    """observe -> compare -> (snapshot, change, re-observe); `judged` None means nothing to do."""
    before = _observe_safely(observe, run, item)
    if before.error is not None:
        return before
    verdict = judged(run, item, before)
    if verdict is not False:
        return before.model_copy(update={"compliant": verdict, "sddl_before": None})
    run.before_first_change()
    try:
        change(run, item, before)
    except _ERRORS as exc:
        after = _observe_safely(observe, run, item)
        changed = any(c.rule_id == item.rule_id and c.target == item.target for c in run.changes)
        update: dict[str, object] = {
            "error": error_text(exc)[:4096],
            "action": RuleAction.CHANGED if changed else RuleAction.FAILED,
            "compliant": False,
        }
        if changed:
            update["sddl_before"] = before.sddl_before
            update["sddl_after"] = after.sddl_before
        return after.model_copy(update=update)
    finally:
        run.tick()
    after = _observe_safely(observe, run, item)
    if after.error is not None:
        return after.model_copy(update={"action": RuleAction.CHANGED})
    return after.model_copy(
        update={
            "action": RuleAction.CHANGED,
            "compliant": judged(run, item, after),
            "sddl_before": before.sddl_before,
            "sddl_after": after.sddl_before,
        }
    )


# --- ACLs: files, folders, registry keys -----------------------------------------------------------
def _tree(run: AgentRun, kind: TargetKind, target: str) -> tuple[SecuredTree, str, sec.ObjectKind]:
    if kind is TargetKind.REGISTRY_KEY:
        # 64-bit PowerShell opens the key as named; compile_plan already put WOW6432Node in the path.
        return run.host.registry.tree, view_path(target, 64), sec.ObjectKind.REGISTRY_KEY
    node = run.host.fs.tree.find(target)
    kind_model = node.kind if node is not None else sec.ObjectKind.FILE
    return run.host.fs.tree, target, kind_model


def _observe_acl(run: AgentRun, item: PlanItem) -> ObservedItem:
    """Get-Acl: owner, ordered DACL (raw masks), protection; the principal's SID and groups.

    The current SDDL travels in `sddl_before` (the apply skeleton turns it into before/after)."""
    tree, path, _kind = _tree(run, item.target_kind, item.target)
    if not tree.exists(path):
        return ObservedItem(rule_id=item.rule_id, target=item.target, exists=False)
    sd = tree.get_sd(path, run.token)
    sid = run.resolve(item.principal_name, item.principal_sid)
    return ObservedItem(
        rule_id=item.rule_id,
        target=item.target,
        exists=True,
        owner_sid=sd.owner,
        dacl=[observed_ace(a) for a in sd.dacl],
        protected=sd.protected,
        principal_sid=sid,
        principal_group_sids=run.group_sids(sid) if sid else [],
        effective_mask=_effective(sd, sid, run, tree.registry) if sid else None,
        sddl_before=sec.to_sddl(sd),
    )


def _token_sids(run: AgentRun, sid: str) -> frozenset[str]:
    return frozenset({sid, *_IMPLICIT, *run.group_sids(sid)})


def _effective(sd: sec.SecurityDescriptor, sid: str, run: AgentRun, registry: bool) -> int:
    """Allowed bits no deny removes, for the principal and the groups every local logon carries."""
    mapping = sec.KEY_MAPPING if registry else sec.FILE_MAPPING
    token = _token_sids(run, sid)
    allowed = denied = 0
    for ace in sd.dacl:
        if ace.inherit_only or ace.sid not in token:
            continue
        if ace.type is sec.AceType.DENY:
            denied |= mapping.map(ace.mask)
        else:
            allowed |= mapping.map(ace.mask)
    return allowed & ~denied


def _acl_judged(run: AgentRun, item: PlanItem, obs: ObservedItem) -> bool | None:
    if obs.exists is False or obs.dacl is None:
        return None
    sid = obs.principal_sid
    if sid is None:
        return False
    registry = item.target_kind is TargetKind.REGISTRY_KEY
    mapping = sec.KEY_MAPPING if registry else sec.FILE_MAPPING
    want = item.access_mask or 0
    effective = obs.effective_mask or 0
    if item.judge is Judge.EFFECTIVE_ACCESS:
        return effective & want == want
    explicit = [a for a in obs.dacl if a.sid == sid and not a.inherited and "inherit_only" not in a.flags]
    if item.judge is Judge.EXPLICIT_DENY_ACE:
        return any(a.type is AceType.DENY and mapping.map(a.mask) & want == want for a in explicit)
    denies = [a for a in obs.dacl if a.type is AceType.DENY and a.sid in _token_sids(run, sid) and not a.flags]
    if any(mapping.map(a.mask) & want for a in denies):
        return False
    needed = set(item.ace_flags)
    return any(
        a.type is AceType.ALLOW and mapping.map(a.mask) & want == want and needed <= set(a.flags) for a in explicit
    )


def _acl_change(run: AgentRun, item: PlanItem, obs: ObservedItem) -> None:
    """Get-Acl -> AddAccessRule(SID, mask, flags) -> Set-Acl (DACL only; the owner is left alone)."""
    sid = obs.principal_sid
    if sid is None:
        raise ItemError(f"{item.principal_name} does not exist on this host (no SID to grant to)")
    tree, path, _kind = _tree(run, item.target_kind, item.target)
    ace_type = sec.AceType.DENY if item.ace_type is AceType.DENY else sec.AceType.ALLOW
    ace = sec.Ace(ace_type, sid, item.access_mask or 0, ace_flags_to_model(item.ace_flags))
    before = sec.to_sddl(tree.get_sd(path, run.token))
    result = tree.add_access_rule(path, ace, run.token)
    after = sec.to_sddl(tree.get_sd(path, run.token))
    if result.changed:
        run.record(item, item.target_kind, before, after)
    if result.failures:
        first, code = result.failures[0]
        raise ItemError(
            f"the ACE was written but {len(result.failures)} object(s) below could not be updated; first: "
            f"{first}: {Win32Error(code).message} [Win32 error {code}]"
        )


def _file_scope(handler: Handler) -> Handler:
    def wrapped(run: AgentRun, item: PlanItem) -> ObservedItem:
        with run.file_privileges():
            return handler(run, item)

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


def registry_acl_verify(run: AgentRun, item: PlanItem) -> ObservedItem:
    """Get-Acl on the key (no privilege enabled: the Registry provider enables none)."""
    return _observe_safely(_observe_acl, run, item).model_copy(update={"sddl_before": None})


def registry_acl_apply(run: AgentRun, item: PlanItem) -> ObservedItem:
    """RegistryAccessRule(SID, mask, CI or none) added with Set-Acl; no privilege enabled."""
    return _apply(run, item, _observe_acl, _acl_judged, _acl_change)


def _file_verify(run: AgentRun, item: PlanItem) -> ObservedItem:
    return _observe_safely(_observe_acl, run, item).model_copy(update={"sddl_before": None})


def _file_apply(run: AgentRun, item: PlanItem) -> ObservedItem:
    return _apply(run, item, _observe_acl, _acl_judged, _acl_change)


file_acl_verify = _file_scope(_file_verify)
file_acl_apply = _file_scope(_file_apply)
file_deny_verify = _file_scope(_file_verify)
file_deny_apply = _file_scope(_file_apply)
path_acl_verify = _file_scope(_file_verify)
path_acl_apply = _file_scope(_file_apply)
for _name, _fn in (
    ("file_acl_verify", file_acl_verify),
    ("file_acl_apply", file_acl_apply),
    ("file_deny_verify", file_deny_verify),
    ("file_deny_apply", file_deny_apply),
    ("path_acl_verify", path_acl_verify),
    ("path_acl_apply", path_acl_apply),
):
    _fn.__name__ = _name


# --- local users and groups -------------------------------------------------------------------------
def _observe_user(run: AgentRun, item: PlanItem) -> ObservedItem:
    name = item.principal_name or item.target
    user = run.host.accounts.users.get(_short(name).lower())
    if user is None:
        return ObservedItem(rule_id=item.rule_id, target=item.target, account=AccountObservation(exists=False))
    account = AccountObservation(exists=True, sid=user.sid, enabled=user.enabled, user_flags=user.flags)
    return ObservedItem(rule_id=item.rule_id, target=item.target, account=account, principal_sid=user.sid)


def _user_judged(run: AgentRun, item: PlanItem, obs: ObservedItem) -> bool | None:
    acct = obs.account
    if acct is None or not acct.exists or not acct.enabled:
        return False
    return not (item.password_never_expires and not (acct.user_flags or 0) & UF_DONT_EXPIRE_PASSWD)


def _user_change(run: AgentRun, item: PlanItem, obs: ObservedItem) -> None:
    """ADSI WinNT://: Create('User') + SetPassword + SetInfo, or fix UserFlags of an existing account."""
    short = _short(item.principal_name or item.target)
    accounts = run.host.accounts
    acct = obs.account
    if acct is None or not acct.exists:
        password = run.service_password
        if password is None:
            raise ItemError(f"{short} does not exist and the request carries no service_password to create it")
        flags = UF_PASSWD_CANT_CHANGE | (UF_DONT_EXPIRE_PASSWD if item.password_never_expires else 0)
        user = accounts.create_user(short, password, run.token, flags=flags, description="MailEnable services")
        run.created_accounts.add(user.sid)
        run.record(
            item,
            TargetKind.USER,
            None,
            dumps({"name": user.name, "sid": user.sid, "flags": user.flags}),
            created=True,
        )
        return
    user = accounts.user(short)
    flags = user.flags & ~UF_ACCOUNTDISABLE
    if item.password_never_expires:
        flags |= UF_DONT_EXPIRE_PASSWD
    before = dumps({"name": user.name, "sid": user.sid, "flags": user.flags})
    if accounts.set_flags(short, flags, run.token):
        run.record(item, TargetKind.USER, before, dumps({"name": user.name, "sid": user.sid, "flags": user.flags}))


def local_user_verify(run: AgentRun, item: PlanItem) -> ObservedItem:
    """[ADSI]WinNT://HOST/name: exists, SID, UserFlags (disabled, password never expires)."""
    return _observe_safely(_observe_user, run, item)


def local_user_apply(run: AgentRun, item: PlanItem) -> ObservedItem:
    """Create the account with the request's service_password, or enable it / set DONT_EXPIRE_PASSWD.

    An existing account (e.g. made by MEInstaller) is adopted: its password is reset only when the
    request says `reset_adopted_password` (the operator's choice; see `reset_adopted_password`)."""
    observed = _apply(run, item, _observe_user, _user_judged, _user_change)
    try:
        reset_adopted_password(run, item)
    except _ERRORS as exc:
        return observed.model_copy(update={"error": error_text(exc)[:4096], "action": RuleAction.FAILED})
    return observed


# --- the service account's password (apply with reset_adopted_password; rotate_password) -------------
def services_running_as(run: AgentRun, sid: str) -> list[str]:
    """Win32_Service whose StartName translates to `sid` (compared by SID, never by name)."""
    services = run.host.services
    names = []
    for svc in services.all():
        try:
            if services.account_sid(svc.name) == sid:
                names.append(svc.name)
        except Win32Error:
            continue
    return sorted(names)


def set_service_passwords(run: AgentRun, names: list[str], password: str) -> None:
    """Win32_Service.Change(StartPassword) only: the identity stays, the password is replaced."""
    for name in names:
        code = run.host.services.change(name, run.token, password=password)
        if code != WMI_SUCCESS:
            raise ItemError(f"Win32_Service.Change on {name} returned {code} ({_WMI_TEXT.get(code, 'failed')})")


def reset_adopted_password(run: AgentRun, item: PlanItem) -> None:
    """SetPassword on the service account this run did not create, then give every service running as it
    the new password; the restart and health check follow the run. DANGER: not recorded as a change,
    because it cannot be rolled back (the previous password is not known)."""
    request = run.request
    password = run.service_password
    if not request.reset_adopted_password or password is None or run.rotation is not None:
        return
    short = _short(item.principal_name or item.target)
    if short.lower() != request.service_account.lower():
        return
    user = run.host.accounts.users.get(short.lower())
    if user is None or user.sid in run.created_accounts:
        return
    run.host.accounts.set_password(user.name, password, run.token)
    names = services_running_as(run, user.sid)
    set_service_passwords(run, names, password)
    running = [name for name in names if run.host.services.get(name).running]
    run.restart.extend(name for name in running if name not in run.restart)
    run.rotation = RotationReport(account=user.name, account_sid=user.sid, services=names, password_set=True)


def _observe_group(run: AgentRun, item: PlanItem) -> ObservedItem:
    group = run.host.accounts.groups.get(_short(item.group_name or item.target).lower())
    if group is None:
        return ObservedItem(rule_id=item.rule_id, target=item.target, account=AccountObservation(exists=False))
    return ObservedItem(
        rule_id=item.rule_id, target=item.target, account=AccountObservation(exists=True, sid=group.sid)
    )


def _group_judged(run: AgentRun, item: PlanItem, obs: ObservedItem) -> bool | None:
    return obs.account is not None and obs.account.exists


def _group_change(run: AgentRun, item: PlanItem, obs: ObservedItem) -> None:
    group = run.host.accounts.create_group(
        _short(item.group_name or item.target), run.token, description="MailEnable store users"
    )
    run.record(item, TargetKind.GROUP, None, dumps({"name": group.name, "sid": group.sid}), created=True)


def local_group_verify(run: AgentRun, item: PlanItem) -> ObservedItem:
    """[ADSI]WinNT://HOST/name,group: exists and its SID."""
    return _observe_safely(_observe_group, run, item)


def local_group_apply(run: AgentRun, item: PlanItem) -> ObservedItem:
    """Create('group') when absent; an existing group (IME_STORE_USERS) is adopted by the plan."""
    return _apply(run, item, _observe_group, _group_judged, _group_change)


def _observe_members(run: AgentRun, item: PlanItem) -> ObservedItem:
    # A group that does not exist yet has no members (the local_group rule creates it first).
    group = run.host.accounts.groups.get(_short(item.group_name or item.target).lower())
    sid = run.resolve(item.principal_name, item.principal_sid)
    members = list(group.members) if group is not None else []
    return ObservedItem(rule_id=item.rule_id, target=item.target, group_member_sids=members, principal_sid=sid)


def _members_judged(run: AgentRun, item: PlanItem, obs: ObservedItem) -> bool | None:
    return obs.principal_sid is not None and obs.principal_sid in (obs.group_member_sids or [])


def _members_change(run: AgentRun, item: PlanItem, obs: ObservedItem) -> None:
    if obs.principal_sid is None:
        raise ItemError(f"{item.principal_name} does not exist on this host")
    name = _short(item.group_name or item.target)
    before = dumps({"members": list(obs.group_member_sids or [])})
    run.host.accounts.add_member(name, obs.principal_sid, run.token)
    run.record(item, TargetKind.MEMBERSHIP, before, dumps({"members": run.host.accounts.group(name).members}))


def group_member_verify(run: AgentRun, item: PlanItem) -> ObservedItem:
    """$group.psbase.Invoke('Members') -> objectSID of each member."""
    return _observe_safely(_observe_members, run, item)


def group_member_apply(run: AgentRun, item: PlanItem) -> ObservedItem:
    """$group.Add('WinNT://<SID>') when the SID is not a member."""
    return _apply(run, item, _observe_members, _members_judged, _members_change)


# --- user rights ------------------------------------------------------------------------------------
def _holders(run: AgentRun, right: str) -> list[str]:
    try:
        return run.host.lsa.enumerate_accounts_with_right(right, run.token)
    except NtStatusError as exc:
        if exc.status == STATUS_NO_MORE_ENTRIES:
            return []
        raise


def _observe_right(run: AgentRun, item: PlanItem) -> ObservedItem:
    right = item.right or item.target
    sid = run.resolve(item.principal_name, item.principal_sid)
    return ObservedItem(
        rule_id=item.rule_id, target=item.target, right_holder_sids=_holders(run, right), principal_sid=sid
    )


def _right_judged(run: AgentRun, item: PlanItem, obs: ObservedItem) -> bool | None:
    return obs.principal_sid is not None and obs.principal_sid in (obs.right_holder_sids or [])


def _right_change(run: AgentRun, item: PlanItem, obs: ObservedItem) -> None:
    if obs.principal_sid is None:
        raise ItemError(f"{item.principal_name} does not exist on this host")
    right = item.right or item.target
    before = dumps({"right": right, "holders": list(obs.right_holder_sids or [])})
    run.host.lsa.add_account_rights(obs.principal_sid, [right], run.token)
    run.record(item, TargetKind.RIGHT, before, dumps({"right": right, "holders": _holders(run, right)}))


def user_right_verify(run: AgentRun, item: PlanItem) -> ObservedItem:
    """LsaEnumerateAccountsWithUserRight (direct assignments; NO_MORE_ENTRIES = nobody)."""
    return _observe_safely(_observe_right, run, item)


def user_right_apply(run: AgentRun, item: PlanItem) -> ObservedItem:
    """LsaAddAccountRights(SID, right): per SID and additive."""
    return _apply(run, item, _observe_right, _right_judged, _right_change)


# --- SQL Server ----------------------------------------------------------------------------------
def _sql(run: AgentRun) -> SqlSession:
    if run.host.sql is None:
        raise ItemError(
            "SQL Server is not installed on this host (no MSSQLSERVER instance): "
            "the server is declared sql_integrated but does not use SQL Server"
        )
    return run.host.sql.connect(run.token)


def _sql_state(run: AgentRun, item: PlanItem) -> tuple[str | None, str | None, list[str]]:
    """(login name, database user name, explicit DATABASE-scope grants) of the principal, by SID."""
    session = _sql(run)
    sid = run.resolve(item.principal_name, item.principal_sid)
    server = session.server
    login = next((lg.name for lg in server.logins.values() if sid is not None and lg.sid == sid), None)
    database = item.sql_database or item.target
    db = server.databases.get(database.lower())
    if db is None:
        raise SqlError(911, f"Database '{database}' does not exist. Make sure that the name is entered correctly.")
    user = db.user_for_sids(frozenset({sid})) if sid is not None else None
    grants = session.database_permissions(database, user.name) if user is not None else []
    return login, user.name if user is not None else None, grants


def _observe_sql(run: AgentRun, item: PlanItem) -> ObservedItem:
    login, user, grants = _sql_state(run, item)
    sql = SqlObservation(login_exists=login is not None, user_exists=user is not None, permissions=grants)
    return ObservedItem(
        rule_id=item.rule_id, target=item.target, sql=sql, principal_sid=run.resolve(item.principal_name)
    )


def _sql_judged(run: AgentRun, item: PlanItem, obs: ObservedItem) -> bool | None:
    sql = obs.sql
    if sql is None:
        return False
    if item.judge is Judge.SQL_LOGIN_AND_USER:
        return sql.login_exists and sql.user_exists
    return set(item.sql_permissions) <= {p.upper() for p in sql.permissions}


def _sql_change(run: AgentRun, item: PlanItem, obs: ObservedItem) -> None:
    """CREATE LOGIN ... FROM WINDOWS / CREATE USER ... FOR LOGIN, or GRANT ... ON DATABASE::[db]."""
    session = _sql(run)
    name = item.principal_name or ""
    database = item.sql_database or item.target
    login, user, grants = _sql_state(run, item)
    if item.judge is Judge.SQL_LOGIN_AND_USER:
        before = dumps({"login": login, "user": user})
        created_login = created_user = False
        if login is None:
            login = session.create_login_from_windows(name).name
            created_login = True
        if user is None:
            user = session.create_user(database, name, login).name
            created_user = True
        after = dumps({"login": login, "user": user, "login_created": created_login, "user_created": created_user})
        run.record(item, TargetKind.SQL_DATABASE, before, after, created=created_login or created_user)
        return
    if user is None:
        raise ItemError(f"{name} has no user in {database} (the login rule must run first)")
    added = session.grant(database, sorted(set(item.sql_permissions) - set(grants)), user)
    if added:
        after = dumps({"user": user, "permissions": session.database_permissions(database, user)})
        run.record(item, TargetKind.SQL_DATABASE, dumps({"user": user, "permissions": grants}), after)


def sql_grant_verify(run: AgentRun, item: PlanItem) -> ObservedItem:
    """SqlConnection (Integrated Security) as the WinRM user: logins and grants by the principal's SID."""
    return _observe_safely(_observe_sql, run, item)


def sql_grant_apply(run: AgentRun, item: PlanItem) -> ObservedItem:
    """Guarded T-SQL (create only what is missing, grant only what is not granted)."""
    return _apply(run, item, _observe_sql, _sql_judged, _sql_change)


# --- services --------------------------------------------------------------------------------------
def _observe_service(run: AgentRun, item: PlanItem) -> ObservedItem:
    services = run.host.services
    if not services.exists(item.target):
        return ObservedItem(rule_id=item.rule_id, target=item.target, service=ServiceObservation(exists=False))
    svc = services.get(item.target)
    try:
        start_sid: str | None = services.account_sid(item.target)
    except Win32Error:
        start_sid = None
    observation = ServiceObservation(
        exists=True, start_name=svc.start_name, start_name_sid=start_sid, state=svc.state.value,
        start_mode=svc.start_mode.value,
    )  # fmt: skip
    sid = run.resolve(item.principal_name, item.principal_sid)
    return ObservedItem(rule_id=item.rule_id, target=item.target, service=observation, principal_sid=sid)


def _service_judged(run: AgentRun, item: PlanItem, obs: ObservedItem) -> bool | None:
    svc = obs.service
    if svc is None or not svc.exists:
        return None
    return svc.start_name_sid is not None and svc.start_name_sid == obs.principal_sid


def _service_snapshot(run: AgentRun, name: str) -> str:
    svc = run.host.services.get(name)
    return dumps({"start_name": svc.start_name, "state": svc.state.value, "start_mode": svc.start_mode.value})


def _service_change(run: AgentRun, item: PlanItem, obs: ObservedItem) -> None:
    """Win32_Service.Change(StartName, StartPassword); the restart and health check follow the run."""
    if obs.principal_sid is None:
        raise ItemError(f"{item.principal_name} does not exist on this host")
    password = run.service_password
    if password is None:
        raise ItemError("the request carries no service_password for the service account")
    if obs.principal_sid not in run.created_accounts:
        # An account this run did not create (adopted, or made by an earlier run): check the password the
        # way win_user does (LogonUser, network logon) before handing it to the service manager.
        try:
            run.host.authority.logon(item.principal_name or "", password, LogonType.NETWORK)
        except Win32Error as exc:
            if exc.code == ERROR_LOGON_FAILURE:
                raise ItemError(
                    f"{item.principal_name} exists but the service password does not match it (adopted account: "
                    "reset its password to move the service)"
                ) from None
            if exc.code != 1385:  # logon type not granted: the password itself was right
                raise
    before = _service_snapshot(run, item.target)
    code = run.host.services.change(item.target, run.token, start_name=item.principal_name, password=password)
    if code != WMI_SUCCESS:
        raise ItemError(f"Win32_Service.Change returned {code} ({_WMI_TEXT.get(code, 'failed')})")
    run.record(item, TargetKind.SERVICE, before, _service_snapshot(run, item.target))
    if item.target not in run.restart:
        run.restart.append(item.target)


def service_identity_verify(run: AgentRun, item: PlanItem) -> ObservedItem:
    """Win32_Service: StartName translated to a SID, State, StartMode."""
    return _observe_safely(_observe_service, run, item)


def service_identity_apply(run: AgentRun, item: PlanItem) -> ObservedItem:
    """Change the logon identity (SIDs compared first); restart + health check come after all items."""
    return _apply(run, item, _observe_service, _service_judged, _service_change)


# --- pre-flight -------------------------------------------------------------------------------------
def _observe_av(run: AgentRun, item: PlanItem) -> ObservedItem:
    try:
        paths = run.host.defender.get_exclusion_paths(run.token)
    except Win32Error as exc:
        if exc.code == HRESULT_DEFENDER_UNAVAILABLE:
            raise ItemError(f"Get-MpPreference: {exc.message} (Defender is not running)") from None
        raise
    return ObservedItem(rule_id=item.rule_id, target=item.target, av_exclusions=paths)


def _av_judged(run: AgentRun, item: PlanItem, obs: ObservedItem) -> bool | None:
    target = item.target.rstrip("\\").casefold()
    return any(
        target == e.rstrip("\\").casefold() or target.startswith(e.rstrip("\\").casefold() + "\\")
        for e in obs.av_exclusions or []
    )


def _av_change(run: AgentRun, item: PlanItem, obs: ObservedItem) -> None:
    before = dumps({"paths": list(obs.av_exclusions or [])})
    run.host.defender.add_exclusion_paths([item.target], run.token)
    run.record(
        item, TargetKind.AV_EXCLUSION, before, dumps({"paths": run.host.defender.get_exclusion_paths(run.token)})
    )


def _observe_search(run: AgentRun, item: PlanItem) -> ObservedItem:
    services = run.host.services
    present = services.exists(item.target)
    state = services.get(item.target).state.value if present else None
    search = SearchObservation(present=present, state_before=state)
    return ObservedItem(rule_id=item.rule_id, target=item.target, search=search)


def preflight_verify(run: AgentRun, item: PlanItem) -> ObservedItem:
    """(Get-MpPreference).ExclusionPath, or the state of WSearch / cisvc."""
    if item.judge is Judge.AV_EXCLUSION_COVERS:
        return _observe_safely(_observe_av, run, item)
    return _observe_safely(_observe_search, run, item)


def preflight_apply(run: AgentRun, item: PlanItem) -> ObservedItem:
    """Add-MpPreference -ExclusionPath (appends); search services: see `search_observation`."""
    if item.judge is Judge.AV_EXCLUSION_COVERS:
        return _apply(run, item, _observe_av, _av_judged, _av_change)
    return search_observation(run, item)


def search_observation(run: AgentRun, item: PlanItem) -> ObservedItem:
    """After the run: the state before the job, during it (only if the run changed something) and after."""
    services = run.host.services
    if not services.exists(item.target):
        return ObservedItem(rule_id=item.rule_id, target=item.target, search=SearchObservation(present=False))
    now = services.get(item.target).state.value
    states = run.search_states.get(item.target.lower())
    before, during = states if states is not None else (now, None)
    search = SearchObservation(present=True, state_before=before, state_during_job=during, state_after=now)
    return ObservedItem(rule_id=item.rule_id, target=item.target, search=search)


# --- rollback (per target kind) -----------------------------------------------------------------------
def _undo(change: ChangeRecord, before: str | None, after: str | None) -> ChangeRecord:
    return change.model_copy(update={"before": before, "after": after})


def _explicit(sd: sec.SecurityDescriptor) -> dict[tuple[sec.AceType, str, sec.AceFlags], int]:
    out: dict[tuple[sec.AceType, str, sec.AceFlags], int] = {}
    for ace in sd.explicit_aces:
        key = (ace.type, ace.sid, ace.flags)
        out[key] = out.get(key, 0) | ace.mask
    return out


def acl_rollback(run: AgentRun, change: ChangeRecord) -> ChangeRecord:
    """Remove (or shrink back) only the explicit ACEs `after` has and `before` had not, if still ours.

    Writes the DACL only (SeRestore enabled for files), so inheritance and the owner stay as they are.
    """
    if change.before is None or change.after is None:
        raise ItemError("an ACL change record needs both before and after SDDL")
    with run.file_privileges():
        tree, path, _kind = _tree(run, change.target_kind, change.target)
        if not tree.exists(path):
            raise ItemError(f"{change.target} no longer exists")
        ours_before = _explicit(sec.from_sddl(change.before))
        ours_after = _explicit(sec.from_sddl(change.after))
        current_sd = tree.get_sd(path, run.token)
        current = list(current_sd.dacl)
        for key, mask in ours_after.items():
            if ours_before.get(key) == mask:
                continue
            for i, ace in enumerate(current):
                if not ace.inherited and (ace.type, ace.sid, ace.flags) == key and ace.mask == mask:
                    old = ours_before.get(key)
                    if old is None:
                        del current[i]
                    else:
                        current[i] = sec.Ace(ace.type, ace.sid, old, ace.flags)
                    break
        before_text = sec.to_sddl(current_sd)
        if tuple(current) != current_sd.dacl:
            result = tree.set_security(path, run.token, dacl=current)
            if result.failures:
                first, code = result.failures[0]
                raise ItemError(f"{len(result.failures)} object(s) below could not be updated; first: {first} [{code}]")
        return _undo(change, before_text, sec.to_sddl(tree.get_sd(path, run.token)))


def user_rollback(run: AgentRun, change: ChangeRecord) -> ChangeRecord:
    """Delete the account if this tool created it (same SID); else put UserFlags back if still ours."""
    accounts = run.host.accounts
    after = json.loads(change.after or "{}")
    user = accounts.user_by_sid(str(after.get("sid", "")))
    if user is None:
        return _undo(change, None, None)
    state = dumps({"name": user.name, "sid": user.sid, "flags": user.flags})
    if change.created_object:
        accounts.delete_user(user.name, run.token)
        return _undo(change, state, None)
    before = json.loads(change.before or "{}")
    if user.flags == after.get("flags") and isinstance(before.get("flags"), int):
        accounts.set_flags(user.name, before["flags"], run.token)
    return _undo(change, state, dumps({"name": user.name, "sid": user.sid, "flags": user.flags}))


def group_rollback(run: AgentRun, change: ChangeRecord) -> ChangeRecord:
    """Delete the group if this tool created it (same SID)."""
    after = json.loads(change.after or "{}")
    group = run.host.accounts.group_by_sid(str(after.get("sid", "")))
    if group is None or not change.created_object:
        return _undo(change, None, None)
    run.host.accounts.delete_group(group.name, run.token)
    return _undo(change, dumps({"name": group.name, "sid": group.sid}), None)


def membership_rollback(run: AgentRun, change: ChangeRecord) -> ChangeRecord:
    """Remove only the members this change added."""
    added = set(json.loads(change.after or "{}").get("members", [])) - set(
        json.loads(change.before or "{}").get("members", [])
    )
    group = run.host.accounts.group(_short(change.target))
    before = dumps({"members": list(group.members)})
    for sid in sorted(added):
        if sid in group.members:
            run.host.accounts.remove_member(group.name, sid, run.token)
    return _undo(change, before, dumps({"members": list(group.members)}))


def right_rollback(run: AgentRun, change: ChangeRecord) -> ChangeRecord:
    """LsaRemoveAccountRights for the SIDs this change added (other holders are left alone)."""
    after = json.loads(change.after or "{}")
    right = str(after.get("right", change.target))
    added = set(after.get("holders", [])) - set(json.loads(change.before or "{}").get("holders", []))
    before = dumps({"right": right, "holders": _holders(run, right)})
    for sid in sorted(added):
        run.host.lsa.remove_account_rights(sid, [right], run.token)
    return _undo(change, before, dumps({"right": right, "holders": _holders(run, right)}))


def sql_rollback(run: AgentRun, change: ChangeRecord) -> ChangeRecord:
    """Revoke the permissions this change granted, or drop the user/login it created."""
    if run.host.sql is None:
        raise ItemError("SQL Server is not installed on this host")
    session = run.host.sql.connect(run.token)
    before, after = json.loads(change.before or "{}"), json.loads(change.after or "{}")
    database = change.target
    if "permissions" in after:
        user = str(after["user"])
        added = sorted(set(after["permissions"]) - set(before.get("permissions", [])))
        current = session.database_permissions(database, user)
        session.revoke(database, [p for p in added if p in current], user)
        state = dumps({"user": user, "permissions": session.database_permissions(database, user)})
        return _undo(change, dumps({"user": user, "permissions": current}), state)
    if after.get("user_created") and session.database_principal_id(database, str(after["user"])) is not None:
        session.drop_user(database, str(after["user"]))
    if after.get("login_created") and session.suser_id(str(after["login"])) is not None:
        session.drop_login(str(after["login"]))
    return _undo(change, change.after, dumps({"login": None, "user": None}))


def service_rollback(run: AgentRun, change: ChangeRecord) -> ChangeRecord:
    """Put the logon identity back (LocalSystem / built-in accounts need no password); restart follows."""
    before = json.loads(change.before or "{}")
    after = json.loads(change.after or "{}")
    services = run.host.services
    svc = services.get(change.target)
    state = _service_snapshot(run, change.target)
    if svc.start_name != after.get("start_name"):
        return _undo(change, state, state)  # someone moved it since: leave it alone
    old = str(before.get("start_name", "LocalSystem"))
    if old.lower() not in LOCAL_SYSTEM_NAMES and not old.lower().startswith("nt authority\\"):
        raise ItemError(f"cannot restore {change.target} to {old}: its password is not known")
    code = services.change(change.target, run.token, start_name=old)
    if code != WMI_SUCCESS:
        raise ItemError(f"Win32_Service.Change returned {code} ({_WMI_TEXT.get(code, 'failed')})")
    if change.target not in run.restart:
        run.restart.append(change.target)
    return _undo(change, state, _service_snapshot(run, change.target))


def av_rollback(run: AgentRun, change: ChangeRecord) -> ChangeRecord:
    """Remove-MpPreference -ExclusionPath for the paths this change added."""
    added = set(json.loads(change.after or "{}").get("paths", [])) - set(
        json.loads(change.before or "{}").get("paths", [])
    )
    defender = run.host.defender
    before = dumps({"paths": defender.get_exclusion_paths(run.token)})
    defender.remove_exclusion_paths(sorted(added), run.token)
    return _undo(change, before, dumps({"paths": defender.get_exclusion_paths(run.token)}))


ROLLBACK_HANDLERS: Final[dict[TargetKind, RollbackHandler]] = {
    TargetKind.FILE: acl_rollback,
    TargetKind.DIRECTORY: acl_rollback,
    TargetKind.REGISTRY_KEY: acl_rollback,
    TargetKind.USER: user_rollback,
    TargetKind.GROUP: group_rollback,
    TargetKind.MEMBERSHIP: membership_rollback,
    TargetKind.RIGHT: right_rollback,
    TargetKind.SQL_DATABASE: sql_rollback,
    TargetKind.SERVICE: service_rollback,
    TargetKind.AV_EXCLUSION: av_rollback,
}

_RULE_ROLLBACK: Final[dict[RuleType, RollbackHandler]] = {
    RuleType.REGISTRY_ACL: acl_rollback,
    RuleType.FILE_ACL: acl_rollback,
    RuleType.FILE_DENY: acl_rollback,
    RuleType.PATH_ACL: acl_rollback,
    RuleType.LOCAL_USER: user_rollback,
    RuleType.LOCAL_GROUP: group_rollback,
    RuleType.GROUP_MEMBER: membership_rollback,
    RuleType.USER_RIGHT: right_rollback,
    RuleType.SQL_GRANT: sql_rollback,
    RuleType.SERVICE_IDENTITY: service_rollback,
    RuleType.PREFLIGHT: av_rollback,
}

HANDLERS: Final[dict[tuple[AgentMode, RuleType], Handler]] = {
    (AgentMode.VERIFY, RuleType.REGISTRY_ACL): registry_acl_verify,
    (AgentMode.APPLY, RuleType.REGISTRY_ACL): registry_acl_apply,
    (AgentMode.VERIFY, RuleType.FILE_ACL): file_acl_verify,
    (AgentMode.APPLY, RuleType.FILE_ACL): file_acl_apply,
    (AgentMode.VERIFY, RuleType.FILE_DENY): file_deny_verify,
    (AgentMode.APPLY, RuleType.FILE_DENY): file_deny_apply,
    (AgentMode.VERIFY, RuleType.PATH_ACL): path_acl_verify,
    (AgentMode.APPLY, RuleType.PATH_ACL): path_acl_apply,
    (AgentMode.VERIFY, RuleType.LOCAL_USER): local_user_verify,
    (AgentMode.APPLY, RuleType.LOCAL_USER): local_user_apply,
    (AgentMode.VERIFY, RuleType.LOCAL_GROUP): local_group_verify,
    (AgentMode.APPLY, RuleType.LOCAL_GROUP): local_group_apply,
    (AgentMode.VERIFY, RuleType.GROUP_MEMBER): group_member_verify,
    (AgentMode.APPLY, RuleType.GROUP_MEMBER): group_member_apply,
    (AgentMode.VERIFY, RuleType.USER_RIGHT): user_right_verify,
    (AgentMode.APPLY, RuleType.USER_RIGHT): user_right_apply,
    (AgentMode.VERIFY, RuleType.SQL_GRANT): sql_grant_verify,
    (AgentMode.APPLY, RuleType.SQL_GRANT): sql_grant_apply,
    (AgentMode.VERIFY, RuleType.SERVICE_IDENTITY): service_identity_verify,
    (AgentMode.APPLY, RuleType.SERVICE_IDENTITY): service_identity_apply,
    (AgentMode.VERIFY, RuleType.PREFLIGHT): preflight_verify,
    (AgentMode.APPLY, RuleType.PREFLIGHT): preflight_apply,
}


def conformance_table() -> list[tuple[str, str, str]]:
    """(mode, rule type, winlab function) for every mode x rule type, rollback included."""
    rows = [(mode.value, rule.value, fn.__name__) for (mode, rule), fn in HANDLERS.items()]
    rows += [(AgentMode.ROLLBACK.value, rule.value, fn.__name__) for rule, fn in _RULE_ROLLBACK.items()]
    return sorted(rows)
