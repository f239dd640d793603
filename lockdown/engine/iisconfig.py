"""Who IIS lets reach one application: the effective `<ipSecurity>` of IIS's applicationHost.config, read in Python.

The agent only reads the file's bytes (`file_read`); everything here is a decision, so it is Python and tested.
What IIS does, with the sources:

- Configuration is inherited down the path `""` (the server) → `Site` → `Site/app` → `Site/app/sub`: the
  top-level `<system.webServer>` and `<location path="...">` elements for each level apply in that order
  (Microsoft Learn, "The Configuration System in IIS 7.0" / "location Element"). Collections merge: `<add>`
  appends, `<remove>` drops the entry with the same key, `<clear/>` empties what was inherited.
- `<ipSecurity allowUnlisted>` defaults to true; an `<add>`'s `allowed` defaults to false and its `subnetMask` to
  255.255.255.255; entries are processed in order, unlisted addresses last (Microsoft Learn,
  "IPSecuritySection Class", "add Element for ipSecurity").
- The IP and Domain Restrictions role service is not installed by default; when it is, `<globalModules>` holds
  `IpRestrictionModule` (iprestr.dll) and `<modules>` adds it (Microsoft Learn, "IIS on Nano Server",
  Appendix 2, "IP and domain restrictions"). Without the module the section is ignored.
- The section is declared `<section name="ipSecurity" overrideModeDefault="Deny" />`, so a web.config cannot
  change it unless a `<location overrideMode="Allow">` (or the legacy `allowOverride="true"`) unlocks it for
  that path; then the application's own web.config may loosen it, and this file no longer tells.

Not followed: shared configuration (redirection.config), a machine-level `<location>` in web.config files,
site bindings and Windows Firewall rules (either could also limit who reaches the site; a restriction made
only there reads as unrestricted here, with the remedy naming IIS).

The file is untrusted input: a document with a DTD is refused (no entity can expand), and every list kept is
capped. The text itself never leaves this module: only the few facts below do (applicationHost.config also
holds application-pool passwords, encrypted).
"""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, Final

MAX_CONFIG_BYTES: Final = 4 * 1024 * 1024
MAX_ENTRIES: Final = 200
MAX_LOCATIONS: Final = 50
MODULE: Final = "IpRestrictionModule"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(ValueError):
    """The file cannot be read as IIS configuration (what it is not, in the message)."""


def parse(data: bytes) -> ET.Element:
    """The document's root element; refused when it declares a DTD (entities) or is not `<configuration>`."""
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError("the configuration file is larger than 4 MiB")
    text = data.decode("utf-8-sig", errors="replace")
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise ConfigError("the configuration file declares a DTD; IIS's own never does")
    try:
        root = ET.fromstring(text)  # noqa: S314 - no DTD (checked above), so no entity expansion
    except ET.ParseError as exc:
        raise ConfigError(f"the configuration file is not well-formed XML: {exc}") from None
    if root.tag != "configuration":
        raise ConfigError(f"the document's root is <{root.tag[:40]}>, not <configuration>")
    return root


def _norm(path: str | None) -> str:
    return (path or "").strip().strip("/").replace("\\", "/").casefold()


def _true(value: str | None, default: bool) -> bool:
    if value is None:
        return default
    return value.strip().casefold() == "true"


def network_of(address: str | None, mask: str | None) -> Network | None:
    """An `<add ipAddress subnetMask>` entry as a network (a mask may be dotted, colon form or a prefix length)."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return None
    width = ip.max_prefixlen
    text = (mask or "").strip()
    if not text:
        return ipaddress.ip_network(f"{ip}/{width}")
    if text.isdigit():
        prefix = int(text)
    else:
        try:
            bits = int(ipaddress.ip_address(text))
        except ValueError:
            return None
        prefix = bin(bits).count("1")
        if bits != ((1 << width) - 1) ^ ((1 << (width - prefix)) - 1):
            return None  # not a contiguous mask
    if not 0 <= prefix <= width:
        return None
    return ipaddress.ip_network(f"{ip}/{prefix}", strict=False)


@dataclass
class _Rules:
    allow_unlisted: bool = True
    entries: list[dict[str, str | None]] = field(default_factory=list)

    def apply(self, element: ET.Element) -> None:
        value = element.get("allowUnlisted")
        if value is not None:
            self.allow_unlisted = value.strip().casefold() == "true"
        for child in element:
            if child.tag == "clear":
                self.entries = []
            elif child.tag in ("add", "remove"):
                entry = {
                    "ip": child.get("ipAddress"),
                    "mask": child.get("subnetMask"),
                    "domain": child.get("domainName"),
                    "allowed": child.get("allowed"),
                }
                key = _entry_key(entry)
                self.entries = [e for e in self.entries if _entry_key(e) != key]
                if child.tag == "add":
                    self.entries.append(entry)


def _entry_key(entry: dict[str, str | None]) -> tuple[str, str, str]:
    ip = (entry.get("ip") or "").strip().casefold()
    mask = (entry.get("mask") or "").strip().casefold() or ("255.255.255.255" if ip else "")
    return ip, mask, (entry.get("domain") or "").strip().casefold()


def _levels(path: str) -> list[str]:
    parts = [p for p in _norm(path).split("/") if p]
    return [""] + ["/".join(parts[: i + 1]) for i in range(len(parts))]


def _sections(root: ET.Element, level: str) -> list[ET.Element]:
    """The `<system.webServer>` elements that configure exactly `level`, in document order."""
    found = []
    if level == "":
        found.extend(root.findall("system.webServer"))
    for location in root.findall("location"):
        if _norm(location.get("path")) in ("." if level == "" else level, level):
            found.extend(location.findall("system.webServer"))
    return found


def _unlocked(root: ET.Element, path: str) -> bool:
    """Whether a web.config at `path` may set ipSecurity (the section's override mode there)."""
    allowed = False
    for section in root.iter("section"):
        if section.get("name") == "ipSecurity":
            allowed = (section.get("overrideModeDefault") or "Allow").strip().casefold() == "allow"
    for level in _levels(path):
        for location in root.findall("location"):
            if _norm(location.get("path")) not in (("", ".") if level == "" else (level,)):
                continue
            mode = (location.get("overrideMode") or "").strip().casefold()
            if mode in ("allow", "deny"):
                allowed = mode == "allow"
            elif location.get("allowOverride") is not None:
                allowed = _true(location.get("allowOverride"), True)
    return allowed


def _module_enabled(root: ET.Element, path: str) -> bool:
    names: list[str] = []
    for level in _levels(path):
        for section in _sections(root, level):
            for modules in section.findall("modules"):
                for child in modules:
                    name = (child.get("name") or "").casefold()
                    if child.tag == "clear":
                        names = []
                    elif child.tag == "remove":
                        names = [n for n in names if n != name]
                    elif child.tag == "add":
                        names.append(name)
    return MODULE.casefold() in names


def effective(root: ET.Element, path: str) -> dict[str, Any]:
    """The ipSecurity IIS applies at `path` ("Site/app/sub"), as plain data."""
    rules = _Rules()
    for level in _levels(path):
        for section in _sections(root, level):
            for element in section.findall("security/ipSecurity"):
                rules.apply(element)
    allowed: list[str] = []
    denied: list[str] = []
    domains: list[str] = []
    unreadable: list[str] = []
    for entry in rules.entries[:MAX_ENTRIES]:
        permit = _true(entry.get("allowed"), False)
        if entry.get("domain") and entry.get("ip"):
            # An entry keyed on both: how IIS combines them is not documented; not read as either.
            unreadable.append(f"{entry.get('ip')} {entry.get('domain')}"[:120])
            continue
        if entry.get("domain"):
            (domains if permit else denied).append(str(entry["domain"])[:255])
            continue
        network = network_of(entry.get("ip"), entry.get("mask"))
        if network is None:
            unreadable.append(f"{entry.get('ip')}/{entry.get('mask')}"[:120])
        else:
            (allowed if permit else denied).append(str(network))
    return {
        "location": path,
        "allow_unlisted": rules.allow_unlisted,
        "allowed": allowed,
        "denied": denied,
        "domains_allowed": domains,
        "unreadable": unreadable,
        "module_enabled": _module_enabled(root, path),
        "delegated": _unlocked(root, path),
    }


def application_access(data: bytes, app_path: str) -> dict[str, Any]:
    """What IIS lets reach the application `app_path` ("/meadmin") in every site that has it.

    {"module_installed": bool, "applications": [{"site", "path", "locations": [effective(...), ...]}]}: one
    effective ipSecurity for the application itself and one for each `<location>` configured below it.
    """
    root = parse(data)
    wanted = _norm(app_path)
    installed = any(
        (add.get("name") or "").casefold() == MODULE.casefold() for add in root.findall(".//globalModules/add")
    )
    apps: list[dict[str, Any]] = []
    for site in root.findall("system.applicationHost/sites/site"):
        name = (site.get("name") or "").strip()
        for app in site.findall("application"):
            if _norm(app.get("path")) != wanted or not name:
                continue
            base = f"{name}/{wanted}"
            below = sorted(
                {
                    _norm(loc.get("path"))
                    for loc in root.findall("location")
                    if _norm(loc.get("path")).startswith(base.casefold() + "/")
                }
            )
            paths = [base, *below][:MAX_LOCATIONS]
            apps.append(
                {"site": name[:255], "path": app.get("path") or "", "locations": [effective(root, p) for p in paths]}
            )
    return {"module_installed": installed, "applications": apps[:20]}
