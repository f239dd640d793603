"""Agent v2 fixtures: reboot, Restart-Service semantics, and the new HostSpec options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.winlab.builders import make_host
from winlab.__main__ import main
from winlab.control import ControlClient, ControlServer
from winlab.lab import Lab
from winlab.persist import write_private_json
from winlab.windows import security as sec
from winlab.windows import sids
from winlab.windows.clock import ManualClock
from winlab.windows.errors import (
    ERROR_SERVICE_DEPENDENCY_FAIL,
    ERROR_SERVICE_DISABLED,
    ERROR_SERVICE_LOGON_FAILED,
)
from winlab.windows.factory import NONCANONICAL_FOLDER, HostSpec
from winlab.windows.host import WindowsHost
from winlab.windows.iis import SCHANNEL_PROTOCOLS_KEY
from winlab.windows.lsa import DEFAULT_RIGHTS
from winlab.windows.policy import GroupPolicyObject
from winlab.windows.services import Service, StartMode
from winlab.windows.sql import SqlError

IME_SERVICES = ("MEMTAS", "MESMTPCS", "MEPOPS", "MEIMAPS")
NEW_PASSWORD = "Reset-By-Someone-1!"


def _settled(host: WindowsHost) -> WindowsHost:
    host.advance(6)
    return host


# --- reboot --------------------------------------------------------------------------------------
def test_reboot_starts_auto_services_again_and_leaves_manual_and_disabled_ones_stopped() -> None:
    host = make_host(pop_state="stopped", imap_state="disabled")
    token = host.admin_token()
    assert host.services.start("MEPOPS", token) == 0  # Manual: may be started by hand...
    report = host.reboot()
    assert "MEPOPS" in report.stopped
    assert "MESMTPCS" in report.stopped
    assert not host.services.get("MEPOPS").running  # ...but the boot does not start it
    assert not host.services.get("MEIMAPS").running
    assert "MEPOPS" not in report.codes
    assert "MEIMAPS" not in report.codes
    assert report.failed == {}
    auto = {s.name for s in host.services.all() if s.start_mode is StartMode.AUTO and not s.delayed_auto}
    assert set(report.codes) == auto
    assert all(host.services.get(name).running for name in auto)
    assert host.boots == 1


def test_meinstaller_host_still_works_after_a_reboot() -> None:
    host = make_host(hardened_by_meinstaller="IME_STORE_GROUP")
    ime = host.accounts.user("IME_SYSTEM")
    for name in IME_SERVICES:
        # The SCM stores the password per service; MEInstaller gave each IME_SYSTEM's generated one.
        assert host.services.get(name).password == ime.password == host.mailenable.install.passwords["IME_SYSTEM"]
    report = host.reboot()
    assert report.failed == {}
    assert _settled(host).health().ok, host.health().reasons


def test_reboot_after_a_password_reset_fails_with_1069_until_the_stored_passwords_are_updated() -> None:
    host = make_host(hardened_by_meinstaller="IME_STORE_USERS")
    token = host.admin_token()
    host.accounts.set_password("IME_SYSTEM", NEW_PASSWORD, token)
    # Running services keep running: the stored password is only used at the next start.
    assert all(host.services.get(name).running for name in IME_SERVICES)
    report = host.reboot()
    assert report.failed == dict.fromkeys(IME_SERVICES, ERROR_SERVICE_LOGON_FAILED)
    assert "logon failed" in host.services.get("MEPOPS").last_reason
    assert host.services.get("MELCS").running  # LocalSystem services are unaffected
    assert not _settled(host).health().ok
    for name in IME_SERVICES:
        assert host.services.change(name, token, password=NEW_PASSWORD) == 0
    assert host.reboot().failed == {}
    assert _settled(host).health().ok, host.health().reasons


def test_meinstaller_mta_localsystem_follows_the_guides_prose() -> None:
    host = make_host(hardened_by_meinstaller="IME_STORE_GROUP", meinstaller_mta_localsystem=True)
    ime = host.accounts.user("IME_SYSTEM")
    assert host.services.get("MEMTAS").start_name == "LocalSystem"
    assert host.services.get("MEMTAS").password == ""
    for name in ("MESMTPCS", "MEPOPS", "MEIMAPS"):
        assert host.services.account_sid(name) == ime.sid
        assert host.services.get(name).password == ime.password
    host.accounts.set_password("IME_SYSTEM", NEW_PASSWORD, host.admin_token())
    assert host.reboot().failed == dict.fromkeys(("MESMTPCS", "MEPOPS", "MEIMAPS"), ERROR_SERVICE_LOGON_FAILED)
    with pytest.raises(ValueError, match="hardened_by_meinstaller"):
        HostSpec(meinstaller_mta_localsystem=True)


def test_reboot_starts_dependencies_first_and_fails_dependents_of_a_disabled_one() -> None:
    host = make_host()
    binary = "C:\\Windows\\System32\\svchost.exe"
    host.services.install(Service("ZBase", "Base", binary, start_mode=StartMode.MANUAL))
    host.services.install(Service("AApp", "App", binary, depends_on=("ZBase",)))
    host.services.install(Service("ZOff", "Off", binary, start_mode=StartMode.DISABLED))
    host.services.install(Service("AUser", "User of Off", binary, depends_on=("ZOff",)))
    assert host.registry.open("HKLM\\SYSTEM\\CurrentControlSet\\Services\\AApp").get("DependOnService") == ("ZBase",)
    report = host.reboot()
    order = list(report.codes)
    assert order.index("ZBase") < order.index("AApp")  # a demand-start dependency is started at boot
    assert host.services.get("ZBase").running
    assert host.services.get("AApp").running
    assert report.codes["ZOff"] == ERROR_SERVICE_DISABLED
    assert report.codes["AUser"] == ERROR_SERVICE_DEPENDENCY_FAIL
    assert not host.services.get("AUser").running


def test_delayed_auto_start_services_start_about_two_minutes_after_the_boot() -> None:
    host = make_host(wsearch=True)
    assert host.services.get("WSearch").running
    report = host.reboot()
    assert report.delayed == ["WSearch"]
    assert not host.services.get("WSearch").running
    host.advance(119)
    assert not host.services.get("WSearch").running
    host.advance(1)
    assert host.services.get("WSearch").running
    assert report.codes["WSearch"] == 0


def test_a_gpo_is_applied_at_boot_before_the_services_start() -> None:
    host = make_host(hardened_by_meinstaller="IME_STORE_GROUP")
    right = "SeServiceLogonRight"
    host.policy.link(GroupPolicyObject("domain", {right: DEFAULT_RIGHTS[right]}))  # next background refresh: 90+ min
    report = host.reboot()
    assert host.policy.refreshes == 1
    assert report.failed == dict.fromkeys(IME_SERVICES, ERROR_SERVICE_LOGON_FAILED)


def test_lab_reboot_through_the_control_surface_and_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = HostSpec(name="RB01", hardened_by_meinstaller="IME_STORE_GROUP", store_files=6, registry_subkeys=3)
    with Lab([spec], lab_dir=tmp_path, clock=ManualClock(), time_scale=0.0, mail_ports={}) as lab:
        control = ControlServer(lab, tmp_path)
        control.start()
        try:
            inventory = tmp_path / "inventory.json"
            write_private_json(inventory, lab.inventory())
            assert lab.inventory()["hosts"][0]["webmail"]["scheme"] == "http"
            assert lab.reboot("RB01")["failed"] == {}
            answer = ControlClient(tmp_path).reboot("RB01")
            assert answer["ok"] is True
            assert answer["boot"]["started"]["MEPOPS"] == 0
            model = lab.host("RB01").model
            with lab.host("RB01").binding.lock:
                model.accounts.set_password("IME_SYSTEM", NEW_PASSWORD)
            assert main(["reboot", "--inventory", str(inventory), "--host", "RB01"]) == 0
            boot = json.loads(capsys.readouterr().out)
            assert boot["failed"] == dict.fromkeys(IME_SERVICES, ERROR_SERVICE_LOGON_FAILED)
            assert lab.state("RB01")["counters"]["boots"] == 3
        finally:
            control.stop()


# --- Restart-Service -----------------------------------------------------------------------------
def test_restart_of_a_stopped_service_starts_it_and_of_a_disabled_one_fails_with_1058() -> None:
    host = make_host(pop_state="stopped", imap_state="disabled")
    token = host.admin_token()
    assert host.services.restart("MEPOPS", token) == 0
    assert host.services.get("MEPOPS").running
    assert host.services.restart("MEIMAPS", token) == ERROR_SERVICE_DISABLED
    assert not host.services.get("MEIMAPS").running
    # A running service set to Disabled: the restart's stop works, its start fails, it stays stopped.
    assert host.services.change("MESMTPCS", token, start_mode="Disabled") == 0
    assert host.services.restart("MESMTPCS", token) == ERROR_SERVICE_DISABLED
    assert not host.services.get("MESMTPCS").running


# --- pop_state / imap_state ----------------------------------------------------------------------
@pytest.mark.parametrize(("state", "mode", "start_value"), [("stopped", "Manual", 3), ("disabled", "Disabled", 4)])
def test_pop_and_imap_states(state: str, mode: str, start_value: int) -> None:
    host = make_host(pop_state=state, imap_state=state)
    for name in ("MEPOPS", "MEIMAPS"):
        svc = host.services.get(name)
        assert svc.start_mode.value == mode
        assert not svc.running
        key = host.registry.open(f"HKLM\\SYSTEM\\CurrentControlSet\\Services\\{name}")
        assert key.get("Start") == start_value
    report = _settled(host).health()
    assert report.protocols == {"smtp": True, "pop": False, "imap": False}
    assert host.services.get("MESMTPCS").running
    with pytest.raises(ValueError, match="pop_state"):
        HostSpec(pop_state="paused")  # type: ignore[arg-type]


# --- webmail over HTTPS --------------------------------------------------------------------------
def test_webmail_https_self_signed_flags_and_probe() -> None:
    host = make_host(webmail_https_self_signed=True)
    assert host.iis is not None
    flags = host.iis.webmail()
    assert flags["scheme"] == "https"
    assert flags["self_signed"] is True
    assert flags["min_tls"] == "1.2"
    assert flags["port"] == 443
    url = str(flags["url"])
    assert url.startswith("https://")
    assert url.endswith("/mewebmail/Mondo/lang/sys/login.aspx")
    for version in ("1.0", "1.1"):
        key = host.registry.open(f"{SCHANNEL_PROTOCOLS_KEY}\\TLS {version}\\Server")
        assert key.get("Enabled") == 0
    strict = host.iis.probe(url)  # a client that validates certificates
    assert not strict.answered
    assert strict.error == "TrustFailure"
    assert "trust relationship" in strict.message
    lax = host.iis.probe(url, validate_certificate=False)
    assert lax.ok
    assert lax.status == 200
    assert lax.tls_version == "1.2"
    old = host.iis.probe(url, validate_certificate=False, client_tls=("1.0",))
    assert not old.answered
    assert old.error == "SecureChannelFailure"
    plain = host.iis.probe(url.replace("https://", "http://"))
    assert not plain.answered
    assert plain.error == "ConnectFailure"


def test_webmail_probe_follows_the_model() -> None:
    host = make_host()
    assert host.iis is not None
    url = str(host.iis.webmail()["url"])
    assert url.startswith("http://")
    assert host.iis.webmail()["min_tls"] is None
    assert host.iis.probe(url).status == 200
    assert host.iis.probe(url.replace("/mewebmail", "/meadmin")).status == 200
    assert host.iis.probe(url.replace("/mewebmail", "/nothing")).status == 404
    assert host.iis.probe(url.replace("http://", "https://")).error == "ConnectFailure"
    token = host.admin_token()
    web = host.mailenable.install.webmail_dir
    ime_user = host.accounts.user("IME_USER").sid
    host.fs.add_access_rule(web, sec.deny(ime_user, sec.FILE_READ_EXECUTE, sec.AceFlags.OI | sec.AceFlags.CI), token)
    broken = host.iis.probe(url)
    assert broken.answered
    assert broken.status == 500
    assert broken.error == "ProtocolError"
    assert "IME_USER cannot read" in broken.reason
    host.services.stop("W3SVC", token)
    assert host.iis.probe(url).error == "ConnectFailure"


def test_schannel_registry_changes_take_effect_at_the_next_boot() -> None:
    host = make_host(webmail_https_self_signed=True)
    assert host.iis is not None
    url = str(host.iis.webmail()["url"])
    host.registry.open(f"{SCHANNEL_PROTOCOLS_KEY}\\TLS 1.0\\Server").set_value("Enabled", 1, "REG_DWORD")
    assert host.iis.probe(url, validate_certificate=False, client_tls=("1.0",)).error == "SecureChannelFailure"
    host.reboot()
    host.advance(6)
    assert host.iis.min_tls == "1.0"
    assert host.iis.probe(url, validate_certificate=False, client_tls=("1.0",)).status == 200


# --- SQL Server Express named instance -----------------------------------------------------------
def test_sql_named_instance() -> None:
    host = _settled(make_host(sql=True, sql_instance="SQLEXPRESS"))
    assert host.sql is not None
    assert host.services.exists("MSSQL$SQLEXPRESS")
    assert not host.services.exists("MSSQLSERVER")
    assert host.services.get("MSSQL$SQLEXPRESS").start_name == "NT Service\\MSSQL$SQLEXPRESS"
    assert host.sql.data_source == ".\\SQLEXPRESS"
    token = host.admin_token()
    with pytest.raises(SqlError) as default:
        host.sql.connect_to(".", token)
    assert default.value.number == 2
    assert "network-related or instance-specific error" in default.value.message
    assert "error: 40" in default.value.message
    with pytest.raises(SqlError) as other:
        host.sql.connect_to(".\\OTHER", token)
    assert other.value.number == -1
    assert "error: 26 - Error Locating Server/Instance Specified" in other.value.message
    assert host.sql.connect_to(".\\SQLEXPRESS", token).sysadmin
    assert host.sql.connect_to(f"{host.name}\\sqlexpress", token).sysadmin
    assert host.sql.connect(token).sysadmin  # the old instance-agnostic connect still works
    assert host.health().ok, host.health().reasons
    host.services.stop("MSSQL$SQLEXPRESS", token)
    with pytest.raises(SqlError) as stopped:
        host.sql.connect_to(".\\SQLEXPRESS", token)
    assert stopped.value.number == 2


def test_sql_default_instance_and_bad_instance_names() -> None:
    host = make_host(sql=True)
    assert host.sql is not None
    token = host.admin_token()
    assert host.sql.connect_to(".", token).sysadmin
    assert host.sql.connect_to("(local)", token).sysadmin
    with pytest.raises(SqlError) as named:
        host.sql.connect_to(".\\SQLEXPRESS", token)
    assert named.value.number == -1
    assert "instance" not in host.to_state_dict()["sql"]  # type: ignore[operator]
    for bad in ("MSSQLSERVER", "DEFAULT", "1ABC", "A" * 17, "BAD-NAME"):
        with pytest.raises(ValueError, match="instance name"):
            HostSpec(sql=True, sql_instance=bad)
    with pytest.raises(ValueError, match="sql=True"):
        HostSpec(sql_instance="SQLEXPRESS")


# --- non-canonical DACL --------------------------------------------------------------------------
def test_noncanonical_dacl_folder() -> None:
    host = make_host(noncanonical_dacl_folder=True)
    folder = host.mailenable.install.path(NONCANONICAL_FOLDER)
    sd = host.fs.get_sd(folder)
    assert not sec.is_canonical(sd.dacl)
    assert sec.to_sddl(sd).index("(A;;FA;;;BA)") < sec.to_sddl(sd).index("(D;;SD;;;NU)")
    token = host.admin_token()  # a network logon: NETWORK is in the token
    assert sids.NETWORK in token.sids
    # Walked in stored order, the allow before the deny wins; canonical order would deny DELETE.
    assert sec.access_check(sd, token, sec.DELETE, sec.ObjectKind.DIRECTORY)
    canonical = sec.SecurityDescriptor(sd.owner, sec.canonical(sd.dacl), sd.group, sd.protected)
    assert not sec.access_check(canonical, token, sec.DELETE, sec.ObjectKind.DIRECTORY)
    # .NET's high-level API refuses to modify it; a raw SDDL write works.
    ace = sec.allow(sids.USERS, sec.FILE_GENERIC_READ)
    with pytest.raises(sec.NonCanonicalAclError, match="not in canonical form"):
        host.fs.add_access_rule(folder, ace, token)
    with pytest.raises(sec.NonCanonicalAclError):
        host.fs.remove_access_rule(folder, sd.dacl[0], token)
    fixed = sec.SecurityDescriptor(sd.owner, (*sec.canonical(sd.explicit_aces), ace), sd.group, sd.protected)
    assert host.fs.restore_sddl(folder, sec.to_sddl(fixed), token).changed
    assert sec.is_canonical(host.fs.get_sd(folder).dacl)
    assert host.fs.add_access_rule(folder, sec.allow(sids.USERS, sec.FILE_READ_EXECUTE), token).changed
    # Only the folder itself was non-canonical, and MailEnable works on this host.
    children = host.fs.list_dir(folder)
    assert all(sec.is_canonical(host.fs.get_sd(f"{folder}\\{c}").dacl) for c in children)
    assert _settled(host).health().ok, host.health().reasons


def test_is_canonical() -> None:
    a, d = sec.allow(sids.USERS, 1), sec.deny(sids.USERS, 1)
    inherited = sec.allow(sids.USERS, 1, sec.AceFlags.ID)
    assert sec.is_canonical((d, a, inherited))
    assert not sec.is_canonical((a, d))
    assert not sec.is_canonical((inherited, a))
    assert sec.is_canonical(())
