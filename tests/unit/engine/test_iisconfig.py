"""Who IIS lets reach webadmin, from applicationHost.config (lockdown.engine.iisconfig), and the judgement of it
(lockdown.rules.checks.judge_web_access). End to end against winlab through run_job:
tests/integration/jobs/test_current_baseline_checks.py."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from lockdown.engine import iisconfig, observe
from lockdown.rules import compile_plan
from lockdown.rules.builtin import load_baseline_profile
from lockdown.rules.checks import judge_web_access
from lockdown.rules.observed import ObservedItem
from lockdown.rules.vocabulary import RuleStatus
from tests.unit.lockdown.factories import facts_2022

RULE = "iis_ip_restriction.webadmin"
SITE = "Default Web Site"


def config(*, module: bool = True, locations: str = "", lock: str = "Deny", root: str = "", apps: str = "") -> bytes:
    globals_ = '<add name="IpRestrictionModule" image="%windir%\\System32\\inetsrv\\iprestr.dll" />' if module else ""
    modules = '<add name="IpRestrictionModule" lockItem="true" />' if module else ""
    return (
        '\ufeff<?xml version="1.0" encoding="UTF-8"?><configuration><configSections>'
        '<sectionGroup name="system.webServer">'
        f'<sectionGroup name="security"><section name="ipSecurity" overrideModeDefault="{lock}" /></sectionGroup>'
        "</sectionGroup></configSections><system.applicationHost><sites>"
        f'<site name="{SITE}" id="1"><application path="/" /><application path="/MEAdmin" />{apps}</site>'
        '<site name="Other" id="2"><application path="/" /></site>'
        "</sites></system.applicationHost>"
        f"<system.webServer><globalModules>{globals_}</globalModules><modules>{modules}</modules>{root}</system.webServer>"
        f"{locations}</configuration>"
    ).encode()


def location(path: str, body: str, **attrs: str) -> str:
    extra = "".join(f' {k}="{v}"' for k, v in attrs.items())
    return f'<location path="{path}"{extra}><system.webServer><security>{body}</security></system.webServer></location>'


RESTRICTED = location(
    f"{SITE}/meadmin",
    '<ipSecurity allowUnlisted="false"><add ipAddress="10.20.0.0" subnetMask="255.255.0.0" allowed="true" />'
    '<add ipAddress="127.0.0.1" allowed="true" /></ipSecurity>',
)


def access(data: bytes) -> dict[str, Any]:
    return iisconfig.application_access(data, "/meadmin")


def only(data: bytes) -> dict[str, Any]:
    [app] = access(data)["applications"]
    return app["locations"][0]


def test_a_default_install_has_no_restriction_and_no_module():
    got = access(config(module=False))
    assert got["module_installed"] is False
    [app] = got["applications"]
    assert app["site"] == SITE
    assert app["path"] == "/MEAdmin"  # application paths match case-insensitively
    loc = app["locations"][0]
    assert loc["allow_unlisted"] is True
    assert loc["module_enabled"] is False


def test_the_module_counts_only_under_its_own_name():
    other = config(module=False).replace(
        b"<globalModules></globalModules>", b'<globalModules><add name="DynamicIpRestrictionModule" /></globalModules>'
    )
    assert access(other)["module_installed"] is False
    assert access(config())["module_installed"] is True


def test_the_location_for_the_application_sets_its_ip_security():
    loc = only(config(locations=RESTRICTED))
    assert loc["allow_unlisted"] is False
    assert loc["allowed"] == ["10.20.0.0/16", "127.0.0.1/32"]  # subnetMask defaults to one address
    assert loc["module_enabled"] is True
    assert loc["delegated"] is False


def test_inheritance_runs_from_the_server_down_and_collections_merge():
    root = (
        '<security><ipSecurity allowUnlisted="false"><add ipAddress="192.0.2.1" allowed="true" />'
        "</ipSecurity></security>"
    )
    site = location(
        SITE, '<ipSecurity><add ipAddress="198.51.100.0" subnetMask="255.255.255.0" allowed="true" /></ipSecurity>'
    )
    app = location(f"{SITE}/MEADMIN", '<ipSecurity><remove ipAddress="192.0.2.1" /></ipSecurity>')
    loc = only(config(root=root, locations=site + app))
    assert loc["allow_unlisted"] is False  # inherited from the server
    assert loc["allowed"] == ["198.51.100.0/24"]  # the server's entry removed by key, the site's kept
    # IIS reads booleans without regard to case
    assert only(config(locations=location(SITE, '<ipSecurity allowUnlisted="False" />')))["allow_unlisted"] is False
    reopened = location(SITE, '<ipSecurity allowUnlisted="false" />') + location(
        f"{SITE}/meadmin", '<ipSecurity allowUnlisted="TRUE" />'
    )
    assert only(config(locations=reopened))["allow_unlisted"] is True
    cleared = location(f"{SITE}/meadmin", '<ipSecurity allowUnlisted="true"><clear /></ipSecurity>')
    loc = only(config(root=root, locations=site + cleared))
    assert loc["allowed"] == []
    assert loc["allow_unlisted"] is True
    # <remove> finds an entry by its key, the default mask included (255.255.255.255 written or not)
    explicit = root.replace('allowed="true"', 'subnetMask="255.255.255.255" allowed="true"')
    assert only(config(root=explicit, locations=app))["allowed"] == []
    # a location for another site does not apply
    other = location("Other", '<ipSecurity allowUnlisted="false" />')
    assert only(config(locations=other))["allow_unlisted"] is True


def test_entries_default_to_deny_and_domain_entries_are_kept_apart():
    body = (
        '<ipSecurity allowUnlisted="false"><add ipAddress="203.0.113.9" />'
        '<add domainName="*.msp.example" allowed="true" />'
        '<add ipAddress="2001:db8::" subnetMask="ffff:ffff::" allowed="true" />'
        '<add ipAddress="10.0.0.0" subnetMask="255.0.255.0" allowed="true" /></ipSecurity>'
    )
    loc = only(config(locations=location(f"{SITE}/meadmin", body)))
    assert loc["denied"] == ["203.0.113.9/32"]  # allowed defaults to false
    assert loc["domains_allowed"] == ["*.msp.example"]
    assert loc["allowed"] == ["2001:db8::/32"]
    assert loc["unreadable"] == ["10.0.0.0/255.0.255.0"]  # not a contiguous mask
    both = '<ipSecurity><add ipAddress="192.0.2.1" domainName="a.example" allowed="true" /></ipSecurity>'
    loc = only(config(locations=location(f"{SITE}/meadmin", both)))
    assert loc["unreadable"] == ["192.0.2.1 a.example"]
    assert loc["allowed"] == []
    assert loc["domains_allowed"] == []


def test_a_location_below_the_application_is_judged_too():
    below = location(f"{SITE}/meadmin/Mondo", '<ipSecurity allowUnlisted="true" />')
    [app] = access(config(locations=RESTRICTED + below))["applications"]
    assert [loc["location"] for loc in app["locations"]] == [f"{SITE}/meadmin", "default web site/meadmin/mondo"]
    assert app["locations"][1]["allow_unlisted"] is True


def test_an_unlocked_section_or_a_removed_module_is_reported():
    assert only(config(locations=RESTRICTED, lock="Allow"))["delegated"] is True
    unlock = f'<location path="{SITE}/meadmin" overrideMode="Allow"><system.webServer /></location>'
    assert only(config(locations=RESTRICTED + unlock))["delegated"] is True
    legacy = f'<location path="{SITE}" allowOverride="true"><system.webServer /></location>'
    assert only(config(locations=RESTRICTED + legacy))["delegated"] is True
    relock = f'<location path="{SITE}/meadmin" overrideMode="Deny"><system.webServer /></location>'
    assert only(config(locations=RESTRICTED + legacy + relock))["delegated"] is False
    removed = location(f"{SITE}/meadmin", "").replace(
        "<security></security>", '<modules><remove name="IpRestrictionModule" /></modules>'
    )
    assert only(config(locations=RESTRICTED + removed))["module_enabled"] is False


@pytest.mark.parametrize(
    "data",
    [
        b'<?xml version="1.0"?><!DOCTYPE configuration [<!ENTITY a "b">]><configuration>&a;</configuration>',
        b"<configuration><unclosed></configuration>",
        b"<html></html>",
    ],
)
def test_a_file_that_is_not_iis_configuration_is_refused(data: bytes):
    with pytest.raises(iisconfig.ConfigError):
        access(data)


@pytest.mark.parametrize(
    ("mask", "network"),
    [(None, "10.1.2.3/32"), ("255.255.255.0", "10.1.2.0/24"), ("8", "10.0.0.0/8"), ("255.255.255.255", "10.1.2.3/32")],
)
def test_network_of_reads_masks_as_iis_writes_them(mask: str | None, network: str):
    assert str(iisconfig.network_of("10.1.2.3", mask)) == network


def test_network_of_rejects_what_is_no_address_or_mask():
    assert iisconfig.network_of("not-an-ip", None) is None
    assert iisconfig.network_of("10.0.0.1", "33") is None
    assert iisconfig.network_of("10.0.0.1", "ffff::") is None  # an IPv6 mask on an IPv4 address
    assert iisconfig.network_of(None, None) is None


# --- the judgement -------------------------------------------------------------------------------------


def _judge(data: bytes | None, networks: tuple[str, ...] = ("10.20.0.0/16",)) -> Any:
    plan = compile_plan(load_baseline_profile(), facts_2022(management_networks=list(networks)))
    item = next(i for i in plan.items if i.rule_id == RULE)
    if data is None:
        obs = ObservedItem(rule_id=RULE, target=item.target, exists=False)
    else:
        obs = ObservedItem(rule_id=RULE, target=item.target, exists=True, web_access=access(data))
    return judge_web_access(item, obs)


def test_restricted_to_the_management_networks_is_compliant():
    status, reason, _, observed = _judge(config(locations=RESTRICTED))
    assert status is RuleStatus.COMPLIANT, reason
    assert "10.20.0.0/16" in reason
    assert observed["allowed"] == ["10.20.0.0/16", "127.0.0.1/32"]
    # a narrower range inside a management network is inside too
    narrow = RESTRICTED.replace('10.20.0.0" subnetMask="255.255.0.0', '10.20.5.0" subnetMask="255.255.255.0')
    assert _judge(config(locations=narrow))[0] is RuleStatus.COMPLIANT


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (config(module=False), "IP and Domain Restrictions role service is not installed"),
        (config(), "every address not listed may connect"),
        (config(locations=RESTRICTED.replace("10.20.0.0", "10.21.0.0")), "allows 10.21.0.0/16 outside"),
        (config(locations=RESTRICTED.replace("255.255.0.0", "255.0.0.0")), "allows 10.0.0.0/8 outside"),
        (config(locations=RESTRICTED, lock="Allow"), "web.config may loosen it"),
        (
            config(
                locations=RESTRICTED
                + location(f"{SITE}/meadmin", "").replace(
                    "<security></security>", '<modules><remove name="IpRestrictionModule" /></modules>'
                )
            ),
            "IpRestrictionModule is not in its modules",
        ),
        (
            config(locations=RESTRICTED.replace('subnetMask="255.255.0.0"', 'subnetMask="255.0.255.0"')),
            "entries that cannot be read as addresses: 10.20.0.0/255.0.255.0",
        ),
        (
            config(
                locations=RESTRICTED.replace(
                    "<add ipAddress", '<add domainName="a.example" allowed="true" /><add ipAddress', 1
                )
            ),
            "allows by host name (a.example)",
        ),
        (
            config(locations=RESTRICTED + location(f"{SITE}/meadmin/Mondo", '<ipSecurity allowUnlisted="true" />')),
            "meadmin/mondo: every address not listed",
        ),
    ],
)
def test_any_way_in_from_outside_is_drift_and_named(data: bytes, words: str):
    status, reason, observed_text, _ = _judge(data)
    assert status is RuleStatus.DRIFT
    assert words in reason
    assert observed_text == "reachable from outside"


def test_evidence_without_allow_unlisted_is_read_as_iis_default_open():
    plan = compile_plan(load_baseline_profile(), facts_2022(management_networks=["10.20.0.0/16"]))
    item = next(i for i in plan.items if i.rule_id == RULE)
    loc = {"location": "x", "module_enabled": True, "delegated": False, "allowed": []}
    web = {"module_installed": True, "applications": [{"site": SITE, "path": "/meadmin", "locations": [loc]}]}
    obs = ObservedItem(rule_id=RULE, target=item.target, exists=True, web_access=web)
    status, reason, _, _ = judge_web_access(item, obs)
    assert status is RuleStatus.DRIFT
    assert "allowUnlisted is true" in reason


def test_an_ipv6_range_is_compared_with_ipv6_networks_only():
    ipv6 = RESTRICTED.replace(
        'ipAddress="10.20.0.0" subnetMask="255.255.0.0"', 'ipAddress="2001:db8:1::" subnetMask="48"'
    )
    assert _judge(config(locations=ipv6), ("10.20.0.0/16", "2001:db8::/32"))[0] is RuleStatus.COMPLIANT
    assert _judge(config(locations=ipv6), ("10.20.0.0/16",))[0] is RuleStatus.DRIFT


def test_no_iis_or_no_webadmin_is_not_applicable_and_no_networks_needs_input():
    status, reason, _, _ = _judge(None)
    assert status is RuleStatus.NOT_APPLICABLE
    assert "IIS is not installed" in reason
    no_app = config().replace(b'<application path="/MEAdmin" />', b"")
    status, reason, _, _ = _judge(no_app)
    assert status is RuleStatus.NOT_APPLICABLE
    assert "/meadmin" in reason
    plan = compile_plan(load_baseline_profile(), facts_2022())
    item = next(i for i in plan.items if i.rule_id == RULE)
    assert item.status is RuleStatus.NEEDS_INPUT
    assert "management networks" in (item.reason or "")


# --- from the agent's file_read to the observation ----------------------------------------------------------


def _observe(data: dict[str, Any]) -> ObservedItem:
    plan = compile_plan(load_baseline_profile(), facts_2022(management_networks=["10.20.0.0/16"]))
    item = next(i for i in plan.items if i.rule_id == RULE)
    return observe._observe_web_access(item, data, {"rule_id": RULE, "target": item.target})


def test_the_file_read_becomes_access_facts_and_never_the_files_text():
    text = config(locations=RESTRICTED).replace(
        b"</configuration>", b'<x password="[enc:secret:enc]" /></configuration>'
    )
    got = _observe({"exists": True, "size": len(text), "data": base64.b64encode(text).decode(), "truncated": False})
    assert got.error is None
    assert got.web_access is not None
    assert got.web_access["module_installed"] is True
    assert "enc:secret" not in got.model_dump_json()


def test_an_absent_cut_or_unreadable_file_is_no_verdict():
    assert _observe({"exists": False, "size": None, "data": None, "truncated": False}).exists is False
    cut = _observe({"exists": True, "size": 10**8, "data": "", "truncated": True})
    assert "larger than 4 MiB" in (cut.error or "")
    assert "applicationHost.config" in (_observe({"exists": True, "data": "%%%", "truncated": False}).error or "")
    html = base64.b64encode(b"<html></html>").decode()
    assert "not <configuration>" in (_observe({"exists": True, "data": html, "truncated": False}).error or "")


def test_without_the_role_service_the_one_cause_is_said_once():
    status, reason, _, observed = _judge(config(module=False))
    assert status is RuleStatus.DRIFT
    assert observed["problems"] == [
        "the IP and Domain Restrictions role service is not installed: IIS applies no IP restriction"
    ]
    assert "allowUnlisted" not in reason
