"""The verify-only checks of the current baseline (issue 14): how each compiles for a host and is judged from what
was observed. End to end against winlab through run_job: tests/integration/jobs/test_current_baseline_checks.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lockdown.rules import compile_plan
from lockdown.rules.advisories import Advisory
from lockdown.rules.builtin import load_baseline_profile, load_builtin_profile
from lockdown.rules.checks import greeting_name
from lockdown.rules.evaluate import evaluate
from lockdown.rules.observed import Ace, ObservedItem
from lockdown.rules.plan import PlanItem
from lockdown.rules.vocabulary import VERIFY_ONLY_TYPES, AceFlag, AceType, RuleStatus, RuleType
from tests.unit.lockdown.factories import IME_SID, facts_2022

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
ABUSE = "registry_value.security.abuse_threshold"
ENCRYPTION = "registry_value.providers.password_encryption"
AUTH_ACL = "registry_acl_only.providers.authentication"
TLS10 = "registry_value.schannel.tls10_server"
RELAY = "smtp_probe.relay_refused"
AUTH_TLS = "smtp_probe.no_auth_before_starttls"
CERT = "smtp_probe.certificate_valid"
CERT_NAME = "smtp_probe.certificate_names_host"
VERSION = "mailenable_version.advisories"
SYSTEM, ADMINS, USERS = "S-1-5-18", "S-1-5-32-544", "S-1-5-32-545"
FULL, READ = 0xF003F, 0x20019

ADVISORY = Advisory.model_validate(
    {
        "id": "cve-2022-42135",
        "title": "Webmail access control",
        "summary": "Authenticated users could write files the IIS user can reach.",
        "cves": ["CVE-2022-42135", "CVE-2022-42136"],
        "severity": "critical",
        "editions": ["Professional", "Enterprise", "Premium"],
        "affected": [{"introduced": "10.0", "fixed": "10.42"}],
        "sources": ["https://pastebin.com/ahLNMf5n"],
    }
)


BASELINE = load_baseline_profile()


def _plan(facts: Any = None, advisories: tuple[Advisory, ...] = (ADVISORY,)) -> Any:
    return compile_plan(BASELINE, facts or facts_2022(), advisories)


def _item(plan: Any, rule_id: str) -> PlanItem:
    return next(i for i in plan.items if i.rule_id == rule_id)


def _judge(rule_id: str, now: datetime = NOW, facts: Any = None, **observed: Any) -> Any:
    plan = _plan(facts)
    item = _item(plan, rule_id)
    obs = ObservedItem(rule_id=rule_id, target=item.target, **observed)
    outcome = next(o for o in evaluate(plan, [obs], [], now) if o.rule_id == rule_id)
    return outcome


def test_the_baseline_is_the_guide_plus_verify_only_checks_each_with_a_remedy_and_controls():
    guide, baseline = load_builtin_profile(), load_baseline_profile()
    assert [r.id for r in baseline.rules[: len(guide.rules)]] == [r.id for r in guide.rules]
    added = baseline.rules[len(guide.rules) :]
    assert {r.id for r in added} >= {ABUSE, ENCRYPTION, AUTH_ACL, TLS10, RELAY, AUTH_TLS, CERT, CERT_NAME, VERSION}
    assert all(RuleType(r.type) in VERIFY_ONLY_TYPES for r in added)
    assert all(r.remedy and r.controls and all(c.source for c in r.controls) for r in added)  # type: ignore[attr-defined]


def test_abuse_detection_is_not_applicable_on_the_standard_edition():
    standard = _item(_plan(facts_2022(mailenable_edition="Standard")), ABUSE)
    assert standard.status is RuleStatus.NOT_APPLICABLE
    assert "Standard" in (standard.reason or "")
    assert "the rule's deviation gives the source" in (standard.reason or "")
    abuse = next(r for r in BASELINE.rules if r.id == ABUSE)
    assert "ME020149" in (abuse.deviation or "")  # where Standard's missing abuse prevention is documented
    assert _item(_plan(facts_2022(mailenable_edition="Professional")), ABUSE).status is None
    # Enterprise may be Premium (the registry does not tell them apart): a Premium-only rule applies there too
    assert _item(_plan(facts_2022(mailenable_edition="Enterprise")), ABUSE).status is None


@pytest.mark.parametrize(
    ("values", "status"),
    [
        ({"Abuse Instance Threshold": 10}, RuleStatus.COMPLIANT),
        ({"abuse instance threshold": 3}, RuleStatus.COMPLIANT),  # value names are case-insensitive
        ({"Abuse Instance Threshold": 11}, RuleStatus.DRIFT),
        ({"Abuse Instance Threshold": 0}, RuleStatus.DRIFT),
        ({"Abuse Instance Threshold": "5"}, RuleStatus.DRIFT),  # a string is not the DWORD MailEnable reads
        ({}, RuleStatus.COMPLIANT),  # absent: MailEnable's documented default, 10
    ],
)
def test_abuse_threshold_must_be_between_1_and_10(values, status):
    outcome = _judge(ABUSE, exists=True, values=values)
    assert outcome.status is status, outcome.reason


def test_an_absent_value_without_a_documented_default_is_drift():
    outcome = _judge(TLS10, exists=False)
    assert outcome.status is RuleStatus.DRIFT
    assert "key does not exist" in outcome.reason
    assert _judge(TLS10, exists=True, values={"Enabled": 0}).status is RuleStatus.COMPLIANT
    assert _judge(TLS10, exists=True, values={"Enabled": 1}).status is RuleStatus.DRIFT
    assert _judge(TLS10, exists=True, values={"DisabledByDefault": 1}).status is RuleStatus.DRIFT


def test_password_encryption_needs_a_value_under_the_authentication_key():
    assert _judge(ENCRYPTION, exists=True, values={"Encryption Key": "x"}).status is RuleStatus.COMPLIANT
    assert _judge(ENCRYPTION, exists=True, values={"Empty": ""}).status is RuleStatus.DRIFT
    assert _judge(ENCRYPTION, exists=True, values={}).status is RuleStatus.DRIFT
    assert _judge(ENCRYPTION, exists=False).status is RuleStatus.DRIFT


def _ace(sid: str, mask: int = FULL, *flags: AceFlag, kind: AceType = AceType.ALLOW, inherited: bool = False) -> Ace:
    return Ace(sid=sid, type=kind, mask=mask, inherited=inherited, flags=list(flags))


def test_the_authentication_key_may_be_opened_only_by_the_allowed_principals():
    item = _item(_plan(facts_2022(ime_system_sid=IME_SID)), AUTH_ACL)
    assert set(item.allowed_sids) == {SYSTEM, ADMINS, IME_SID}
    assert item.allowed_names == ["MAIL01\\IME_ADMIN"]  # resolved on the host
    ok = [_ace(SYSTEM), _ace(ADMINS), _ace(IME_SID, inherited=True), _ace("S-1-3-0", FULL, AceFlag.INHERIT_ONLY)]
    assert (
        _judge(AUTH_ACL, facts=facts_2022(ime_system_sid=IME_SID), exists=True, dacl=ok).status is RuleStatus.COMPLIANT
    )
    leaky = _judge(AUTH_ACL, exists=True, dacl=[*ok, _ace(USERS, READ, inherited=True)])
    assert leaky.status is RuleStatus.DRIFT
    assert "BUILTIN\\Users" in leaky.reason
    assert "S-1-5-32-545" not in leaky.reason  # named, not beside its SID (the pages would name the SID again)
    # a Deny ACE only takes access away; the name IME_ADMIN resolved on the host counts as allowed
    admin_sid = "S-1-5-21-1-2-3-1010"
    denied = _judge(
        AUTH_ACL,
        exists=True,
        dacl=[*ok, _ace(USERS, READ, kind=AceType.DENY), _ace(admin_sid, READ)],
        allowed_sids=[admin_sid],
        facts=facts_2022(ime_system_sid=IME_SID),
    )
    assert denied.status is RuleStatus.COMPLIANT, denied.reason
    assert _judge(AUTH_ACL, exists=False).status is RuleStatus.NOT_APPLICABLE


def _probe(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "connected": True,
        "error": None,
        "banner": "220 mail.example.com ESMTP MailEnable Service, Version: 10.43-- ready",
        "plain_keywords": ["SIZE", "STARTTLS"],
        "auth_before_tls": [],
        "starttls_offered": True,
        "tls_established": True,
        "tls_error": None,
        "tls_version": "TLSv1.2",
        "certificate": {
            "subject": "CN=mail.example.com",
            "issuer": "CN=Example CA",
            "not_before": (NOW - timedelta(days=10)).isoformat(),
            "not_after": (NOW + timedelta(days=90)).isoformat(),
            "dns_names": ["mail.example.com"],
            "sha256": "ab" * 32,
            "self_signed": False,
        },
        "mail_reply": {"code": 250, "text": "OK"},
        "relay_reply": {"code": 503, "text": "This mail server requires authentication"},
    }
    return {**base, **over}


def test_the_relay_probe_fails_an_accepted_outside_recipient():
    assert _judge(RELAY, probe=_probe()).status is RuleStatus.COMPLIANT
    assert _judge(RELAY, probe=_probe(relay_reply={"code": 451, "text": "later"})).status is RuleStatus.COMPLIANT
    refused_sender = _probe(mail_reply={"code": 530, "text": "auth first"}, relay_reply=None)
    assert _judge(RELAY, probe=refused_sender).status is RuleStatus.COMPLIANT
    open_relay = _judge(RELAY, probe=_probe(relay_reply={"code": 250, "text": "OK"}))
    assert open_relay.status is RuleStatus.DRIFT
    assert "open relay" in open_relay.reason
    assert _judge(RELAY, probe=_probe(relay_reply=None, error="timed out")).status is RuleStatus.ERROR
    assert _judge(RELAY, probe={"connected": False, "error": "refused"}).status is RuleStatus.ERROR


def test_auth_offered_before_starttls_is_drift():
    assert _judge(AUTH_TLS, probe=_probe()).status is RuleStatus.COMPLIANT
    plain = _judge(AUTH_TLS, probe=_probe(auth_before_tls=["LOGIN", "PLAIN"]))
    assert plain.status is RuleStatus.DRIFT
    assert "AUTH LOGIN PLAIN" in plain.reason


def _cert(**over: Any) -> dict[str, Any]:
    return {**_probe()["certificate"], **over}


def test_the_certificate_must_last_30_more_days():
    assert _judge(CERT, probe=_probe()).status is RuleStatus.COMPLIANT
    soon = _judge(CERT, probe=_probe(certificate=_cert(not_after=(NOW + timedelta(days=10)).isoformat())))
    assert soon.status is RuleStatus.DRIFT
    assert "expires in 10 day(s)" in soon.reason
    edge = _judge(CERT, probe=_probe(certificate=_cert(not_after=(NOW + timedelta(days=30)).isoformat())))
    assert edge.status is RuleStatus.DRIFT
    later = _judge(CERT, probe=_probe(certificate=_cert(not_after=(NOW + timedelta(days=31)).isoformat())))
    assert later.status is RuleStatus.COMPLIANT
    expired = _judge(CERT, probe=_probe(certificate=_cert(not_after=(NOW - timedelta(days=1)).isoformat())))
    assert expired.status is RuleStatus.DRIFT
    assert "expired" in expired.reason
    future = _judge(CERT, probe=_probe(certificate=_cert(not_before=(NOW + timedelta(days=1)).isoformat())))
    assert future.status is RuleStatus.DRIFT
    assert _judge(CERT, probe=_probe(starttls_offered=False)).status is RuleStatus.DRIFT
    assert _judge(CERT, probe=_probe(tls_established=False, tls_error="handshake")).status is RuleStatus.DRIFT
    assert _judge(CERT, probe=_probe(certificate=None)).status is RuleStatus.DRIFT
    assert _judge(CERT, probe=_probe(certificate=_cert(not_after="soon"))).status is RuleStatus.ERROR


def test_the_certificate_must_be_issued_to_the_name_the_greeting_announces():
    named = _judge(CERT_NAME, probe=_probe())
    assert named.status is RuleStatus.COMPLIANT, named.reason
    assert named.observed["greeting_name"] == "mail.example.com"
    wrong = _judge(CERT_NAME, probe=_probe(certificate=_cert(dns_names=["other.example.net"])))
    assert wrong.status is RuleStatus.DRIFT
    assert "not issued to mail.example.com" in wrong.reason
    assert "other.example.net" in wrong.reason
    wildcard = _judge(CERT_NAME, probe=_probe(certificate=_cert(dns_names=["*.EXAMPLE.com"])))
    assert wildcard.status is RuleStatus.COMPLIANT
    too_deep = _judge(
        CERT_NAME, probe=_probe(banner="220 a.mail.example.com ESMTP", certificate=_cert(dns_names=["*.example.com"]))
    )
    assert too_deep.status is RuleStatus.DRIFT
    # The subject CN is not consulted (RFC 6125 §6.4.4): no subjectAltName entry names nothing.
    no_san = _judge(CERT_NAME, probe=_probe(certificate=_cert(dns_names=[])))
    assert no_san.status is RuleStatus.DRIFT
    assert "no subjectAltName entry" in no_san.reason
    literal = _judge(
        CERT_NAME,
        probe=_probe(banner="220 [10.0.0.5] ESMTP", certificate=_cert(dns_names=[], ip_addresses=["10.0.0.5"])),
    )
    assert literal.status is RuleStatus.COMPLIANT, literal.reason
    assert _judge(CERT_NAME, probe=_probe(banner="554 no service")).status is RuleStatus.ERROR
    # The same preconditions as the validity check: no STARTTLS or no certificate is drift, not a name verdict.
    assert _judge(CERT_NAME, probe=_probe(starttls_offered=False)).reason == "STARTTLS is not offered on the SMTP port"
    assert _judge(CERT_NAME, probe=_probe(certificate=None)).status is RuleStatus.DRIFT


def test_greeting_name_reads_the_domain_of_an_rfc_5321_greeting():
    assert greeting_name("220 Mail.Example.COM. ESMTP MailEnable") == "mail.example.com"
    assert greeting_name("220-mx1.example.net ready") == "mx1.example.net"
    assert greeting_name("220 [192.0.2.7]") == "192.0.2.7"
    assert greeting_name("220") is None
    assert greeting_name("421 mx1.example.net busy") is None
    assert greeting_name("250 mx1.example.net") is None  # only 220 greets
    assert greeting_name("220 mx1.example.net/ready") is None  # the name ends at a space or the line's end
    assert greeting_name(None) is None


def test_the_version_is_judged_against_the_advisories_in_the_plan():
    affected = _judge(VERSION, exists=True, mailenable_edition="Professional", mailenable_version="10.41")
    assert affected.status is RuleStatus.DRIFT
    assert "CVE-2022-42135" in affected.reason
    assert "CVE-2022-42136" in affected.reason
    assert affected.observed["advisories"][0]["id"] == "cve-2022-42135"
    fixed = _judge(VERSION, exists=True, mailenable_edition="Professional", mailenable_version="10.42")
    assert fixed.status is RuleStatus.COMPLIANT
    standard = _judge(VERSION, exists=True, mailenable_edition="Standard", mailenable_version="10.41")
    assert standard.status is RuleStatus.COMPLIANT  # the advisory names no Standard edition
    assert _judge(VERSION, exists=False).status is RuleStatus.NOT_APPLICABLE


def test_without_an_imported_advisory_file_the_version_needs_input():
    plan = _plan(advisories=())
    item = _item(plan, VERSION)
    obs = ObservedItem(
        rule_id=VERSION, target=item.target, exists=True, mailenable_version="10.41", mailenable_edition="Professional"
    )
    outcome = next(o for o in evaluate(plan, [obs], [], NOW) if o.rule_id == VERSION)
    assert outcome.status is RuleStatus.NEEDS_INPUT


def test_smtp_checks_are_not_applicable_without_the_smtp_service():
    facts = facts_2022(services=["MEMTAS", "MEPOPS"])
    assert _item(_plan(facts), RELAY).status is RuleStatus.NOT_APPLICABLE


def test_a_rule_for_premium_only_applies_to_enterprise_hosts_and_not_to_professional_ones():
    from lockdown.rules.vocabulary import Edition

    rule = next(r for r in BASELINE.rules if r.id == ABUSE).model_copy(update={"editions": (Edition.PREMIUM,)})
    premium_only = BASELINE.model_copy(update={"rules": [rule]})
    enterprise = compile_plan(premium_only, facts_2022(mailenable_edition="Enterprise")).items[0]
    assert enterprise.status is None
    professional = compile_plan(premium_only, facts_2022(mailenable_edition="Professional")).items[0]
    assert professional.status is RuleStatus.NOT_APPLICABLE
    unknown = compile_plan(premium_only, facts_2022(mailenable_edition=None)).items[0]
    assert unknown.status is RuleStatus.NOT_APPLICABLE


def test_an_absent_value_is_judged_by_its_documented_default():
    plan = _plan()
    item = _item(plan, TLS10).model_copy(update={"value_when_absent": 1})
    shifted = plan.model_copy(update={"items": [item]})
    obs = ObservedItem(rule_id=TLS10, target=item.target, exists=True, values={})
    outcome = evaluate(shifted, [obs], [], NOW)[0]
    assert outcome.status is RuleStatus.DRIFT
    assert "(not set: the default)" in outcome.reason


PREMIUM_ONLY = Advisory.model_validate(
    {
        "id": "cve-2026-44400",
        "title": "WebAdmin accepts a webmail token",
        "summary": "A low-privileged webmail token is accepted by the webadmin mobile portal.",
        "cves": ["CVE-2026-44400"],
        "severity": "high",
        "editions": ["Premium"],
        "affected": [{"introduced": "10.0", "last_affected": "10.55"}],
        "sources": ["https://www.cve.org/CVERecord?id=CVE-2026-44400"],
    }
)


def _version(edition: str, version: str, advisories: tuple[Advisory, ...]) -> Any:
    plan = _plan(advisories=advisories)
    item = _item(plan, VERSION)
    obs = ObservedItem(
        rule_id=VERSION, target=item.target, exists=True, mailenable_version=version, mailenable_edition=edition
    )
    return next(o for o in evaluate(plan, [obs], [], NOW) if o.rule_id == VERSION)


def test_a_premium_only_advisory_reads_as_possible_on_an_enterprise_host():
    only = _version("Enterprise", "10.43", (PREMIUM_ONLY,))
    assert only.status is RuleStatus.DRIFT
    assert only.reason == (
        "MailEnable Enterprise 10.43 is possibly affected by CVE-2026-44400, if it is Enterprise Premium (its "
        "registry cannot tell); no fixed build is published for the newest of them"
    )
    assert only.observed["premium_assumed"] == ["cve-2026-44400"]
    both = _version("Enterprise", "10.41", (ADVISORY, PREMIUM_ONLY))
    assert both.reason.startswith("MailEnable Enterprise 10.41 is affected by CVE-2022-42135, CVE-2022-42136; it is ")
    assert "possibly affected by CVE-2026-44400" in both.reason
    assert _version("Professional", "10.43", (PREMIUM_ONLY,)).status is RuleStatus.COMPLIANT
    certain = _version("Professional", "10.41", (ADVISORY,))
    assert certain.reason.endswith("; the minimum fixed build is 10.42")
    assert "possibly" not in certain.reason


def test_the_certificate_checks_are_not_applicable_on_standard_which_has_no_ssl():
    standard = _plan(facts_2022(mailenable_edition="Standard"))
    for rule_id in (CERT, CERT_NAME):
        assert _item(standard, rule_id).status is RuleStatus.NOT_APPLICABLE
    assert _item(standard, AUTH_TLS).status is None  # AUTH in clear is still judged there
    assert _item(_plan(facts_2022(mailenable_edition="Professional")), CERT).status is None
