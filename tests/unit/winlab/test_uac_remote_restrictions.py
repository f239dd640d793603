import pytest

from tests.unit.winlab.builders import make_host
from winlab.windows import sids
from winlab.windows.errors import ERROR_ACCESS_DENIED, STATUS_ACCESS_DENIED, NtStatusError, Win32Error


def test_non_builtin_local_admin_gets_filtered_token_and_access_denied_on_admin_operations():
    host = make_host(admin_account="local", uac_filtering=True)
    token = host.admin_token()
    assert not token.elevated
    assert sids.ADMINISTRATORS in token.deny_only
    assert "SeRestorePrivilege" not in token.privileges_held
    with pytest.raises(Win32Error) as exc:
        host.accounts.create_user("IME_SYSTEM", "Str0ng!Passw0rd", token)
    assert exc.value.code == ERROR_ACCESS_DENIED
    with pytest.raises(NtStatusError) as nt:
        host.lsa.add_account_rights(host.accounts.user("IME_USER").sid, ["SeServiceLogonRight"], token)
    assert nt.value.status == STATUS_ACCESS_DENIED
    assert host.services.change("MEPOPS", token, start_name="LocalSystem") == 2


def test_local_account_token_filter_policy_gives_local_admins_a_full_token():
    host = make_host(admin_account="local", uac_filtering=False)
    token = host.admin_token()
    assert token.elevated
    assert token.is_admin
    host.accounts.create_user("IME_SYSTEM", "Str0ng!Passw0rd", token)


def test_filtering_follows_the_registry_value_at_logon_time():
    host = make_host(admin_account="local", uac_filtering=True)
    key = host.registry.open("HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Policies\\System", access=0xF003F)
    key.set_value("LocalAccountTokenFilterPolicy", 1, "REG_DWORD")
    assert host.admin_token().elevated


def test_builtin_administrator_and_domain_admins_are_not_filtered():
    assert make_host(admin_account="builtin", uac_filtering=True).admin_token().elevated
    domain = make_host(admin_account="domain", domain_member=True, uac_filtering=True)
    assert domain.admin_token().elevated
