"""Issue 12 item 4: "Verify a report", for anyone holding a report (an external auditor has no account):
upload the file and its .sig, read a verdict. The check is signing.verify_bytes, as `verify_report` runs it."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from lockdown import clock
from reports import forms, signing
from reports.models import ReportFormat, SigningKey
from reports.services import report_create
from servers.audit import Actor
from servers.crypto import encrypt_secret
from servers.tenancy import Scope

pytestmark = pytest.mark.django_db
MSP = Scope(user_id=None, msp_role="admin")
URL = "/reports/verify/"


def _report(customer, fmt=ReportFormat.CSV):
    now = clock.now()
    return report_create(
        scope=MSP, actor=Actor.system("test"), customer=customer, fmt=fmt,
        period_start=now - timedelta(days=7), period_end=now,
    )  # fmt: skip


def _check(client, data: bytes, name: str, signature: bytes | None = None):
    files = {"report": SimpleUploadedFile(name, data)}
    if signature is not None:
        files["signature"] = SimpleUploadedFile(name + ".sig", signature)
    return client.post(URL, files)


def _verdict(response) -> str:
    body = response.content.decode()
    assert 'id="verdict"' in body, body
    return " ".join(body.split('id="verdict"')[1].split("</section>")[0].split())


def test_the_url_is_the_verify_page():
    assert reverse("report_verify") == URL


def test_anonymous_visitors_may_use_it_and_are_told_the_limits(client, tenant_a, fleet_of):
    page = client.get(URL)
    assert page.status_code == 200
    text = page.content.decode()
    assert "No account is needed" in text
    assert "at most 20 MB" in text
    assert "64 KB" in text
    fleet_of(tenant_a.customer, 1)
    report = _report(tenant_a.customer, ReportFormat.PDF)
    response = _check(client, bytes(report.content), report.filename)  # a PDF carries its signature
    assert response.status_code == 200
    verdict = _verdict(response)
    assert "Valid: the file is intact and was signed by this installation" in verdict
    assert f"report #{report.pk} for Tenant A Ltd" in verdict


def test_a_customer_viewer_checks_a_csv_with_its_sig(client, cora, tenant_a, fleet_of):
    fleet_of(tenant_a.customer, 1)
    report = _report(tenant_a.customer)
    client.force_login(cora)
    verdict = _verdict(_check(client, bytes(report.content), report.filename, report.signature.encode()))
    assert "Valid" in verdict
    # Without the .sig a CSV cannot be checked: it carries no signature line (spreadsheet-clean).
    verdict = _verdict(_check(client, bytes(report.content), report.filename))
    assert "No usable signature" in verdict
    # The evidence JSON is checked with the same .sig.
    verdict = _verdict(_check(client, bytes(report.evidence), report.evidence_filename, report.signature.encode()))
    assert "Valid" in verdict
    assert "evidence" in verdict


def test_an_edited_report_is_tampered(client, tenant_a, fleet_of):
    fleet_of(tenant_a.customer, 1)
    report = _report(tenant_a.customer)
    edited = bytes(report.content).replace(b"Compliant", b"Complaint", 1)
    verdict = _verdict(_check(client, edited, report.filename, report.signature.encode()))
    assert "Tampered: the file was changed after it was signed" in verdict
    pdf = _report(tenant_a.customer, ReportFormat.PDF)
    edited_pdf = bytes(pdf.content).replace(b"/Title", b"/Titlx", 1)
    # Renamed and checked by its own embedded signature: still tampered, not "another report's".
    verdict = _verdict(_check(client, edited_pdf, "renamed.pdf"))
    assert "Tampered: the file was changed after it was signed" in verdict
    verdict = _verdict(_check(client, edited_pdf, "renamed.pdf", pdf.signature.encode()))
    assert "Tampered: the file was changed after it was signed" in verdict


def test_another_reports_signature_file_does_not_match(client, tenant_a, fleet_of):
    fleet_of(tenant_a.customer, 1)
    one = _report(tenant_a.customer)
    two = _report(tenant_a.customer, ReportFormat.PDF)
    verdict = _verdict(_check(client, bytes(one.content), one.filename, two.signature.encode()))
    assert "The signature file does not belong to this report" in verdict
    assert two.filename in verdict
    # An intact PDF with another report's .sig: its own embedded signature shows it is intact.
    verdict = _verdict(_check(client, bytes(two.content), "renamed.pdf", one.signature.encode()))
    assert "does not belong" in verdict


def test_an_altered_signature_file_is_tampered(client, tenant_a, fleet_of):
    fleet_of(tenant_a.customer, 1)
    report = _report(tenant_a.customer)
    manifest = json.loads(report.signature)
    manifest["report"]["customer"] = "Someone Else Ltd"
    verdict = _verdict(_check(client, bytes(report.content), report.filename, json.dumps(manifest).encode()))
    assert "Tampered: the signature file was altered" in verdict


def test_a_report_signed_by_another_key_is_unknown(client, tenant_a, fleet_of):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    fleet_of(tenant_a.customer, 1)
    report = _report(tenant_a.customer)
    private = Ed25519PrivateKey.generate()
    raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    stranger = SigningKey(
        name="stranger",
        public_key=base64.b64encode(public).decode(),
        private_key_encrypted=encrypt_secret(base64.b64encode(raw).decode()),
    )
    ours = json.loads(report.signature)
    forged = signing.sign_manifest(stranger, {k: v for k, v in ours.items() if k != "signature"})
    verdict = _verdict(_check(client, bytes(report.content), report.filename, json.dumps(forged).encode()))
    assert "Signed by an unknown key" in verdict
    assert stranger.key_id in verdict


def test_uploads_are_bounded_and_a_signature_must_be_a_manifest(client, tenant_a, fleet_of, monkeypatch):
    fleet_of(tenant_a.customer, 1)
    report = _report(tenant_a.customer)
    monkeypatch.setattr(forms, "VERIFY_MAX_REPORT_BYTES", 1024)
    response = _check(client, bytes(report.content), report.filename, report.signature.encode())
    assert response.status_code == 400
    assert "larger than 1 KB" in response.content.decode()
    monkeypatch.undo()
    response = _check(client, bytes(report.content), report.filename, b"not json at all")
    assert response.status_code == 400
    assert "This is not a signature file" in response.content.decode()
    big_sig = b" " * (forms.VERIFY_MAX_SIGNATURE_BYTES + 1)
    assert _check(client, bytes(report.content), report.filename, big_sig).status_code == 400
