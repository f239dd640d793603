"""IIS as MailEnable's web front end: site bindings, the server's TLS protocols, and an HTTP probe.

Nothing listens on a socket: `Iis.probe(url, ...)` answers what a client on the host (an HTTP probe
primitive such as Invoke-WebRequest) would get, from the model's state:

- no binding on the URL's port, or W3SVC stopped -> `ConnectFailure` (no answer);
- an https URL: the handshake needs a TLS version both sides enable (else `SecureChannelFailure`),
  then a client that validates certificates refuses a self-signed one (`TrustFailure`);
- then the application's own check (`webmail_ok` / `webadmin_ok`): 200, or 500 with the reason.

The status names are .NET's WebExceptionStatus members ("TrustFailure: A server certificate could not
be validated", "SecureChannelFailure: An error occurred while establishing a connection using SSL",
"ConnectFailure: The remote service point could not be contacted at the transport level",
https://learn.microsoft.com/dotnet/api/system.net.webexceptionstatus).

Which TLS versions the server offers is read from the SCHANNEL registry (`...\\SCHANNEL\\Protocols\\TLS
1.x\\Server`, value `Enabled`; "Transport Layer Security (TLS) registry settings",
https://learn.microsoft.com/windows-server/security/tls/tls-registry-settings), and Schannel reads those
values when the system starts, so a registry change takes effect at the next `WindowsHost.reboot()`.
"""

from __future__ import annotations

import html
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from winlab.windows.filesystem import FileSystem
from winlab.windows.registry import Registry
from winlab.windows.services import ServiceManager

SCHANNEL_PROTOCOLS_KEY = "HKLM\\SYSTEM\\CurrentControlSet\\Control\\SecurityProviders\\SCHANNEL\\Protocols"
TLS_VERSIONS = ("1.0", "1.1", "1.2", "1.3")
# Server-side protocols enabled when the registry says nothing (assumption, see winlab/README.md):
# 2008 R2 needs registry keys for TLS 1.1/1.2; TLS 1.3 exists from Server 2022 on.
DEFAULT_SERVER_TLS: dict[str, tuple[str, ...]] = {
    "2008r2": ("1.0",),
    "2016": ("1.0", "1.1", "1.2"),
    "2019": ("1.0", "1.1", "1.2"),
    "2022": ("1.0", "1.1", "1.2", "1.3"),
}
# What Windows PowerShell 5.1 on .NET Framework offers unless told otherwise (assumption, [U]).
DEFAULT_CLIENT_TLS = ("1.0", "1.1", "1.2")
WEBMAIL_PATH = "/mewebmail"
WEBADMIN_PATH = "/meadmin"
LOGIN_PAGE = "/Mondo/lang/sys/login.aspx"

# .NET Framework WebException messages for each status (the text Invoke-WebRequest prints).
MESSAGES = {
    "ConnectFailure": "Unable to connect to the remote server",
    "SecureChannelFailure": "The request was aborted: Could not create SSL/TLS secure channel.",
    "TrustFailure": (
        "The underlying connection was closed: Could not establish trust relationship for the SSL/TLS secure channel."
    ),
    "ConnectionClosed": "The underlying connection was closed: The connection was closed unexpectedly.",
    "ProtocolError": "The remote server returned an error: ({status}) {reason}.",
}
REASONS = {404: "Not Found", 500: "Internal Server Error"}


@dataclass(frozen=True)
class Certificate:
    """The certificate bound to an https binding; self-signed when subject and issuer are the same."""

    subject: str
    issuer: str
    thumbprint: str = ""

    @property
    def self_signed(self) -> bool:
        return self.subject == self.issuer


@dataclass(frozen=True)
class SiteBinding:
    """One binding of the Default Web Site (applicationHost.config <binding protocol= bindingInformation=>)."""

    protocol: Literal["http", "https"]
    port: int
    certificate: Certificate | None = None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"protocol": self.protocol, "port": self.port}
        if self.certificate is not None:
            out["certificate"] = {
                "subject": self.certificate.subject,
                "issuer": self.certificate.issuer,
                "self_signed": self.certificate.self_signed,
            }
        return out


@dataclass(frozen=True)
class HttpProbeResult:
    """What one GET would give: `answered` (an HTTP response came back), its status, or the failure."""

    url: str
    answered: bool
    status: int | None = None
    error: str | None = None  # WebExceptionStatus member name
    message: str = ""
    reason: str = ""  # why the model answered this way (for humans, not from Windows)
    tls_version: str | None = None
    certificate: dict[str, object] | None = None

    @property
    def ok(self) -> bool:
        return self.answered and self.status is not None and 200 <= self.status < 400

    def as_dict(self) -> dict[str, object]:
        return {
            "url": self.url,
            "answered": self.answered,
            "status": self.status,
            "error": self.error,
            "message": self.message,
            "reason": self.reason,
            "tls_version": self.tls_version,
            "certificate": self.certificate,
        }


AppCheck = Callable[[], tuple[bool, str]]
SITE_NAME = "Default Web Site"
CONFIG_RELATIVE = "System32\\inetsrv\\config\\applicationHost.config"


@dataclass(frozen=True)
class IpSecurity:
    """One `<location>`'s `<ipSecurity>`: allowUnlisted and its `<add ipAddress subnetMask allowed>` entries.

    Defaults as IIS's schema has them (Microsoft Learn, "IPSecuritySection Class": allowUnlisted true;
    "add Element for ipSecurity": allowed false, subnetMask 255.255.255.255)."""

    allow_unlisted: bool = True
    entries: tuple[tuple[str, str, bool], ...] = ()  # (ipAddress, subnetMask, allowed)

    @classmethod
    def only(cls, networks: tuple[str, ...]) -> IpSecurity:
        """Deny unlisted clients; allow each CIDR (dotted mask for IPv4, prefix length for IPv6) and loopback."""
        entries = []
        for text in (*networks, "127.0.0.1/32"):
            net = ipaddress.ip_network(text, strict=False)
            mask = str(net.netmask) if net.version == 4 else str(net.prefixlen)
            entries.append((str(net.network_address), mask, True))
        return cls(allow_unlisted=False, entries=tuple(dict.fromkeys(entries)))


@dataclass
class Iis:
    """The Default Web Site with MailEnable's applications (/mewebmail, /meadmin)."""

    registry: Registry
    services: ServiceManager
    os_key: str
    machine_name: str
    bindings: list[SiteBinding] = field(default_factory=lambda: [SiteBinding("http", 80)])
    applications: dict[str, AppCheck] = field(default_factory=dict)
    # Protocols Schannel loaded at the last boot (see the module docstring).
    server_tls: tuple[str, ...] = ()
    # IP and Domain Restrictions (role service IIS-IPSecurity; not in a default install) and the <location>s that
    # set <ipSecurity>, by location path ("Default Web Site/meadmin"). Only applicationHost.config shows them:
    # `probe` does not enforce them (winlab/README.md, "IIS").
    ip_restriction_installed: bool = False
    ip_security: dict[str, IpSecurity] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.load_schannel()

    # --- TLS --------------------------------------------------------------------------------------
    def configured_server_tls(self) -> tuple[str, ...]:
        """Server protocols the SCHANNEL registry enables now (Enabled=0 disables, Enabled!=0 enables)."""
        enabled = set(DEFAULT_SERVER_TLS.get(self.os_key, DEFAULT_SERVER_TLS["2019"]))
        for version in TLS_VERSIONS:
            key = f"{SCHANNEL_PROTOCOLS_KEY}\\TLS {version}\\Server"
            if not self.registry.exists(key):
                continue
            value = self.registry.open(key).get("Enabled")
            if isinstance(value, int):
                if value == 0:
                    enabled.discard(version)
                else:
                    enabled.add(version)
        return tuple(v for v in TLS_VERSIONS if v in enabled)

    def load_schannel(self) -> None:
        """What Schannel does at system start: read the protocol settings."""
        self.server_tls = self.configured_server_tls()

    @property
    def min_tls(self) -> str | None:
        return self.server_tls[0] if self.server_tls else None

    def disable_server_tls_below(self, version: str) -> None:
        """Write Enabled=0 / DisabledByDefault=1 for every server protocol older than ``version`` (build time)."""
        for older in TLS_VERSIONS[: TLS_VERSIONS.index(version)]:
            key = self.registry.create_key(f"{SCHANNEL_PROTOCOLS_KEY}\\TLS {older}\\Server")
            key.set_value("Enabled", 0, "REG_DWORD")
            key.set_value("DisabledByDefault", 1, "REG_DWORD")

    # --- applicationHost.config --------------------------------------------------------------------
    def application_host_config(self) -> str:
        """The server's configuration file as IIS keeps it: the parts the product reads, in IIS's own layout.

        The section lock is IIS's default (`<section name="ipSecurity" overrideModeDefault="Deny" />`); the role
        service adds `IpRestrictionModule` to `<globalModules>` and `<modules>` (Microsoft Learn, "IIS on Nano
        Server", Appendix 2). The application pool's password is stored encrypted, as IIS stores it: a reader
        that leaked the file would leak it (the product keeps only the access facts)."""

        def attr(value: object) -> str:
            return html.escape(str(value), quote=True)

        bindings = "".join(
            f'<binding protocol="{b.protocol}" bindingInformation="*:{b.port}:" />' for b in self.bindings
        )
        apps = "".join(
            f'<application path="{attr(path)}" applicationPool="MailEnableAppPool">'
            f'<virtualDirectory path="/" physicalPath="C:\\Program Files (x86)\\Mail Enable\\Bin\\NETWebMail" />'
            "</application>"
            for path in self.applications
        )
        module_global = (
            '<add name="IpRestrictionModule" image="%windir%\\System32\\inetsrv\\iprestr.dll" />'
            if self.ip_restriction_installed
            else ""
        )
        module = '<add name="IpRestrictionModule" lockItem="true" />' if self.ip_restriction_installed else ""
        locations = ""
        for path, rules in self.ip_security.items():
            adds = "".join(
                f'<add ipAddress="{attr(ip)}" subnetMask="{attr(mask)}" allowed="{str(allowed).lower()}" />'
                for ip, mask, allowed in rules.entries
            )
            locations += (
                f'<location path="{attr(path)}"><system.webServer><security>'
                f'<ipSecurity allowUnlisted="{str(rules.allow_unlisted).lower()}">{adds}</ipSecurity>'
                "</security></system.webServer></location>"
            )
        return (
            '\ufeff<?xml version="1.0" encoding="UTF-8"?>\n<configuration>'
            '<configSections><sectionGroup name="system.webServer"><sectionGroup name="security">'
            '<section name="ipSecurity" overrideModeDefault="Deny" />'
            '<section name="requestFiltering" overrideModeDefault="Allow" />'
            "</sectionGroup></sectionGroup></configSections>"
            "<system.applicationHost><applicationPools>"
            '<add name="MailEnableAppPool"><processModel identityType="SpecificUser" userName="IME_ADMIN" '
            'password="[enc:IISWASOnlyCngProvider:d2lubGFiLW5vdC1hLXJlYWwtc2VjcmV0:enc]" /></add>'
            "</applicationPools><sites>"
            f'<site name="{SITE_NAME}" id="1"><application path="/" applicationPool="DefaultAppPool">'
            '<virtualDirectory path="/" physicalPath="%SystemDrive%\\inetpub\\wwwroot" /></application>'
            f"{apps}<bindings>{bindings}</bindings></site>"
            "</sites></system.applicationHost>"
            f"<system.webServer><globalModules>{module_global}</globalModules><modules>{module}</modules>"
            '<security><ipSecurity allowUnlisted="true" /></security></system.webServer>'
            f"{locations}</configuration>"
        )

    def publish(self, fs: FileSystem, system_root: str) -> None:
        """Write applicationHost.config where IIS keeps it (build time, and after a configuration change)."""
        path = f"{system_root}\\{CONFIG_RELATIVE}"
        fs.makedirs(path.rsplit("\\", 1)[0])
        fs.write_text(path, self.application_host_config())

    # --- what a probe or a reader sees ------------------------------------------------------------
    def binding(self, port: int) -> SiteBinding | None:
        return next((b for b in self.bindings if b.port == port), None)

    def preferred_binding(self) -> SiteBinding:
        return next((b for b in self.bindings if b.protocol == "https"), self.bindings[0])

    def url(self, path: str) -> str:
        b = self.preferred_binding()
        default = 443 if b.protocol == "https" else 80
        port = "" if b.port == default else f":{b.port}"
        return f"{b.protocol}://{self.machine_name.lower()}{port}{path}"

    def webmail(self) -> dict[str, object]:
        """The flags an HTTP probe primitive (or the inventory) reads for webmail."""
        b = self.preferred_binding()
        cert = b.certificate
        return {
            "url": self.url(WEBMAIL_PATH + LOGIN_PAGE),
            "scheme": b.protocol,
            "port": b.port,
            "self_signed": bool(cert and cert.self_signed),
            "min_tls": self.min_tls if b.protocol == "https" else None,
            "tls_versions": list(self.server_tls) if b.protocol == "https" else [],
        }

    def state(self) -> dict[str, object]:
        return {"bindings": [b.as_dict() for b in self.bindings], "server_tls": list(self.server_tls)}

    def probe(
        self,
        url: str,
        *,
        validate_certificate: bool = True,
        client_tls: tuple[str, ...] = DEFAULT_CLIENT_TLS,
    ) -> HttpProbeResult:
        """GET ``url`` from the host itself. ``validate_certificate=False`` is -SkipCertificateCheck.

        ``client_tls`` are the versions the client offers, e.g. ("1.0",) for .NET Framework's old default.
        The host part of the URL is not resolved (any name reaches this host).
        """
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if scheme == "https" else 80)
        binding = self.binding(port)
        w3svc = self.services.get("W3SVC") if self.services.exists("W3SVC") else None
        if binding is None or (w3svc is not None and not w3svc.running):
            why = "IIS (W3SVC) is stopped" if binding is not None else f"nothing is bound to port {port}"
            return HttpProbeResult(url, False, error="ConnectFailure", message=MESSAGES["ConnectFailure"], reason=why)
        if binding.protocol != scheme:
            # A TLS client hello to a plain-HTTP binding, or plain HTTP to a TLS binding ([U]).
            error = "SecureChannelFailure" if scheme == "https" else "ConnectionClosed"
            why = f"port {port} is bound for {binding.protocol}"
            return HttpProbeResult(url, False, error=error, message=MESSAGES[error], reason=why)
        tls_version = None
        cert_info: dict[str, object] | None = None
        if scheme == "https":
            common = [v for v in TLS_VERSIONS if v in self.server_tls and v in client_tls]
            if not common:
                why = f"no common TLS version (server {', '.join(self.server_tls)}; client {', '.join(client_tls)})"
                return HttpProbeResult(
                    url, False, error="SecureChannelFailure", message=MESSAGES["SecureChannelFailure"], reason=why
                )
            tls_version = common[-1]
            cert = binding.certificate
            if cert is not None:
                cert_info = {"subject": cert.subject, "issuer": cert.issuer, "self_signed": cert.self_signed}
            if cert is None:
                return HttpProbeResult(
                    url, False, error="SecureChannelFailure", message=MESSAGES["SecureChannelFailure"],
                    reason="no certificate bound", tls_version=tls_version,
                )  # fmt: skip
            if validate_certificate and cert.self_signed:
                return HttpProbeResult(
                    url, False, error="TrustFailure", message=MESSAGES["TrustFailure"],
                    reason=f"self-signed certificate {cert.subject}", tls_version=tls_version,
                    certificate=cert_info,
                )  # fmt: skip
        path = parts.path or "/"
        app = next(
            (check for prefix, check in self.applications.items() if path.lower().startswith(prefix.lower())), None
        )
        if app is None:
            return self._status(url, 404, "no application at this path", tls_version, cert_info)
        ok, why = app()
        return self._status(url, 200 if ok else 500, why, tls_version, cert_info)

    @staticmethod
    def _status(
        url: str, status: int, why: str, tls_version: str | None, cert: dict[str, object] | None
    ) -> HttpProbeResult:
        error = None if status < 400 else "ProtocolError"
        message = "" if error is None else MESSAGES["ProtocolError"].format(status=status, reason=REASONS[status])
        return HttpProbeResult(url, True, status, error, message, why, tls_version, cert)
