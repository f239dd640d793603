import pytest

from winlab.windows.errors import (
    STATUS_NO_MORE_ENTRIES,
    STATUS_NO_SUCH_PRIVILEGE,
    STATUS_OBJECT_NAME_NOT_FOUND,
    NtStatusError,
)


def test_second_identical_grant_counts_no_mutation(host):
    token = host.admin_token()
    sid = host.accounts.user("IME_USER").sid
    assert host.lsa.add_account_rights(sid, ["SeServiceLogonRight"], token) == ["SeServiceLogonRight"]
    assert host.mutations == 1
    assert host.lsa.add_account_rights(sid, ["SeServiceLogonRight"], token) == []
    assert host.mutations == 1


def test_unknown_right_name_fails_with_status_no_such_privilege_and_changes_nothing(host):
    sid = host.accounts.user("IME_USER").sid
    with pytest.raises(NtStatusError) as exc:
        host.lsa.add_account_rights(sid, ["SeServiceLogonRight", "SeMadeUpRight"], host.admin_token())
    assert exc.value.status == STATUS_NO_SUCH_PRIVILEGE == 0xC0000060
    assert exc.value.code == 1313
    assert sid not in host.lsa.holders("SeServiceLogonRight")


def test_enumerate_lists_direct_assignments_only(host):
    token = host.admin_token()
    sid = host.accounts.user("IME_USER").sid
    with pytest.raises(NtStatusError) as exc:
        host.lsa.enumerate_account_rights(sid, token)
    assert exc.value.status == STATUS_OBJECT_NAME_NOT_FOUND
    host.lsa.add_account_rights(sid, ["SeBatchLogonRight", "SeServiceLogonRight"], token)
    assert host.lsa.enumerate_account_rights(sid, token) == ["SeBatchLogonRight", "SeServiceLogonRight"]


def test_empty_right_enumerates_as_no_more_entries(host):
    with pytest.raises(NtStatusError) as exc:
        host.lsa.enumerate_accounts_with_right("SeTcbPrivilege", host.admin_token())
    assert exc.value.status == STATUS_NO_MORE_ENTRIES


def test_remove_rights_removes_only_that_sid(host):
    token = host.admin_token()
    sid = host.accounts.user("IME_USER").sid
    host.lsa.add_account_rights(sid, ["SeServiceLogonRight"], token)
    assert host.lsa.remove_account_rights(sid, ["SeServiceLogonRight"], token) == ["SeServiceLogonRight"]
    assert host.lsa.holders("SeServiceLogonRight") == ["S-1-5-80-0"]
    assert host.lsa.remove_account_rights(sid, ["SeServiceLogonRight"], token) == []
