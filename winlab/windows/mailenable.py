"""MailEnable as installed on a host: layout, registry, accounts, services, and its behaviour.

Behaviour comes from the model: the MTA moves queued messages only while MEMTAS runs and its
token may move the files; webmail/web admin answer only while IME_USER can read the web folder
and IME_ADMIN keeps full control of the MailEnable folders (both must also be able to log on).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from winlab.windows import security as sec
from winlab.windows import sids
from winlab.windows.accounts import UF_DONT_EXPIRE_PASSWD, UF_PASSWD_CANT_CHANGE, Accounts
from winlab.windows.auth import Authority
from winlab.windows.context import HostContext
from winlab.windows.errors import Win32Error
from winlab.windows.filesystem import SYSTEM32, SYSWOW64, FileSystem
from winlab.windows.lsa import Lsa
from winlab.windows.registry import Registry
from winlab.windows.services import Service, ServiceManager, ServiceNeeds
from winlab.windows.sql import DatabaseUser, SqlServer
from winlab.windows.tokens import LogonType, Token

A, D = sec.allow, sec.deny
F = sec.AceFlags
OICI = F.OI | F.CI
MTA_POLL_SECONDS = 10.0


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split())


PROGRAM_FILES_X86 = "C:\\Program Files (x86)"
DEFAULT_DIR = f"{PROGRAM_FILES_X86}\\Mail Enable"
PLESK_DIR = f"{PROGRAM_FILES_X86}\\Plesk\\Mail Servers\\Mail Enable"
REGISTRY_KEY = "HKLM\\SOFTWARE\\Mail Enable\\Mail Enable"  # open through the 32-bit view
DATABASE = "MAILENABLE"
SQL_SERVICE_PERMISSIONS = {"INSERT", "UPDATE", "DELETE", "EXECUTE"}
# DLLs every MailEnable service process loads at start (from SysWOW64 for Bin, System32 for Bin64).
LOADED_DLLS = (
    "ntdll.dll", "kernel32.dll", "advapi32.dll", "msvcrt.dll", "ole32.dll", "oleaut32.dll", "ws2_32.dll",
    "wsock32.dll", "netapi32.dll", "dnsapi.dll", "iphlpapi.dll", "secur32.dll", "userenv.dll", "activeds.dll",
    "odbc32.dll",
)  # fmt: skip


class Edition(StrEnum):
    STANDARD = "Standard"
    PROFESSIONAL = "Professional"
    ENTERPRISE = "Enterprise"


@dataclass(frozen=True)
class ServiceDef:
    """A MailEnable service: short name, display name, program, folders it writes (relative)."""

    name: str
    display_name: str
    exe: str
    writes: tuple[str, ...]
    hardened: bool


SERVICE_DEFS = (
    ServiceDef("MEMTAS", "MailEnable Mail Transfer Agent", "MEMTAS.exe",
               ("Queues\\SMTP\\Inbound\\Messages", "Queues\\SMTP\\Outgoing\\Messages", "Logging\\MTA", "@store",
                "Bad Mail"), True),
    ServiceDef("MESMTPCS", "MailEnable SMTP Connector", "MESMTPC.exe",
               ("Queues\\SMTP\\Inbound\\Messages", "Queues\\SMTP\\Outgoing\\Messages", "Logging\\SMTP", "Bad Mail"),
               True),
    ServiceDef("MEPOPS", "MailEnable POP Service", "MEPOPS.exe", ("@store", "Logging\\POP"), True),
    ServiceDef("MEIMAPS", "MailEnable IMAP Service", "MEIMAPS.exe", ("@store", "Logging\\IMAP"), True),
    ServiceDef("MELCS", "MailEnable List Connector", "MELCS.exe",
               ("Queues\\SMTP\\Inbound\\Messages", "Logging\\LS"), False),
    ServiceDef("MEPOCS", "MailEnable Post Office Connector", "MEPOCS.exe",
               ("Queues\\SMTP\\Inbound\\Messages", "@store"), False),
    ServiceDef("MEPOPCS", "MailEnable POP Retrieval Connector", "MEPOPC.exe",
               ("Queues\\SMTP\\Inbound\\Messages", "Logging\\SMTP"), False),
)  # fmt: skip
HARDENED_SERVICES = tuple(d.name for d in SERVICE_DEFS if d.hardened)
# "the SMTP, POP, and IMAP services will run under the identity of IME_SYSTEM. Other system services and
# agents will continue to run under the LOCALSYSTEM account." (the seed guide's prose; see mailenable-facts.md)
IME_SYSTEM_PROTOCOL_SERVICES = ("MESMTPCS", "MEPOPS", "MEIMAPS")

FOLDERS = (
    "Bin", "Config", "Config\\Postoffices", "Postoffices", "Queues", "Queues\\SMTP", "Queues\\SMTP\\Inbound",
    "Queues\\SMTP\\Inbound\\Messages", "Queues\\SMTP\\Outgoing", "Queues\\SMTP\\Outgoing\\Messages", "Logging",
    "Logging\\SMTP", "Logging\\POP", "Logging\\IMAP", "Logging\\MTA", "Logging\\LS", "Logging\\SF", "Bad Mail",
    "Backup", "Dictionaries",
)  # fmt: skip


@dataclass
class MailEnableInstall:
    """Where and what MailEnable is on one host (what discovery reads from the registry)."""

    edition: Edition
    version: str
    program_dir: str
    sql: bool = False
    postoffices: tuple[str, ...] = ("example.com", "example.net")
    passwords: dict[str, str] = field(default_factory=dict)
    # Security settings beyond the 2005 guide (standards-and-advisories.md §1.2); the defaults are a fresh install's.
    abuse_threshold: int | None = None  # Security\Abuse Instance Threshold; None = not written (default 10, ME020610)
    password_encryption: bool = False  # an encryption key under Providers\Authentication (ME020638)
    auth_key_restricted: bool = False  # Providers\Authentication's DACL protected: SYSTEM, Administrators only

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def bin_dir(self) -> str:
        return f"{self.program_dir}\\Bin"

    @property
    def bin64_dir(self) -> str | None:
        return f"{self.program_dir}\\Bin64" if self.major >= 10 else None

    @property
    def service_bin(self) -> str:
        return self.bin64_dir or self.bin_dir

    @property
    def config_dir(self) -> str:
        return f"{self.program_dir}\\Config"

    @property
    def mail_root(self) -> str:
        return f"{self.program_dir}\\Postoffices"

    @property
    def webmail_dir(self) -> str:
        return f"{self.bin_dir}\\NETWebMail" if self.major >= 9 else f"{self.bin_dir}\\WEBMAIL"

    @property
    def webadmin_dir(self) -> str:
        return f"{self.bin_dir}\\NETWebAdmin" if self.major >= 9 else f"{self.bin_dir}\\WEBADMIN"

    @property
    def inbound_queue(self) -> str:
        return f"{self.program_dir}\\Queues\\SMTP\\Inbound\\Messages"

    @property
    def outgoing_queue(self) -> str:
        return f"{self.program_dir}\\Queues\\SMTP\\Outgoing\\Messages"

    def path(self, relative: str) -> str:
        return self.mail_root if relative == "@store" else f"{self.program_dir}\\{relative}"


@dataclass
class Message:
    """A queued message: local ones go to a mailbox, remote ones to the outgoing queue."""

    id: str
    postoffice: str | None
    mailbox: str | None


class MailEnable:
    """The installed product and its runtime behaviour on one host."""

    def __init__(
        self,
        ctx: HostContext,
        install: MailEnableInstall,
        *,
        fs: FileSystem,
        registry: Registry,
        accounts: Accounts,
        authority: Authority,
        lsa: Lsa,
        services: ServiceManager,
        sql: SqlServer | None,
        machine_name: str,
    ) -> None:
        self.ctx = ctx
        self.install = install
        self.fs = fs
        self.registry = registry
        self.accounts = accounts
        self.authority = authority
        self.lsa = lsa
        self.services = services
        self.sql = sql
        self.machine_name = machine_name
        self.messages: dict[str, Message] = {}
        self.delivered = 0
        self.sent = 0
        self.mta_errors: list[str] = []
        self._seq = 0

    # --- installation (build time) --------------------------------------------------------------
    def build(self, rng: random.Random, store_files: int) -> None:
        inst = self.install
        fs = self.fs
        fs.makedirs(inst.program_dir)
        for pw_name in ("IME_ADMIN", "IME_USER"):
            password = _password(rng)
            inst.passwords[pw_name] = password
            self.accounts.create_user(
                pw_name,
                password,
                flags=UF_DONT_EXPIRE_PASSWD | UF_PASSWD_CANT_CHANGE,
                description="MailEnable " + ("administration (COM+) account" if pw_name == "IME_ADMIN" else "web user"),
            )
        ime_admin = self.accounts.user("IME_ADMIN").sid
        ime_user = self.accounts.user("IME_USER").sid
        # COM+ grants its identity "Log on as a batch job" when the identity is configured.
        self.lsa.add_account_rights(ime_admin, ["SeBatchLogonRight"])
        fs.tree.set_security(inst.program_dir, None, dacl=(A(ime_admin, sec.FILE_ALL_ACCESS, OICI),))
        for folder in FOLDERS:
            fs.makedirs(inst.path(folder))
        if inst.bin64_dir:
            fs.makedirs(inst.bin64_dir)
        for web in (inst.webmail_dir, inst.webadmin_dir):
            fs.makedirs(f"{web}\\Mondo\\lang\\sys")
            fs.tree.set_security(web, None, dacl=(A(ime_user, sec.FILE_READ_EXECUTE, OICI),))
            fs.create_file(f"{web}\\Mondo\\lang\\sys\\login.aspx")
            fs.create_file(f"{web}\\web.config")
        for folder in filter(None, (inst.bin_dir, inst.bin64_dir)):
            for d in SERVICE_DEFS:
                fs.create_file(f"{folder}\\{d.exe}")
        for name in ("MEInstaller.exe", "MEAdmin.exe", "MEAIMTA.dll"):
            fs.create_file(f"{inst.bin_dir}\\{name}")
        fs.create_file(f"{inst.config_dir}\\Auth.tab")
        for po in inst.postoffices:
            fs.makedirs(f"{inst.config_dir}\\Postoffices\\{po}")
        self._build_store(rng, store_files)
        self._build_registry()
        self._build_services()

    def mailboxes(self) -> list[tuple[str, str]]:
        return [(po, f"user{i}") for po in self.install.postoffices for i in range(1, 4)]

    def _build_store(self, rng: random.Random, store_files: int) -> None:
        for po, box in self.mailboxes():
            self.fs.makedirs(f"{self.install.mail_root}\\{po}\\MAILROOT\\{box}\\Inbox")
        boxes = self.mailboxes()
        for i in range(store_files):
            po, box = boxes[i % len(boxes)]
            self.fs.create_file(
                f"{self.install.mail_root}\\{po}\\MAILROOT\\{box}\\Inbox\\{rng.getrandbits(64):016X}.MAI"
            )

    def _build_registry(self) -> None:
        inst = self.install
        key = self.registry.create_key(REGISTRY_KEY, view=32)
        key.set_value("Program Directory", inst.program_dir)
        key.set_value("Application Directory", inst.bin_dir)
        key.set_value("Configuration Directory", inst.config_dir)
        key.set_value("Mail Root", inst.mail_root)
        key.set_value("W3C Logging Directory", f"{inst.program_dir}\\Logging")
        key.set_value("Version", inst.version)
        if inst.edition is not Edition.STANDARD:
            key.set_value(f"{inst.edition.value} Version", inst.version)
        smtp = self.registry.create_key(f"{REGISTRY_KEY}\\Connectors\\SMTP", view=32)
        smtp.set_value("Host Name", f"mail.{inst.postoffices[0]}")
        smtp.set_value("Local Domain Name", inst.postoffices[0])
        self.registry.create_key(f"{REGISTRY_KEY}\\Agents\\MTA", view=32).set_value(
            "Maximum Transfer Threads", 8, "REG_DWORD"
        )
        security = self.registry.create_key(f"{REGISTRY_KEY}\\Security", view=32)
        if inst.abuse_threshold is not None:
            # KB ME020610: DWORD, default 0x0a when absent; Maximum Age (seconds) written beside it.
            security.set_value("Abuse Instance Threshold", inst.abuse_threshold, "REG_DWORD")
            security.set_value("Abuse Instance Maximum Age", 3600, "REG_DWORD")
        restricted = (
            (A(sids.LOCAL_SYSTEM, sec.KEY_ALL_ACCESS, F.CI), A(sids.ADMINISTRATORS, sec.KEY_ALL_ACCESS, F.CI))
            if inst.auth_key_restricted
            else ()
        )
        auth = self.registry.create_key(
            f"{REGISTRY_KEY}\\Providers\\Authentication", view=32, explicit=restricted, protected=bool(restricted)
        )
        if inst.password_encryption:
            # ME020638 says the key is exported from this registry key but names no value: this name is the model's
            # own (the product's check only asks whether the key holds a value).
            auth.set_value("Encryption Key", "winlab-model-key", "REG_SZ")

    def _build_services(self) -> None:
        inst = self.install
        dll_dir = SYSTEM32 if inst.bin64_dir else SYSWOW64
        images = tuple(f"{dll_dir}\\{dll}" for dll in LOADED_DLLS)
        reg = self.registry.resolve(REGISTRY_KEY, 32)
        for d in SERVICE_DEFS:
            checks = (self._sql_check,) if inst.sql and self.sql is not None else ()
            self.services.install(
                Service(
                    name=d.name,
                    display_name=d.display_name,
                    binary_path=f"{inst.service_bin}\\{d.exe}",
                    needs=ServiceNeeds(
                        images=images,
                        write_dirs=tuple(inst.path(w) for w in d.writes),
                        read_dirs=(inst.config_dir,),
                        registry_read=(reg,),
                        checks=checks,
                    ),
                )
            )

    def _sql_check(self, token: Token) -> str | None:
        assert self.sql is not None
        return self.sql.has_database_permissions(token, DATABASE, SQL_SERVICE_PERMISSIONS)

    def apply_meinstaller_hardening(
        self, group_name: str, rng: random.Random, *, services: tuple[str, ...] = HARDENED_SERVICES
    ) -> None:
        """What MEInstaller's "Harden the server" left behind (build time, no token checks).

        MEInstaller is a 32-bit program: its [SYSTEM32] and HKLM\\SOFTWARE changes land in SysWOW64
        and WOW6432Node through WOW64 redirection. ``services`` are switched to .\\IME_SYSTEM with
        IME_SYSTEM's generated password stored for each (in the SCM and in ``install.passwords``, nowhere
        else); the rest stay LocalSystem. The default follows the guide's table (MTA, SMTP, POP, IMAP);
        IME_SYSTEM_PROTOCOL_SERVICES follows its prose and ME-10031 (SMTP, POP, IMAP; the MTA stays LocalSystem).
        """
        inst = self.install
        password = _password(rng)
        inst.passwords["IME_SYSTEM"] = password
        user = self.accounts.create_user(
            "IME_SYSTEM", password, flags=UF_DONT_EXPIRE_PASSWD | UF_PASSWD_CANT_CHANGE, description="MailEnable"
        )
        group = self.accounts.create_group(group_name, description="MailEnable store users")
        self.accounts.add_member(group_name, user.sid)
        self.lsa.add_account_rights(user.sid, ["SeServiceLogonRight"])
        for name in services:
            self.services.change(name, None, start_name=".\\IME_SYSTEM", password=password)
        tree = self.fs.tree
        tree.add_access_rule(inst.mail_root, A(group.sid, sec.FILE_ALL_ACCESS, OICI), None)
        for rel in ("Queues", "Logging", "Config", "Bad Mail", "Backup"):
            tree.add_access_rule(inst.path(rel), A(user.sid, sec.FILE_ALL_ACCESS, OICI), None)
        tree.add_access_rule(inst.bin_dir, A(user.sid, sec.FILE_READ_EXECUTE, OICI), None)
        for hive in ("HKLM\\SOFTWARE\\Classes", "HKLM\\SOFTWARE\\Microsoft", "HKLM\\SYSTEM"):
            if self.registry.exists(hive, 32):
                self.registry.add_access_rule(hive, A(user.sid, sec.KEY_READ, F.CI), None, view=32)
        self.registry.add_access_rule(
            "HKLM\\SOFTWARE\\Mail Enable", A(user.sid, sec.KEY_ALL_ACCESS, F.CI), None, view=32
        )
        for dll in HARDENING_GRANTS:
            path = self.fs.redirect(f"{SYSTEM32}\\{dll}", wow64=True)
            if self.fs.exists(path):
                tree.add_access_rule(path, A(user.sid, sec.FILE_GENERIC_READ), None)
        for exe in HARDENING_DENIES:
            path = self.fs.redirect(f"{SYSTEM32}\\{exe}", wow64=True)
            if self.fs.exists(path):
                tree.add_access_rule(path, D(user.sid, sec.FILE_READ_EXECUTE), None)
        if self.fs.exists("C:\\Windows\\Registration"):
            tree.add_access_rule("C:\\Windows\\Registration", A(user.sid, sec.FILE_GENERIC_READ, OICI), None)
        if inst.sql and self.sql is not None:
            login = f"{self.machine_name}\\IME_SYSTEM"
            self.sql.add_login(login)
            db = self.sql.databases[DATABASE.lower()]
            db.users[login.lower()] = DatabaseUser(login, user.sid)
            for perm in ("INSERT", "DELETE", "EXECUTE", "UPDATE"):
                db.grants.add((login.lower(), perm))

    # --- runtime --------------------------------------------------------------------------------
    def start_timers(self) -> None:
        self.ctx.schedule(self.ctx.clock.now() + MTA_POLL_SECONDS, "mailenable-mta", self._on_poll)

    def _on_poll(self, _due: float) -> None:
        self.process_queues()
        self.ctx.schedule(self.ctx.clock.now() + MTA_POLL_SECONDS, "mailenable-mta", self._on_poll)

    def enqueue_inbound(self, *, local: bool = True, mailbox: tuple[str, str] | None = None) -> str:
        """A message arrives (what MESMTPCS writes to the inbound queue); returns its id."""
        self._seq += 1
        msg_id = f"{self._seq:08X}.MAI"
        po, box = mailbox or self.mailboxes()[0]
        self.messages[msg_id] = Message(msg_id, po if local else None, box if local else None)
        with self.ctx.quiet():
            self.fs.create_file(f"{self.install.inbound_queue}\\{msg_id}")
        return msg_id

    def queue(self, which: str = "inbound") -> list[str]:
        folder = self.install.inbound_queue if which == "inbound" else self.install.outgoing_queue
        return self.fs.list_dir(folder)

    def process_queues(self) -> int:
        """One MTA pass: move each inbound message (needs MEMTAS running and access); returns moves."""
        self.ctx.run_due()
        mta = self.services.get("MEMTAS")
        if not mta.running or mta.token is None:
            return 0
        moved = 0
        with self.ctx.quiet():
            for name in self.fs.list_dir(self.install.inbound_queue):
                msg = self.messages.get(name) or Message(name, None, None)
                if msg.postoffice and msg.mailbox:
                    target = f"{self.install.mail_root}\\{msg.postoffice}\\MAILROOT\\{msg.mailbox}\\Inbox"
                else:
                    target = self.install.outgoing_queue
                try:
                    self.fs.move(f"{self.install.inbound_queue}\\{name}", target, mta.token)
                except Win32Error as exc:
                    self.mta_errors.append(f"{name}: {exc.message}")
                    continue
                moved += 1
                if msg.postoffice:
                    self.delivered += 1
        return moved

    def mta_ok(self) -> tuple[bool, str]:
        """Whether the MTA would move a test message now (running, and may write both queues and the store)."""
        mta = self.services.get("MEMTAS")
        if not mta.running or mta.token is None:
            return False, f"MEMTAS is {mta.state.value.lower()}" + (f" ({mta.last_reason})" if mta.last_reason else "")
        rw = sec.FILE_ADD_FILE | sec.FILE_DELETE_CHILD | sec.FILE_LIST_DIRECTORY
        for folder in (self.install.inbound_queue, self.install.outgoing_queue):
            if not self.fs.can(folder, mta.token, rw):
                return False, f"MEMTAS cannot move messages in {folder}"
        inbox = f"{self.install.mail_root}\\{self.mailboxes()[0][0]}\\MAILROOT\\{self.mailboxes()[0][1]}\\Inbox"
        if not self.fs.can(inbox, mta.token, sec.FILE_ADD_FILE):
            return False, f"MEMTAS cannot deliver to {inbox}"
        return True, "ok"

    def _web_ok(self, folder: str) -> tuple[bool, str]:
        inst = self.install
        if self.services.exists("W3SVC") and not self.services.get("W3SVC").running:
            return False, "IIS (W3SVC) is stopped"
        try:
            web_token = self.authority.logon("IME_USER", inst.passwords.get("IME_USER", ""), LogonType.NETWORK)
        except Win32Error as exc:
            return False, f"IME_USER cannot log on: {exc.message}"
        for path in (folder, f"{folder}\\Mondo\\lang\\sys\\login.aspx"):
            if not self.fs.can(path, web_token, sec.FILE_READ_EXECUTE):
                return False, f"IME_USER cannot read {path}"
        try:
            admin_token = self.authority.logon("IME_ADMIN", inst.passwords.get("IME_ADMIN", ""), LogonType.BATCH)
        except Win32Error as exc:
            return False, f"IME_ADMIN cannot log on: {exc.message}"
        for path in (inst.program_dir, inst.config_dir, inst.mail_root, f"{inst.program_dir}\\Queues"):
            if not self.fs.can(path, admin_token, sec.FILE_ALL_ACCESS):
                return False, f"IME_ADMIN lost full control of {path}"
        return True, "ok"

    def webmail_ok(self) -> tuple[bool, str]:
        """Whether /mewebmail/Mondo/lang/sys/login.aspx answers."""
        return self._web_ok(self.install.webmail_dir)

    def webadmin_ok(self) -> tuple[bool, str]:
        """Whether /meadmin/Mondo/lang/sys/login.aspx answers."""
        return self._web_ok(self.install.webadmin_dir)

    # --- protocol banners (for the network front end) -------------------------------------------
    def smtp_banner(self, host: str) -> str:
        when = datetime.fromtimestamp(self.ctx.clock.now(), UTC).strftime("%m/%d/%y %H:%M:%S")
        product = "MailEnable Service" if self.install.major >= 3 else "Mail Enable SMTP Service"
        return f"220 {host} ESMTP {product}, Version: {self.install.version}-- ready at {when}"

    @staticmethod
    def pop_banner() -> str:
        return "+OK Welcome to MailEnable POP3 Server"

    @staticmethod
    def imap_banner() -> str:
        return "* OK [CAPABILITY IMAP4rev1 IDLE AUTH=PLAIN] Welcome to MailEnable POP3 Server."

    def state(self) -> dict[str, object]:
        return {
            "edition": self.install.edition.value,
            "version": self.install.version,
            "program_dir": self.install.program_dir,
            "sql": self.install.sql,
        }


HARDENING_GRANTS = _names(
    "ACTIVEDS.DLL ADSLDPC.DLL CLBCATQ.DLL DHCPCSVC.DLL DNSAPI.DLL iphlpapi.dll ICMP.dll INDICDLL.dll IMM32.dll "
    "msafd.dll MSVCP71D.dll MPRAPI.dll mlang.dll MSVCP60.dll msxml3.dll msxml3r.dll netmsg.dll NETAPI32.DLL "
    "NTDSAPI.dll NETRAP.dll ODBC32.dll odbcint.dll odbctrac.dll PSAPI.DLL rpcss.dll RTUTILS.DLL RASAPI32.dll "
    "rasman.dll rnr20.dll rasadhlp.dll Secur32.dll SAMLIB.DLL SETUPAPI.DLL TAPI32.dll USERENV.DLL winrnr.dll "
    "WSOCK32.dll WS2_32.DLL WS2HELP.DLL wshtcpip.dll"
)
HARDENING_DENIES = _names(
    "at.exe cacls.exe command.com cmd.exe cscript.exe debug.exe edlin.exe finger.exe ftp.exe ipconfig.exe "
    "krnl386.exe nbstat.exe net.exe net1.exe netsh.exe posix.exe rcp.exe regedt32.exe regini.exe regsvr32.exe "
    "rexec.exe rsh.exe runas.exe runonce.exe srvmgr.exe sysedit.exe syskey.exe telnet.exe tftp.exe tracert.exe "
    "usrmgr.exe wscript.exe"
)


def _password(rng: random.Random) -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
    core = "".join(rng.choice(alphabet) for _ in range(16))
    return f"{core}!9aZ"
