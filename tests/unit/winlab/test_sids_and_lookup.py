import pytest

from tests.unit.winlab.builders import make_host
from winlab.windows import sids
from winlab.windows.errors import ERROR_NONE_MAPPED, Win32Error
from winlab.windows.sids import SidType


def test_trustedinstaller_sid_is_the_service_sid_windows_derives():
    assert sids.service_sid("TrustedInstaller") == "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464"


def test_machine_sid_is_deterministic_per_seed_and_differs_between_seeds():
    assert sids.machine_sid("a") == sids.machine_sid("a")
    assert sids.machine_sid("a") != sids.machine_sid("b")
    assert sids.machine_sid("a").startswith("S-1-5-21-")


def test_same_spec_builds_same_machine_sid_and_user_sids():
    a, b = make_host(seed=3), make_host(seed=3)
    assert a.machine_sid == b.machine_sid
    assert a.accounts.user("IME_USER").sid == b.accounts.user("IME_USER").sid
    assert make_host(seed=4).machine_sid != a.machine_sid


def test_lookup_accepts_host_dot_builtin_and_nt_authority_forms(host):
    ime = host.accounts.user("IME_ADMIN")
    assert host.accounts.lookup_name(f"{host.name}\\IME_ADMIN").sid == ime.sid
    assert host.accounts.lookup_name(".\\ime_admin").sid == ime.sid
    assert host.accounts.lookup_name("IME_ADMIN").domain == host.name
    assert host.accounts.lookup_name("BUILTIN\\Administrators").sid == sids.ADMINISTRATORS
    assert host.accounts.lookup_name("Administrators").sid_type is SidType.ALIAS
    assert host.accounts.lookup_name("NT AUTHORITY\\SYSTEM").sid == sids.LOCAL_SYSTEM
    assert host.accounts.lookup_name("NT SERVICE\\TrustedInstaller").sid == sids.TRUSTED_INSTALLER
    assert host.accounts.lookup_name("Everyone").sid == sids.EVERYONE
    assert host.accounts.lookup_name("NT AUTHORITY\\Authenticated Users").sid == sids.AUTHENTICATED_USERS


def test_lookup_of_unknown_name_or_orphaned_sid_raises_none_mapped(host):
    with pytest.raises(Win32Error) as exc:
        host.accounts.lookup_name(f"{host.name}\\IME_SYSTEM")
    assert exc.value.code == ERROR_NONE_MAPPED
    with pytest.raises(Win32Error) as exc:
        host.accounts.lookup_sid(f"{host.machine_sid}-4242")
    assert exc.value.code == ERROR_NONE_MAPPED


def test_lookup_sid_names_builtin_and_local_accounts(host):
    assert host.accounts.lookup_sid(sids.USERS).qualified == "BUILTIN\\Users"
    admin = host.accounts.user("Administrator")
    assert admin.sid == f"{host.machine_sid}-500"
    assert host.accounts.lookup_sid(admin.sid).qualified == f"{host.name}\\Administrator"


def test_domain_member_resolves_domain_accounts_and_domain_admins_are_local_admins():
    host = make_host(domain_member=True, admin_account="domain")
    account = host.accounts.lookup_name("CONTOSO\\svc-fleet")
    assert account.domain == "CONTOSO"
    assert host.domain_member
    domain_admins = host.accounts.lookup_name("CONTOSO\\Domain Admins").sid
    assert domain_admins in host.accounts.group("Administrators").members
