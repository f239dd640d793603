import pytest

from tests.unit.winlab.builders import make_host
from winlab.windows import security as sec
from winlab.windows.errors import HRESULT_DEFENDER_UNAVAILABLE, Win32Error


def test_add_exclusion_appends_once(host):
    token = host.admin_token()
    store = host.mailenable.install.mail_root
    assert host.defender.add_exclusion_paths([store], token) == [store]
    assert host.defender.add_exclusion_paths([store + "\\"], token) == []
    assert host.mutations == 1
    assert host.defender.get_exclusion_paths(token) == [store]


def test_exclusions_are_hidden_from_non_admins(host):
    user = host.logon("IME_USER", host.mailenable.install.passwords["IME_USER"])
    host.defender.add_exclusion_paths(["C:\\x"], host.admin_token())
    assert host.defender.get_exclusion_paths(user) == ["N/A: Must be an administrator to view exclusions"]


def test_defender_absent_makes_the_cmdlets_fail():
    host = make_host(os="2008r2", version="2.53")
    assert not host.defender.installed
    with pytest.raises(Win32Error) as exc:
        host.defender.add_exclusion_paths(["C:\\x"], host.admin_token())
    assert exc.value.code == HRESULT_DEFENDER_UNAVAILABLE


def test_scanning_and_indexing_make_acl_propagation_slower_until_excluded_or_stopped():
    def elapsed(h):
        sid = h.accounts.user("IME_USER").sid
        start = h.ctx.clock.now()
        ace = sec.allow(sid, sec.FILE_GENERIC_READ, sec.AceFlags.OI | sec.AceFlags.CI)
        h.fs.add_access_rule(h.mailenable.install.mail_root, ace, h.admin_token())
        return h.ctx.clock.now() - start

    quiet = make_host(defender=False, store_files=100)
    busy = make_host(defender=True, wsearch=True, store_files=100)
    assert elapsed(busy) > elapsed(quiet) * 1.5
    tuned = make_host(defender=True, wsearch=True, store_files=100)
    token = tuned.admin_token()
    tuned.defender.add_exclusion_paths([tuned.mailenable.install.mail_root], token)
    assert tuned.services.stop("WSearch", token) == 0
    assert tuned.services.change("WSearch", token, start_mode="Disabled") == 0
    assert elapsed(tuned) == pytest.approx(elapsed(quiet), rel=0.05)
