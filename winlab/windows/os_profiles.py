"""Windows Server builds: version facts and which System32 / SysWOW64 files exist on each.

Every file the hardening guide names is decided here, present or absent per build; the
reasoning and sources are in winlab/README.md ("The emulated Windows", Assumptions).
"""

from __future__ import annotations

from dataclasses import dataclass


def _names(text: str) -> list[str]:
    return text.split()


# Files on every modelled x64 build, in both System32 and SysWOW64.
COMMON_FILES = frozenset(
    _names(
        """
    activeds.dll adsldpc.dll clbcatq.dll dhcpcsvc.dll dnsapi.dll iphlpapi.dll icmp.dll imm32.dll
    mprapi.dll mlang.dll msvcp60.dll msxml3.dll msxml3r.dll netmsg.dll netapi32.dll ntdsapi.dll
    netrap.dll odbc32.dll odbcint.dll odbctrac.dll psapi.dll rtutils.dll rasapi32.dll rasman.dll
    rasadhlp.dll secur32.dll samlib.dll setupapi.dll tapi32.dll userenv.dll winrnr.dll wsock32.dll
    ws2_32.dll wshtcpip.dll at.exe cacls.exe cmd.exe cscript.exe finger.exe ftp.exe ipconfig.exe net.exe
    net1.exe netsh.exe regedt32.exe regini.exe regsvr32.exe runas.exe runonce.exe tracert.exe
    wscript.exe nbtstat.exe ntdll.dll kernel32.dll kernelbase.dll advapi32.dll user32.dll gdi32.dll
    ole32.dll oleaut32.dll msvcrt.dll rpcrt4.dll sechost.dll shell32.dll shlwapi.dll crypt32.dll
    mswsock.dll wininet.dll winhttp.dll version.dll comctl32.dll comdlg32.dll wldap32.dll msasn1.dll
    sspicli.dll cryptbase.dll bcrypt.dll ncrypt.dll notepad.exe reg.exe sc.exe icacls.exe takeown.exe
    whoami.exe ping.exe route.exe arp.exe hostname.exe nslookup.exe secedit.exe tasklist.exe
    taskkill.exe xcopy.exe robocopy.exe msiexec.exe rundll32.exe wbem drivers
    """
    )
)
# Only in System32 (64-bit only components).
SYSTEM32_ONLY = frozenset({"rpcss.dll", "config", "lsass.exe", "services.exe", "svchost.exe", "winlogon.exe"})
# Named by the guide and shipped by no modelled build (x64 Server 2008 R2 and later).
NEVER_PRESENT = frozenset(
    _names(
        """
    command.com debug.exe edlin.exe krnl386.exe posix.exe msvcp71d.dll nbstat.exe rcp.exe rsh.exe
    rexec.exe usrmgr.exe srvmgr.exe sysedit.exe indicdll.dll msafd.dll rnr20.dll
    """
    )
)
# Optional Windows features that add files to both folders when installed.
FEATURE_FILES: dict[str, frozenset[str]] = {
    "telnet_client": frozenset({"telnet.exe"}),
    "tftp_client": frozenset({"tftp.exe"}),
}
# Directory entries in the lists above (not files).
DIRECTORY_NAMES = frozenset({"wbem", "drivers", "config"})


@dataclass(frozen=True)
class OsProfile:
    """One Windows Server release as the model builds it (all x64)."""

    key: str
    product_name: str
    build: int
    current_version: str
    release_id: str
    default_ps_version: str
    ps51_engine_version: str
    app_packages: bool
    restricted_packages: bool
    extra_files: frozenset[str]
    has_indexing_service: bool
    defender_default: bool
    has_default_account: bool
    has_wdag_account: bool

    @property
    def version(self) -> str:
        return f"{'6.1' if self.build < 10000 else '10.0'}.{self.build}"

    def system32_files(self, features: frozenset[str] = frozenset()) -> frozenset[str]:
        return COMMON_FILES | SYSTEM32_ONLY | self.extra_files | _feature_files(features)

    def syswow64_files(self, features: frozenset[str] = frozenset()) -> frozenset[str]:
        return COMMON_FILES | self.extra_files | _feature_files(features)


def _feature_files(features: frozenset[str]) -> frozenset[str]:
    out: set[str] = set()
    for feature in features:
        out |= FEATURE_FILES.get(feature, frozenset())
    return frozenset(out)


PROFILES: dict[str, OsProfile] = {
    "2008r2": OsProfile(
        key="2008r2",
        product_name="Windows Server 2008 R2 Standard",
        build=7601,
        current_version="6.1",
        release_id="",
        default_ps_version="2.0",
        ps51_engine_version="5.1.14409.1005",
        app_packages=False,
        restricted_packages=False,
        extra_files=frozenset({"syskey.exe", "ws2help.dll"}),
        has_indexing_service=True,
        defender_default=False,
        has_default_account=False,
        has_wdag_account=False,
    ),
    "2016": OsProfile(
        key="2016",
        product_name="Windows Server 2016 Standard",
        build=14393,
        current_version="6.3",
        release_id="1607",
        default_ps_version="5.1",
        ps51_engine_version="5.1.14393.0",
        app_packages=True,
        restricted_packages=False,
        extra_files=frozenset({"syskey.exe"}),
        has_indexing_service=False,
        defender_default=True,
        has_default_account=True,
        has_wdag_account=False,
    ),
    "2019": OsProfile(
        key="2019",
        product_name="Windows Server 2019 Standard",
        build=17763,
        current_version="6.3",
        release_id="1809",
        default_ps_version="5.1",
        ps51_engine_version="5.1.17763.1",
        app_packages=True,
        restricted_packages=True,
        extra_files=frozenset(),
        has_indexing_service=False,
        defender_default=True,
        has_default_account=True,
        has_wdag_account=True,
    ),
    "2022": OsProfile(
        key="2022",
        product_name="Windows Server 2022 Standard",
        build=20348,
        current_version="6.3",
        release_id="2009",
        default_ps_version="5.1",
        ps51_engine_version="5.1.20348.1",
        app_packages=True,
        restricted_packages=True,
        extra_files=frozenset(),
        has_indexing_service=False,
        defender_default=True,
        has_default_account=True,
        has_wdag_account=True,
    ),
}
