"""The hardening guide applied through the model's API, the way the agent will (one host, one token)."""

from tests.unit.winlab.builders import make_host
from winlab.windows import security as sec
from winlab.windows.accounts import ADS_UF_DONT_EXPIRE_PASSWD, ADS_UF_PASSWD_CANT_CHANGE
from winlab.windows.mailenable import HARDENED_SERVICES, HARDENING_DENIES, HARDENING_GRANTS
from winlab.windows.services import SETTLE_SECONDS

PW = "Xq7!long-Passw0rd"
OICI = sec.AceFlags.OI | sec.AceFlags.CI


def harden(host, *, services_first: bool = False):
    token = host.admin_token()
    inst = host.mailenable.install
    if services_first:
        host.accounts.create_user("IME_SYSTEM", PW, token)
        for name in HARDENED_SERVICES:
            assert host.services.change(name, token, start_name=".\\IME_SYSTEM", password=PW) == 0
            assert host.services.restart(name, token) == 1069  # no SeServiceLogonRight yet
        return
    user = host.accounts.create_user(
        "IME_SYSTEM", PW, token, flags=ADS_UF_DONT_EXPIRE_PASSWD | ADS_UF_PASSWD_CANT_CHANGE
    )
    group = host.accounts.create_group("IME_STORE_GROUP", token)
    host.accounts.add_member("IME_STORE_GROUP", user.sid, token)
    host.lsa.add_account_rights(user.sid, ["SeServiceLogonRight"], token)
    host.registry.add_access_rule(
        "HKLM\\SOFTWARE\\Mail Enable", sec.allow(user.sid, sec.KEY_ALL_ACCESS, sec.AceFlags.CI), token, view=32
    )
    with token.privileges("SeRestorePrivilege", "SeBackupPrivilege"):
        for folder in ("C:\\Windows\\System32", "C:\\Windows\\SysWOW64"):
            for dll in HARDENING_GRANTS:
                if host.fs.exists(f"{folder}\\{dll}"):
                    host.fs.add_access_rule(f"{folder}\\{dll}", sec.allow(user.sid, sec.FILE_READ_EXECUTE), token)
            for exe in HARDENING_DENIES:
                if host.fs.exists(f"{folder}\\{exe}"):
                    host.fs.add_access_rule(f"{folder}\\{exe}", sec.deny(user.sid, sec.FILE_READ_EXECUTE), token)
    host.fs.add_access_rule(inst.mail_root, sec.allow(group.sid, sec.FILE_ALL_ACCESS, OICI), token)
    for rel in ("Queues", "Logging", "Config", "Bad Mail", "Backup"):
        host.fs.add_access_rule(inst.path(rel), sec.allow(user.sid, sec.FILE_ALL_ACCESS, OICI), token)
    host.fs.add_access_rule(inst.bin_dir, sec.allow(user.sid, sec.FILE_READ_EXECUTE, OICI), token)
    for name in HARDENED_SERVICES:
        assert host.services.change(name, token, start_name=".\\IME_SYSTEM", password=PW) == 0
        assert host.services.restart(name, token) == 0


def test_guide_applied_in_order_leaves_a_healthy_host_and_a_second_apply_changes_nothing():
    host = make_host()
    harden(host)
    host.advance(SETTLE_SECONDS)
    report = host.health()
    assert report.ok, report.reasons
    host.mailenable.enqueue_inbound()
    host.advance(10)
    assert host.mailenable.queue("inbound") == []
    assert host.mailenable.delivered == 1
    # A second pass of the idempotent grants changes nothing.
    count = host.mutations
    token = host.admin_token()
    sid = host.accounts.user("IME_SYSTEM").sid
    assert host.lsa.add_account_rights(sid, ["SeServiceLogonRight"], token) == []
    ace = sec.allow(sid, sec.FILE_ALL_ACCESS, OICI)
    assert not host.fs.add_access_rule(host.mailenable.install.path("Queues"), ace, token).changed
    for name in HARDENED_SERVICES:
        assert host.services.change(name, token, start_name=".\\IME_SYSTEM", password=PW) == 0
    assert host.mutations == count


def test_switching_identities_before_granting_the_logon_right_fails_the_health_check():
    host = make_host()
    harden(host, services_first=True)
    host.advance(SETTLE_SECONDS)
    report = host.health()
    assert not report.ok
    assert not report.protocols["pop"]
    assert any("logon failed" in reason for reason in report.reasons)


def test_switching_to_an_account_that_does_not_exist_is_refused_with_22():
    host = make_host()
    assert host.services.change("MEPOPS", host.admin_token(), start_name=".\\IME_SYSTEM", password=PW) == 22
    assert host.services.get("MEPOPS").start_name == "LocalSystem"
