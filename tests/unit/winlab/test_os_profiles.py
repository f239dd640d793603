import pytest

from tests.unit.winlab.builders import make_host
from winlab.windows import sids

S32, WOW = "C:\\Windows\\System32", "C:\\Windows\\SysWOW64"
ALL = ("2008r2", "2016", "2019", "2022")
NEVER = (
    "edlin.exe",
    "debug.exe",
    "command.com",
    "krnl386.exe",
    "posix.exe",
    "MSVCP71D.dll",
    "nbstat.exe",
    "rcp.exe",
    "rsh.exe",
    "rexec.exe",
    "usrmgr.exe",
    "srvmgr.exe",
    "sysedit.exe",
    "telnet.exe",
    "tftp.exe",
)


@pytest.fixture(scope="module", params=ALL)
def os_host(request):
    return make_host(os=request.param, version="9.83", edition="Professional")


def test_legacy_programs_are_absent_from_both_system_folders(os_host):
    for name in NEVER:
        assert not os_host.fs.exists(f"{S32}\\{name}"), name
        assert not os_host.fs.exists(f"{WOW}\\{name}"), name
    assert os_host.fs.exists(f"{S32}\\nbtstat.exe")


def test_common_guide_files_exist_in_both_folders_owned_by_trustedinstaller(os_host):
    for name in ("cmd.exe", "ftp.exe", "at.exe", "cacls.exe", "finger.exe", "ws2_32.dll", "WSOCK32.dll"):
        for folder in (S32, WOW):
            sd = os_host.fs.get_sd(f"{folder}\\{name}")
            assert sd.owner == sids.TRUSTED_INSTALLER
            assert sd.protected


def test_syskey_only_on_2008r2_and_2016_and_ws2help_only_on_2008r2(os_host):
    key = os_host.os.key
    assert os_host.fs.exists(f"{S32}\\syskey.exe") == (key in ("2008r2", "2016"))
    assert os_host.fs.exists(f"{S32}\\ws2help.dll") == (key == "2008r2")


def test_all_application_packages_ace_only_from_2016(os_host):
    sd = os_host.fs.get_sd(f"{S32}\\cmd.exe")
    has_ac = any(a.sid == sids.ALL_APPLICATION_PACKAGES for a in sd.dacl)
    assert has_ac == (os_host.os.key != "2008r2")


def test_windows_registration_exists_and_windows_config_does_not(os_host):
    assert os_host.fs.is_dir("C:\\Windows\\Registration")
    assert not os_host.fs.exists("C:\\Windows\\Config")
    assert os_host.fs.is_dir(f"{S32}\\config")  # the registry hive folder, not what the guide means


def test_rpcss_is_64_bit_only(os_host):
    assert os_host.fs.exists(f"{S32}\\rpcss.dll")
    assert not os_host.fs.exists(f"{WOW}\\rpcss.dll")


def test_optional_client_features_add_telnet_and_tftp():
    host = make_host(features=frozenset({"telnet_client", "tftp_client"}))
    assert host.fs.exists(f"{S32}\\telnet.exe")
    assert host.fs.exists(f"{WOW}\\tftp.exe")


def test_powershell_version_is_2_on_2008r2_unless_wmf51():
    assert make_host(os="2008r2", version="2.53").powershell_version == "2.0"
    assert make_host(os="2008r2", version="2.53", wmf51=True).powershell_version.startswith("5.1")
    assert make_host(os="2022").powershell_version.startswith("5.1")


def test_32_bit_processes_are_redirected_to_syswow64(host):
    assert host.fs.redirect(f"{S32}\\cmd.exe", wow64=True) == f"{WOW}\\cmd.exe"
    assert host.fs.redirect(f"{S32}\\drivers\\etc\\hosts", wow64=True) == f"{S32}\\drivers\\etc\\hosts"
    assert host.fs.redirect("C:\\Windows\\Sysnative\\cmd.exe", wow64=True) == f"{S32}\\cmd.exe"
    assert host.fs.redirect(f"{S32}\\cmd.exe", wow64=False) == f"{S32}\\cmd.exe"


def test_indexing_service_exists_only_on_2008r2():
    assert make_host(os="2008r2", version="2.53", indexing_service=True).services.exists("cisvc")
    with pytest.raises(ValueError, match="cisvc"):
        make_host(os="2019", indexing_service=True)
