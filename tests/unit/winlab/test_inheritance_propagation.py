from tests.unit.winlab.builders import make_host
from winlab.windows import security as sec
from winlab.windows.security import AceFlags as F

ME = "C:\\Program Files (x86)\\Mail Enable"


def test_inheritable_grant_on_folder_reaches_every_existing_descendant(host):
    store = host.mailenable.install.mail_root
    group_sid = host.accounts.create_group("IME_STORE_GROUP", host.admin_token()).sid
    host.fs.add_access_rule(store, sec.allow(group_sid, sec.FILE_ALL_ACCESS, F.OI | F.CI), host.admin_token())
    files = [n for n in host.fs.tree.node(store).walk() if n.kind is sec.ObjectKind.FILE]
    assert len(files) == 12
    for node in host.fs.tree.node(store).walk():
        inherited = [a for a in node.sd.dacl if a.inherited and a.sid == group_sid]
        if node.path != store:
            assert inherited, node.path
    # Files get an effective ACE without inheritance flags.
    assert sec.allow(group_sid, sec.FILE_ALL_ACCESS, F.ID) in files[0].sd.dacl


def test_protected_child_keeps_its_dacl_when_parent_changes(host):
    bin_dir = host.mailenable.install.bin_dir
    web = host.mailenable.install.webmail_dir
    token = host.admin_token()
    host.fs.set_protection(web, True, token)
    before = host.fs.get_sd(f"{web}\\web.config")
    user_sid = host.accounts.user("IME_USER").sid
    host.fs.add_access_rule(bin_dir, sec.deny(user_sid, sec.FILE_GENERIC_WRITE, F.OI | F.CI), token)
    assert host.fs.get_sd(f"{web}\\web.config") == before
    sibling = host.fs.get_sd(f"{bin_dir}\\MEInstaller.exe")
    assert sec.deny(user_sid, sec.FILE_GENERIC_WRITE, F.ID) in sibling.dacl


def test_each_propagated_change_costs_clock_time_so_a_big_store_is_slow():
    small = make_host(store_files=10)
    big = make_host(store_files=400)
    for h in (small, big):
        sid = h.accounts.user("IME_USER").sid
        start = h.ctx.clock.now()
        h.fs.add_access_rule(
            h.mailenable.install.mail_root, sec.allow(sid, sec.FILE_GENERIC_READ, F.OI | F.CI), h.admin_token()
        )
        h.elapsed = h.ctx.clock.now() - start  # type: ignore[attr-defined]
    assert big.elapsed > 20 * small.elapsed / 2  # type: ignore[attr-defined]
    assert big.work > 400
    assert big.mutations == 1  # one applied change; the propagation is counted as work


def test_removing_the_grant_removes_the_inherited_aces_again(host):
    token = host.admin_token()
    sid = host.accounts.user("IME_USER").sid
    store = host.mailenable.install.mail_root
    before = {n.path: n.sd for n in host.fs.tree.node(store).walk()}
    ace = sec.allow(sid, sec.FILE_GENERIC_READ, F.OI | F.CI)
    host.fs.add_access_rule(store, ace, token)
    host.fs.remove_access_rule(store, ace, token)
    assert {n.path: n.sd for n in host.fs.tree.node(store).walk()} == before


def test_registry_grant_on_a_hive_propagates_to_every_subkey_but_skips_protected_ones():
    host = make_host(registry_subkeys=30)
    token = host.admin_token()
    sid = host.accounts.user("IME_USER").sid
    result = host.registry.add_access_rule("HKLM\\SOFTWARE\\Microsoft", sec.allow(sid, sec.KEY_READ, F.CI), token)
    assert result.rewritten >= 60
    cbs = "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Component Based Servicing"
    assert all(a.sid != sid for a in host.registry.get_sd(cbs).dacl)
    leaf = "HKLM\\SOFTWARE\\Microsoft\\Component0003\\Settings"
    assert sec.allow(sid, sec.KEY_READ, F.CI | F.ID) in host.registry.get_sd(leaf).dacl


def test_moved_file_keeps_its_security_descriptor_like_movefile(host):
    fs = host.fs
    inst = host.mailenable.install
    fs.create_file(f"{inst.inbound_queue}\\x.MAI")
    before = fs.get_sd(f"{inst.inbound_queue}\\x.MAI")
    fs.move(f"{inst.inbound_queue}\\x.MAI", inst.outgoing_queue)
    assert fs.get_sd(f"{inst.outgoing_queue}\\x.MAI") == before


def test_program_files_inheritance_gives_creator_owner_to_the_folder_owner(host):
    sd = host.fs.get_sd(ME)
    assert sd.owner == "S-1-5-32-544"
    assert sec.allow("S-1-5-32-544", sec.FILE_ALL_ACCESS, F.ID) in sd.dacl
    assert sec.allow("S-1-3-0", sec.GENERIC_ALL, F.OI | F.CI | F.IO | F.ID) in sd.dacl
