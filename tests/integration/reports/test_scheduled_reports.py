"""Issue 12 item 4: scheduled reports, e-mailed per customer after each period (monthly by default),
recorded in the audit log; only those who may harden a customer's servers set its schedule."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from django.core import mail
from django.urls import reverse

from lockdown import clock
from reports import signing
from reports.models import Report, ReportFrequency, ReportSchedule
from reports.schedules import last_complete_period, report_schedule_save, scheduled_reports_send
from reports.tasks import send_scheduled_reports
from servers.audit import Actor
from servers.models import AuditEvent
from servers.tenancy import Scope

pytestmark = pytest.mark.django_db
MSP = Scope(user_id=None, msp_role="admin")
MID_NOVEMBER = datetime(2026, 11, 17, 10, 0, tzinfo=UTC)  # a Tuesday
FIRST_OF_DECEMBER = datetime(2026, 12, 1, 0, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def locmem(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def attachments(message) -> list[tuple[Any, Any, str]]:
    """(filename, bytes, content type) as a mail client reads them from the sent MIME message."""
    import email

    parsed = email.message_from_bytes(message.message().as_bytes())
    return [
        (part.get_filename(), part.get_payload(decode=True), part.get_content_type())
        for part in parsed.walk()
        if part.get_filename()
    ]


@pytest.fixture
def frozen():
    def at(when: datetime) -> None:
        clock.set_now(when)

    yield at
    clock.set_now(None)


def _schedule(customer, frequency=ReportFrequency.MONTHLY, fmt="pdf", recipients=("cfo@tenant-a.example",)):
    return report_schedule_save(
        scope=MSP, actor=Actor.system("test"), customer=customer, frequency=frequency, fmt=fmt,
        recipients=list(recipients),
    )  # fmt: skip


def test_periods_are_the_past_calendar_month_or_monday_to_sunday():
    assert last_complete_period("monthly", MID_NOVEMBER) == (
        datetime(2026, 10, 1, tzinfo=UTC),
        datetime(2026, 11, 1, tzinfo=UTC),
    )
    assert last_complete_period("monthly", datetime(2026, 1, 5, tzinfo=UTC)) == (
        datetime(2025, 12, 1, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert last_complete_period("weekly", MID_NOVEMBER) == (
        datetime(2026, 11, 9, tzinfo=UTC),
        datetime(2026, 11, 16, tzinfo=UTC),
    )
    assert last_complete_period("off", MID_NOVEMBER) is None


def test_a_new_schedule_is_monthly_and_sends_after_the_month_under_way(tenant_a, fleet_of, frozen):
    assert ReportSchedule._meta.get_field("frequency").default == ReportFrequency.MONTHLY
    fleet_of(tenant_a.customer, 2)
    frozen(MID_NOVEMBER)
    _schedule(tenant_a.customer)
    assert scheduled_reports_send() == 0  # October ended before the schedule was set: not sent after the fact
    assert mail.outbox == []
    frozen(FIRST_OF_DECEMBER)
    assert send_scheduled_reports() == 1  # the beat task
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["cfo@tenant-a.example"]
    assert message.subject == "[Fleet Lockdown] Compliance report for Tenant A Ltd: 2026-11-01 to 2026-11-30"
    assert "monthly compliance report of Tenant A Ltd's 3 servers" in message.body
    report = Report.objects.get(scheduled=True)
    (name, content, kind), (sig_name, sig, sig_kind) = attachments(message)
    assert (name, kind) == (report.filename, "application/pdf")
    assert content[:5] == b"%PDF-"
    assert (sig_name, sig_kind) == (report.signature_filename, "application/json")
    # The mailed pair verifies as any download does.
    manifest = json.loads(sig)
    assert signing.verify_bytes(content, manifest, signing.installation_key().public_key_bytes).ok
    assert report.period_start == datetime(2026, 11, 1, tzinfo=UTC)
    assert report.period_end < datetime(2026, 12, 1, tzinfo=UTC)
    assert report.created_by is None
    sent = AuditEvent.objects.get(action="report.schedule_sent")
    assert sent.changes["recipients"] == ["cfo@tenant-a.example"]
    # The same period is never sent twice (a second beat, a retried task).
    assert scheduled_reports_send() == 0
    assert len(mail.outbox) == 1


def test_weekly_csv_and_off(tenant_a, tenant_b, fleet_of, frozen):
    fleet_of(tenant_a.customer, 1)
    frozen(MID_NOVEMBER)
    _schedule(tenant_a.customer, ReportFrequency.WEEKLY, "csv")
    _schedule(tenant_b.customer, ReportFrequency.OFF)
    frozen(datetime(2026, 11, 23, 1, 0, tzinfo=UTC))  # Monday: the week of 16-22 November has ended
    assert scheduled_reports_send() == 1
    (message,) = mail.outbox
    assert message.subject.endswith("2026-11-16 to 2026-11-22")
    (name, content, kind), (_, sig, _) = attachments(message)
    assert name.endswith(".csv")
    assert kind == "text/csv"
    assert b"#" not in content
    # The CSV arrives byte for byte as signed (CRLF line ends included).
    assert signing.verify_bytes(content, json.loads(sig), signing.installation_key().public_key_bytes).ok
    assert Report.objects.get().customer == tenant_a.customer  # nothing for the customer whose schedule is off


def test_a_schedule_without_recipients_sends_nothing(tenant_a, fleet_of, frozen):
    frozen(MID_NOVEMBER)
    _schedule(tenant_a.customer, recipients=())
    frozen(FIRST_OF_DECEMBER)
    assert scheduled_reports_send() == 0
    assert not Report.objects.exists()


def test_a_failed_build_is_recorded_and_audited(tenant_a, fleet_of, frozen, monkeypatch):
    from reports import documents

    def broken(data, progress=None):
        raise RuntimeError("boom")

    monkeypatch.setattr(documents, "render_pdf", broken)
    frozen(MID_NOVEMBER)
    _schedule(tenant_a.customer)
    frozen(FIRST_OF_DECEMBER)
    assert scheduled_reports_send() == 0
    assert mail.outbox == []
    schedule = ReportSchedule.objects.get()
    assert "could not be built" in schedule.last_error
    assert AuditEvent.objects.filter(action="report.schedule_failed").count() == 1


def test_operators_of_the_customer_edit_its_schedule_and_viewers_do_not(client, carol, cora, tenant_a, tenant_b):
    url = reverse("customer_report_schedule", kwargs={"customer_id": tenant_a.customer.pk})
    form = {"frequency": "weekly", "format": "csv", "recipients": "a@example.com\nb@example.com\na@example.com"}
    client.force_login(cora)
    assert client.get(url).status_code == 403
    assert client.post(url, form).status_code == 403
    client.force_login(carol)
    assert client.get(url).status_code == 200
    assert client.post(url, form).status_code == 302
    schedule = ReportSchedule.objects.get(customer=tenant_a.customer)
    assert (schedule.frequency, schedule.format) == ("weekly", "csv")
    assert schedule.recipients == ["a@example.com", "b@example.com"]
    assert AuditEvent.objects.filter(action="customer.report_schedule").count() == 1
    other = reverse("customer_report_schedule", kwargs={"customer_id": tenant_b.customer.pk})
    assert client.get(other).status_code == 404
    assert client.post(other, form).status_code == 404
    response = client.post(url, {**form, "recipients": "not-an-address"})
    assert response.status_code == 400
    assert "Not an e-mail address: not-an-address" in response.content.decode()
