"""Issue 14, Done when: each new check of the current baseline passes and fails on purpose-built winlab hosts, end to
end through run_job (real WinRM to winlab for the registry reads, the worker's own SMTP session for the probes), and
a host on an affected MailEnable version shows the advisory failing with its CVEs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from jobs import runner, services
from jobs.choices import HostRunState, JobKind
from jobs.models import HostRun
from jobs.services import job_create
from lockdown.models import ProfileVersion
from lockdown.rules.builtin import BASELINE_SLUG
from lockdown.services import builtin_profile_sync, server_assign_profile
from servers.audit import Actor
from servers.models import Customer, Server
from servers.tenancy import Scope
from tests.integration.jobs.conftest import lab_server
from tests.integration.winlab_agent.conftest import start_lab
from winlab.windows.factory import HostSpec
from winlab.windows.mailenable import Edition

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.winlab, pytest.mark.slow]
MSP = Scope(user_id=None, msp_role="admin")

# Fails every new check: an affected version (10.41 < 10.42, CVE-2022-42135/42136), a threshold of 50, no password
# encryption, the Authentication key inheriting Users:Read, TLS 1.0/1.1 left on, an open relay, AUTH in clear, a
# certificate that expires in 10 days and is issued to another host's name, webadmin open to every address (IIS's
# IP and Domain Restrictions not installed).
WEAK = HostSpec(
    name="MEWEAK",
    edition=Edition.ENTERPRISE,
    version="10.41",
    abuse_threshold=50,
    smtp_relay="open",
    smtp_auth="always",
    smtp_certificate_days=10,
    smtp_certificate_name="mail.other-customer.example",
    store_files=2,
)
# Passes every new check; webadmin answers only the MSP's 10.20.0.0/16 (and the host itself).
STRONG = HostSpec(
    name="MESTRONG",
    edition=Edition.PROFESSIONAL,
    version="10.43",
    abuse_threshold=5,
    password_encryption=True,
    auth_key_restricted=True,
    legacy_tls_disabled=True,
    webadmin_allowed=("10.20.0.0/16",),
    store_files=2,
)
# Standard: no abuse prevention (KB ME020149), so that check is not applicable.
STANDARD = HostSpec(name="MESTD", edition=Edition.STANDARD, version="10.43", store_files=2)

CHECKS = {
    "mailenable_version.advisories": ("drift", "compliant"),
    "registry_value.security.abuse_threshold": ("drift", "compliant"),
    "registry_value.providers.password_encryption": ("drift", "compliant"),
    "registry_acl_only.providers.authentication": ("drift", "compliant"),
    "registry_value.schannel.tls10_server": ("drift", "compliant"),
    "registry_value.schannel.tls11_server": ("drift", "compliant"),
    "smtp_probe.relay_refused": ("drift", "compliant"),
    "smtp_probe.no_auth_before_starttls": ("drift", "compliant"),
    "smtp_probe.certificate_valid": ("drift", "compliant"),
    "smtp_probe.certificate_names_host": ("drift", "compliant"),
    "iis_ip_restriction.webadmin": ("drift", "compliant"),
}
# The customer's management networks: winlab's addresses (WinRM and SMTP reach the hosts there) and the MSP's office.
NETWORKS = "127.0.0.0/8\n10.20.0.0/16"


@pytest.fixture
def real_agent() -> Iterator[None]:
    runner.set_agent_call(None)
    services.set_enqueue(runner.run_host)
    yield
    services.set_enqueue(None)


def _verify(server: Server) -> HostRun:
    job = job_create(scope=MSP, actor=Actor.system("test"), kind=JobKind.VERIFY, servers=[server])
    return HostRun.objects.get(job=job)


def _results(server: Server) -> dict[str, dict[str, Any]]:
    server.refresh_from_db()
    return {o["rule_id"]: o for o in server.compliance.outcomes}


def _follow_baseline(server: Server) -> None:
    Customer.objects.filter(pk=server.customer_id).update(management_networks=NETWORKS)
    version = ProfileVersion.objects.filter(profile__slug=BASELINE_SLUG).order_by("-number").first()
    assert version is not None
    server_assign_profile(scope=MSP, actor=Actor.system("test"), server=server, version=version)


def test_every_new_check_fails_on_the_weak_host_and_passes_on_the_strong_one(tmp_path, real_agent):
    lab = start_lab(tmp_path, [WEAK, STRONG, STANDARD])
    try:
        builtin_profile_sync()
        servers = {spec.name: lab_server(lab, spec.name, "Baseline Ltd") for spec in (WEAK, STRONG, STANDARD)}
        for server in servers.values():
            _follow_baseline(server)
            run = _verify(server)
            assert run.state == HostRunState.SUCCEEDED, (run.error_kind, run.error_message)
        weak, strong, standard = (_results(servers[s.name]) for s in (WEAK, STRONG, STANDARD))
        for rule_id, (on_weak, on_strong) in CHECKS.items():
            assert weak[rule_id]["status"] == on_weak, (rule_id, weak[rule_id]["reason"])
            assert strong[rule_id]["status"] == on_strong, (rule_id, strong[rule_id]["reason"])
        assert "CVE-2022-42135" in weak["mailenable_version.advisories"]["reason"]
        assert "CVE-2022-42136" in weak["mailenable_version.advisories"]["reason"]
        assert "BUILTIN\\Users" in weak["registry_acl_only.providers.authentication"]["reason"]
        assert "open relay" in weak["smtp_probe.relay_refused"]["reason"]
        assert "expires in" in weak["smtp_probe.certificate_valid"]["reason"]
        named = weak["smtp_probe.certificate_names_host"]["reason"]
        assert "mail.other-customer.example" in named, named
        assert "the name the server announces" in named
        webadmin = weak["iis_ip_restriction.webadmin"]["reason"]
        assert "IP and Domain Restrictions role service is not installed" in webadmin, webadmin
        assert "10.20.0.0/16" in strong["iis_ip_restriction.webadmin"]["reason"]
        assert standard["registry_value.security.abuse_threshold"]["status"] == "not_applicable"
        # the guide's rules are still judged beside the new ones, and harden leaves the new ones alone
        assert weak["local_user.ime_system"]["status"] == "drift"
        log = "\n".join(e.message for e in HostRun.objects.filter(server=servers[WEAK.name]).get().events.all())
        assert "SMTP probe of port" in log
        assert "RCPT TO an outside domain answered 250" in log
    finally:
        lab.stop()


def test_harden_changes_nothing_a_verify_only_check_judges(tmp_path, real_agent):
    lab = start_lab(tmp_path, [WEAK])
    try:
        builtin_profile_sync()
        server = lab_server(lab, WEAK.name, "Baseline Ltd")
        _follow_baseline(server)
        host = lab.hosts[WEAK.name].model
        threshold_key = "HKLM\\SOFTWARE\\Mail Enable\\Mail Enable\\Security"
        job = job_create(scope=MSP, actor=Actor.system("test"), kind=JobKind.HARDEN, servers=[server])
        run = HostRun.objects.get(job=job)
        assert run.state == HostRunState.SUCCEEDED, (run.error_kind, run.error_message)
        results = _results(server)
        assert results["local_user.ime_system"]["status"] == "compliant"  # the guide's rules were applied
        for rule_id in CHECKS:
            assert results[rule_id]["status"] == "drift", rule_id
            assert results[rule_id]["action"] == "none", rule_id
        key = host.registry.open(threshold_key, view=32)
        assert key.get_value("Abuse Instance Threshold").data == 50
    finally:
        lab.stop()


NEW_ADVISORY = """
schema_version: 1
updated: 2027-01-15
advisories:
  - id: cve-2027-00001
    title: A flaw published after this release
    summary: Stands for an advisory an MSP learns of before the product ships a new file.
    cves: [CVE-2027-00001]
    severity: high
    editions: [Professional]
    affected:
      - introduced: '10.0'
        fixed: '10.50'
    sources: ['https://www.mailenable.com/Professional-ReleaseNotes.txt']
"""


def test_importing_an_advisory_file_changes_the_verdict_without_a_release(tmp_path, real_agent):
    from lockdown.advisory_store import advisories_import

    lab = start_lab(tmp_path, [STRONG])
    try:
        builtin_profile_sync()
        server = lab_server(lab, STRONG.name, "Baseline Ltd")
        _follow_baseline(server)
        _verify(server)
        assert _results(server)["mailenable_version.advisories"]["status"] == "compliant"
        advisories_import(scope=MSP, actor=Actor.system("test"), text=NEW_ADVISORY, source_name="msp.yaml")
        _verify(server)
        row = _results(server)["mailenable_version.advisories"]
        assert row["status"] == "drift"
        assert "CVE-2027-00001" in row["reason"]
        assert "10.50" in row["reason"]  # the minimum fixed build
    finally:
        lab.stop()
