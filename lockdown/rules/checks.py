"""Judges of the verify-only checks beyond the 2005 guide (issue 14): registry values, a key's exclusive ACL,
the worker's SMTP probe and the MailEnable version against the imported advisories.

Like the rest of `evaluate`, each judge decides from raw observed state only; what a host or an SMTP server
says is data (capped and validated before it gets here), never a verdict.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from datetime import datetime, timedelta

from pydantic import JsonValue

from lockdown.rules.advisories import advisories_affecting
from lockdown.rules.observed import ObservedItem
from lockdown.rules.plan import PlanItem
from lockdown.rules.vocabulary import AceFlag, AceType, RuleStatus, SmtpCheck, ValueCheck

Judgement = tuple[RuleStatus, str, str, dict[str, JsonValue]]
"""(status, reason, observed text, observed evidence): what `evaluate` turns into a Verdict."""

# Well-known SIDs named in reasons (Microsoft Learn, "Well-known SIDs").
_SID_NAMES = {
    "S-1-1-0": "Everyone",
    "S-1-5-11": "Authenticated Users",
    "S-1-5-32-545": "BUILTIN\\Users",
    "S-1-5-32-546": "BUILTIN\\Guests",
    "S-1-5-32-547": "BUILTIN\\Power Users",
    "S-1-15-2-1": "ALL APPLICATION PACKAGES",
    "S-1-15-2-2": "ALL RESTRICTED APPLICATION PACKAGES",
    "S-1-5-4": "INTERACTIVE",
    "S-1-5-2": "NETWORK",
}


def _lookup(values: dict[str, int | str | list[str]], name: str) -> int | str | list[str] | None:
    # Registry value names are case-insensitive (Microsoft Learn, "Registry Element Size Limits").
    folded = name.casefold()
    return next((v for k, v in values.items() if k.casefold() == folded), None)


def judge_registry_value(item: PlanItem, obs: ObservedItem) -> Judgement:
    """`registry_value`: the value read (or the documented default when it is absent) against the check."""
    values = obs.values or {}
    observed: dict[str, JsonValue] = {"key_exists": bool(obs.exists), "value_name": item.value_name}
    if item.value_check is ValueCheck.KEY_HAS_VALUES:
        names = sorted(k for k, v in values.items() if v not in ("", [], None))
        observed["value_names"] = list(names)
        if not obs.exists:
            return RuleStatus.DRIFT, "the key does not exist", "key absent", observed
        if names:
            return RuleStatus.COMPLIANT, f"the key holds {len(names)} value(s)", f"{len(names)} value(s)", observed
        return RuleStatus.DRIFT, "the key holds no value", "no values", observed
    assert item.value_name is not None  # the rule validator demands it for equals and range
    value = _lookup(values, item.value_name) if obs.exists else None
    observed["value"] = list(value) if isinstance(value, list) else value
    defaulted = value is None
    if defaulted:
        if item.value_when_absent is None:
            where = "the value is not set" if obs.exists else "the key does not exist"
            return RuleStatus.DRIFT, f"{where}, and nothing but an explicit value meets the rule", "not set", observed
        value = item.value_when_absent
        observed["default"] = value
    shown = f"{value} (not set: the default)" if defaulted else str(value)
    if item.value_check is ValueCheck.EQUALS:
        if value == item.value_equals:
            return RuleStatus.COMPLIANT, f"{item.value_name} is {item.value_equals}", shown, observed
        return RuleStatus.DRIFT, f"{item.value_name} is {shown}, not {item.value_equals}", shown, observed
    if not isinstance(value, int):
        return RuleStatus.DRIFT, f"{item.value_name} is not a number: {shown}", shown, observed
    low, high = item.value_minimum, item.value_maximum
    if (low is not None and value < low) or (high is not None and value > high):
        parts = [f"at least {low}" if low is not None else "", f"at most {high}" if high is not None else ""]
        bounds = " and ".join(text for text in parts if text)
        return RuleStatus.DRIFT, f"{item.value_name} is {shown}; it must be {bounds}", shown, observed
    return RuleStatus.COMPLIANT, f"{item.value_name} is {shown}, within the bounds", shown, observed


def judge_acl_only(item: PlanItem, obs: ObservedItem) -> Judgement:
    """`registry_acl_only`: every Allow ACE that grants access on the key itself belongs to an allowed SID.

    Inherit-only ACEs (CREATOR OWNER's on HKLM\\SOFTWARE) grant nothing on the key itself and are left out;
    Deny ACEs only take access away. An allowed name that does not resolve allows nobody.
    """
    if obs.exists is False:
        return RuleStatus.NOT_APPLICABLE, "the key does not exist on this host", "does not exist", {"exists": False}
    if obs.dacl is None:
        return RuleStatus.ERROR, "the observation has no DACL", "no DACL reported", {}
    allowed = set(item.allowed_sids) | set(obs.allowed_sids)
    offenders = sorted(
        {
            ace.sid
            for ace in obs.dacl
            if ace.type is AceType.ALLOW and ace.mask and AceFlag.INHERIT_ONLY not in ace.flags
        }
        - allowed
    )
    observed: dict[str, JsonValue] = {
        "exists": True,
        "allowed_sids": list(sorted(allowed)),
        "other_sids": list(offenders),
        "protected": obs.protected,
    }
    if not offenders:
        return RuleStatus.COMPLIANT, "only the allowed principals have access", "allowed principals only", observed
    # A known SID by its name alone (the pages name SIDs in text again: a SID beside it read "account with RID 1").
    names = ", ".join(_SID_NAMES.get(s, s) for s in offenders)
    return RuleStatus.DRIFT, f"also accessible to {names}", f"{len(offenders)} other principal(s)", observed


def _when(value: JsonValue) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _reply(value: JsonValue) -> tuple[int, str] | None:
    """A probe's SMTP reply, {"code": 550, "text": "..."}; anything else is no reply."""
    if isinstance(value, dict) and isinstance(value.get("code"), int) and not isinstance(value.get("code"), bool):
        code = value["code"]
        assert isinstance(code, int)
        return code, str(value.get("text") or "")[:300]
    return None


def judge_smtp(item: PlanItem, obs: ObservedItem, now: datetime) -> Judgement:
    """`smtp_probe`: the worker's probe of the SMTP port (remote.mailprobe.SmtpProbe.to_evidence())."""
    probe = obs.probe or {}
    observed: dict[str, JsonValue] = {"banner": probe.get("banner")}
    if not probe.get("connected"):
        error = str(probe.get("error") or "no answer")[:500]
        return RuleStatus.ERROR, f"the SMTP port could not be probed: {error}", "not reached", {"error": error}
    if item.smtp_check is SmtpCheck.RELAY_REFUSED:
        mail, rcpt = _reply(probe.get("mail_reply")), _reply(probe.get("relay_reply"))
        if rcpt is None and mail is not None and mail[0] >= 400:
            observed["mail_reply"] = f"{mail[0]} {mail[1]}"
            return RuleStatus.COMPLIANT, f"the sender was refused: {mail[0]} {mail[1]}", f"refused: {mail[0]}", observed
        if rcpt is None:
            error = str(probe.get("error") or "no reply to RCPT TO")[:500]
            return RuleStatus.ERROR, f"the relay probe did not finish: {error}", "no RCPT TO reply", observed
        code, text = rcpt
        observed["rcpt_reply"] = f"{code} {text}"
        if 200 <= code < 300:
            return (
                RuleStatus.DRIFT,
                f"an unauthenticated RCPT TO for an outside domain was accepted ({code} {text}): an open relay",
                f"accepted: {code}",
                observed,
            )
        return RuleStatus.COMPLIANT, f"refused: {code} {text}", f"refused: {code}", observed
    if item.smtp_check is SmtpCheck.NO_AUTH_BEFORE_STARTTLS:
        raw = probe.get("auth_before_tls")
        mechanisms = [str(m)[:40] for m in raw][:20] if isinstance(raw, list) else []
        observed["auth_before_tls"] = list(mechanisms)
        observed["starttls_offered"] = bool(probe.get("starttls_offered"))
        if mechanisms:
            return (
                RuleStatus.DRIFT,
                f"AUTH {' '.join(mechanisms)} is offered before STARTTLS: passwords can cross the network in clear",
                "AUTH before TLS",
                observed,
            )
        return RuleStatus.COMPLIANT, "no AUTH is offered before STARTTLS", "no AUTH before TLS", observed
    return _judge_certificate(item, probe, now, observed)


def certificate_names_host(dns_names: Iterable[str], ip_addresses: Iterable[str], host: str) -> bool:
    """Whether a certificate with these subjectAltName entries is issued to `host` (a DNS name or an IP address).

    RFC 6125 §6.4: an IP address must equal an iPAddress entry; a name must equal a dNSName entry,
    case-insensitively, where a `*` may stand for the whole left-most label only (`*.example.com`
    names `mail.example.com`, not `example.com` nor `a.b.example.com`). The subject CN is not
    consulted (§6.4.4: not when subjectAltName has DNS names; CAs put every name there).
    """
    host = host.strip().strip("[]").rstrip(".").lower()
    try:
        wanted_ip = ipaddress.ip_address(host)
    except ValueError:
        wanted_ip = None
    if wanted_ip is not None:
        return any(_same_ip(wanted_ip, entry) for entry in ip_addresses)
    for name in dns_names:
        name = name.rstrip(".").lower()
        if name == host:
            return True
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
            return True
    return False


def _same_ip(wanted: ipaddress.IPv4Address | ipaddress.IPv6Address, entry: str) -> bool:
    try:
        return ipaddress.ip_address(entry) == wanted
    except ValueError:
        return False


# RFC 5321 §4.2 / §4.3.1: the greeting is "220" SP (Domain / address-literal) [SP textstring]; MailEnable's is
# "220 mail.example.com ESMTP MailEnable Service, Version: ...". The name is the one the server calls itself.
_GREETING = re.compile(r"^220[ -]\[?([A-Za-z0-9][A-Za-z0-9.:-]{0,252})\]?(?:\s|$)")


def greeting_name(banner: object) -> str | None:
    """The domain (or address literal) the SMTP greeting announces, or None when it names none."""
    match = _GREETING.match(str(banner or ""))
    return match.group(1).lower().rstrip(".") if match else None


def _presented_certificate(
    probe: dict[str, JsonValue], observed: dict[str, JsonValue]
) -> Judgement | dict[str, JsonValue]:
    """The certificate presented after STARTTLS (its evidence put in `observed`), or the drift that there is none."""
    if not probe.get("starttls_offered"):
        return RuleStatus.DRIFT, "STARTTLS is not offered on the SMTP port", "no STARTTLS", observed
    if not probe.get("tls_established"):
        error = str(probe.get("tls_error") or "handshake failed")[:300]
        return RuleStatus.DRIFT, f"STARTTLS failed: {error}", "TLS failed", observed
    cert = probe.get("certificate")
    if not isinstance(cert, dict):
        return RuleStatus.DRIFT, "no certificate was presented after STARTTLS", "no certificate", observed
    observed.update(
        {
            "subject": str(cert.get("subject") or "")[:300],
            "issuer": str(cert.get("issuer") or "")[:300],
            "not_after": cert.get("not_after"),
            "sha256": str(cert.get("sha256") or "")[:64],
            "self_signed": bool(cert.get("self_signed")),
            "tls_version": probe.get("tls_version"),
        }
    )
    return cert


def _names(value: JsonValue) -> list[str]:
    return [str(v)[:255] for v in value][:100] if isinstance(value, list) else []


def _judge_certificate_name(cert: dict[str, JsonValue], banner: object, observed: dict[str, JsonValue]) -> Judgement:
    dns_names, ip_addresses = _names(cert.get("dns_names")), _names(cert.get("ip_addresses"))
    observed["dns_names"] = list(dns_names)
    name = greeting_name(banner)
    observed["greeting_name"] = name
    if name is None:
        return (
            RuleStatus.ERROR,
            "the SMTP greeting names no host, so the certificate's name cannot be judged",
            ("no name in greeting"),
            observed,
        )
    if certificate_names_host(dns_names, ip_addresses, name):
        return (
            RuleStatus.COMPLIANT,
            f"the certificate is issued to {name}, the name the server announces",
            (f"names {name}"),
            observed,
        )
    listed = ", ".join(dns_names + ip_addresses)[:300] or "no subjectAltName entry"
    return (
        RuleStatus.DRIFT,
        f"the certificate is not issued to {name}, the name the server announces (it names {listed}): "
        "clients that check the name refuse it",
        f"not issued to {name}",
        observed,
    )


def _judge_certificate(
    item: PlanItem, probe: dict[str, JsonValue], now: datetime, observed: dict[str, JsonValue]
) -> Judgement:
    cert = _presented_certificate(probe, observed)
    if isinstance(cert, tuple):
        return cert
    if item.smtp_check is SmtpCheck.CERTIFICATE_NAMES_HOST:
        return _judge_certificate_name(cert, probe.get("banner"), observed)
    not_after, not_before = _when(cert.get("not_after")), _when(cert.get("not_before"))
    if not_after is None or not_before is None:
        return RuleStatus.ERROR, "the certificate's validity dates could not be read", "unreadable dates", observed
    days = item.min_days_valid or 0
    text = f"valid until {not_after.date().isoformat()}"
    if not_before > now:
        return RuleStatus.DRIFT, f"the certificate is not valid before {not_before.isoformat()}", text, observed
    if not_after <= now:
        return RuleStatus.DRIFT, f"the certificate expired on {not_after.date().isoformat()}", text, observed
    if not_after <= now + timedelta(days=days):
        left = (not_after - now).days
        return RuleStatus.DRIFT, f"the certificate expires in {left} day(s), within {days}", text, observed
    return RuleStatus.COMPLIANT, f"the certificate is valid for more than {days} days", text, observed


def judge_version(item: PlanItem, obs: ObservedItem) -> Judgement:
    """`mailenable_version`: no advisory of the imported file affects the installed version and edition."""
    if obs.exists is False:
        return RuleStatus.NOT_APPLICABLE, "MailEnable is not installed", "not installed", {"exists": False}
    version, edition = obs.mailenable_version, obs.mailenable_edition
    observed: dict[str, JsonValue] = {"version": version, "edition": edition}
    if not item.advisories:
        return RuleStatus.NEEDS_INPUT, "no advisory file is imported: import one", f"{edition} {version}", observed
    verdict = advisories_affecting(version, edition, item.advisories)
    if verdict.unknown:
        return RuleStatus.ERROR, verdict.unknown, f"{edition} {version}", observed
    observed["advisories"] = [
        {"id": a.id, "cves": list(a.cves), "severity": a.severity, "title": a.title} for a in verdict.affected
    ]
    observed["minimum_fixed"] = verdict.minimum_fixed
    observed["premium_assumed"] = list(verdict.premium_assumed)
    shown = f"MailEnable {edition} {version}"
    if verdict.affected:
        certain = [a for a in verdict.affected if a.id not in verdict.premium_assumed]
        possible = [a for a in verdict.affected if a.id in verdict.premium_assumed]
        parts = []
        if certain:
            parts.append(f"{shown} is affected by {', '.join(c for a in certain for c in a.cves)}")
        if possible:
            # The registry says "Enterprise" for Enterprise Premium too (lockdown.rules.advisories).
            cves = ", ".join(c for a in possible for c in a.cves)
            lead = "it" if certain else shown
            parts.append(
                f"{lead} is possibly affected by {cves}, if it is Enterprise Premium (its registry cannot tell)"
            )
        fixed = (
            f"the minimum fixed build is {verdict.minimum_fixed}"
            if verdict.minimum_fixed
            else "no fixed build is published for the newest of them"
        )
        return RuleStatus.DRIFT, f"{'; '.join(parts)}; {fixed}", shown, observed
    return RuleStatus.COMPLIANT, f"no imported advisory affects {shown}", shown, observed


def _networks(texts: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    out = []
    for text in texts:
        try:
            out.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            continue
    return out


def _inside(text: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    """Whether an allowed range lies wholly inside a management network, or is the host itself (loopback)."""
    try:
        allowed = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    if allowed.is_loopback:
        return True
    return any(allowed.version == n.version and allowed.subnet_of(n) for n in networks)  # type: ignore[arg-type]


def _listed(values: JsonValue, limit: int = 5) -> list[str]:
    return [str(v)[:120] for v in values][:200] if isinstance(values, list) else []


def _location_problems(
    loc: dict[str, JsonValue], networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> list[str]:
    where = str(loc.get("location") or "?")[:200]
    problems = []
    if not loc.get("module_enabled"):
        problems.append(f"{where}: IpRestrictionModule is not in its modules, so no IP restriction applies")
    if loc.get("delegated"):
        problems.append(f"{where}: ipSecurity is unlocked there, so the application's web.config may loosen it")
    if loc.get("allow_unlisted", True):
        problems.append(f"{where}: every address not listed may connect (allowUnlisted is true)")
    outside = [n for n in _listed(loc.get("allowed")) if not _inside(n, networks)]
    if outside:
        problems.append(f"{where}: allows {', '.join(outside[:5])} outside the management networks")
    domains = _listed(loc.get("domains_allowed"))
    if domains:
        problems.append(f"{where}: allows by host name ({', '.join(domains[:5])}): reverse DNS decides who that is")
    unreadable = _listed(loc.get("unreadable"))
    if unreadable:
        problems.append(f"{where}: entries that cannot be read as addresses: {', '.join(unreadable[:5])}")
    return problems


def judge_web_access(item: PlanItem, obs: ObservedItem) -> Judgement:
    """`iis_ip_restriction`: only the management networks (and the host itself) may reach the application."""
    app = item.iis_application or "?"
    if obs.exists is False:
        return (
            RuleStatus.NOT_APPLICABLE,
            "IIS is not installed (no applicationHost.config)",
            "no IIS",
            {"exists": False},
        )
    access = obs.web_access or {}
    raw_apps = access.get("applications")
    apps = [a for a in raw_apps if isinstance(a, dict)] if isinstance(raw_apps, list) else []
    observed: dict[str, JsonValue] = {
        "module_installed": bool(access.get("module_installed")),
        "sites": [str(a.get("site"))[:255] for a in apps],
    }
    if not apps:
        return RuleStatus.NOT_APPLICABLE, f"no IIS site has the application {app}", "not in IIS", observed
    networks = _networks(item.allowed_networks)
    problems: list[str] = []
    installed = bool(access.get("module_installed"))
    if not installed:  # then nothing below applies: one cause, said once
        problems.append("the IP and Domain Restrictions role service is not installed: IIS applies no IP restriction")
    allowed: list[str] = []
    for entry in apps:
        raw_locations = entry.get("locations")
        for loc in raw_locations if isinstance(raw_locations, list) else []:
            if isinstance(loc, dict):
                if installed:
                    problems.extend(_location_problems(loc, networks))
                allowed.extend(n for n in _listed(loc.get("allowed")) if n not in allowed)
    observed["allowed"] = list(allowed[:50])
    if problems:
        observed["problems"] = list(problems[:20])
        reason = f"{app} can be reached from outside the management networks: " + "; ".join(problems[:6])
        return RuleStatus.DRIFT, reason[:2000], "reachable from outside", observed
    who = ", ".join(allowed[:8]) or "no address"
    return RuleStatus.COMPLIANT, f"IIS lets only {who} reach {app}", f"only {who}"[:200], observed
