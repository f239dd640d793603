"""winlab's agent v2 primitives: each op of `lockdown.engine.program.PRIMITIVES` over the emulated Windows.

One function per primitive, doing over the `WindowsHost` model what the PowerShell primitive
(`Invoke-FleetOp<CamelName>` in lockdown/agent/primitives.ps1) does over Windows, and nothing else:
no decisions (those are the engine's). Every model call takes the caller's token, so a UAC-filtered
token, an object the token may not rewrite or a TrustedInstaller-owned file is refused by the model,
never by a flag here. Each function returns exactly the result keys of the contract; a failure is a
`PrimitiveError` whose code is "win32_<n>" (a `Win32Error` of the model), "sql_<n>" (a `SqlError`)
or "exception" (anything else, as a PowerShell `throw` would be).

The journal (`%ProgramData%\\FleetLockdown\\journal\\<job_id>.jsonl`) lives here too: the executor
appends to it (`journal_append`), `journal_read` / `journal_delete` are primitives. Its ownership
refusals are v1's (`Assert-FleetJournalTrusted` in lockdown/agent/common.ps1).
"""

from __future__ import annotations

import base64
import functools
import json
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Final
from urllib.parse import urlsplit

from lockdown.engine.program import PRIMITIVES as CONTRACT
from lockdown.engine.program import SQL_STATEMENTS
from winlab.mail import MailEndpoint, Protocol, _answer, _greeting
from winlab.windows import security as sec
from winlab.windows import sids
from winlab.windows.errors import (
    ERROR_MEMBER_IN_ALIAS,
    ERROR_MEMBER_NOT_IN_ALIAS,
    ERROR_NONE_MAPPED,
    ERROR_SERVICE_ALREADY_RUNNING,
    ERROR_SERVICE_DOES_NOT_EXIST,
    ERROR_SERVICE_NOT_ACTIVE,
    STATUS_NO_MORE_ENTRIES,
    NtStatusError,
    Win32Error,
)
from winlab.windows.host import PROTOCOL_SERVICES, WindowsHost
from winlab.windows.sql import SqlError, SqlSession
from winlab.windows.tokens import LogonType, Token
from winlab.windows.tree import SecuredTree, normalize

Result = dict[str, Any]
Primitive = Callable[["PrimitiveContext", dict[str, Any]], Result]

NT_CURRENT_VERSION: Final = "HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion"
# Stop-Service waits until the service reports Stopped (modelled time, as v1's Restart-Service wait).
STOP_WAIT_SECONDS: Final = 1.0
# MailEnable's listeners on a real host. The lab serves them on other ports (winlab.mail.DEFAULT_PORTS,
# or free ones): whoever builds the PrimitiveContext for a lab host passes that host's ports.
MAIL_PORTS: Final[Mapping[int, Protocol]] = {25: "smtp", 110: "pop", 143: "imap"}
# Win32_ComputerSystem.DomainRole (MS Learn, Win32_ComputerSystem class).
STANDALONE_SERVER: Final = 2
MEMBER_SERVER: Final = 3


class PrimitiveError(Exception):
    """A failed primitive: `code` as the step's error code, `message` the text the step reports."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass
class PrimitiveContext:
    """What every primitive runs with: the host, the caller's token, the program's job id, the mail ports."""

    host: WindowsHost
    token: Token
    job_id: str | None = None
    mail_ports: Mapping[int, Protocol] = field(default_factory=lambda: dict(MAIL_PORTS))


def win32_text(exc: Win32Error) -> str:
    where = f" ({exc.target})" if exc.target else ""
    return f"{exc.message} [Win32 error {exc.code}]{where}"


def _primitive(fn: Callable[[PrimitiveContext, dict[str, Any]], Result]) -> Primitive:
    """Model errors become PrimitiveError (win32_<n> / sql_<n>), as the PowerShell's catch maps them."""

    @functools.wraps(fn)
    def wrapped(ctx: PrimitiveContext, args: dict[str, Any]) -> Result:
        try:
            return fn(ctx, args)
        except Win32Error as exc:
            raise PrimitiveError(f"win32_{exc.code}", win32_text(exc)) from exc
        except SqlError as exc:
            raise PrimitiveError(f"sql_{exc.number}", f"Msg {exc.number}: {exc.message}") from exc

    return wrapped


def _fail(message: str) -> PrimitiveError:
    return PrimitiveError("exception", message)


def _int(value: Any, name: str) -> int:
    """[int] of an argument (substitution turns every `{{VAR}}` into text)."""
    if isinstance(value, bool):
        raise _fail(f"{name} must be a number, not {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _fail(f"{name} must be a number, not {value!r}") from None


def _flag(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _short(name: str) -> str:
    return name.rsplit("\\", 1)[-1]


# --- host_info ------------------------------------------------------------------------------------
@_primitive
def host_info(ctx: PrimitiveContext, args: dict[str, Any]) -> Result:
    """Win32_OperatingSystem, Win32_ComputerSystem.DomainRole, $PSVersionTable, the token, the policy.

    os_caption is Win32_OperatingSystem.Caption ("Microsoft Windows Server 2019 Standard"): the
    registry's ProductName with the "Microsoft " WMI puts before it.
    """
    host = ctx.host
    nt = host.registry.open(NT_CURRENT_VERSION, 64, ctx.token)
    product = nt.get("ProductName")
    build = nt.get("CurrentBuildNumber")
    policy = host.accounts.policy
    return {
        "computer_name": host.accounts.machine_name.upper(),
        "system_root": "C:\\Windows",
        "os_caption": f"Microsoft {product}" if isinstance(product, str) else "Microsoft Windows",
        "os_build": int(build) if isinstance(build, str) and build.isdigit() else 0,
        "arch": "x64",
        "domain_role": MEMBER_SERVER if host.domain_member else STANDALONE_SERVER,
        "powershell_version": host.powershell_version,
        "process_64bit": True,
        "language_mode": "FullLanguage",
        # WindowsPrincipal.IsInRole(Administrator): false for a UAC-filtered token.
        "elevated": ctx.token.is_admin,
        "user_name": ctx.token.account,
        "password_policy": {"min_length": policy.minimum_length, "complexity": policy.complexity},
    }


# --- registry_read ---------------------------------------------------------------------------------
def _view(value: Any) -> int:
    view = _int(64 if value is None else value, "view")
    if view not in (32, 64):
        raise _fail(f"view must be 32 or 64, not {view}")
    return view


@_primitive
def registry_read(ctx: PrimitiveContext, args: dict[str, Any]) -> Result:
    """RegistryKey.OpenBaseKey(LocalMachine, Registry32|Registry64).OpenSubKey(path).GetValue(name).

    KEY_WOW64_32KEY / KEY_WOW64_64KEY pick the view explicitly (MS Learn, "Accessing an Alternate
    Registry View"); the model redirects HKLM\\SOFTWARE to WOW6432Node in the 32-bit view.
    """
    registry = ctx.host.registry
    view = _view(args["view"])
    path = str(args["path"])
    if not registry.exists(path, view):
        return {"exists": False, "values": {}}
    key = registry.open(path, view, ctx.token)
    names = args["names"]
    wanted = key.value_names() if names is None else [str(n) for n in names]
    values: dict[str, str | int | list[str]] = {}
    for name in wanted:
        data = key.get(name)
        if data is not None:
            values[name] = list(data) if isinstance(data, tuple) else data
    return {"exists": True, "values": values}


# --- security descriptors ----------------------------------------------------------------------------
def _secured(ctx: PrimitiveContext, args: dict[str, Any]) -> tuple[SecuredTree, str]:
    kind = args["kind"]
    if kind == "key":
        registry = ctx.host.registry
        return registry.tree, registry.resolve(str(args["path"]), _view(args.get("view")))
    if kind == "path":
        # A 64-bit process: no file system redirection (System32 and SysWOW64 are named as they are).
        return ctx.host.fs.tree, normalize(str(args["path"]))
    raise _fail(f"kind must be 'path' or 'key', not {kind!r}")


def owner_and_access_sddl(sd: sec.SecurityDescriptor) -> str:
    """GetSecurityDescriptorSddlForm(AccessControlSections.Owner | Access): "O:..D:..", no group."""
    return sec.to_sddl(replace(sd, group=None))


def explicit_dacl_form(sddl_text: str) -> str:
    """The guard's form of a descriptor: its DACL without inherited ACEs, protection kept, no owner.

    What the PowerShell does with RawSecurityDescriptor: drop every ACE with AceFlags.Inherited,
    then GetSddlForm(Access). Inherited ACEs are not compared because the program's own writes on
    a parent change them on the children (SetNamedSecurityInfo re-propagates).
    """
    sd = sec.from_sddl(sddl_text)
    explicit = tuple(a for a in sd.dacl if not a.inherited)
    return sec.to_sddl(replace(sd, group=None, dacl=explicit)).split("D:", 1)[1]


@_primitive
def sd_read(ctx: PrimitiveContext, args: dict[str, Any]) -> Result:
    """Get-Acl (FileSecurity / DirectorySecurity / RegistrySecurity) read for Owner and Access only.

    GetNamedSecurityInfo needs READ_CONTROL (MS Learn, GetNamedSecurityInfoW); no privilege is enabled,
    so the model's access check decides.
    """
    tree, path = _secured(ctx, args)
    node = tree.find(path)
    if node is None:
        return {"exists": False, "object": None, "owner": None, "sddl": None, "protected": None}
    sd = tree.get_sd(path, ctx.token)
    return {
        "exists": True,
        "object": node.kind.value,
        "owner": sd.owner,
        "sddl": owner_and_access_sddl(sd),
        "protected": sd.protected,
    }


def _inspect_ace(ace: sec.Ace, container: bool) -> sec.Ace | None:
    """.NET CommonAcl.InspectAce (dotnet/runtime CommonAcl.cs, applied when an ObjectSecurity parses SDDL).

    An ACE with no rights is dropped. On a leaf (FileSecurity) inheritance is meaningless: an
    inherit-only ACE is dropped and OI/CI/NP/IO are cleared. On a container (DirectorySecurity,
    RegistrySecurity) IO without OI/CI is dropped and NP without OI/CI is cleared.
    """
    if ace.mask == 0:
        return None
    inherit = sec.AceFlags.OI | sec.AceFlags.CI
    if not container:
        if ace.flags & sec.AceFlags.IO:
            return None
        return replace(ace, flags=ace.flags & ~sec.INHERITANCE_FLAGS)
    if ace.flags & sec.AceFlags.IO and not ace.flags & inherit:
        return None
    if ace.flags & sec.AceFlags.NP and not ace.flags & inherit:
        return replace(ace, flags=ace.flags & ~sec.AceFlags.NP)
    return ace


def _parse_dacl(text: str, kind: sec.ObjectKind) -> tuple[list[sec.Ace], bool]:
    """SetSecurityDescriptorSddlForm(sddl, Access) on a new security object of the object's own class."""
    if not text.startswith("D:"):
        raise _fail(f"sddl must be a DACL ('D:...'), not {text[:40]!r}")
    try:
        parsed = sec.from_sddl("O:SY" + text)
    except sec.SddlError as exc:
        raise _fail(f"The SDDL form of a security descriptor object is invalid: {exc}") from None
    aces = [kept for ace in parsed.dacl if (kept := _inspect_ace(ace, kind.is_container)) is not None]
    return aces, parsed.protected


@contextmanager
def _owner_taken(ctx: PrimitiveContext, tree: SecuredTree, path: str, take: bool) -> Iterator[None]:
    """takeown's dance: Administrators own the object for the block; the previous owner is put back in finally.

    SetNamedSecurityInfo: an owner other than the caller (or a group it may own with) needs
    SeRestorePrivilege; WRITE_OWNER comes from SeTakeOwnershipPrivilege (MS Learn,
    SetNamedSecurityInfoW "psidOwner"; Privilege Constants SE_TAKE_OWNERSHIP_NAME / SE_RESTORE_NAME).
    Each privilege is enabled only for its own call, so the DACL write in between is allowed by
    ownership (owners get WRITE_DAC), never by SeRestorePrivilege's backup-intent grant.

    The owner is put back together with the object's DACL as it is then (one SetNamedSecurityInfo
    with OWNER | DACL | UNPROTECTED_DACL, or PROTECTED_DACL), so Windows recomputes the inherited
    ACEs against the restored owner: an inherited CREATOR OWNER ACE is mapped to the owner when the
    inheritance is computed, and the write in between (owner Administrators) maps it to
    Administrators; an owner-only restore would leave that ACE granting Administrators
    (C:\\Windows\\Registration: (A;ID;FA;;;BA) instead of TrustedInstaller's).
    """
    if not take:
        yield
        return
    previous = tree.get_sd(path, ctx.token).owner
    with ctx.token.privileges("SeTakeOwnershipPrivilege"):
        tree.set_security(path, ctx.token, owner=sids.ADMINISTRATORS)
    try:
        yield
    finally:
        now = tree.get_sd(path, ctx.token)
        with ctx.token.privileges("SeRestorePrivilege"):
            tree.set_security(path, ctx.token, owner=previous, dacl=now.explicit_aces, protected=now.protected)


@_primitive
def dacl_write(ctx: PrimitiveContext, args: dict[str, Any]) -> Result:
    """Compare-and-swap of the DACL: written only if sd_read would print `expected` now; `after` is sd_read's text then.

    The DACL is parsed into the object's own class (file semantics for a file, directory semantics,
    inheritance flags kept, for a directory or key) and written with SetAccessControl (DACL +
    protection only); Windows recomputes inherited ACEs from the parent and propagates a container's
    ACEs to its children (SetNamedSecurityInfo, MS Learn). The model's access check decides whether
    the token may write it (WRITE_DAC or ownership); no privilege is enabled without take_ownership.
    """
    tree, path = _secured(ctx, args)
    node = tree.node(path)
    if args["object"] != node.kind.value:
        raise _fail(f"{node.path} is a {node.kind.value}, not a {args['object']}")
    current = owner_and_access_sddl(tree.get_sd(path, ctx.token))
    try:
        expected = explicit_dacl_form(str(args["expected"]))
    except sec.SddlError as exc:
        raise _fail(f"expected is not SDDL: {exc}") from None
    if explicit_dacl_form(current) != expected:
        return {"changed": False, "conflict": True, "current": current, "after": None, "failures": []}
    dacl, protected = _parse_dacl(str(args["sddl"]), node.kind)
    with _owner_taken(ctx, tree, path, _flag(args["take_ownership"])):
        result = tree.set_security(path, ctx.token, dacl=dacl, protected=protected)
    failures = [{"path": where, "code": code} for where, code in result.failures]
    after = owner_and_access_sddl(tree.get_sd(path, ctx.token))
    return {"changed": result.changed, "conflict": False, "current": None, "after": after, "failures": failures}


# --- accounts -----------------------------------------------------------------------------------------
@_primitive
def sid_lookup(ctx: PrimitiveContext, args: dict[str, Any]) -> Result:
    """NTAccount(name).Translate([SecurityIdentifier]); IdentityNotMappedException (1332) -> null."""
    out: dict[str, str | None] = {}
    for name in args["names"]:
        try:
            out[str(name)] = ctx.host.accounts.lookup_name(str(name)).sid
        except Win32Error as exc:
            if exc.code != ERROR_NONE_MAPPED:
                raise
            out[str(name)] = None
    return {"sids": out}


@_primitive
def user_get(ctx: PrimitiveContext, args: dict[str, Any]) -> Result:
    """[ADSI]"WinNT://HOST/name,user": objectSid, UserFlags, Groups() (local groups it is a direct member of)."""
    accounts = ctx.host.accounts
    user = accounts.users.get(_short(str(args["name"])).lower())
    if user is None:
        return {"exists": False, "sid": None, "flags": None, "groups": []}
    return {"exists": True, "sid": user.sid, "flags": user.flags, "groups": sorted(accounts.aliases_of({user.sid}))}


@_primitive
def group_get(ctx: PrimitiveContext, args: dict[str, Any]) -> Result:
    """[ADSI]"WinNT://HOST/name,group": objectSid and the objectSid of each member."""
    group = ctx.host.accounts.groups.get(_short(str(args["name"])).lower())
    if group is None:
        return {"exists": False, "sid": None, "members": []}
    return {"exists": True, "sid": group.sid, "members": list(group.members)}


@_primitive
def lsa_enum(ctx: PrimitiveContext, args: dict[str, Any]) -> Result:
    """LsaEnumerateAccountsWithUserRight: STATUS_NO_MORE_ENTRIES means nobody holds it (MS Learn)."""
    try:
        holders = ctx.host.lsa.enumerate_accounts_with_right(str(args["right"]), ctx.token)
    except NtStatusError as exc:
        if exc.status != STATUS_NO_MORE_ENTRIES:
            raise
        holders = []
    return {"sids": holders}


@_primitive
def lsa_add(ctx: PrimitiveContext, args: dict[str, Any]) -> Result:
    """LsaAddAccountRights(SID, [right]): per SID, additive."""
    added = ctx.host.lsa.add_account_rights(str(args["sid"]).upper(), [str(args["right"])], ctx.token)
    return {"changed": bool(added)}


@_primitive
def lsa_remove(ctx: PrimitiveContext, args: dict[str, Any]) -> Result:
    """LsaRemoveAccountRights(SID, AllRights=false, [right])."""
    removed = ctx.host.lsa.remove_account_rights(str(args["sid"]).upper(), [str(args["right"])], ctx.token)
    return {"changed": bool(removed)}


@_primitive
def user_create(ctx: PrimitiveContext, args: dict[str, Any]) -> Result:
    """ADSI Create('User', name) + SetPassword + Put('UserFlags') + Put('Description') + SetInfo."""
    user = ctx.host.accounts.create_user(
        str(args["name"]),
        str(args["password"]),
        ctx.token,
        flags=_int(args["flags"], "flags"),
        description=str(args["description"] or ""),
    )
    return {"changed": True, "sid": user.sid, "flags": user.flags}


@_primitive
def user_set_flags(ctx: PrimitiveContext, args: dict[str, Any]) -> Result:
    """UserFlags = (UserFlags | set) & ~clear; SetInfo only when that differs."""
    accounts = ctx.host.accounts
    user = accounts.user(_short(str(args["name"])))
    before = user.flags
    wanted = (before | _int(args["set"], "set")) & ~_int(args["clear"], "clear")
    changed = wanted != before and accounts.set_flags(user.name, wanted, ctx.token)
    return {"changed": changed, "before": before, "after": user.flags}


@_primitive
def user_set_password(ctx: PrimitiveContext, args: dict[str, Any]) -> Result:
    """ADSI SetPassword (always a change: Windows cannot tell a same-password reset from a new one)."""
    ctx.host.accounts.set_password(_short(str(args["name"])), str(args["password"]), ctx.token)
    return {"changed": True}


@_primitive
def user_delete(ctx: PrimitiveContext, args: dict[str, Any]) -> Result:
    """ADSI Delete('User', name), only when the account still has `sid` (a re-created one is not ours)."""
    accounts = ctx.host.accounts
    user = accounts.users.get(_short(str(args["name"])).lower())
    if user is None or user.sid != str(args["sid"]).upper():
        return {"changed": False}
    accounts.delete_user(user.name, ctx.token)
    return {"changed": True}


@_primitive
def group_create(ctx: PrimitiveContext, args: dict[str, Any]) -> Result:
    """ADSI Create('Group', name) + Put('Description') + SetInfo."""
    group = ctx.host.accounts.create_group(str(args["name"]), ctx.token, description=str(args["description"] or ""))
    return {"changed": True, "sid": group.sid}


@_primitive
def group_delete(ctx: PrimitiveContext, args: dict[str, Any]) -> Result:
    """ADSI Delete('Group', name), only when the group still has `sid`."""
    accounts = ctx.host.accounts
    group = accounts.groups.get(_short(str(args["name"])).lower())
    if group is None or group.sid != str(args["sid"]).upper():
        return {"changed": False}
    accounts.delete_group(group.name, ctx.token)
    return {"changed": True}


@_primitive
def group_member_add(ctx: PrimitiveContext, args: dict[str, Any]) -> Result:
    """$group.Add('WinNT://<SID>'); ERROR_MEMBER_IN_ALIAS (already a member) is no change."""
    try:
        ctx.host.accounts.add_member(_short(str(args["group"])), str(args["sid"]).upper(), ctx.token)
    except Win32Error as exc:
        if exc.code != ERROR_MEMBER_IN_ALIAS:
            raise
        return {"changed": False}
    return {"changed": True}


@_primitive
def group_member_remove(ctx: PrimitiveContext, args: dict[str, Any]) -> Result:
    """$group.Remove('WinNT://<SID>'); ERROR_MEMBER_NOT_IN_ALIAS (not a member) is no change."""
    try:
        ctx.host.accounts.remove_member(_short(str(args["group"])), str(args["sid"]).upper(), ctx.token)
    except Win32Error as exc:
        if exc.code != ERROR_MEMBER_NOT_IN_ALIAS:
            raise
        return {"changed": False}
    return {"changed": True}


@_primitive
def logon_check(ctx: PrimitiveContext, args: dict[str, Any]) -> Result:
    """LogonUser(user, password, LOGON32_LOGON_NETWORK): ok, or the Win32 error (1326, 1331, 1385...)."""
    try:
        ctx.host.logon(str(args["user"]), str(args["password"]), LogonType.NETWORK)
    except Win32Error as exc:
        return {"ok": False, "code": exc.code}
    return {"ok": True, "code": 0}


# --- services ---------------------------------------------------------------------------------------
def _service_entry(ctx: PrimitiveContext, name: str) -> Result:
    services = ctx.host.services
    if not services.exists(name):
        return {
            "name": name, "exists": False, "display_name": None, "start_name": None, "start_name_sid": None,
            "state": None, "start_mode": None, "path_name": None,
        }  # fmt: skip
    svc = services.get(name)
    try:
        start_sid: str | None = services.account_sid(svc.name)
    except Win32Error:
        start_sid = None  # a StartName that no longer resolves (deleted account)
    return {
        "name": svc.name,
        "exists": True,
        "display_name": svc.display_name,
        "start_name": svc.start_name,
        "start_name_sid": start_sid,
        "state": svc.state.value,
        "start_mode": svc.start_mode.value,
        "path_name": svc.path_name,
    }


@_primitive
def service_get(ctx: PrimitiveContext, args: dict[str, Any]) -> Result:
    """Win32_Service (Name, DisplayName, StartName, State, StartMode, PathName); StartName translated to a SID."""
    names = args["names"]
    wanted = ctx.host.services.names() if names is None else [str(n) for n in names]
    return {"services": [_service_entry(ctx, name) for name in wanted]}


@_primitive
def service_change(ctx: PrimitiveContext, args: dict[str, Any]) -> Result:
    """Win32_Service.Change(StartName, StartPassword) only; ReturnValue 0 is success (MS Learn, Change method)."""
    start_name = args["start_name"]
    password = args["password"]
    code = ctx.host.services.change(
        str(args["name"]),
        ctx.token,
        start_name=None if start_name is None else str(start_name),
        password=None if password is None else str(password),
    )
    return {"changed": code == 0, "return_value": code}


@_primitive
def service_control(ctx: PrimitiveContext, args: dict[str, Any]) -> Result:
    """ServiceController.Stop() / Start() then WaitForStatus (never Restart-Service: it starts stopped ones).

    StartService fails with ERROR_SERVICE_DISABLED (1058) for a Disabled service and
    ERROR_SERVICE_LOGON_FAILED (1069) when the account may not log on as a service (MS Learn,
    StartServiceW): both are returned as `code`, decided by the model. Stopping a stopped service or
    starting a running one changes nothing (code 0).
    """
    services = ctx.host.services
    name = str(args["name"])
    action = args["action"]
    if action not in ("stop", "start"):
        raise _fail(f"action must be 'stop' or 'start', not {action!r}")
    if not services.exists(name):
        raise Win32Error(ERROR_SERVICE_DOES_NOT_EXIST, name)
    if action == "stop":
        code = services.stop(name, ctx.token)
        if code == 0:
            ctx.host.advance(STOP_WAIT_SECONDS)
        idle = ERROR_SERVICE_NOT_ACTIVE
    else:
        code = services.start(name, ctx.token)
        idle = ERROR_SERVICE_ALREADY_RUNNING
    changed = code == 0
    if code == idle:
        code = 0
    return {"changed": changed, "state": services.get(name).state.value, "code": code}


# --- SQL Server -------------------------------------------------------------------------------------
def _param(params: Mapping[str, Any], name: str) -> str:
    value = params.get(name)
    if value is None:
        raise SqlError(137, f'Must declare the scalar variable "@{name}".')
    return str(value)


def _connect(ctx: PrimitiveContext, instance: str) -> SqlSession:
    """SqlConnection("Data Source=<instance>;Integrated Security=SSPI").Open() as the caller (the model's SqlClient)."""
    server = ctx.host.sql
    if server is None:
        raise SqlError(
            2,
            "A network-related or instance-specific error occurred while establishing a connection to SQL "
            "Server. The server was not found or was not accessible. (provider: Named Pipes Provider, error: 40 - "
            "Could not open a connection to SQL Server)",
        )
    return server.connect_to(instance, ctx.token)


def _account_sid(ctx: PrimitiveContext, name: str) -> str | None:
    """SUSER_SID(@login) for a Windows account: its SID, or NULL when the name does not resolve."""
    try:
        return ctx.host.accounts.lookup_name(name).sid
    except Win32Error:
        return None


@_primitive
def sql(ctx: PrimitiveContext, args: dict[str, Any]) -> Result:
    """One statement of SQL_STATEMENTS, parameters by name (SqlParameter), names quoted with QUOTENAME."""
    statement = args["statement"]
    if statement not in SQL_STATEMENTS:
        raise _fail(f"unknown statement {statement!r}")
    params = args["params"] or {}
    if not isinstance(params, dict):
        raise _fail("params must be an object")
    session = _connect(ctx, str(args["instance"]))
    server = session.server
    rows: list[list[Any]] = []
    if statement == "whoami":
        rows = [[1 if session.sysadmin else 0, ctx.token.account]]
    elif statement in ("login_exists", "user_exists", "permissions"):
        # ... WHERE sid = SUSER_SID(@login): the login, and the database user, by the Windows account's SID.
        sid = _account_sid(ctx, _param(params, "login"))
        login = next((lg for lg in server.logins.values() if sid is not None and lg.sid == sid), None)
        if statement == "login_exists":
            rows = [[login.name]] if login is not None else []
        else:
            database = _param(params, "database")
            db = server.databases.get(database.lower())
            if db is None:
                raise SqlError(
                    911, f"Database '{database}' does not exist. Make sure that the name is entered correctly."
                )
            user = db.user_for_sids(frozenset({sid})) if sid is not None else None
            if statement == "user_exists":
                rows = [[user.name]] if user is not None else []
            elif user is not None:
                rows = [[p] for p in session.database_permissions(database, user.name)]
    elif statement == "create_login":
        session.create_login_from_windows(_param(params, "login"))
    elif statement == "drop_login":
        session.drop_login(_param(params, "login"))
    elif statement == "create_user":
        session.create_user(_param(params, "database"), _param(params, "user"), _param(params, "login"))
    elif statement == "drop_user":
        session.drop_user(_param(params, "database"), _param(params, "user"))
    elif statement == "grant":
        session.grant(_param(params, "database"), [_param(params, "permission")], _param(params, "user"))
    else:  # revoke
        session.revoke(_param(params, "database"), [_param(params, "permission")], _param(params, "user"))
    writes = statement not in ("whoami", "login_exists", "user_exists", "permissions")
    return {"rows": rows, "changed": writes}


# --- Defender ---------------------------------------------------------------------------------------
@_primitive
def defender_get(ctx: PrimitiveContext, args: dict[str, Any]) -> Result:
    """Get-MpPreference.ExclusionPath; absent Defender (no WinDefend, 0x800106BA) is installed=false."""
    host = ctx.host
    if not host.services.exists("WinDefend") or not host.defender.installed:
        return {"installed": False, "paths": []}
    return {"installed": True, "paths": host.defender.get_exclusion_paths(ctx.token)}


@_primitive
def defender_add(ctx: PrimitiveContext, args: dict[str, Any]) -> Result:
    """Add-MpPreference -ExclusionPath (appends what is missing)."""
    return {"changed": bool(ctx.host.defender.add_exclusion_paths([str(args["path"])], ctx.token))}


@_primitive
def defender_remove(ctx: PrimitiveContext, args: dict[str, Any]) -> Result:
    """Remove-MpPreference -ExclusionPath."""
    return {"changed": bool(ctx.host.defender.remove_exclusion_paths([str(args["path"])], ctx.token))}


# --- probes -----------------------------------------------------------------------------------------
_LOOPBACK: Final = re.compile(r"^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$")


def _local(host: WindowsHost, name: str) -> str | None:
    """The peer address a connection to `name` comes from when `name` is this host, else None."""
    low = name.strip("[]").lower()
    if low in ("::1", "localhost"):
        return "::1"
    if _LOOPBACK.match(low):
        return low
    me = host.name.lower()
    if low == me or low.startswith(me + "."):
        return "127.0.0.1"
    return None


def _endpoint(host: WindowsHost) -> MailEndpoint:
    """winlab.mail's view of this host, so the probe answers with exactly the banners its listeners send."""
    return MailEndpoint(host.name, host, threading.RLock(), "127.0.0.1", {}, lambda: False)


def _protocol_running(host: WindowsHost, protocol: Protocol) -> bool:
    name = PROTOCOL_SERVICES[protocol]
    return host.services.exists(name) and host.services.get(name).running


@_primitive
def tcp_probe(ctx: PrimitiveContext, args: dict[str, Any]) -> Result:
    """TcpClient.Connect, read the first line, optionally send a line and read the first line of the answer.

    A mail port answers only while its MailEnable service runs, with the banner and replies of
    winlab.mail (MailEnable's real texts); every other port refuses. Never throws for a closed port.
    """
    host = ctx.host
    target = str(args["host"])
    port = _int(args["port"], "port")
    peer = _local(host, target)
    if peer is None:
        return {"connected": False, "banner": None, "reply": None, "error": "No such host is known"}
    protocol = ctx.mail_ports.get(port)
    if protocol is None or not _protocol_running(host, protocol):
        refused = f"No connection could be made because the target machine actively refused it {target}:{port}"
        return {"connected": False, "banner": None, "reply": None, "error": refused}
    endpoint = _endpoint(host)
    banner = _greeting(endpoint, protocol).split("\r\n", 1)[0]
    reply = None
    send = args["send"]
    if send is not None:
        line = str(send).splitlines()[0] if str(send) else ""
        reply = _answer(endpoint, protocol, line.strip(), peer)[0].split("\r\n", 1)[0]
    return {"connected": True, "banner": banner, "reply": reply, "error": None}


# <title> of MailEnable's login pages (not from a source: the model serves no HTML).
_PAGE_TITLES: Final = {"/mewebmail": "MailEnable Web Mail", "/meadmin": "MailEnable Web Administration"}
# The probe asks for TLS 1.2 or newer ([Net.ServicePointManager]::SecurityProtocol = Tls12 | Tls13).
_CLIENT_TLS: Final = ("1.2", "1.3")


@_primitive
def http_probe(ctx: PrimitiveContext, args: dict[str, Any]) -> Result:
    """Invoke-WebRequest -MaximumRedirection 0 over TLS 1.2+: status, Location, <title>, or the WebException text.

    The model's IIS answers (winlab.windows.iis.Iis.probe): no binding or W3SVC stopped -> no answer;
    a TLS handshake needs a common version; a self-signed certificate is a TrustFailure unless
    allow_self_signed (-SkipCertificateCheck); then /mewebmail and /meadmin answer 200 while IME_USER
    and IME_ADMIN keep the access MailEnable needs, else 500. A 4xx/5xx answer is a status with the
    WebException message as `error` (Invoke-WebRequest throws it; the primitive keeps the status).
    """
    url = str(args["url"])
    iis = ctx.host.iis
    if iis is None:
        return {"status": None, "location": None, "title": None, "error": "Unable to connect to the remote server"}
    try:
        answer = iis.probe(url, validate_certificate=not _flag(args["allow_self_signed"]), client_tls=_CLIENT_TLS)
    except ValueError as exc:
        raise _fail(f"Invalid URI: {exc}") from None
    if not answer.answered:
        return {"status": None, "location": None, "title": None, "error": answer.message}
    title = None
    if answer.status == 200:
        path = urlsplit(url).path.lower()
        title = next((t for prefix, t in _PAGE_TITLES.items() if path.startswith(prefix)), None)
    return {"status": answer.status, "location": None, "title": title, "error": answer.message or None}


# --- the journal ------------------------------------------------------------------------------------
PROGRAM_DATA: Final = "C:\\ProgramData"
JOURNAL_ROOT: Final = PROGRAM_DATA + "\\FleetLockdown"
JOURNAL_DIR: Final = JOURNAL_ROOT + "\\journal"
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._-]")
_FOLDER_DACL: Final = (
    sec.allow(sids.LOCAL_SYSTEM, sec.FILE_ALL_ACCESS, sec.AceFlags.OI | sec.AceFlags.CI),
    sec.allow(sids.ADMINISTRATORS, sec.FILE_ALL_ACCESS, sec.AceFlags.OI | sec.AceFlags.CI),
)


def journal_path(job_id: str) -> str:
    """The journal file of one job id (characters a file name cannot hold become '_')."""
    return f"{JOURNAL_DIR}\\{_UNSAFE.sub('_', job_id)}.jsonl"


def _untrusted(host: WindowsHost, token: Token, path: str) -> str | None:
    """Assert-FleetJournalTrusted: why an existing journal path is not ours, or None.

    The model has no reparse points, so only the owner can betray a planted path: it must be SYSTEM,
    Administrators or the caller.
    """
    owner = host.fs.get_sd(path, token).owner
    if owner not in {sids.LOCAL_SYSTEM, sids.ADMINISTRATORS, token.user}:
        return f"journal path is owned by {owner}, not by an administrator: {path}"
    return None


def _check_trusted(host: WindowsHost, token: Token, paths: tuple[str, ...]) -> str | None:
    for path in paths:
        if host.fs.exists(path):
            problem = _untrusted(host, token, path)
            if problem:
                return problem
    return None


def _read_entries(host: WindowsHost, token: Token, path: str) -> tuple[list[Any], str | None]:
    """Read-FleetJournalEntries: one JSON object per line; a last line without its newline is torn.

    Returns the complete entries and, for a torn last line, why it was left out.
    """
    fs = host.fs
    fs.tree.require(fs.tree.node(path), token, sec.FILE_GENERIC_READ)
    text = fs.read_text(path) or ""
    lines = text.split("\n")
    torn = lines.pop()  # "" when the file ends with its newline
    entries = [json.loads(line) for line in lines if line]
    if torn:
        return entries, "the last entry was cut short (the agent stopped while writing it) and is left out"
    return entries, None


def journal_append(host: WindowsHost, token: Token, job_id: str, entry: Result) -> None:
    """Append one line to the job's journal; the folders are created (protected, SYSTEM +
    Administrators only) when the file does not exist yet."""
    fs = host.fs
    path = journal_path(job_id)
    try:
        problem = _check_trusted(host, token, (JOURNAL_ROOT, JOURNAL_DIR, path))
        if problem:
            raise _fail(problem)
        if not fs.exists(path):
            if not fs.exists(PROGRAM_DATA):
                fs.create_dir(PROGRAM_DATA, token)
            for folder in (JOURNAL_ROOT, JOURNAL_DIR):
                if not fs.exists(folder):
                    fs.create_dir(folder, token, owner=sids.ADMINISTRATORS, explicit=_FOLDER_DACL, protected=True)
        fs.append_text(path, json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n", token)
    except Win32Error as exc:
        raise PrimitiveError(f"win32_{exc.code}", win32_text(exc)) from exc


@_primitive
def journal_read(ctx: PrimitiveContext, args: dict[str, Any]) -> Result:
    """Read-FleetJournal: the appended entries, if the folders and the file are ours."""
    host = ctx.host
    path = journal_path(str(args["job_id"]))
    if not host.fs.exists(path):
        return {"exists": False, "trusted": True, "entries": [], "problem": None}
    problem = _check_trusted(host, ctx.token, (JOURNAL_ROOT, JOURNAL_DIR, path))
    if problem:
        return {"exists": True, "trusted": False, "entries": [], "problem": problem}
    try:
        entries, torn = _read_entries(host, ctx.token, path)
    except ValueError as exc:
        return {"exists": True, "trusted": True, "entries": [], "problem": f"journal is not valid: {exc}"}
    return {"exists": True, "trusted": True, "entries": entries, "problem": torn}


@_primitive
def journal_delete(ctx: PrimitiveContext, args: dict[str, Any]) -> Result:
    """Remove-FleetJournal: the job's file, then the journal folder and FleetLockdown when empty."""
    fs = ctx.host.fs
    path = journal_path(str(args["job_id"]))
    problem = _check_trusted(ctx.host, ctx.token, (JOURNAL_ROOT, JOURNAL_DIR, path))
    if problem:
        raise _fail(problem)
    changed = False
    if fs.exists(path):
        fs.delete(path, ctx.token)
        changed = True
    for folder in (JOURNAL_DIR, JOURNAL_ROOT):
        if fs.exists(folder) and not fs.list_dir(folder, ctx.token):
            fs.delete(folder, ctx.token)
            changed = True
    return {"changed": changed}


# --- file_read --------------------------------------------------------------------------------------
MAX_FILE_READ: Final = 4 * 1024 * 1024


@_primitive
def file_read(ctx: PrimitiveContext, args: dict[str, Any]) -> Result:
    """FileStream(Open, Read, ReadWrite) + Stream.Read: the first max_bytes bytes, base64.

    Opening for read needs FILE_GENERIC_READ on the file (the caller's token is checked). The model keeps the
    text of only a few files (the journal, IIS's applicationHost.config); reading any other existing file is
    a model limit, reported as an error rather than invented content.
    """
    fs = ctx.host.fs
    path = str(args["path"])
    limit = _int(args["max_bytes"], "max_bytes")
    if not 1 <= limit <= MAX_FILE_READ:
        raise _fail(f"max_bytes must be between 1 and {MAX_FILE_READ}, not {limit}")
    if not fs.exists(path) or fs.is_dir(path):
        return {"exists": False, "size": None, "data": None, "truncated": False}
    fs.tree.require(fs.tree.node(path), ctx.token, sec.FILE_GENERIC_READ)
    text = fs.read_text(path)
    if text is None:
        raise _fail(f"winlab keeps no content for {path}")
    raw = text.encode("utf-8")
    head = raw[:limit]
    return {
        "exists": True,
        "size": len(raw),
        "data": base64.b64encode(head).decode("ascii"),
        "truncated": len(raw) > len(head),
    }


# --- sleep ------------------------------------------------------------------------------------------
@_primitive
def sleep(ctx: PrimitiveContext, args: dict[str, Any]) -> Result:
    """Start-Sleep: the model's clock moves on (timers due meanwhile fire: services settle, GPOs refresh)."""
    seconds = float(args["seconds"])
    if seconds < 0:
        raise _fail("seconds must not be negative")
    ctx.host.advance(seconds)
    return {"changed": False}


PRIMITIVES: Final[dict[str, Primitive]] = {
    "host_info": host_info,
    "registry_read": registry_read,
    "sd_read": sd_read,
    "dacl_write": dacl_write,
    "sid_lookup": sid_lookup,
    "user_get": user_get,
    "group_get": group_get,
    "lsa_enum": lsa_enum,
    "service_get": service_get,
    "defender_get": defender_get,
    "sql": sql,
    "tcp_probe": tcp_probe,
    "http_probe": http_probe,
    "logon_check": logon_check,
    "journal_read": journal_read,
    "file_read": file_read,
    "lsa_add": lsa_add,
    "lsa_remove": lsa_remove,
    "user_create": user_create,
    "user_set_flags": user_set_flags,
    "user_set_password": user_set_password,
    "user_delete": user_delete,
    "group_create": group_create,
    "group_delete": group_delete,
    "group_member_add": group_member_add,
    "group_member_remove": group_member_remove,
    "service_change": service_change,
    "service_control": service_control,
    "defender_add": defender_add,
    "defender_remove": defender_remove,
    "journal_delete": journal_delete,
    "sleep": sleep,
}
assert set(PRIMITIVES) == set(CONTRACT), "winlab implements exactly the contract's primitives"

__all__ = [
    "MAIL_PORTS",
    "PRIMITIVES",
    "Primitive",
    "PrimitiveContext",
    "PrimitiveError",
    "journal_append",
    "journal_path",
    "owner_and_access_sddl",
]
