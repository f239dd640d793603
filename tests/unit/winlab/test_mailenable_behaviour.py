from tests.unit.winlab.builders import make_host
from winlab.windows import security as sec
from winlab.windows.mailenable import MTA_POLL_SECONDS

OICI = sec.AceFlags.OI | sec.AceFlags.CI


def test_layout_has_the_documented_folders_and_bin64_only_on_10x():
    new = make_host(version="10.43")
    old = make_host(version="2.53", os="2008r2", edition="Standard")
    for host in (new, old):
        program = host.mailenable.install.program_dir
        for rel in (
            "Bin",
            "Config",
            "Postoffices",
            "Queues\\SMTP\\Inbound\\Messages",
            "Queues\\SMTP\\Outgoing\\Messages",
            "Logging\\SMTP",
            "Logging\\POP",
            "Logging\\IMAP",
            "Logging\\MTA",
            "Bad Mail",
            "Backup",
        ):
            assert host.fs.is_dir(f"{program}\\{rel}"), rel
    assert new.fs.is_dir(f"{new.mailenable.install.program_dir}\\Bin64")
    assert new.fs.is_dir(f"{new.mailenable.install.program_dir}\\Bin\\NETWebMail")
    assert not old.fs.exists(f"{old.mailenable.install.program_dir}\\Bin64")
    assert old.fs.is_dir(f"{old.mailenable.install.program_dir}\\Bin\\WEBMAIL")


def test_store_holds_the_configured_number_of_message_files():
    host = make_host(store_files=77)
    files = [n for n in host.fs.tree.node(host.mailenable.install.mail_root).walk() if n.kind.value == "file"]
    assert len(files) == 77


def test_mta_moves_queued_messages_only_while_it_runs(host):
    me = host.mailenable
    local = me.enqueue_inbound(local=True)
    remote = me.enqueue_inbound(local=False)
    host.services.stop("MEMTAS", host.admin_token())
    host.advance(MTA_POLL_SECONDS * 3)
    assert sorted(me.queue("inbound")) == sorted([local, remote])
    assert host.services.start("MEMTAS", host.admin_token()) == 0
    host.advance(MTA_POLL_SECONDS)
    assert me.queue("inbound") == []
    assert remote in me.queue("outgoing")
    assert me.delivered == 1
    assert host.mutations == 2  # the stop and the start; mail flow is data, not configuration


def test_mta_cannot_move_messages_when_its_account_may_not_write_the_queue(host):
    token = host.admin_token()
    inbound = host.mailenable.install.inbound_queue
    host.fs.add_access_rule(inbound, sec.deny("S-1-5-18", sec.FILE_DELETE_CHILD | sec.DELETE, OICI), token)
    host.mailenable.enqueue_inbound()
    host.mailenable.process_queues()
    assert len(host.mailenable.queue("inbound")) == 1
    assert host.mailenable.mta_errors
    ok, reason = host.mailenable.mta_ok()
    assert not ok
    assert "Inbound" in reason


def test_webmail_needs_ime_user_read_on_netwebmail(host):
    assert host.mailenable.webmail_ok() == (True, "ok")
    web = host.mailenable.install.webmail_dir
    ime_user = host.accounts.user("IME_USER").sid
    host.fs.add_access_rule(web, sec.deny(ime_user, sec.FILE_READ_DATA, OICI), host.admin_token())
    ok, reason = host.mailenable.webmail_ok()
    assert not ok
    assert "IME_USER cannot read" in reason
    assert host.mailenable.webadmin_ok()[0]


def test_web_admin_fails_when_ime_admin_loses_full_control_of_the_store(host):
    ime_admin = host.accounts.user("IME_ADMIN").sid
    store = host.mailenable.install.mail_root
    host.fs.add_access_rule(store, sec.deny(ime_admin, sec.WRITE_DAC, OICI), host.admin_token())
    ok, reason = host.mailenable.webadmin_ok()
    assert not ok
    assert "IME_ADMIN lost full control" in reason


def test_webmail_fails_when_a_gpo_takes_batch_logon_from_ime_admin(host):
    from winlab.windows.policy import GroupPolicyObject

    host.policy.link(GroupPolicyObject("Baseline", {"SeBatchLogonRight": ("S-1-5-32-544",)}))
    host.policy.refresh()
    ok, reason = host.mailenable.webmail_ok()
    assert not ok
    assert "IME_ADMIN cannot log on" in reason


def test_health_reports_protocols_and_banners(host):
    report = host.health()
    assert report.ok
    assert report.protocols == {"smtp": True, "pop": True, "imap": True}
    assert "ESMTP MailEnable Service, Version: 10.43--" in host.mailenable.smtp_banner("mail")
    host.services.stop("MEPOPS", host.admin_token())
    report = host.health()
    assert not report.ok
    assert report.protocols["pop"] is False


def test_meinstaller_hardened_host_runs_its_protocol_services_as_ime_system():
    for group in ("IME_STORE_GROUP", "IME_STORE_USERS"):
        host = make_host(hardened_by_meinstaller=group)
        ime = host.accounts.user("IME_SYSTEM")
        assert ime.sid in host.accounts.group(group).members
        for name in ("MEMTAS", "MESMTPCS", "MEPOPS", "MEIMAPS"):
            assert host.services.account_sid(name) == ime.sid
        for name in ("MELCS", "MEPOCS"):
            assert host.services.get(name).start_name == "LocalSystem"
        assert host.health().ok, host.health().reasons
        # MEInstaller is 32-bit: its System32 denies landed in SysWOW64 only.
        wow = host.fs.get_sd("C:\\Windows\\SysWOW64\\cmd.exe").dacl
        s32 = host.fs.get_sd("C:\\Windows\\System32\\cmd.exe").dacl
        assert any(a.sid == ime.sid and a.type.value == "D" for a in wow)
        assert not any(a.sid == ime.sid for a in s32)
