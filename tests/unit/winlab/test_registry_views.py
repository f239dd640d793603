import pytest

from tests.unit.winlab.builders import make_host
from winlab.windows import security as sec
from winlab.windows.errors import ERROR_ACCESS_DENIED, ERROR_FILE_NOT_FOUND, Win32Error

ME_KEY = "HKLM\\SOFTWARE\\Mail Enable\\Mail Enable"


def test_mailenable_key_is_reached_only_through_the_32_bit_view(host):
    assert not host.registry.exists(ME_KEY, view=64)
    assert host.registry.exists(ME_KEY, view=32)
    assert host.registry.exists("HKLM\\SOFTWARE\\WOW6432Node\\Mail Enable\\Mail Enable", view=64)
    with pytest.raises(Win32Error) as exc:
        host.registry.open(ME_KEY)
    assert exc.value.code == ERROR_FILE_NOT_FOUND


def test_mailenable_values_describe_the_install():
    host = make_host(install_path="plesk", edition="Professional", version="9.83")
    key = host.registry.open(ME_KEY, view=32)
    program = "C:\\Program Files (x86)\\Plesk\\Mail Servers\\Mail Enable"
    assert key.get("Program Directory") == program
    assert key.get("Application Directory") == f"{program}\\Bin"
    assert key.get("Configuration Directory") == f"{program}\\Config"
    assert key.get("Mail Root") == f"{program}\\Postoffices"
    assert key.get("Professional Version") == "9.83"
    assert key.get("Enterprise Version") is None


def test_users_can_read_hives_but_not_write(host):
    token = host.logon("IME_USER", host.mailenable.install.passwords["IME_USER"])
    assert host.registry.can("HKLM\\SOFTWARE\\Microsoft", token, sec.KEY_READ)
    assert host.registry.can("HKLM\\SYSTEM", token, sec.KEY_READ)
    assert not host.registry.can("HKLM\\SOFTWARE\\Microsoft", token, sec.KEY_SET_VALUE)
    with pytest.raises(Win32Error) as exc:
        host.registry.open("HKLM\\SOFTWARE\\Microsoft", token=token, access=sec.KEY_ALL_ACCESS)
    assert exc.value.code == ERROR_ACCESS_DENIED


def test_same_value_write_counts_no_mutation(host):
    key = host.registry.open(ME_KEY, view=32, token=host.admin_token(), access=sec.KEY_ALL_ACCESS)
    assert key.set_value("Version", key.get("Version")) is False
    assert host.mutations == 0
    assert key.set_value("Version", "10.44") is True
    assert host.mutations == 1


def test_hives_have_many_subkeys():
    host = make_host(registry_subkeys=50)
    assert host.registry.count("HKLM\\SOFTWARE\\Classes") > 100
    assert host.registry.count("HKLM\\SOFTWARE\\Microsoft") > 100
    assert host.registry.count("HKLM\\SYSTEM") > 50
    assert host.registry.count("HKLM\\SOFTWARE\\Classes", view=32) > 100  # WOW6432Node\Classes
