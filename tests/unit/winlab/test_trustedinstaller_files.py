import pytest

from winlab.windows import security as sec
from winlab.windows import sids
from winlab.windows.errors import ERROR_ACCESS_DENIED, ERROR_INVALID_OWNER, ERROR_NOT_ALL_ASSIGNED, Win32Error

CMD = "C:\\Windows\\System32\\cmd.exe"


def deny_ace(host):
    return sec.deny(host.accounts.user("IME_USER").sid, sec.FILE_READ_EXECUTE)


def test_admin_cannot_write_dacl_of_trustedinstaller_file_without_restore_privilege(host):
    token = host.admin_token()
    assert "SeRestorePrivilege" in token.privileges_held  # held, but a network token has it disabled
    with pytest.raises(Win32Error) as exc:
        host.fs.add_access_rule(CMD, deny_ace(host), token)
    assert exc.value.code == ERROR_ACCESS_DENIED
    assert host.mutations == 0


def test_admin_writes_dacl_of_trustedinstaller_file_with_restore_privilege_enabled(host):
    token = host.admin_token()
    with token.privileges("SeRestorePrivilege", "SeBackupPrivilege"):
        result = host.fs.add_access_rule(CMD, deny_ace(host), token)
    assert result.changed
    sd = host.fs.get_sd(CMD)
    assert sd.owner == sids.TRUSTED_INSTALLER
    assert sd.dacl[0] == deny_ace(host)
    assert sd.protected
    assert not token.has_enabled("SeRestorePrivilege")  # the enabler restored the previous state


def test_take_ownership_route_needs_restore_privilege_to_give_ownership_back(host):
    token = host.admin_token()
    with token.privileges("SeTakeOwnershipPrivilege"):
        host.fs.set_owner(CMD, sids.ADMINISTRATORS, token)
    host.fs.add_access_rule(CMD, deny_ace(host), token)  # the owner may write the DACL
    with pytest.raises(Win32Error) as exc:
        host.fs.set_owner(CMD, sids.TRUSTED_INSTALLER, token)  # no WRITE_OWNER: owners only get WRITE_DAC
    assert exc.value.code == ERROR_ACCESS_DENIED
    with pytest.raises(Win32Error) as exc, token.privileges("SeTakeOwnershipPrivilege"):
        host.fs.set_owner(CMD, sids.TRUSTED_INSTALLER, token)  # may take, not give, ownership
    assert exc.value.code == ERROR_INVALID_OWNER
    with token.privileges("SeRestorePrivilege"):
        host.fs.set_owner(CMD, sids.TRUSTED_INSTALLER, token)
    assert host.fs.get_sd(CMD).owner == sids.TRUSTED_INSTALLER


def test_enabling_a_privilege_the_token_does_not_hold_fails_with_not_all_assigned(host):
    token = host.logon("IME_USER", host.mailenable.install.passwords["IME_USER"])
    with pytest.raises(Win32Error) as exc, token.privileges("SeRestorePrivilege"):
        pass
    assert exc.value.code == ERROR_NOT_ALL_ASSIGNED


def test_administrators_only_have_read_execute_on_system32_files(host):
    token = host.admin_token()
    assert host.fs.can(CMD, token, sec.FILE_READ_EXECUTE)
    assert not host.fs.can(CMD, token, sec.FILE_GENERIC_WRITE)
    assert not host.fs.can(CMD, token, sec.WRITE_DAC)
