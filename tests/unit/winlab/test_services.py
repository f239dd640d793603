from tests.unit.winlab.builders import make_host
from winlab.windows import security as sec
from winlab.windows.accounts import ADS_UF_DONT_EXPIRE_PASSWD
from winlab.windows.policy import GroupPolicyObject
from winlab.windows.services import SETTLE_SECONDS, ServiceState

PW = "Xq7!long-Passw0rd"
OICI = sec.AceFlags.OI | sec.AceFlags.CI


def ime_system(host, *, right: bool = True):
    token = host.admin_token()
    user = host.accounts.create_user("IME_SYSTEM", PW, token, flags=ADS_UF_DONT_EXPIRE_PASSWD)
    if right:
        host.lsa.add_account_rights(user.sid, ["SeServiceLogonRight"], token)
    return user


def grant_mailenable_paths(host, sid):
    token = host.admin_token()
    inst = host.mailenable.install
    for rel in ("Queues", "Logging", "Config", "Bad Mail", "Backup", "@store"):
        host.fs.add_access_rule(inst.path(rel), sec.allow(sid, sec.FILE_ALL_ACCESS, OICI), token)


def test_localsystem_services_start_and_run(host):
    svc = host.services.get("MEPOPS")
    assert svc.start_name == "LocalSystem"
    assert svc.running
    host.advance(SETTLE_SECONDS + 1)
    assert host.services.get("MEPOPS").running


def test_service_fails_1069_without_service_logon_right(host):
    token = host.admin_token()
    ime_system(host, right=False)
    assert host.services.change("MEPOPS", token, start_name=".\\IME_SYSTEM", password=PW) == 0
    assert host.services.restart("MEPOPS", token) == 1069
    assert host.services.get("MEPOPS").state is ServiceState.STOPPED


def test_service_fails_1069_with_wrong_password(host):
    token = host.admin_token()
    ime_system(host)
    host.services.change("MEPOPS", token, start_name=".\\IME_SYSTEM", password="Wrong!Passw0rd")
    assert host.services.restart("MEPOPS", token) == 1069
    assert "incorrect" in host.services.get("MEPOPS").last_reason


def test_service_logon_right_through_a_group_is_enough(host):
    token = host.admin_token()
    user = ime_system(host, right=False)
    group = host.accounts.create_group("IME_STORE_GROUP", token)
    host.accounts.add_member("IME_STORE_GROUP", user.sid, token)
    host.lsa.add_account_rights(group.sid, ["SeServiceLogonRight"], token)
    grant_mailenable_paths(host, user.sid)
    host.services.change("MEPOPS", token, start_name=".\\IME_SYSTEM", password=PW)
    assert host.services.restart("MEPOPS", token) == 0


def test_service_fails_1069_after_gpo_removes_logon_right(host):
    token = host.admin_token()
    user = ime_system(host)
    grant_mailenable_paths(host, user.sid)
    host.services.change("MEPOPS", token, start_name=".\\IME_SYSTEM", password=PW)
    assert host.services.restart("MEPOPS", token) == 0
    host.policy.link(GroupPolicyObject("Baseline", {"SeServiceLogonRight": ("S-1-5-80-0",)}))
    host.advance(2 * 3600)  # past the 90-120 minute refresh
    assert user.sid not in host.lsa.holders("SeServiceLogonRight")
    assert host.services.get("MEPOPS").running  # a running service keeps its logon
    assert host.services.restart("MEPOPS", token) == 1069


def test_explicit_policy_refresh_reverts_the_right_at_once(host):
    user = ime_system(host)
    host.policy.link(GroupPolicyObject("Baseline", {"SeServiceLogonRight": ("S-1-5-80-0",)}))
    assert host.policy.refresh() == 1
    assert user.sid not in host.lsa.holders("SeServiceLogonRight")
    assert host.policy.refresh() == 0


def test_service_that_cannot_write_its_queues_stops_after_settling(host):
    token = host.admin_token()
    ime_system(host)
    host.services.change("MEMTAS", token, start_name=".\\IME_SYSTEM", password=PW)
    assert host.services.restart("MEMTAS", token) == 0  # StartService succeeds...
    assert host.services.get("MEMTAS").running
    host.advance(SETTLE_SECONDS)
    svc = host.services.get("MEMTAS")  # ...then the service stops: Users may only read the queues
    assert svc.state is ServiceState.STOPPED
    assert svc.exit_code == 1067
    assert "Queues" in svc.last_reason


def test_service_fails_with_access_denied_when_account_cannot_execute_its_binary(host):
    token = host.admin_token()
    user = ime_system(host)
    grant_mailenable_paths(host, user.sid)
    binary = host.services.get("MEPOPS").binary_path
    host.fs.add_access_rule(binary, sec.deny(user.sid, sec.FILE_EXECUTE), token)
    host.services.change("MEPOPS", token, start_name=".\\IME_SYSTEM", password=PW)
    assert host.services.restart("MEPOPS", token) == 5


def test_service_fails_when_a_dll_it_loads_is_denied_to_its_account():
    host = make_host(version="9.83")  # 32-bit services: DLLs come from SysWOW64
    token = host.admin_token()
    user = ime_system(host)
    grant_mailenable_paths(host, user.sid)
    with token.privileges("SeRestorePrivilege"):
        host.fs.add_access_rule("C:\\Windows\\SysWOW64\\ws2_32.dll", sec.deny(user.sid, sec.FILE_READ_EXECUTE), token)
        host.fs.add_access_rule("C:\\Windows\\SysWOW64\\cmd.exe", sec.deny(user.sid, sec.FILE_READ_EXECUTE), token)
    host.services.change("MEPOPS", token, start_name=".\\IME_SYSTEM", password=PW)
    assert host.services.restart("MEPOPS", token) == 1067


def test_change_rejects_groups_as_service_accounts_and_same_identity_counts_no_mutation(host):
    token = host.admin_token()
    assert host.services.change("MEPOPS", token, start_name="BUILTIN\\Users") == 22
    assert host.services.change("MEPOPS", token, start_name="LocalSystem") == 0
    assert host.mutations == 0


def test_change_is_mirrored_in_the_service_registry_key(host):
    token = host.admin_token()
    ime_system(host)
    host.services.change("MEPOPS", token, start_name=".\\IME_SYSTEM", password=PW, start_mode="Manual")
    key = host.registry.open("HKLM\\SYSTEM\\CurrentControlSet\\Services\\MEPOPS")
    assert key.get("ObjectName") == ".\\IME_SYSTEM"
    assert key.get("Start") == 3


def test_disabled_service_does_not_start(host):
    token = host.admin_token()
    host.services.stop("MELCS", token)
    host.services.change("MELCS", token, start_mode="Disabled")
    assert host.services.start("MELCS", token) == 1058
