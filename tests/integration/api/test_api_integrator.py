"""Issue 15, done when: through the API alone, as an integrator would — add a server, verify it, read its
drifted rules, harden it in the customer's maintenance window, then download the signed report and verify it.

Against a real winlab host over WinRM (the worker's side runs inline: the Celery task's function, called
when the request's transaction commits, and the beat's sweep called when the window opens). What the
integrator is given before it starts is what the pages give it: an MSP admin's token (Account → API tokens),
the customer with its maintenance window, and the customer's admin credential in the vault.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from api.tokens import token_issue
from jobs import runner
from jobs import services as job_services
from lockdown import clock
from reports import services as report_services
from servers.audit import Actor
from servers.choices import AuthMethod
from servers.models import AuditEvent, Credential, Customer
from servers.tenancy import scope_for_user
from tests.integration.winlab_agent.conftest import SPECS, start_lab

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.winlab, pytest.mark.slow]

MONDAY_NOON = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
WINDOW_OPENS = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)  # the customer's window: daily 01:00-03:00 UTC


@pytest.fixture
def worker() -> Iterator[None]:
    """Jobs and reports are built as the workers would, when the request that asked for them commits."""
    job_services.set_enqueue(runner.run_host)
    report_services.set_enqueue(report_services.report_build)
    yield
    job_services.set_enqueue(None)
    report_services.set_enqueue(None)


def _json(response: Any, status: int) -> Any:
    assert response.status_code == status, response.content[:500]
    return response.json()


def _post(api: Client, url: str, body: dict[str, Any] | None = None) -> Any:
    return api.post(url, data=json.dumps(body or {}), content_type="application/json")


def test_an_integrator_adds_verifies_hardens_in_the_window_and_verifies_the_signed_report(
    tmp_path, make_role_user, worker
) -> None:
    spec = SPECS["plesk"]
    lab = start_lab(tmp_path, [spec])
    try:
        entry = next(e for e in lab.inventory()["hosts"] if e["name"] == spec.name)
        customer = Customer.objects.create(
            name="Integrator Ltd",
            maintenance_days="",
            maintenance_start=time(1, 0),
            maintenance_hours=2,
            maintenance_timezone="UTC",
        )
        credential = Credential(customer=customer, name="admin", username=entry["username"], auth=AuthMethod.NTLM)
        credential.set_secret(entry["password"])
        credential.save()
        admin = make_role_user("msp_admin")
        secret = token_issue(
            scope=scope_for_user(admin), actor=Actor(user=admin), name="psa", days=30, read_only=False, customer=None
        ).secret
        api = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")

        with clock.frozen(MONDAY_NOON):
            # 1. Add the server.
            customers = _json(api.get("/api/v1/customers/"), 200)["results"]
            customer_id = next(c["id"] for c in customers if c["name"] == "Integrator Ltd")
            server = _json(
                _post(
                    api,
                    "/api/v1/servers/",
                    {
                        "customer": customer_id,
                        "name": spec.name,
                        "address": entry["address"],
                        "winrm_scheme": "http",
                        "winrm_port": entry["winrm"]["http_port"],
                        "tls_verify": "off",
                        "credential": credential.pk,
                        "smtp_port": entry["mail_ports"]["smtp"],
                        "pop_port": entry["mail_ports"]["pop"],
                        "imap_port": entry["mail_ports"]["imap"],
                        "tags": ["plesk"],
                    },
                ),
                201,
            )
            assert server["status"] == "never_verified"
            assert server["assessment"]["state"] == "not_assessed"
            assert server["credential"] == credential.pk
            assert server["tags"] == ["plesk"]
            url = f"/api/v1/servers/{server['id']}/"

            # 2. Verify it, and follow the job and its log.
            job = _json(_post(api, url + "verify/"), 202)
            job = _json(api.get(f"/api/v1/jobs/{job['id']}/"), 200)
            assert job["state"] == "succeeded", job
            runs = _json(api.get(f"/api/v1/jobs/{job['id']}/runs/"), 200)["results"]
            assert [(r["server_name"], r["state"]) for r in runs] == [(spec.name, "succeeded")]
            log = _json(api.get(f"/api/v1/jobs/{job['id']}/log/"), 200)
            assert log["events"]
            assert not log["more"]
            assert any("Plan from" in event["message"] for event in log["events"])
            assert _json(api.get(f"/api/v1/jobs/{job['id']}/log/?after={log['next_after']}"), 200)["events"] == []
            verified = _json(api.get(url), 200)
            assert verified["assessment"]["state"] == "assessed"
            before_pct = verified["compliance_pct"]
            assert before_pct is not None
            assert before_pct < 100

            # 3. Its drifted rules, with evidence.
            drifted = _json(api.get(url + "results/?status=drift&page_size=500"), 200)
            assert drifted["count"] > 0
            assert all(row["status"] == "drift" for row in drifted["results"])
            assert all(row["expected_text"] and row["observed_text"] for row in drifted["results"])
            # the evidence: expected and observed state as structured data
            assert all(row["expected"] and row["observed"] for row in drifted["results"])

            # 4. Harden in the customer's next maintenance window: scheduled, nothing touches the host yet.
            harden = _json(_post(api, url + "harden/", {"in_window": True}), 202)
            assert harden["state"] == "scheduled"
            job_services.sweep()
            assert _json(api.get(f"/api/v1/jobs/{harden['id']}/"), 200)["state"] == "scheduled"
            assert _json(api.get(f"/api/v1/jobs/{harden['id']}/runs/"), 200)["results"][0]["state"] == "queued"

        with clock.frozen(WINDOW_OPENS + timedelta(minutes=1)):
            job_services.sweep()  # what the beat does each minute: the window opened
            harden = _json(api.get(f"/api/v1/jobs/{harden['id']}/"), 200)
            assert harden["state"] == "succeeded", _json(api.get(f"/api/v1/jobs/{harden['id']}/log/"), 200)
            hardened = _json(api.get(url), 200)
            assert hardened["compliance_pct"] > before_pct
            still = _json(api.get(url + "results/?status=drift&page_size=500"), 200)["count"]
            assert still < drifted["count"]

            # 5. The signed report: ask, poll, download, verify; an edited copy is told apart.
            report = _json(
                _post(
                    api,
                    "/api/v1/reports/",
                    {"customer": customer_id, "format": "pdf", "start": "2026-11-30", "end": "2026-12-01"},
                ),
                202,
            )
            report = _json(api.get(f"/api/v1/reports/{report['id']}/"), 200)
            assert report["status"] == "ready", report
            assert report["server_count"] == 1
            pdf = api.get(report["files"]["report"])
            assert pdf.status_code == 200
            assert pdf["Content-Type"] == "application/pdf"
            assert pdf.content.startswith(b"%PDF")
            signature = api.get(report["files"]["signature"])
            assert signature.status_code == 200

            def verdict(data: bytes) -> dict[str, Any]:
                files = {
                    "report": SimpleUploadedFile(report["filename"], data),
                    "signature": SimpleUploadedFile(report["filename"] + ".sig", signature.content),
                }
                return _json(api.post("/api/v1/reports/verify/", data=files), 200)

            valid = verdict(pdf.content)
            assert valid["verdict"] == "valid", valid
            assert f"report #{report['id']} for Integrator Ltd" in valid["detail"]
            edited = bytearray(pdf.content)
            edited[len(edited) // 2] ^= 0x01
            assert verdict(bytes(edited))["verdict"] == "tampered"

        # Every step is attributed to the token in the audit trail.
        by_token = AuditEvent.objects.filter(actor_name__contains="(API token 'psa'")
        assert {"server.create", "job.verify", "job.harden"} <= set(by_token.values_list("action", flat=True))
        assert credential.secret_encrypted not in json.dumps(hardened) + json.dumps(server)
        assert entry["password"] not in json.dumps(hardened) + json.dumps(server) + json.dumps(log)
    finally:
        lab.stop()
