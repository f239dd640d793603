"""One date format on every page: ISO dates, a 24-hour clock (no "9:07 p.m.." after a sentence's full stop)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from django.template import Context, Template
from django.urls import reverse

from jobs.models import Job
from tests.factories import tenant_job

MOMENT = datetime(2026, 12, 2, 21, 7, tzinfo=UTC)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ moment }}", "2026-12-02 21:07"),
        ("{{ moment|date }}", "2026-12-02"),
        ('{{ moment|date:"DATETIME_FORMAT" }}', "2026-12-02 21:07"),
        ("{{ moment|time }}", "21:07"),
        ("{{ day }}", "2026-12-02"),
        ("Finished at {{ moment }}.", "Finished at 2026-12-02 21:07."),
    ],
)
def test_bare_and_named_formats_are_iso_and_24_hour(template: str, expected: str) -> None:
    assert Template(template).render(Context({"moment": MOMENT, "day": date(2026, 12, 2)})) == expected


@pytest.mark.django_db
def test_the_job_list_shows_iso_times(client, alice, tenant_a) -> None:
    Job.objects.filter(pk=tenant_job(tenant_a)).update(created_at=MOMENT, finished_at=MOMENT)
    client.force_login(alice)
    page = client.get(reverse("job_list")).content.decode()
    assert "2026-12-02 21:07" in page
    assert "p.m." not in page
    assert "a.m." not in page
