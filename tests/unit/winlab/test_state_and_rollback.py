import json

from tests.unit.winlab.builders import make_host
from winlab.windows import security as sec
from winlab.windows.state import state_diff

OICI = sec.AceFlags.OI | sec.AceFlags.CI
PW = "Xq7!long-Passw0rd"


def test_state_is_json_serialisable_and_deterministic():
    a, b = make_host(seed=9), make_host(seed=9)
    assert json.dumps(a.to_state_dict(), sort_keys=True) == json.dumps(b.to_state_dict(), sort_keys=True)
    assert state_diff(a.to_state_dict(), b.to_state_dict()) == []


def test_state_holds_no_plaintext_passwords(host):
    text = json.dumps(host.to_state_dict())
    assert host.mailenable.install.passwords["IME_USER"] not in text
    assert host.admin_password not in text


def test_rollback_restores_the_original_state(host):
    token = host.admin_token()
    before = host.to_state_dict()
    snapshot = host.fs.get_sddl(host.mailenable.install.mail_root)
    user = host.accounts.create_user("IME_SYSTEM", PW, token)
    host.lsa.add_account_rights(user.sid, ["SeServiceLogonRight"], token)
    host.fs.add_access_rule(host.mailenable.install.mail_root, sec.allow(user.sid, sec.FILE_ALL_ACCESS, OICI), token)
    host.services.change("MEPOPS", token, start_name=".\\IME_SYSTEM", password=PW)
    changed = state_diff(before, host.to_state_dict())
    assert any(line.startswith("fs/") for line in changed)
    assert any(line.startswith("services/MEPOPS/start_name") for line in changed)
    # Undo, newest first.
    host.services.change("MEPOPS", token, start_name="LocalSystem")
    host.fs.restore_sddl(host.mailenable.install.mail_root, snapshot, token)
    host.lsa.remove_account_rights(user.sid, ["SeServiceLogonRight"], token)
    host.accounts.delete_user("IME_SYSTEM", token)
    assert state_diff(before, host.to_state_dict()) == []


def test_diff_is_sorted_and_can_ignore_prefixes():
    a = {"fs": {"b": 1, "a": 1}, "lsa": {"x": [1]}}
    b = {"fs": {"b": 2, "a": 3}, "lsa": {"x": [2]}}
    assert state_diff(a, b) == ["fs/a: 1 -> 3", "fs/b: 1 -> 2", "lsa/x: [1] -> [2]"]
    assert state_diff(a, b, ignore=("fs/",)) == ["lsa/x: [1] -> [2]"]


def test_identical_dacl_write_counts_no_mutation_but_still_walks_the_tree(host):
    token = host.admin_token()
    store = host.mailenable.install.mail_root
    sd = host.fs.get_sd(store)
    start = host.ctx.clock.now()
    result = host.fs.set_dacl(store, sd.dacl, token)
    assert not result.changed
    assert result.rewritten == 0
    assert result.visited > 12
    assert host.mutations == 0
    assert host.ctx.clock.now() > start
