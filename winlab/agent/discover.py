"""discover: what the agent's discover.ps1 reads, from the emulated host, as `Facts`.

Win32_OperatingSystem / the CurrentVersion key for the OS, $PSVersionTable, Win32_ComputerSystem
.DomainRole, MailEnable's registry values through the 32-bit view, Get-Service, ADSI for IME_SYSTEM
and the store group, Get-MpComputerStatus. The operator-declared facts (SQL mode, integrated
authentication) stay `unknown`: discovery cannot read them reliably.
"""

from __future__ import annotations

from lockdown.rules.facts import Facts
from lockdown.rules.targets import LEGACY_STORE_GROUP_NAME, STORE_GROUP_NAME
from lockdown.rules.vocabulary import Arch, DomainRole
from winlab.windows.errors import Win32Error
from winlab.windows.host import WindowsHost
from winlab.windows.mailenable import REGISTRY_KEY
from winlab.windows.tokens import Token

NT_CURRENT_VERSION = "HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion"


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def discover_facts(host: WindowsHost, token: Token) -> Facts:
    """The facts of `host` as the WinRM user `token` can read them."""
    registry = host.registry
    nt = registry.open(NT_CURRENT_VERSION, 64, token)
    caption = _text(nt.get("ProductName")) or "Windows"
    build_text = _text(nt.get("CurrentBuildNumber")) or "0"
    me: dict[str, str | None] = {}
    if registry.exists(REGISTRY_KEY, 32):
        key = registry.open(REGISTRY_KEY, 32, token)
        for name in ("Program Directory", "Application Directory", "Configuration Directory", "Mail Root", "Version"):
            me[name] = _text(key.get(name))
        edition = "Standard"
        for candidate in ("Enterprise", "Professional"):
            if key.get(f"{candidate} Version") is not None:
                edition = candidate
                break
        me["edition"] = edition
    program = me.get("Program Directory")
    accounts = host.accounts
    ime_system = accounts.users.get("ime_system")
    group = accounts.groups.get(STORE_GROUP_NAME.lower()) or accounts.groups.get(LEGACY_STORE_GROUP_NAME.lower())
    try:
        defender = host.services.exists("WinDefend") and host.defender.installed
        host.defender.get_exclusion_paths(token)
    except Win32Error:
        defender = False
    return Facts(
        computer_name=accounts.machine_name,
        system_root="C:\\Windows",
        os_caption=caption,
        os_build=int(build_text),
        arch=Arch.X64,
        domain_role=DomainRole.MEMBER_SERVER if host.domain_member else DomainRole.STANDALONE_SERVER,
        powershell_version=host.powershell_version,
        mailenable_version=me.get("Version"),
        mailenable_edition=me.get("edition"),
        program_dir=program,
        application_dir=me.get("Application Directory"),
        config_dir=me.get("Configuration Directory"),
        mail_root=me.get("Mail Root"),
        bin64_exists=program is not None and host.fs.is_dir(f"{program}\\Bin64"),
        services=host.services.names(),
        ime_system_sid=ime_system.sid if ime_system is not None else None,
        store_group_name=group.name if group is not None else None,
        store_group_sid=group.sid if group is not None else None,
        windows_search_present=host.services.exists("WSearch"),
        indexing_service_present=host.services.exists("cisvc"),
        defender_present=defender,
    )
