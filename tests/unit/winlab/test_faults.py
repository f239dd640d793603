import pytest

from winlab.windows import security as sec
from winlab.windows.errors import ERROR_ACCESS_DENIED, ERROR_SHARING_VIOLATION, Win32Error

OICI = sec.AceFlags.OI | sec.AceFlags.CI


def test_faulted_object_rejects_even_privileged_dacl_writes(host):
    token = host.admin_token()
    path = host.mailenable.install.config_dir + "\\Auth.tab"
    host.fs.inject_fault(path, ERROR_ACCESS_DENIED)
    sid = host.accounts.user("IME_USER").sid
    with pytest.raises(Win32Error) as exc, token.privileges("SeRestorePrivilege", "SeTakeOwnershipPrivilege"):
        host.fs.add_access_rule(path, sec.allow(sid, sec.FILE_GENERIC_READ), token)
    assert exc.value.code == ERROR_ACCESS_DENIED
    host.fs.clear_fault(path)
    assert host.fs.add_access_rule(path, sec.allow(sid, sec.FILE_GENERIC_READ), token).changed


def test_propagation_reports_a_locked_descendant_and_applies_the_rest(host):
    token = host.admin_token()
    config = host.mailenable.install.config_dir
    host.fs.inject_fault(config + "\\Auth.tab", ERROR_SHARING_VIOLATION)
    sid = host.accounts.user("IME_USER").sid
    result = host.fs.add_access_rule(config, sec.allow(sid, sec.FILE_GENERIC_READ, OICI), token)
    assert result.changed
    assert result.failures == [(config + "\\Auth.tab", ERROR_SHARING_VIOLATION)]
    assert not any(a.sid == sid for a in host.fs.get_sd(config + "\\Auth.tab").dacl)
    assert any(a.sid == sid and a.inherited for a in host.fs.get_sd(config + "\\Postoffices").dacl)
