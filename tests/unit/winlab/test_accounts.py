import pytest

from tests.unit.winlab.builders import make_host
from winlab.windows import sids
from winlab.windows.accounts import ADS_UF_DONT_EXPIRE_PASSWD, ADS_UF_PASSWD_CANT_CHANGE
from winlab.windows.errors import (
    ERROR_INVALID_MEMBER,
    ERROR_MEMBER_IN_ALIAS,
    NERR_PASSWORD_TOO_SHORT,
    NERR_USER_EXISTS,
    Win32Error,
)

PW = "Xq7!long-Passw0rd"


def test_created_user_sid_is_machine_sid_plus_next_rid_and_keeps_flags(host):
    token = host.admin_token()
    flags = ADS_UF_DONT_EXPIRE_PASSWD | ADS_UF_PASSWD_CANT_CHANGE
    user = host.accounts.create_user("IME_SYSTEM", PW, token, flags=flags)
    assert user.sid.startswith(host.machine_sid + "-")
    assert user.rid >= 1000
    assert user.flags & 65536
    assert user.flags & 64
    assert user.enabled
    assert host.accounts.lookup_name(".\\IME_SYSTEM").sid == user.sid


def test_creating_an_existing_user_fails_with_nerr_user_exists(host):
    with pytest.raises(Win32Error) as exc:
        host.accounts.create_user("IME_USER", PW, host.admin_token())
    assert exc.value.code == NERR_USER_EXISTS


def test_second_identical_membership_add_raises_member_in_alias_and_counts_once(host):
    token = host.admin_token()
    user = host.accounts.create_user("IME_SYSTEM", PW, token)
    host.accounts.create_group("IME_STORE_GROUP", token)
    host.accounts.add_member("IME_STORE_GROUP", user.sid, token)
    count = host.mutations
    with pytest.raises(Win32Error) as exc:
        host.accounts.add_member("IME_STORE_GROUP", user.sid, token)
    assert exc.value.code == ERROR_MEMBER_IN_ALIAS
    assert host.mutations == count


def test_local_groups_cannot_nest(host):
    token = host.admin_token()
    group = host.accounts.create_group("IME_STORE_GROUP", token)
    with pytest.raises(Win32Error) as exc:
        host.accounts.add_member("Users", group.sid, token)
    assert exc.value.code == ERROR_INVALID_MEMBER


def test_domain_password_policy_rejects_short_passwords():
    host = make_host(domain_member=True)
    with pytest.raises(Win32Error) as exc:
        host.accounts.create_user("IME_SYSTEM", "Ab1!", host.admin_token())
    assert exc.value.code == NERR_PASSWORD_TOO_SHORT


def test_new_local_user_is_in_users_through_authenticated_users(host):
    user = host.accounts.create_user("IME_SYSTEM", PW, host.admin_token())
    token = host.logon("IME_SYSTEM", PW)
    assert token.user == user.sid
    assert sids.USERS in token.groups
    assert sids.EVERYONE in token.groups
    assert sids.AUTHENTICATED_USERS in token.groups
    assert sids.ADMINISTRATORS not in token.groups


def test_same_flags_write_counts_no_mutation(host):
    token = host.admin_token()
    flags = host.accounts.user("IME_USER").flags
    assert host.accounts.set_flags("IME_USER", flags, token) is False
    assert host.mutations == 0


def test_os_builtin_accounts_follow_the_build():
    assert "wdagutilityaccount" not in make_host(os="2016").accounts.users
    assert "defaultaccount" in make_host(os="2016").accounts.users
    old = make_host(os="2008r2", version="2.53", edition="Standard")
    assert "defaultaccount" not in old.accounts.users
    assert not old.accounts.user("Guest").enabled
