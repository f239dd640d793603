"""Issue 12 item 4: a report is asked for in the request and built by a worker: queued -> building ->
ready (or failed, with the reason), with progress; the pages poll while it is built; files only when ready."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse

from lockdown import clock
from reports import documents, services
from reports.models import Report, ReportFormat, ReportStatus
from servers.audit import Actor
from servers.models import AuditEvent, Membership

pytestmark = pytest.mark.django_db
FILES = ("report_download", "report_evidence", "report_signature")


@pytest.fixture
def queue():
    """Reports enqueued after commit land here instead of on the broker."""
    sent: list[int] = []
    services.set_enqueue(sent.append)
    yield sent
    services.set_enqueue(None)


def _ask(client, customer, fmt="pdf"):
    from django.test import TestCase

    today = clock.now().date()
    form = {"customer": customer.pk, "format": fmt, "start": str(today - timedelta(days=3)), "end": str(today)}
    with TestCase.captureOnCommitCallbacks(execute=True):
        return client.post(reverse("report_create"), form)


def _url(name, report):
    return reverse(name, kwargs={"report_id": report.pk})


def test_the_request_only_queues_and_the_worker_builds(client, alice, tenant_a, fleet_of, queue):
    fleet_of(tenant_a.customer, 2)
    client.force_login(alice)
    response = _ask(client, tenant_a.customer)
    report = Report.objects.get()
    assert response["Location"] == _url("report_detail", report)
    assert queue == [report.pk]  # enqueued once the request committed
    assert report.status == ReportStatus.QUEUED
    assert bytes(report.content) == b""
    assert not AuditEvent.objects.filter(action="report.create").exists()
    for name in FILES:
        assert client.get(_url(name, report)).status_code == 404  # nothing to download yet
    page = client.get(_url("report_detail", report)).content.decode()
    assert "Queued" in page
    assert 'hx-trigger="every 1s"' in page  # the page follows the build
    listing = client.get(reverse("report_list"), headers={"HX-Request": "true"}).content.decode()
    assert 'hx-trigger="every 2s"' in listing
    assert "when ready" in listing

    assert services.report_build(report.pk) == ReportStatus.READY
    report.refresh_from_db()
    assert (report.status, report.progress, report.server_count) == (ReportStatus.READY, 100, 3)
    assert report.coverage_text.endswith("over 2 of 3 servers; 1 not assessed")
    assert report.started_at is not None
    assert report.finished_at is not None
    assert AuditEvent.objects.filter(action="report.create").count() == 1
    page = client.get(_url("report_detail", report)).content.decode()
    assert "hx-trigger" not in page  # polling stops
    assert "Ready" in page
    assert "over 2 of 3 servers; 1 not assessed" in page
    for name in FILES:
        assert client.get(_url(name, report)).status_code == 200
    listing = client.get(reverse("report_list"), headers={"HX-Request": "true"}).content.decode()
    assert "hx-trigger" not in listing


def test_progress_is_recorded_while_the_servers_are_rendered(tenant_a, fleet_of, monkeypatch):
    fleet_of(tenant_a.customer, 12)
    seen: list[tuple[str, int, str]] = []
    real = documents.render_pdf

    def watching(data, progress=None):
        def spy(done):
            assert progress is not None
            progress(done)
            report = Report.objects.get()
            seen.append((report.status, report.progress, report.progress_note))

        return real(data, progress=spy)

    monkeypatch.setattr(documents, "render_pdf", watching)
    now = clock.now()
    services.report_create(
        scope=services.SYSTEM_SCOPE, actor=Actor.system("test"), customer=tenant_a.customer,
        fmt=ReportFormat.PDF, period_start=now - timedelta(days=1), period_end=now,
    )  # fmt: skip
    assert {status for status, _, _ in seen} == {ReportStatus.BUILDING}
    percents = [p for _, p, _ in seen]
    assert percents == sorted(percents)
    assert 10 < percents[0] < percents[-1] == 90
    assert ("building", 90, "Rendering server 13 of 13") in seen


def test_a_second_delivery_of_the_task_does_nothing(tenant_a, fleet_of, queue):
    fleet_of(tenant_a.customer, 1)
    now = clock.now()
    report = services.report_request(
        scope=services.SYSTEM_SCOPE, actor=Actor.system("test"), customer=tenant_a.customer,
        fmt=ReportFormat.CSV, period_start=now - timedelta(days=1), period_end=now,
    )  # fmt: skip
    assert services.report_build(report.pk) == ReportStatus.READY
    signature = Report.objects.get(pk=report.pk).signature
    assert services.report_build(report.pk) == "done already"
    assert Report.objects.get(pk=report.pk).signature == signature
    assert AuditEvent.objects.filter(action="report.create").count() == 1


def test_a_build_left_by_a_dead_worker_is_claimed_again_after_the_time_limit(tenant_a, fleet_of, settings):
    fleet_of(tenant_a.customer, 1)
    now = clock.now()
    report = services.report_request(
        scope=services.SYSTEM_SCOPE, actor=Actor.system("test"), customer=tenant_a.customer,
        fmt=ReportFormat.CSV, period_start=now - timedelta(days=1), period_end=now, enqueue=False,
    )  # fmt: skip
    Report.objects.filter(pk=report.pk).update(status=ReportStatus.BUILDING, started_at=now - timedelta(seconds=60))
    settings.CELERY_TASK_TIME_LIMIT = 120
    assert services.report_build(report.pk) == "done already"  # still within the limit: another worker has it
    Report.objects.filter(pk=report.pk).update(started_at=now - timedelta(seconds=121))
    assert services.report_build(report.pk) == ReportStatus.READY


def test_a_failed_build_says_so_without_the_errors_text_and_offers_no_file(
    client, alice, tenant_a, fleet_of, queue, monkeypatch
):
    fleet_of(tenant_a.customer, 1)

    def broken(data, progress=None):
        raise RuntimeError("password=hunter2 in some library message")

    monkeypatch.setattr(documents, "render_pdf", broken)
    client.force_login(alice)
    _ask(client, tenant_a.customer)
    report = Report.objects.get()
    assert services.report_build(report.pk) == ReportStatus.FAILED
    report.refresh_from_db()
    assert report.status == ReportStatus.FAILED
    assert report.error == "The report could not be built: RuntimeError"
    assert report.finished_at is not None
    page = client.get(_url("report_detail", report)).content.decode()
    assert "The report could not be built: RuntimeError" in page
    assert "hunter2" not in page
    assert "hx-trigger" not in page
    assert client.get(_url("report_download", report)).status_code == 404


def test_a_right_revoked_before_the_build_stops_it(client, cora, tenant_a, fleet_of, queue):
    fleet_of(tenant_a.customer, 1)
    client.force_login(cora)
    _ask(client, tenant_a.customer, "csv")
    report = Report.objects.get()
    Membership.objects.filter(user=cora).delete()
    assert services.report_build(report.pk) == ReportStatus.FAILED
    report.refresh_from_db()
    assert "your role does not allow" in report.error
    assert bytes(report.content) == b""


def test_the_report_list_polls_with_a_constant_number_of_queries(client, alice, tenant_a, fleet_of, queue):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    fleet_of(tenant_a.customer, 1)
    client.force_login(alice)

    def count() -> int:
        client.get(reverse("report_list"), headers={"HX-Request": "true"})
        with CaptureQueriesContext(connection) as captured:
            client.get(reverse("report_list"), headers={"HX-Request": "true"})
        return len(captured.captured_queries)

    _ask(client, tenant_a.customer)
    one = count()
    for _ in range(5):
        _ask(client, tenant_a.customer, "csv")
    assert count() == one
