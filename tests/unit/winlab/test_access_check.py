from winlab.windows import security as sec
from winlab.windows import sids
from winlab.windows.security import ObjectKind
from winlab.windows.tokens import LogonType, Token

USER = "S-1-5-21-1-2-3-1001"


def token(*groups: str, deny_only: frozenset[str] = frozenset()) -> Token:
    return Token(
        user=USER,
        account="HOST\\u",
        groups=frozenset({sids.EVERYONE, sids.AUTHENTICATED_USERS, sids.USERS, *groups}),
        privileges_held=frozenset(),
        logon_type=LogonType.NETWORK,
        deny_only=deny_only,
    )


def sd(*aces: sec.Ace, owner: str = sids.ADMINISTRATORS) -> sec.SecurityDescriptor:
    return sec.SecurityDescriptor(owner=owner, dacl=sec.canonical(aces))


def test_explicit_deny_on_user_beats_users_allow():
    d = sd(sec.allow(sids.USERS, sec.FILE_READ_EXECUTE), sec.deny(USER, sec.FILE_READ_EXECUTE))
    assert not sec.access_check(d, token(), sec.FILE_READ_EXECUTE, ObjectKind.FILE)


def test_allows_accumulate_over_user_and_group_sids():
    d = sd(sec.allow(sids.USERS, sec.FILE_GENERIC_READ), sec.allow(USER, sec.FILE_GENERIC_WRITE))
    assert sec.access_check(d, token(), sec.FILE_GENERIC_READ | sec.FILE_GENERIC_WRITE, ObjectKind.FILE)
    assert not sec.access_check(d, token(), sec.DELETE, ObjectKind.FILE)


def test_generic_rights_in_aces_are_mapped_per_object_type():
    d = sd(sec.allow(sids.USERS, sec.GENERIC_READ))
    assert sec.access_check(d, token(), sec.FILE_GENERIC_READ, ObjectKind.FILE)
    assert sec.access_check(d, token(), sec.KEY_READ, ObjectKind.REGISTRY_KEY)
    assert not sec.access_check(d, token(), sec.FILE_GENERIC_WRITE, ObjectKind.FILE)


def test_inherit_only_aces_do_not_apply_to_the_object_itself():
    d = sd(sec.allow(USER, sec.FILE_ALL_ACCESS, sec.AceFlags.OI | sec.AceFlags.IO))
    assert not sec.access_check(d, token(), sec.FILE_GENERIC_READ, ObjectKind.DIRECTORY)


def test_owner_gets_read_control_and_write_dac_even_when_denied():
    d = sd(sec.deny(USER, sec.FILE_ALL_ACCESS), owner=USER)
    assert sec.access_check(d, token(), sec.READ_CONTROL | sec.WRITE_DAC, ObjectKind.FILE)
    assert not sec.access_check(d, token(), sec.FILE_GENERIC_READ, ObjectKind.FILE)


def test_deny_only_sid_matches_deny_aces_but_not_allow_aces():
    d_allow = sd(sec.allow(sids.ADMINISTRATORS, sec.FILE_ALL_ACCESS))
    filtered = token(deny_only=frozenset({sids.ADMINISTRATORS}))
    assert not sec.access_check(d_allow, filtered, sec.WRITE_DAC, ObjectKind.FILE)
    d_deny = sd(sec.allow(sids.USERS, sec.FILE_READ_EXECUTE), sec.deny(sids.ADMINISTRATORS, sec.FILE_READ_EXECUTE))
    assert not sec.access_check(d_deny, filtered, sec.FILE_READ_EXECUTE, ObjectKind.FILE)


def test_restore_privilege_grants_write_dac_only_with_backup_intent_and_when_enabled():
    d = sd(sec.allow(sids.USERS, sec.FILE_READ_EXECUTE), owner=sids.TRUSTED_INSTALLER)
    t = token()
    t.privileges_held = frozenset({"SeRestorePrivilege"})
    assert not sec.access_check(d, t, sec.WRITE_DAC, ObjectKind.FILE, backup_intent=True)
    t.enable("SeRestorePrivilege")
    assert sec.access_check(d, t, sec.WRITE_DAC, ObjectKind.FILE, backup_intent=True)
    assert not sec.access_check(d, t, sec.WRITE_DAC, ObjectKind.FILE)
