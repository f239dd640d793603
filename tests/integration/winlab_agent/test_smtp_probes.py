"""remote.mailprobe against real winlab hosts: relay, AUTH before STARTTLS and the certificate, each both ways.

Hosts are purpose-built from HostSpec's smtp_* options; one more is changed through the lab's control
surface. The probe talks real SMTP and a real TLS upgrade to winlab's listeners on loopback.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

from remote.mailprobe import SmtpProbe, probe_smtp
from tests.integration.winlab_agent.conftest import start_lab
from winlab.__main__ import main
from winlab.control import ControlClient, ControlError, ControlServer
from winlab.lab import Lab
from winlab.persist import write_private_json
from winlab.windows.factory import HostSpec
from winlab.windows.mailenable import Edition
from winlab.windows.smtp import RELAY_DENIED

pytestmark = pytest.mark.winlab

SPECS: Final = {
    "hardened": HostSpec(name="SMTPDEF", store_files=2),
    "open": HostSpec(name="SMTPOPEN", smtp_relay="open", smtp_auth="always", store_files=2),
    "expiring": HostSpec(name="SMTPEXP10", smtp_certificate_days=10, store_files=2),
    "expired": HostSpec(name="SMTPEXPD", smtp_certificate_days=-1, store_files=2),
    "nocert": HostSpec(name="SMTPNOCRT", smtp_certificate_days=None, smtp_auth="always", store_files=2),
    "wrongname": HostSpec(name="SMTPWRONG", smtp_certificate_name="other.example.org", store_files=2),
    "standard": HostSpec(name="SMTPSTD", edition=Edition.STANDARD, smtp_auth="always", store_files=2),
    "controlled": HostSpec(name="SMTPCTL", store_files=2),
}  # fmt: skip


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    running = start_lab(tmp_path_factory.mktemp("winlab-smtp"), list(SPECS.values()))
    try:
        yield running
    finally:
        running.stop()


def probe(lab: Lab, role: str, **kw: object) -> SmtpProbe:
    host = lab.host(SPECS[role].name)
    return probe_smtp(host.address, host.mail.ports["smtp"], timeout_s=10, **kw)  # type: ignore[arg-type]


def days_left(result: SmtpProbe) -> datetime.timedelta:
    assert result.certificate is not None, result
    return result.certificate.not_after - datetime.datetime.now(datetime.UTC)


# --- relay ---------------------------------------------------------------------------------------
def test_closed_relay_refuses_an_outside_recipient_with_mailenables_503(lab: Lab) -> None:
    result = probe(lab, "hardened")
    assert result.error is None
    assert result.banner is not None
    assert "ESMTP MailEnable Service" in result.banner
    assert result.mail_reply is not None
    assert result.mail_reply[0] == 250
    assert result.relay_reply == (503, RELAY_DENIED[4:])


def test_closed_relay_still_accepts_a_recipient_of_its_own_post_office(lab: Lab) -> None:
    result = probe(lab, "hardened", relay_recipient="user1@example.com")
    assert result.relay_reply is not None
    assert result.relay_reply[0] == 250


def test_open_relay_accepts_an_outside_recipient(lab: Lab) -> None:
    result = probe(lab, "open")
    assert result.error is None
    assert result.relay_reply == (250, "Requested mail action okay, completed")


# --- AUTH before / after STARTTLS ----------------------------------------------------------------
def test_secure_only_authentication_is_advertised_only_after_starttls(lab: Lab) -> None:
    result = probe(lab, "hardened")
    assert result.starttls_offered, result
    assert result.tls_established, result
    assert "AUTH" not in result.plain_keywords
    assert result.auth_before_tls == ()
    assert result.auth_after_tls == ("LOGIN", "CRAM-MD5")
    assert "STARTTLS" not in result.tls_keywords  # RFC 3207 §4.2


def test_always_allowed_authentication_is_advertised_before_starttls(lab: Lab) -> None:
    result = probe(lab, "open")
    assert result.starttls_offered
    assert result.auth_before_tls == ("LOGIN", "CRAM-MD5")


# --- the certificate -----------------------------------------------------------------------------
def test_a_valid_certificate_names_the_host_and_runs_for_a_year(lab: Lab) -> None:
    result = probe(lab, "hardened")
    host = lab.host(SPECS["hardened"].name)
    cert = result.certificate
    assert cert is not None
    assert result.tls_error is None
    assert result.tls_version in ("TLSv1.2", "TLSv1.3")
    assert cert.names_host(host.address)
    assert cert.names_host("mail.example.com")
    assert cert.issuer == "CN=winlab lab CA"
    assert not cert.self_signed
    assert datetime.timedelta(days=364) < days_left(result) <= datetime.timedelta(days=365)
    assert cert.not_before <= datetime.datetime.now(datetime.UTC)
    assert cert.sha256 == lab.smtp_state(host.name)["certificate"]["sha256"]


def test_a_certificate_expiring_in_ten_days_is_presented_as_such(lab: Lab) -> None:
    result = probe(lab, "expiring")
    assert result.tls_established
    assert datetime.timedelta(days=9) < days_left(result) <= datetime.timedelta(days=10)


def test_an_expired_certificate_is_still_presented(lab: Lab) -> None:
    result = probe(lab, "expired")
    assert result.tls_established
    assert result.tls_error is None
    assert days_left(result) < datetime.timedelta(0)


def test_a_certificate_for_another_name_does_not_name_the_host(lab: Lab) -> None:
    result = probe(lab, "wrongname")
    host = lab.host(SPECS["wrongname"].name)
    assert result.certificate is not None
    assert result.certificate.dns_names == ("other.example.org",)
    assert not result.certificate.names_host(host.address)
    assert not result.certificate.names_host("mail.example.com")


def test_no_certificate_configured_means_no_starttls(lab: Lab) -> None:
    result = probe(lab, "nocert")
    assert result.error is None
    assert not result.starttls_offered
    assert not result.tls_established
    assert result.certificate is None
    assert result.auth_before_tls == ("LOGIN", "CRAM-MD5")  # plaintext AUTH: what the rule must flag


def test_standard_edition_offers_no_starttls_even_with_a_certificate(lab: Lab) -> None:
    result = probe(lab, "standard")
    assert result.error is None
    assert not result.starttls_offered
    assert result.certificate is None
    assert lab.smtp_state(SPECS["standard"].name)["starttls"] is False


# --- a stopped service ----------------------------------------------------------------------------
def test_a_stopped_smtp_service_is_not_connected_with_an_error(lab: Lab) -> None:
    host = lab.host(SPECS["nocert"].name)
    with host.binding.lock:
        assert host.model.services.stop("MESMTPCS") == 0
    lab.mail.reconcile(host.name)
    try:
        result = probe(lab, "nocert")
        assert not result.connected
        assert result.error == "connection refused"
    finally:
        with host.binding.lock:
            assert host.model.services.start("MESMTPCS") == 0
        lab.mail.reconcile(host.name)
    assert probe(lab, "nocert").connected


# --- the control surface --------------------------------------------------------------------------
def test_the_control_surface_and_cli_change_relay_auth_and_certificate(
    lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = SPECS["controlled"].name
    assert lab.lab_dir is not None
    control = ControlServer(lab, lab.lab_dir)
    control.start()
    try:
        client = ControlClient(lab.lab_dir)
        before = probe(lab, "controlled")
        assert before.relay_reply is not None
        assert before.relay_reply[0] == 503
        assert before.auth_before_tls == ()
        answer = client.smtp(name, relay="open", auth_mode="always", certificate_days=10)
        assert answer["smtp"]["relay"] == "open"
        assert answer["smtp"]["starttls"] is True
        after = probe(lab, "controlled")
        assert after.relay_reply is not None
        assert after.relay_reply[0] == 250
        assert after.auth_before_tls == ("LOGIN", "CRAM-MD5")
        assert datetime.timedelta(days=9) < days_left(after) <= datetime.timedelta(days=10)
        assert before.certificate is not None
        assert after.certificate is not None
        assert after.certificate.sha256 != before.certificate.sha256
        inventory = tmp_path / "inventory.json"
        write_private_json(inventory, lab.inventory())
        assert main(["smtp", "--inventory", str(inventory), "--host", name, "--certificate-days", "none"]) == 0
        assert json.loads(capsys.readouterr().out)["starttls"] is False
        assert not probe(lab, "controlled").starttls_offered
        with pytest.raises(ControlError, match="400"):
            client.smtp(name, relay="ajar")
        with pytest.raises(ControlError, match="unknown smtp keys"):
            client.smtp(name, colour="blue")
    finally:
        control.stop()
        lab.configure_smtp(name, relay="closed", auth_mode="secure_only", certificate_days=365)
