"""winlab's agent v2 primitives over the emulated Windows: result shapes, and what the model refuses."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from lockdown.engine.program import PRIMITIVES as CONTRACT
from tests.unit.winlab.builders import make_host
from winlab.agent.primitives import (
    JOURNAL_DIR,
    JOURNAL_ROOT,
    PRIMITIVES,
    PrimitiveContext,
    PrimitiveError,
    journal_append,
    journal_path,
    owner_and_access_sddl,
)
from winlab.windows import security as sec
from winlab.windows import sids
from winlab.windows.accounts import UF_ACCOUNTDISABLE, UF_DONT_EXPIRE_PASSWD
from winlab.windows.host import WindowsHost

PW = "Xq7!long-Passw0rd"
CMD = "C:\\Windows\\System32\\cmd.exe"
ME_KEY = "HKLM\\SOFTWARE\\Mail Enable\\Mail Enable"
OICI = sec.AceFlags.OI | sec.AceFlags.CI


@pytest.fixture
def ctx(host: WindowsHost) -> PrimitiveContext:
    return PrimitiveContext(host=host, token=host.admin_token(), job_id="job-1")


def call(ctx: PrimitiveContext, op: str, **args: Any) -> dict[str, Any]:
    """Call one primitive; its args must be the contract's and its result exactly the contract's keys, as JSON."""
    names, keys = CONTRACT[op]
    allowed = {n.rstrip("?") for n in names}
    required = {n for n in names if not n.endswith("?")}
    assert required <= set(args) <= allowed, f"{op}: test passes args {sorted(args)}"
    result = PRIMITIVES[op](ctx, args)
    assert set(result) == set(keys), f"{op} returned {sorted(result)}, the contract says {sorted(keys)}"
    assert json.loads(json.dumps(result)) == result  # plain JSON, nothing else
    return result


def fails(ctx: PrimitiveContext, op: str, **args: Any) -> PrimitiveError:
    with pytest.raises(PrimitiveError) as exc:
        PRIMITIVES[op](ctx, args)
    return exc.value


def sid_of(host: WindowsHost, name: str) -> str:
    return host.accounts.lookup_name(name).sid


def read(ctx: PrimitiveContext, path: str, **extra: Any) -> dict[str, Any]:
    return call(ctx, "sd_read", kind=extra.pop("kind", "path"), path=path, **extra)


def store(host: WindowsHost) -> str:
    return host.mailenable.install.mail_root


# --- every primitive's result shape ------------------------------------------------------------------
def _ime_user(host: WindowsHost) -> str:
    return sid_of(host, "IME_USER")


SHAPES: dict[str, Callable[[WindowsHost], dict[str, Any]]] = {
    "host_info": lambda h: {},
    "registry_read": lambda h: {"path": ME_KEY, "view": 32, "names": None},
    "sd_read": lambda h: {"kind": "path", "path": CMD},
    "dacl_write": lambda h: {
        "kind": "path",
        "path": store(h),
        "object": "directory",
        "take_ownership": False,
        "sddl": "D:AI(A;OICI;FA;;;BA)",
        "expected": owner_and_access_sddl(h.fs.get_sd(store(h))),
    },
    "sid_lookup": lambda h: {"names": ["BUILTIN\\Administrators", "NOBODY-HERE"]},
    "user_get": lambda h: {"name": "IME_USER"},
    "group_get": lambda h: {"name": "Administrators"},
    "lsa_enum": lambda h: {"right": "SeServiceLogonRight"},
    "service_get": lambda h: {"names": ["MEPOPS", "NoSuchService"]},
    "defender_get": lambda h: {},
    "sql": lambda h: {"instance": ".", "statement": "whoami", "params": {}},
    "tcp_probe": lambda h: {"host": "127.0.0.1", "port": 25, "send": "EHLO probe", "timeout_ms": 2000},
    "http_probe": lambda h: {
        "url": "http://localhost/mewebmail/Mondo/lang/sys/login.aspx",
        "allow_self_signed": False,
        "timeout_ms": 2000,
    },
    "logon_check": lambda h: {"user": h.admin_username, "password": h.admin_password},
    "journal_read": lambda h: {"job_id": "job-1"},
    "file_read": lambda h: {"path": IIS_CONFIG, "max_bytes": 4096},
    "lsa_add": lambda h: {"sid": _ime_user(h), "right": "SeServiceLogonRight"},
    "lsa_remove": lambda h: {"sid": sids.BACKUP_OPERATORS, "right": "SeBackupPrivilege"},
    "user_create": lambda h: {"name": "IME_SYSTEM", "password": PW, "flags": UF_DONT_EXPIRE_PASSWD, "description": "x"},
    "user_set_flags": lambda h: {"name": "IME_USER", "set": UF_DONT_EXPIRE_PASSWD, "clear": 0},
    "user_set_password": lambda h: {"name": "IME_USER", "password": PW},
    "user_delete": lambda h: {"name": "IME_USER", "sid": _ime_user(h)},
    "group_create": lambda h: {"name": "IME_STORE_GROUP", "description": "store"},
    "group_delete": lambda h: {"name": "IIS_IUSRS", "sid": "S-1-5-21-1-2-3-4"},
    "group_member_add": lambda h: {"group": "Users", "sid": _ime_user(h)},
    "group_member_remove": lambda h: {"group": "Administrators", "sid": _ime_user(h)},
    "service_change": lambda h: {"name": "MEPOPS", "start_name": "LocalSystem", "password": None},
    "service_control": lambda h: {"name": "MEPOPS", "action": "stop", "timeout_ms": 30000},
    "defender_add": lambda h: {"path": "C:\\Program Files (x86)\\Mail Enable"},
    "defender_remove": lambda h: {"path": "C:\\nothing"},
    "journal_delete": lambda h: {"job_id": "job-1"},
    "sleep": lambda h: {"seconds": 2},
}


def test_the_shape_table_covers_every_primitive_of_the_contract():
    assert set(SHAPES) == set(CONTRACT) == set(PRIMITIVES)


@pytest.mark.parametrize("op", sorted(SHAPES))
def test_each_primitive_returns_exactly_the_contract_keys(op):
    host = make_host(sql=True)
    call(PrimitiveContext(host, host.admin_token(), job_id="job-1"), op, **SHAPES[op](host))


def test_host_info_reads_the_host_and_the_token(host, ctx):
    info = call(ctx, "host_info")
    assert info["computer_name"] == "ME01"
    assert info["os_caption"] == "Microsoft Windows Server 2019 Standard"  # Win32_OperatingSystem.Caption
    assert info["os_build"] == 17763
    assert info["domain_role"] == 2  # standalone server
    assert info["powershell_version"] == "5.1.17763.1"
    assert info["elevated"] is True
    assert info["user_name"] == "ME01\\Administrator"
    assert info["password_policy"] == {"min_length": 0, "complexity": True}
    assert call(PrimitiveContext(make_host(domain_member=True), ctx.token), "host_info")["domain_role"] == 3


# --- registry ---------------------------------------------------------------------------------------
def test_registry_views_32_and_64_read_different_keys(host, ctx):
    in_32 = call(ctx, "registry_read", path=ME_KEY, view=32, names=["Version", "Missing"])
    assert in_32 == {"exists": True, "values": {"Version": "10.43"}}  # absent names are left out
    assert call(ctx, "registry_read", path=ME_KEY, view=64, names=None) == {"exists": False, "values": {}}
    key32 = read(ctx, ME_KEY, kind="key", view=32)
    assert key32["exists"]
    assert key32["object"] == "key"
    assert read(ctx, ME_KEY, kind="key", view=64)["exists"] is False
    wow = call(ctx, "registry_read", path="HKLM\\SOFTWARE\\WOW6432Node\\Mail Enable\\Mail Enable", view=64, names=None)
    assert wow["values"] == call(ctx, "registry_read", path=ME_KEY, view=32, names=None)["values"]


def test_registry_read_as_a_user_who_may_not_open_the_key_is_access_denied(host):
    key = "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Component Based Servicing"
    admin = PrimitiveContext(host, host.admin_token())
    assert call(admin, "registry_read", path=key, view=64, names=None)["exists"] is True
    host.registry.tree.node(key).sd = sec.SecurityDescriptor(sids.TRUSTED_INSTALLER, (), protected=True)
    assert fails(admin, "registry_read", path=key, view=64, names=None).code == "win32_5"


# --- security descriptors ------------------------------------------------------------------------------
def test_sd_read_returns_owner_and_dacl_sections_only(host, ctx):
    got = read(ctx, CMD)
    sd = host.fs.get_sd(CMD)
    assert got["exists"] is True
    assert got["object"] == "file"
    assert got["owner"] == sids.TRUSTED_INSTALLER
    assert got["protected"] is True
    assert got["sddl"].startswith(f"O:{sids.TRUSTED_INSTALLER}D:PAI(")
    assert "G:" not in got["sddl"]
    assert got["sddl"].split("D:", 1)[1] == sec.to_sddl(sd).split("D:", 1)[1]
    assert read(ctx, "C:\\Windows\\System32\\nope.exe") == {
        "exists": False, "object": None, "owner": None, "sddl": None, "protected": None,
    }  # fmt: skip
    assert read(ctx, "C:\\Windows")["object"] == "directory"


def deny_rx(host: WindowsHost) -> str:
    return f"(D;;0x1200a9;;;{sid_of(host, 'IME_USER')})"


def test_dacl_write_is_compare_and_swap_on_the_sddl_sd_read_prints(host, ctx):
    folder = store(host)
    before = read(ctx, folder)["sddl"]
    stale = before.replace("D:AI", "D:AI(A;;FA;;;BG)", 1)
    mutations = host.mutations
    result = call(ctx, "dacl_write", kind="path", path=folder, object="directory", sddl="D:AI(A;OICI;FA;;;BA)",
                  expected=stale, take_ownership=False)  # fmt: skip
    assert result == {"changed": False, "conflict": True, "current": before, "after": None, "failures": []}
    assert host.mutations == mutations
    assert read(ctx, folder)["sddl"] == before


def test_take_ownership_restores_the_original_trustedinstaller_owner(host, ctx):
    before = read(ctx, CMD)
    new = "D:PAI" + deny_rx(host) + before["sddl"].split("D:PAI", 1)[1]
    result = call(ctx, "dacl_write", kind="path", path=CMD, object="file", sddl=new, expected=before["sddl"],
                  take_ownership=True)  # fmt: skip
    after = read(ctx, CMD)
    assert result == {"changed": True, "conflict": False, "current": None, "after": after["sddl"], "failures": []}
    assert after["owner"] == sids.TRUSTED_INSTALLER  # the original owner, not Administrators
    assert after["sddl"] == f"O:{sids.TRUSTED_INSTALLER}{new}"
    assert not ctx.token.privileges_enabled & {"SeTakeOwnershipPrivilege", "SeRestorePrivilege"}


def test_dacl_write_on_a_trustedinstaller_file_without_take_ownership_is_access_denied(host, ctx):
    before = read(ctx, CMD)
    new = "D:PAI" + deny_rx(host) + before["sddl"].split("D:PAI", 1)[1]
    mutations = host.mutations
    error = fails(ctx, "dacl_write", kind="path", path=CMD, object="file", sddl=new, expected=before["sddl"],
                  take_ownership=False)  # fmt: skip
    assert error.code == "win32_5"
    assert "Access is denied." in error.message
    assert read(ctx, CMD) == before
    assert host.mutations == mutations


def test_take_ownership_needs_the_privileges_the_token_holds(host):
    # A standard user holds neither SeTakeOwnership nor SeRestore: the model refuses with 1300.
    user = PrimitiveContext(host, host.logon("IME_USER", host.mailenable.install.passwords["IME_USER"]))
    before = read(user, CMD)
    error = fails(user, "dacl_write", kind="path", path=CMD, object="file", sddl="D:PAI(A;;FA;;;SY)",
                  expected=before["sddl"], take_ownership=True)  # fmt: skip
    assert error.code == "win32_1300"
    assert read(user, CMD)["owner"] == sids.TRUSTED_INSTALLER


def test_directory_write_keeps_container_and_object_inheritance(host, ctx):
    folder = store(host)
    sid = sid_of(host, "IME_USER")
    before = read(ctx, folder)
    explicit = f"(A;OICI;FA;;;{sid})(A;CIIO;FR;;;{sid})"
    result = call(ctx, "dacl_write", kind="path", path=folder, object="directory", sddl="D:AI" + explicit,
                  expected=before["sddl"], take_ownership=False)  # fmt: skip
    assert result["changed"] is True
    assert result["failures"] == []
    after = read(ctx, folder)["sddl"]
    assert before["owner"] == sids.ADMINISTRATORS
    assert after.startswith(f"O:BAD:AI{explicit}(A;OICIID;FA;;;")  # explicit first, inherited recomputed
    child = next(n for n in host.fs.tree.node(folder).children.values())
    assert sec.Ace(sec.AceType.ALLOW, sid, sec.FILE_ALL_ACCESS, OICI | sec.AceFlags.ID) in child.sd.dacl


def test_file_write_uses_file_semantics_inheritance_flags_are_dropped(host, ctx):
    path = host.mailenable.install.bin_dir + "\\MEAdmin.exe"
    if not host.fs.exists(path):
        path = next(n.path for n in host.fs.tree.node(host.mailenable.install.bin_dir).walk() if n.kind.value == "file")
    before = read(ctx, path)
    sid = sid_of(host, "IME_USER")
    sddl = f"D:AI(A;OICI;FR;;;{sid})(A;OICIIO;FA;;;{sid})"
    assert call(ctx, "dacl_write", kind="path", path=path, object="file", sddl=sddl, expected=before["sddl"],
                take_ownership=False)["changed"]  # fmt: skip
    explicit = [a for a in host.fs.get_sd(path).dacl if not a.inherited]
    assert explicit == [sec.allow(sid, sec.FILE_GENERIC_READ)]  # FileSecurity: flags cleared, IO ACE dropped


def test_dacl_write_refuses_an_object_of_another_kind(host, ctx):
    before = read(ctx, CMD)
    error = fails(ctx, "dacl_write", kind="path", path=CMD, object="directory", sddl="D:PAI(A;;FA;;;SY)",
                  expected=before["sddl"], take_ownership=False)  # fmt: skip
    assert error.code == "exception"


def test_dacl_write_on_a_registry_key_through_the_32_bit_view(host, ctx):
    before = read(ctx, ME_KEY, kind="key", view=32)
    sddl = "D:AI(A;CI;KR;;;BU)"
    result = call(ctx, "dacl_write", kind="key", path=ME_KEY, view=32, object="key", sddl=sddl,
                  expected=before["sddl"], take_ownership=False)  # fmt: skip
    assert result["changed"] is True
    assert read(ctx, ME_KEY, kind="key", view=32)["sddl"].startswith("O:BAD:AI(A;CI;KR;;;BU)(A;ID;")


# --- accounts, rights ------------------------------------------------------------------------------------
def test_sid_lookup_maps_unknown_names_to_null(host, ctx):
    got = call(ctx, "sid_lookup", names=["BUILTIN\\Administrators", "IME_USER", "ME01\\IME_ADMIN", "NOBODY"])
    assert got["sids"] == {
        "BUILTIN\\Administrators": sids.ADMINISTRATORS,
        "IME_USER": sid_of(host, "IME_USER"),
        "ME01\\IME_ADMIN": sid_of(host, "IME_ADMIN"),
        "NOBODY": None,
    }


def test_user_and_group_get(host, ctx):
    user = call(ctx, "user_get", name="ME01\\IME_USER")
    assert user["exists"]
    assert user["sid"] == sid_of(host, "IME_USER")
    assert isinstance(user["flags"], int)
    assert call(ctx, "user_get", name="GHOST") == {"exists": False, "sid": None, "flags": None, "groups": []}
    admins = call(ctx, "group_get", name="Administrators")
    assert admins["sid"] == sids.ADMINISTRATORS
    assert sid_of(host, host.admin_username) in admins["members"]
    assert sids.ADMINISTRATORS in call(ctx, "user_get", name=host.admin_username)["groups"]


def test_user_set_flags_writes_only_when_the_flags_differ(host, ctx):
    flags = host.accounts.user("IME_USER").flags
    mutations = host.mutations
    same = call(ctx, "user_set_flags", name="IME_USER", set=0, clear=UF_ACCOUNTDISABLE)
    assert same == {"changed": False, "before": flags, "after": flags}
    assert host.mutations == mutations
    wanted = (flags | UF_ACCOUNTDISABLE) & ~UF_DONT_EXPIRE_PASSWD
    got = call(ctx, "user_set_flags", name="IME_USER", set=UF_ACCOUNTDISABLE, clear=UF_DONT_EXPIRE_PASSWD)
    assert got == {"changed": True, "before": flags, "after": wanted}
    assert host.mutations == mutations + 1


def test_user_and_group_delete_only_when_the_sid_still_matches(host, ctx):
    created = call(ctx, "user_create", name="IME_SYSTEM", password=PW, flags=UF_DONT_EXPIRE_PASSWD, description="x")
    assert created["changed"]
    assert created["sid"].startswith(host.machine_sid)
    assert call(ctx, "user_delete", name="IME_SYSTEM", sid=host.machine_sid + "-9999") == {"changed": False}
    assert "ime_system" in host.accounts.users
    assert call(ctx, "user_delete", name="IME_SYSTEM", sid=created["sid"]) == {"changed": True}
    assert "ime_system" not in host.accounts.users
    group = call(ctx, "group_create", name="IME_STORE_GROUP", description="store")
    assert call(ctx, "group_delete", name="IME_STORE_GROUP", sid=sids.USERS) == {"changed": False}
    assert call(ctx, "group_delete", name="IME_STORE_GROUP", sid=group["sid"]) == {"changed": True}


def test_group_membership_is_idempotent(host, ctx):
    sid = sid_of(host, "IME_USER")
    call(ctx, "group_create", name="IME_STORE_GROUP", description="")
    assert call(ctx, "group_member_add", group="IME_STORE_GROUP", sid=sid) == {"changed": True}
    assert call(ctx, "group_member_add", group="IME_STORE_GROUP", sid=sid) == {"changed": False}
    assert call(ctx, "group_get", name="IME_STORE_GROUP")["members"] == [sid]
    assert call(ctx, "group_member_remove", group="IME_STORE_GROUP", sid=sid) == {"changed": True}
    assert call(ctx, "group_member_remove", group="IME_STORE_GROUP", sid=sid) == {"changed": False}
    assert fails(ctx, "group_member_add", group="NO_GROUP", sid=sid).code == "win32_1376"


def test_lsa_enum_add_remove(host, ctx):
    sid = sid_of(host, "IME_USER")
    assert call(ctx, "lsa_enum", right="SeTcbPrivilege") == {"sids": []}  # STATUS_NO_MORE_ENTRIES
    assert call(ctx, "lsa_add", sid=sid, right="SeServiceLogonRight") == {"changed": True}
    assert call(ctx, "lsa_add", sid=sid, right="SeServiceLogonRight") == {"changed": False}
    assert sid in call(ctx, "lsa_enum", right="SeServiceLogonRight")["sids"]
    assert call(ctx, "lsa_remove", sid=sid, right="SeServiceLogonRight") == {"changed": True}
    assert fails(ctx, "lsa_add", sid=sid, right="SeNoSuchRight").code == "win32_1313"


def test_a_uac_filtered_token_is_refused_by_the_model():
    host = make_host(admin_account="local", uac_filtering=True)
    filtered = PrimitiveContext(host, host.admin_token())
    assert fails(filtered, "lsa_add", sid=sids.USERS, right="SeServiceLogonRight").code == "win32_5"
    assert fails(filtered, "user_create", name="X1", password=PW, flags=0, description="").code == "win32_5"
    assert call(filtered, "host_info")["elevated"] is False


def test_logon_check_is_a_network_logon_through_the_model(host, ctx):
    password = host.mailenable.install.passwords["IME_USER"]
    assert call(ctx, "logon_check", user="IME_USER", password=password) == {"ok": True, "code": 0}
    assert call(ctx, "logon_check", user="IME_USER", password="wrong") == {"ok": False, "code": 1326}
    host.lsa.add_account_rights(sid_of(host, "IME_USER"), ["SeDenyNetworkLogonRight"])
    assert call(ctx, "logon_check", user="IME_USER", password=password) == {"ok": False, "code": 1385}


# --- services -------------------------------------------------------------------------------------------
def test_service_get_resolves_the_start_name_to_a_sid(host, ctx):
    got = call(ctx, "service_get", names=["MEPOPS", "NoSuchService"])["services"]
    assert got[0] == {
        "name": "MEPOPS", "exists": True, "display_name": host.services.get("MEPOPS").display_name,
        "start_name": "LocalSystem", "start_name_sid": sids.LOCAL_SYSTEM, "state": "Running", "start_mode": "Auto",
        "path_name": host.services.get("MEPOPS").path_name,
    }  # fmt: skip
    assert got[1]["exists"] is False
    assert got[1]["name"] == "NoSuchService"
    everything = call(ctx, "service_get", names=None)["services"]
    assert [s["name"] for s in everything] == host.services.names()


def test_stop_never_starts_and_start_of_a_disabled_service_is_1058(host, ctx):
    stop = call(ctx, "service_control", name="MEPOPS", action="stop", timeout_ms=30000)
    assert stop == {"changed": True, "state": "Stopped", "code": 0}
    again = call(ctx, "service_control", name="MEPOPS", action="stop", timeout_ms=30000)
    assert again == {"changed": False, "state": "Stopped", "code": 0}  # not started as a side effect
    host.services.change("MEPOPS", None, start_mode="Disabled")
    start = call(ctx, "service_control", name="MEPOPS", action="start", timeout_ms=30000)
    assert start == {"changed": False, "state": "Stopped", "code": 1058}
    assert fails(ctx, "service_control", name="NoSuchService", action="start", timeout_ms=1).code == "win32_1060"


def test_a_service_whose_account_lost_service_logon_right_fails_with_1069(host, ctx):
    user = call(ctx, "user_create", name="IME_SYSTEM", password=PW, flags=UF_DONT_EXPIRE_PASSWD, description="")
    call(ctx, "lsa_add", sid=user["sid"], right="SeServiceLogonRight")
    inst = host.mailenable.install
    for rel in ("Queues", "Logging", "Config", "Bad Mail", "Backup", "@store"):
        host.fs.add_access_rule(inst.path(rel), sec.allow(user["sid"], sec.FILE_ALL_ACCESS, OICI), ctx.token)
    changed = call(ctx, "service_change", name="MEPOPS", start_name=".\\IME_SYSTEM", password=PW)
    assert changed == {"changed": True, "return_value": 0}
    call(ctx, "service_control", name="MEPOPS", action="stop", timeout_ms=30000)
    assert call(ctx, "service_control", name="MEPOPS", action="start", timeout_ms=30000)["code"] == 0
    assert call(ctx, "service_get", names=["MEPOPS"])["services"][0]["start_name_sid"] == user["sid"]
    call(ctx, "lsa_remove", sid=user["sid"], right="SeServiceLogonRight")
    call(ctx, "service_control", name="MEPOPS", action="stop", timeout_ms=30000)
    again = call(ctx, "service_control", name="MEPOPS", action="start", timeout_ms=30000)
    assert again == {"changed": False, "state": "Stopped", "code": 1069}


def test_a_wrong_stored_password_fails_the_start_with_1069(host, ctx):
    user = call(ctx, "user_create", name="IME_SYSTEM", password=PW, flags=0, description="")
    call(ctx, "lsa_add", sid=user["sid"], right="SeServiceLogonRight")
    call(ctx, "service_change", name="MEPOPS", start_name=".\\IME_SYSTEM", password="Wrong!Passw0rd1")
    call(ctx, "service_control", name="MEPOPS", action="stop", timeout_ms=30000)
    assert call(ctx, "service_control", name="MEPOPS", action="start", timeout_ms=30000)["code"] == 1069


def test_service_change_reports_wmi_return_values(host, ctx):
    assert call(ctx, "service_change", name="MEPOPS", start_name=".\\NOBODY", password="x") == {
        "changed": False, "return_value": 22,
    }  # fmt: skip


# --- SQL, Defender -----------------------------------------------------------------------------------------
def test_sql_statements_over_the_model():
    host = make_host(sql=True)
    ctx = PrimitiveContext(host, host.admin_token())
    whoami = call(ctx, "sql", instance=".", statement="whoami", params={})
    assert whoami == {"rows": [[1, "ME01\\Administrator"]], "changed": False}
    login = "ME01\\IME_USER"
    assert call(ctx, "sql", instance=".", statement="login_exists", params={"login": login})["rows"] == []
    assert call(ctx, "sql", instance=".", statement="create_login", params={"login": login})["changed"] is True
    assert call(ctx, "sql", instance=".", statement="login_exists", params={"login": login})["rows"] == [[login]]
    params = {"database": "MAILENABLE", "user": "IME_USER", "login": login}
    call(ctx, "sql", instance=".", statement="create_user", params=params)
    assert call(ctx, "sql", instance=".", statement="user_exists", params=params)["rows"] == [["IME_USER"]]
    call(ctx, "sql", instance=".", statement="grant", params={**params, "permission": "EXECUTE"})
    assert call(ctx, "sql", instance=".", statement="permissions", params=params)["rows"] == [["EXECUTE"]]
    assert fails(ctx, "sql", instance=".", statement="create_login", params={"login": login}).code == "sql_15025"
    assert fails(ctx, "sql", instance=".", statement="grant", params={"database": "MAILENABLE"}).code == "sql_137"
    assert fails(ctx, "sql", instance=".\\SQLEXPRESS", statement="whoami", params={}).code == "sql_-1"


def test_sql_without_sql_server_is_a_connection_error(host, ctx):
    assert fails(ctx, "sql", instance=".", statement="whoami", params={}).code == "sql_2"


def test_defender_exclusions(host, ctx):
    path = "C:\\Program Files (x86)\\Mail Enable"
    assert call(ctx, "defender_get") == {"installed": True, "paths": []}
    assert call(ctx, "defender_add", path=path) == {"changed": True}
    assert call(ctx, "defender_add", path=path + "\\") == {"changed": False}
    assert call(ctx, "defender_get")["paths"] == [path]
    assert call(ctx, "defender_remove", path=path) == {"changed": True}
    old = make_host(os="2008r2")
    assert call(PrimitiveContext(old, old.admin_token()), "defender_get") == {"installed": False, "paths": []}


# --- probes ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["127.0.0.1", "::1", "ME01", "me01"])
def test_tcp_probe_answers_with_mailenable_banners(host, ctx, target):
    smtp = call(ctx, "tcp_probe", host=target, port=25, send="EHLO fleet", timeout_ms=2000)
    assert smtp["connected"] is True
    assert smtp["banner"] == host.mailenable.smtp_banner(host.name)
    assert smtp["reply"].startswith("250-ME01 [")
    pop = call(ctx, "tcp_probe", host=target, port=110, send="CAPA", timeout_ms=2000)
    assert pop == {"connected": True, "banner": host.mailenable.pop_banner(), "reply": "+OK Capability list follows",
                   "error": None}  # fmt: skip
    imap = call(ctx, "tcp_probe", host=target, port=143, send=None, timeout_ms=2000)
    assert imap["banner"] == host.mailenable.imap_banner()
    assert imap["reply"] is None


def test_tcp_probe_of_a_stopped_service_or_a_closed_port_is_refused_never_raised(host, ctx):
    host.services.stop("MEPOPS")
    pop = call(ctx, "tcp_probe", host="127.0.0.1", port=110, send=None, timeout_ms=2000)
    assert pop["connected"] is False
    assert "actively refused" in pop["error"]
    assert call(ctx, "tcp_probe", host="127.0.0.1", port=9, send=None, timeout_ms=10)["connected"] is False
    assert call(ctx, "tcp_probe", host="mail.example.com", port=25, send=None, timeout_ms=10)["connected"] is False
    lab = PrimitiveContext(host, ctx.token, mail_ports={2525: "smtp"})
    assert call(lab, "tcp_probe", host="127.0.0.1", port=2525, send=None, timeout_ms=10)["connected"] is True


def test_http_probe_follows_the_model(host, ctx):
    url = "http://localhost/mewebmail/Mondo/lang/sys/login.aspx"
    ok = call(ctx, "http_probe", url=url, allow_self_signed=False, timeout_ms=2000)
    assert ok == {"status": 200, "location": None, "title": "MailEnable Web Mail", "error": None}
    host.services.stop("W3SVC")
    down = call(ctx, "http_probe", url=url, allow_self_signed=False, timeout_ms=2000)
    assert down["status"] is None
    assert down["error"] == "Unable to connect to the remote server"


def test_http_probe_refuses_a_self_signed_certificate_unless_allowed():
    host = make_host(webmail_https_self_signed=True)
    ctx = PrimitiveContext(host, host.admin_token())
    url = "https://me01/mewebmail/Mondo/lang/sys/login.aspx"
    strict = call(ctx, "http_probe", url=url, allow_self_signed=False, timeout_ms=2000)
    assert strict["status"] is None
    assert "trust relationship" in strict["error"]
    assert call(ctx, "http_probe", url=url, allow_self_signed=True, timeout_ms=2000)["status"] == 200


def test_sleep_advances_the_model_clock(host, ctx):
    now = host.ctx.clock.now()
    assert call(ctx, "sleep", seconds=7.5) == {"changed": False}
    assert host.ctx.clock.now() == now + 7.5


# --- file_read ---------------------------------------------------------------------------------------
IIS_CONFIG = "C:\\Windows\\System32\\inetsrv\\config\\applicationHost.config"


def test_file_read_returns_the_first_max_bytes_base64_and_says_when_it_cut(host, ctx):
    whole = call(ctx, "file_read", path=IIS_CONFIG, max_bytes=4 * 1024 * 1024)
    text = base64.b64decode(whole["data"]).decode("utf-8-sig")
    assert whole["exists"]
    assert not whole["truncated"]
    assert whole["size"] == len(base64.b64decode(whole["data"]))
    assert "<configuration>" in text
    head = call(ctx, "file_read", path=IIS_CONFIG, max_bytes=10)
    assert head["truncated"]
    assert len(base64.b64decode(head["data"])) == 10
    assert call(ctx, "file_read", path="C:\\nothing.txt", max_bytes=10) == {
        "exists": False,
        "size": None,
        "data": None,
        "truncated": False,
    }
    assert call(ctx, "file_read", path="C:\\Windows", max_bytes=10)["exists"] is False  # a folder is no file


def test_file_read_refuses_a_file_whose_content_the_model_does_not_keep(ctx):
    with pytest.raises(PrimitiveError, match="keeps no content"):
        call(ctx, "file_read", path="C:\\Windows\\System32\\cmd.exe", max_bytes=10)
    with pytest.raises(PrimitiveError, match="max_bytes"):
        call(ctx, "file_read", path=IIS_CONFIG, max_bytes=0)


# --- the journal -------------------------------------------------------------------------------------
def test_journal_append_read_delete(host, ctx):
    assert call(ctx, "journal_read", job_id="job-1") == {
        "exists": False,
        "trusted": True,
        "entries": [],
        "problem": None,
    }
    journal_append(host, ctx.token, "job-1", {"step": "a", "record": {"x": 1}, "vars": {}})
    journal_append(host, ctx.token, "job-1", {"step": "b", "record": {}, "vars": {"SID": "S-1-5-18"}})
    got = call(ctx, "journal_read", job_id="job-1")
    assert got["exists"]
    assert got["trusted"]
    assert [e["step"] for e in got["entries"]] == ["a", "b"]
    assert host.fs.get_sd(JOURNAL_DIR).protected
    assert call(ctx, "journal_delete", job_id="job-1") == {"changed": True}
    assert not host.fs.exists(JOURNAL_ROOT)  # empty folders go too
    assert call(ctx, "journal_delete", job_id="job-1") == {"changed": False}


def test_the_journal_is_a_line_per_entry_and_a_torn_last_line_is_left_out_and_said(host, ctx):
    journal_append(host, ctx.token, "job-1", {"step": "a", "record": {"x": 1}, "vars": {}})
    path = journal_path("job-1")
    assert path.endswith("job-1.jsonl")
    assert host.fs.read_text(path) == '{"record":{"x":1},"step":"a","vars":{}}\n'
    journal_append(host, ctx.token, "job-1", {"step": "b", "record": {}, "vars": {}})
    assert host.fs.read_text(path).count("\n") == 2
    assert call(ctx, "journal_read", job_id="job-1")["problem"] is None
    # the agent was stopped in the middle of writing a third line
    host.fs.append_text(path, '{"record":{"y"', ctx.token)
    got = call(ctx, "journal_read", job_id="job-1")
    assert got["trusted"]
    assert [e["step"] for e in got["entries"]] == ["a", "b"]
    assert "cut short" in got["problem"]
    # a broken line that is not the last is not a torn write: the journal is not valid
    host.fs.write_text(path, '{"step":"a"}\nnot json\n{"step":"c"}\n', ctx.token)
    got = call(ctx, "journal_read", job_id="job-1")
    assert got["entries"] == []
    assert got["problem"].startswith("journal is not valid")


def test_a_planted_journal_folder_is_not_trusted(host, ctx):
    user = host.logon("IME_USER", host.mailenable.install.passwords["IME_USER"])
    host.fs.create_dir(JOURNAL_ROOT, user)  # Users may create folders under ProgramData
    host.fs.create_dir(JOURNAL_DIR, user)
    host.fs.write_text(journal_path("job-1"), "[]", user)
    got = call(ctx, "journal_read", job_id="job-1")
    assert got["trusted"] is False
    assert got["entries"] == []
    assert "not by an administrator" in got["problem"]
    with pytest.raises(PrimitiveError, match="not by an administrator"):
        journal_append(host, ctx.token, "job-1", {"step": "a", "record": {}, "vars": {}})
    assert fails(ctx, "journal_delete", job_id="job-1").code == "exception"
    assert host.fs.exists(journal_path("job-1"))


def test_take_ownership_on_a_folder_recomputes_creator_owner_for_the_restored_owner(host, ctx):
    folder = "C:\\Windows\\Registration"
    original = read(ctx, folder)
    assert original["owner"] == sids.TRUSTED_INSTALLER
    assert f"(A;ID;FA;;;{sids.TRUSTED_INSTALLER})(A;OICIIOID;GA;;;CO)" in original["sddl"]  # CREATOR OWNER, mapped
    added = "D:AI" + deny_rx(host)
    first = call(ctx, "dacl_write", kind="path", path=folder, object="directory", sddl=added,
                 expected=original["sddl"], take_ownership=True)  # fmt: skip
    assert first["changed"] is True
    assert "(A;ID;FA;;;BA)(A;OICIIOID;GA;;;CO)" not in first["after"]  # not left mapped to Administrators
    back = call(ctx, "dacl_write", kind="path", path=folder, object="directory", sddl="D:AI",
                expected=first["after"], take_ownership=True)  # fmt: skip
    assert back["after"] == original["sddl"]  # exactly as before: the undo of a write is exact
