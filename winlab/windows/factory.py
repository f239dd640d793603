"""Build hosts from a :class:`HostSpec`, and a deterministic mixed fleet from a seed."""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from winlab.windows import security as sec
from winlab.windows import sids
from winlab.windows.accounts import UF_ACCOUNTDISABLE, UF_DONT_EXPIRE_PASSWD, Accounts, DomainInfo, PasswordPolicy
from winlab.windows.auth import UAC_POLICY_KEY, Authority
from winlab.windows.clock import Clock, ManualClock
from winlab.windows.context import HostContext
from winlab.windows.defender import Defender
from winlab.windows.filesystem import (
    SYSTEM32,
    SYSWOW64,
    FileSystem,
    drive_root_sd,
    system_file_sd,
    system_folder_dacl,
)
from winlab.windows.host import WindowsHost
from winlab.windows.iis import SITE_NAME, Certificate, Iis, IpSecurity, SiteBinding
from winlab.windows.lsa import Lsa
from winlab.windows.mailenable import (
    DATABASE,
    DEFAULT_DIR,
    IME_SYSTEM_PROTOCOL_SERVICES,
    PLESK_DIR,
    Edition,
    MailEnable,
    MailEnableInstall,
)
from winlab.windows.os_profiles import DIRECTORY_NAMES, PROFILES, OsProfile
from winlab.windows.policy import GroupPolicy
from winlab.windows.registry import Registry, hive_sd, trustedinstaller_key_sd
from winlab.windows.services import Service, ServiceManager, StartMode
from winlab.windows.smtp import AuthMode, RelayPolicy, SmtpSettings
from winlab.windows.sql import DEFAULT_INSTANCE, Database, DatabaseUser, SqlServer, service_name_for

OsKey = Literal["2008r2", "2016", "2019", "2022"]
HardenedBy = Literal["IME_STORE_GROUP", "IME_STORE_USERS"] | None
AdminAccount = Literal["builtin", "local", "domain"]
ProtocolState = Literal["running", "stopped", "disabled"]
# pop_state / imap_state: "stopped" = start mode Manual, not running; "disabled" = start mode Disabled.
PROTOCOL_START_MODES = {"running": "Auto", "stopped": "Manual", "disabled": "Disabled"}
# The folder noncanonical_dacl_folder=True gives an Allow ACE before a Deny ACE (relative to the install).
NONCANONICAL_FOLDER = "Queues"
A = sec.allow
F = sec.AceFlags
VERSIONS = ("2.53", "9.83", "10.43")
ADMIN_PASSWORD = "Winlab-Admin-1!"  # noqa: S105 - simulator credential, never a real secret
LOCAL_ADMIN = "fleetadmin"
DOMAIN_ADMIN = "svc-fleet"


@dataclass(frozen=True)
class HostSpec:
    """Everything that makes one host differ from another; the same spec always builds the same host."""

    name: str = "ME01"
    os: OsKey = "2019"
    edition: Edition = Edition.ENTERPRISE
    version: str = "10.43"
    install_path: Literal["default", "plesk"] = "default"
    sql: bool = False
    hardened_by_meinstaller: HardenedBy = None
    store_files: int = 30
    wmf51: bool = False
    domain_member: bool = False
    uac_filtering: bool = True
    admin_account: AdminAccount = "builtin"
    wsearch: bool = False
    indexing_service: bool = False
    defender: bool | None = None
    features: frozenset[str] = frozenset()
    registry_subkeys: int = 40
    acl_cost_seconds: float = 0.002
    seed: int = 0
    # --- v2 fixtures (winlab/README.md, "Host options") ---
    pop_state: ProtocolState = "running"
    imap_state: ProtocolState = "running"
    webmail_https_self_signed: bool = False
    sql_instance: str | None = None
    noncanonical_dacl_folder: bool = False
    meinstaller_mta_localsystem: bool = False
    # --- settings beyond the 2005 guide (issue 14; defaults = a fresh install) ---
    abuse_threshold: int | None = None
    password_encryption: bool = False
    auth_key_restricted: bool = False
    legacy_tls_disabled: bool = False
    # --- the SMTP connector as the worker's probes see it (winlab/windows/smtp.py) ---
    smtp_relay: RelayPolicy = "closed"
    smtp_auth: AuthMode = "secure_only"
    smtp_certificate_days: int | None = 365
    smtp_certificate_name: str | None = None
    # --- IIS: webadmin restricted by IP and Domain Restrictions to these CIDRs (None: not installed, open) ---
    webadmin_allowed: tuple[str, ...] | None = None

    @property
    def smtp(self) -> SmtpSettings:
        return SmtpSettings(self.smtp_relay, self.smtp_auth, self.smtp_certificate_days, self.smtp_certificate_name)

    def __post_init__(self) -> None:
        object.__setattr__(self, "edition", Edition(self.edition))
        _ = self.smtp  # validates the smtp_* options
        if self.os not in PROFILES:
            raise ValueError(f"unknown os {self.os!r}")
        if self.sql and self.edition is not Edition.ENTERPRISE:
            raise ValueError("only MailEnable Enterprise keeps its configuration in SQL Server")
        if self.wmf51 and self.os != "2008r2":
            raise ValueError("wmf51 only applies to Windows Server 2008 R2")
        if self.indexing_service and self.os != "2008r2":
            raise ValueError("the Indexing Service (cisvc) exists only up to Windows Server 2008 R2")
        if self.admin_account == "domain" and not self.domain_member:
            raise ValueError("a domain admin account needs a domain member")
        if self.version.split(".")[0] not in ("2", "9", "10"):
            raise ValueError(f"unsupported MailEnable version {self.version!r}")
        for label, value in (("pop_state", self.pop_state), ("imap_state", self.imap_state)):
            if value not in PROTOCOL_START_MODES:
                raise ValueError(f"{label} must be one of {sorted(PROTOCOL_START_MODES)}, not {value!r}")
        if self.sql_instance is not None:
            if not self.sql:
                raise ValueError("sql_instance needs sql=True")
            name = self.sql_instance
            # Instance names: at most 16 characters, a letter (or _) first, then letters, digits, _ or $;
            # DEFAULT is reserved and MSSQLSERVER is the default instance (use sql_instance=None).
            valid = 0 < len(name) <= 16 and (name[0].isalpha() or name[0] == "_")
            valid = valid and all(c.isalnum() or c in "_$" for c in name)
            if not valid or name.upper() in ("DEFAULT", DEFAULT_INSTANCE):
                raise ValueError(f"invalid SQL Server instance name {name!r}")
        if self.meinstaller_mta_localsystem and not self.hardened_by_meinstaller:
            raise ValueError("meinstaller_mta_localsystem needs hardened_by_meinstaller")


def build_host(spec: HostSpec, clock: Clock | None = None) -> WindowsHost:
    """Build a host as it is before any hardening by this tool (possibly hardened by MEInstaller)."""
    ctx = HostContext(clock or ManualClock(), acl_cost_seconds=spec.acl_cost_seconds)
    ctx.building = True
    rng = random.Random(f"{spec.seed}:{spec.name}")  # noqa: S311 - deterministic model data
    profile = PROFILES[spec.os]
    fs = FileSystem(ctx, drive_root_sd())
    registry = Registry(ctx, _hklm_sd())
    accounts = Accounts(ctx, spec.name, sids.machine_sid(f"{spec.seed}:{spec.name}"))
    lsa = Lsa(ctx)
    authority = Authority(accounts, lsa, registry)
    services = ServiceManager(ctx, accounts, authority, fs, registry)
    policy = GroupPolicy(ctx, lsa, seed=rng.getrandbits(32))

    _build_registry(registry, profile, spec, rng)
    _build_files(fs, profile, spec)
    admin_user, admin_password = _build_accounts(accounts, profile, spec)
    _build_os_services(services, fs, profile, spec)
    defender = Defender(ctx, installed=profile.defender_default if spec.defender is None else spec.defender)
    if defender.installed:
        _service(
            services,
            fs,
            "WinDefend",
            "Windows Defender Antivirus Service",
            "C:\\Program Files\\Windows Defender\\MsMpEng.exe",
        )
    sql = None
    if spec.sql:
        sql = _build_sql(ctx, accounts, services, fs, instance=spec.sql_instance or DEFAULT_INSTANCE)
    install = MailEnableInstall(
        edition=spec.edition,
        version=spec.version,
        program_dir=DEFAULT_DIR if spec.install_path == "default" else PLESK_DIR,
        sql=spec.sql,
        abuse_threshold=spec.abuse_threshold,
        password_encryption=spec.password_encryption,
        auth_key_restricted=spec.auth_key_restricted,
    )
    mailenable = MailEnable(
        ctx,
        install,
        fs=fs,
        registry=registry,
        accounts=accounts,
        authority=authority,
        lsa=lsa,
        services=services,
        sql=sql,
        machine_name=accounts.machine_name,
    )
    mailenable.build(rng, spec.store_files)
    if spec.hardened_by_meinstaller:
        if spec.meinstaller_mta_localsystem:
            mailenable.apply_meinstaller_hardening(
                spec.hardened_by_meinstaller, rng, services=IME_SYSTEM_PROTOCOL_SERVICES
            )
        else:
            mailenable.apply_meinstaller_hardening(spec.hardened_by_meinstaller, rng)
    for service_name, state in (("MEPOPS", spec.pop_state), ("MEIMAPS", spec.imap_state)):
        if state != "running":
            services.change(service_name, None, start_mode=PROTOCOL_START_MODES[state])
    if spec.noncanonical_dacl_folder:
        _make_noncanonical(fs, accounts, install)
    iis = _build_iis(registry, services, mailenable, profile, spec, accounts.machine_name)
    iis.publish(fs, "C:\\Windows")
    for svc in services.all():
        if svc.start_mode is StartMode.AUTO:
            services.start(svc.name)
    ctx.io_factor = _io_factor(services, defender)
    host = WindowsHost(
        name=accounts.machine_name,
        spec=spec,
        os=profile,
        ctx=ctx,
        fs=fs,
        registry=registry,
        accounts=accounts,
        lsa=lsa,
        authority=authority,
        services=services,
        policy=policy,
        defender=defender,
        sql=sql,
        mailenable=mailenable,
        admin_username=admin_user,
        admin_password=admin_password,
        iis=iis,
    )
    ctx.run_due()  # settle the services started above
    mailenable.start_timers()
    ctx.building = False
    return host


def _io_factor(services: ServiceManager, defender: Defender) -> Callable[[str], float]:
    def factor(path: str) -> float:
        value = 1.0
        scanning = defender.installed and defender.realtime and not defender.is_excluded(path)
        if scanning and services.exists("WinDefend") and services.get("WinDefend").running:
            value *= 1.5
        for indexer in ("WSearch", "cisvc"):
            if services.exists(indexer) and services.get(indexer).running:
                value *= 1.25
        return value

    return factor


# --- registry ---------------------------------------------------------------------------------
def _hklm_sd() -> sec.SecurityDescriptor:
    dacl = (
        A(sids.LOCAL_SYSTEM, sec.KEY_ALL_ACCESS, F.CI),
        A(sids.ADMINISTRATORS, sec.KEY_ALL_ACCESS, F.CI),
        A(sids.USERS, sec.KEY_READ, F.CI),
    )
    return sec.SecurityDescriptor(owner=sids.LOCAL_SYSTEM, group=sids.LOCAL_SYSTEM, dacl=dacl, protected=True)


def _build_registry(registry: Registry, profile: OsProfile, spec: HostSpec, rng: random.Random) -> None:
    tree = registry.tree
    for hive in ("SOFTWARE", "SYSTEM"):
        registry.tree.create(f"HKLM\\{hive}", sec.ObjectKind.REGISTRY_KEY)
        sd = hive_sd(app_packages=profile.app_packages)
        tree.set_security(f"HKLM\\{hive}", None, owner=sd.owner, dacl=sd.dacl, protected=True)
    for base in ("HKLM\\SOFTWARE", "HKLM\\SOFTWARE\\WOW6432Node"):
        for sub in ("Classes", "Microsoft", "Policies"):
            registry.create_key(f"{base}\\{sub}")
    # Many subkeys under each hive the guide grants, so an inheritable grant there is expensive.
    for base in ("HKLM\\SOFTWARE", "HKLM\\SOFTWARE\\WOW6432Node"):
        for i in range(spec.registry_subkeys):
            registry.create_key(f"{base}\\Classes\\.ext{i:04d}")
            guid = uuid.UUID(int=rng.getrandbits(128)).hex.upper()
            registry.create_key(f"{base}\\Classes\\CLSID\\{{{guid}}}\\InprocServer32")
            registry.create_key(f"{base}\\Microsoft\\Component{i:04d}\\Settings")
    for i in range(spec.registry_subkeys):
        registry.create_key(f"HKLM\\SYSTEM\\CurrentControlSet\\Control\\Class\\Entry{i:04d}")
    registry.create_key(
        "HKLM\\SYSTEM\\CurrentControlSet\\Control\\SecurePipeServers\\winreg",
        explicit=(
            A(sids.ADMINISTRATORS, sec.KEY_ALL_ACCESS, F.CI),
            A(sids.BACKUP_OPERATORS, sec.KEY_READ),
            A(sids.LOCAL_SERVICE, sec.KEY_READ),
        ),
        protected=True,
    )
    cbs = "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Component Based Servicing"
    ti = trustedinstaller_key_sd()
    registry.create_key(cbs, explicit=ti.dacl, protected=True, owner=ti.owner)
    registry.create_key(f"{cbs}\\Packages")
    nt = registry.create_key("HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion")
    nt.set_value("ProductName", profile.product_name)
    nt.set_value("CurrentVersion", profile.current_version)
    nt.set_value("CurrentBuild", str(profile.build))
    nt.set_value("CurrentBuildNumber", str(profile.build))
    nt.set_value("InstallationType", "Server")
    nt.set_value("EditionID", "ServerStandard")
    if profile.release_id:
        nt.set_value("ReleaseId", profile.release_id)
    registry.create_key("HKLM\\SOFTWARE\\Microsoft\\PowerShell\\1\\PowerShellEngine").set_value(
        "PowerShellVersion", "2.0"
    )
    if profile.default_ps_version == "5.1" or spec.wmf51:
        registry.create_key("HKLM\\SOFTWARE\\Microsoft\\PowerShell\\3\\PowerShellEngine").set_value(
            "PowerShellVersion", profile.ps51_engine_version
        )
    # SChannel: the Protocols key exists with only SSL 2.0\Client on a fresh install; TLS 1.0/1.1 are on by
    # default (Microsoft Learn, "TLS registry settings"). legacy_tls_disabled writes what an admin writes to turn
    # them off for the server side.
    protocols = "HKLM\\SYSTEM\\CurrentControlSet\\Control\\SecurityProviders\\SCHANNEL\\Protocols"
    registry.create_key(f"{protocols}\\SSL 2.0\\Client").set_value("DisabledByDefault", 1, "REG_DWORD")
    if spec.legacy_tls_disabled:
        for version in ("TLS 1.0", "TLS 1.1"):
            server = registry.create_key(f"{protocols}\\{version}\\Server")
            server.set_value("Enabled", 0, "REG_DWORD")
            server.set_value("DisabledByDefault", 1, "REG_DWORD")
    uac = registry.create_key(UAC_POLICY_KEY)
    uac.set_value("EnableLUA", 1, "REG_DWORD")
    uac.set_value("FilterAdministratorToken", 0, "REG_DWORD")
    if not spec.uac_filtering:
        uac.set_value("LocalAccountTokenFilterPolicy", 1, "REG_DWORD")


# --- files ------------------------------------------------------------------------------------
def _system_folder(fs: FileSystem, path: str, profile: OsProfile) -> None:
    dacl = system_folder_dacl(app_packages=profile.app_packages, restricted_packages=profile.restricted_packages)
    fs.create_dir(path, owner=sids.TRUSTED_INSTALLER, explicit=dacl, protected=True)


def _build_files(fs: FileSystem, profile: OsProfile, spec: HostSpec) -> None:
    for folder in ("C:\\Windows", SYSTEM32, SYSWOW64, "C:\\Program Files", "C:\\Program Files (x86)"):
        _system_folder(fs, folder, profile)
    fs.create_dir("C:\\Windows\\Registration", owner=sids.TRUSTED_INSTALLER)
    fs.create_file("C:\\Windows\\Registration\\R000000000001.clb", owner=sids.TRUSTED_INSTALLER)
    fs.create_dir("C:\\Windows\\Temp", owner=sids.LOCAL_SYSTEM)
    file_sd = system_file_sd(app_packages=profile.app_packages, restricted_packages=profile.restricted_packages)
    for folder, names in (
        (SYSTEM32, profile.system32_files(spec.features)),
        (SYSWOW64, profile.syswow64_files(spec.features)),
    ):
        for name in sorted(names):
            path = f"{folder}\\{name}"
            if name in DIRECTORY_NAMES:
                if name == "config":
                    fs.create_dir(
                        path,
                        owner=sids.LOCAL_SYSTEM,
                        protected=True,
                        explicit=(
                            A(sids.LOCAL_SYSTEM, sec.FILE_ALL_ACCESS, F.OI | F.CI),
                            A(sids.ADMINISTRATORS, sec.FILE_ALL_ACCESS, F.OI | F.CI),
                        ),
                    )
                    for hive in ("SAM", "SECURITY", "SOFTWARE", "SYSTEM", "DEFAULT"):
                        fs.create_file(f"{path}\\{hive}", owner=sids.LOCAL_SYSTEM)
                else:
                    fs.create_dir(path, owner=sids.TRUSTED_INSTALLER)
                continue
            fs.create_file(path, owner=file_sd.owner, group=file_sd.group, explicit=file_sd.dacl, protected=True)
    for exe in ("SearchIndexer.exe", "cisvc.exe"):
        fs.create_file(
            f"{SYSTEM32}\\{exe}", owner=file_sd.owner, group=file_sd.group, explicit=file_sd.dacl, protected=True
        )
    fs.makedirs("C:\\Program Files\\Windows Defender")
    fs.create_dir("C:\\ProgramData", owner=sids.LOCAL_SYSTEM)  # the agent's journal lives under it
    fs.create_file("C:\\Program Files\\Windows Defender\\MsMpEng.exe")


# --- accounts ---------------------------------------------------------------------------------
def _build_accounts(accounts: Accounts, profile: OsProfile, spec: HostSpec) -> tuple[str, str]:
    accounts.create_user(
        "Administrator", ADMIN_PASSWORD, rid=500, description="Built-in account for administering the computer/domain"
    )
    accounts.add_member("Administrators", accounts.user("Administrator").sid)
    guest = accounts.add_builtin_user("Guest", 501, flags=UF_ACCOUNTDISABLE | UF_DONT_EXPIRE_PASSWD)
    accounts.add_member("Guests", guest.sid)
    if profile.has_default_account:
        accounts.add_builtin_user("DefaultAccount", 503, flags=UF_ACCOUNTDISABLE | UF_DONT_EXPIRE_PASSWD)
    if profile.has_wdag_account:
        accounts.add_builtin_user("WDAGUtilityAccount", 504, flags=UF_ACCOUNTDISABLE)
    admin_user, admin_password = "Administrator", ADMIN_PASSWORD
    if spec.domain_member:
        domain = DomainInfo("CONTOSO", sids.machine_sid(f"domain:{spec.seed}"))
        domain.add("Domain Admins", 512, sid_type=sids.SidType.GROUP)
        domain.add("Domain Users", 513, sid_type=sids.SidType.GROUP)
        domain.add("Administrator", 500, password=ADMIN_PASSWORD, groups=(f"{domain.sid}-512",))
        domain.add(DOMAIN_ADMIN, 1105, password=ADMIN_PASSWORD, groups=(f"{domain.sid}-512",))
        accounts.domain = domain
        accounts.add_member("Administrators", f"{domain.sid}-512")
        accounts.add_member("Users", f"{domain.sid}-513")
        # The Default Domain Policy's password policy applies to local accounts of members.
        accounts.policy = PasswordPolicy(minimum_length=7, complexity=True)
    if spec.admin_account == "local":
        user = accounts.create_user(LOCAL_ADMIN, ADMIN_PASSWORD, description="Fleet Lockdown WinRM account")
        accounts.add_member("Administrators", user.sid)
        admin_user = LOCAL_ADMIN
    elif spec.admin_account == "domain":
        admin_user = f"CONTOSO\\{DOMAIN_ADMIN}"
    return admin_user, admin_password


# --- services ---------------------------------------------------------------------------------
def _service(
    services: ServiceManager,
    fs: FileSystem,
    name: str,
    display: str,
    binary: str,
    *,
    start_name: str = "LocalSystem",
    delayed: bool = False,
) -> Service:
    if not fs.exists(binary):
        fs.makedirs(binary.rsplit("\\", 1)[0])
        fs.create_file(binary)
    return services.install(
        Service(name=name, display_name=display, binary_path=binary, start_name=start_name, delayed_auto=delayed)
    )


def _build_os_services(services: ServiceManager, fs: FileSystem, profile: OsProfile, spec: HostSpec) -> None:
    svchost = f"{SYSTEM32}\\svchost.exe"
    _service(
        services,
        fs,
        "WinRM",
        "Windows Remote Management (WS-Management)",
        svchost,
        start_name="NT AUTHORITY\\NetworkService",
    )
    _service(services, fs, "W3SVC", "World Wide Web Publishing Service", svchost)
    if spec.wsearch:
        _service(services, fs, "WSearch", "Windows Search", f"{SYSTEM32}\\SearchIndexer.exe", delayed=True)
    if spec.indexing_service and profile.has_indexing_service:
        _service(services, fs, "cisvc", "Indexing Service", f"{SYSTEM32}\\cisvc.exe")


def _build_sql(
    ctx: HostContext, accounts: Accounts, services: ServiceManager, fs: FileSystem, *, instance: str = DEFAULT_INSTANCE
) -> SqlServer:
    """SQL Server: the default instance (service MSSQLSERVER) or a named one (service MSSQL$<NAME>).

    "The directory structure, registry structure, and service name all reflect the specific instance
    name" (Using Named Instances, https://learn.microsoft.com/previous-versions/sql/sql-server-2005/ms165614(v=sql.90)).
    """
    instance = instance.upper()
    service_name = service_name_for(instance)
    binary = f"C:\\Program Files\\Microsoft SQL Server\\MSSQL15.{instance}\\MSSQL\\Binn\\sqlservr.exe"
    svc = _service(
        services, fs, service_name, f"SQL Server ({instance})", binary, start_name=f"NT Service\\{service_name}"
    )
    sql = SqlServer(ctx, accounts, lambda: svc.running, instance=instance, machine_name=accounts.machine_name)
    sql.add_login("BUILTIN\\Administrators", sysadmin=True)
    sql.add_login(f"NT SERVICE\\{service_name}", sysadmin=True)
    system = sql.add_login("NT AUTHORITY\\SYSTEM")
    db = Database(DATABASE)
    db.users["nt authority\\system"] = DatabaseUser("NT AUTHORITY\\SYSTEM", system.sid, {"db_owner"})
    sql.databases[DATABASE.lower()] = db
    return sql


# --- v2 fixtures ------------------------------------------------------------------------------
def _make_noncanonical(fs: FileSystem, accounts: Accounts, install: MailEnableInstall) -> None:
    """Put an explicit Allow before an explicit Deny on one MailEnable folder (a raw DACL write).

    Administrators get full control, then NETWORK logons are denied DELETE: walked in this order, the
    allow wins for administrators connecting over the network (WinRM). Canonical order (Order of ACEs
    in a DACL, https://learn.microsoft.com/windows/win32/secauthz/order-of-aces-in-a-dacl) would put
    the deny first. .NET's AddAccessRule then throws (security.NonCanonicalAclError); an SDDL write works.
    Neither ACE is inheritable, so only the folder itself is non-canonical.
    """
    path = install.path(NONCANONICAL_FOLDER)
    explicit = fs.get_sd(path).explicit_aces
    dacl = (A(sids.ADMINISTRATORS, sec.FILE_ALL_ACCESS), sec.deny(sids.NETWORK, sec.DELETE), *explicit)
    fs.tree.set_security(path, None, dacl=dacl)


def _build_iis(
    registry: Registry, services: ServiceManager, mailenable: MailEnable, profile: OsProfile, spec: HostSpec, name: str
) -> Iis:
    """The Default Web Site: http on 80, or with webmail_https_self_signed https on 443 only, a self-signed
    certificate (subject = issuer = CN=<computer name>) and TLS 1.0/1.1 disabled for servers in SCHANNEL."""
    bindings = [SiteBinding("http", 80)]
    if spec.webmail_https_self_signed:
        cn = f"CN={name.lower()}"
        thumbprint = hashlib.sha1(cn.encode(), usedforsecurity=False).hexdigest().upper()
        bindings = [SiteBinding("https", 443, Certificate(cn, cn, thumbprint=thumbprint))]
    iis = Iis(
        registry=registry,
        services=services,
        os_key=profile.key,
        machine_name=name,
        bindings=bindings,
        applications={"/mewebmail": mailenable.webmail_ok, "/meadmin": mailenable.webadmin_ok},
    )
    if spec.webmail_https_self_signed:
        iis.disable_server_tls_below("1.2")
        iis.load_schannel()
    if spec.webadmin_allowed is not None:
        iis.ip_restriction_installed = True
        iis.ip_security[f"{SITE_NAME}/meadmin"] = IpSecurity.only(tuple(spec.webadmin_allowed))
    return iis


# --- fleets -----------------------------------------------------------------------------------
_TEMPLATES: tuple[dict[str, object], ...] = (
    {"os": "2008r2", "edition": Edition.STANDARD, "version": "2.53", "indexing_service": True},
    {"os": "2008r2", "edition": Edition.PROFESSIONAL, "version": "9.83", "install_path": "plesk",
     "hardened_by_meinstaller": "IME_STORE_USERS", "wmf51": True, "domain_member": True, "admin_account": "domain"},
    {"os": "2016", "edition": Edition.ENTERPRISE, "version": "10.43", "sql": True, "admin_account": "local",
     "webadmin_allowed": ("10.20.0.0/16",)},
    {"os": "2016", "edition": Edition.PROFESSIONAL, "version": "10.43", "install_path": "plesk",
     "hardened_by_meinstaller": "IME_STORE_GROUP", "uac_filtering": False, "admin_account": "local"},
    {"os": "2019", "edition": Edition.ENTERPRISE, "version": "9.83", "sql": True,
     "hardened_by_meinstaller": "IME_STORE_GROUP", "domain_member": True, "admin_account": "domain"},
    {"os": "2019", "edition": Edition.STANDARD, "version": "10.43", "wsearch": True},
    {"os": "2022", "edition": Edition.ENTERPRISE, "version": "10.43", "install_path": "plesk", "sql": True,
     "hardened_by_meinstaller": "IME_STORE_USERS", "uac_filtering": False, "admin_account": "local",
     "webadmin_allowed": ("10.20.0.0/16",)},
    {"os": "2022", "edition": Edition.STANDARD, "version": "9.83", "domain_member": True, "defender": False},
)  # fmt: skip


def fleet_specs(n: int, seed: int, *, store_files: int = 30, big_store_files: int | None = None) -> list[HostSpec]:
    """``n`` deterministic specs. The first eight cover every OS, edition, version family, install path,
    SQL, MEInstaller state, WMF, domain, UAC and admin-account choice; the rest are drawn from ``seed``.
    ``big_store_files`` (default 20x ``store_files``) is given to every tenth host.
    """
    rng = random.Random(seed)  # noqa: S311 - deterministic model data
    big = big_store_files if big_store_files is not None else store_files * 20
    specs: list[HostSpec] = []
    for i in range(n):
        base = HostSpec(**_TEMPLATES[i]) if i < len(_TEMPLATES) else _random_spec(rng)  # type: ignore[arg-type]
        files = big if i % 10 == 9 else store_files
        specs.append(replace(base, name=f"ME{i + 1:03d}", seed=seed, store_files=files))
    return specs


def _random_spec(rng: random.Random) -> HostSpec:
    os_key: OsKey = rng.choice(("2008r2", "2016", "2019", "2022"))
    edition = rng.choice(tuple(Edition))
    version = rng.choice(VERSIONS if os_key == "2008r2" else VERSIONS[1:])
    domain = rng.random() < 0.4
    hardened: HardenedBy = rng.choice((None, None, "IME_STORE_GROUP", "IME_STORE_USERS"))
    admin: AdminAccount = rng.choice(("builtin", "local", "domain") if domain else ("builtin", "local"))
    return HostSpec(
        os=os_key,
        edition=edition,
        version=version,
        install_path=rng.choice(("default", "default", "plesk")),
        sql=edition is Edition.ENTERPRISE and rng.random() < 0.5,
        hardened_by_meinstaller=hardened,
        wmf51=os_key == "2008r2" and rng.random() < 0.5,
        domain_member=domain,
        uac_filtering=rng.random() < 0.7,
        admin_account=admin,
        wsearch=rng.random() < 0.3,
    )
