"""One weekday numbering for the maintenance window and the verify schedule: Monday first, by name."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from servers.maintenance import (
    WEEKDAY_CHOICES,
    crontab_days,
    crontab_label,
    days_from_crontab,
    days_label,
    days_text,
    parse_days,
)


def test_the_choices_start_on_monday() -> None:
    assert WEEKDAY_CHOICES[0] == ("0", "Monday")
    assert WEEKDAY_CHOICES[6] == ("6", "Sunday")


@pytest.mark.parametrize(
    ("days", "cron"),
    [({0}, "mon"), ({6}, "sun"), ({5, 6}, "sat,sun"), ({0, 1, 2, 3, 4}, "mon,tue,wed,thu,fri"), (set(range(7)), "*")],
)
def test_crontab_days_are_names_and_read_back_the_same(days: set[int], cron: str) -> None:
    assert crontab_days(days) == cron
    assert days_from_crontab(cron) == frozenset(days)


@pytest.mark.parametrize(
    ("cron", "days"),
    [
        ("0", {6}),
        ("1", {0}),
        ("1-5", {0, 1, 2, 3, 4}),
        ("0,6", {5, 6}),
        ("*", set(range(7))),
        ("mon-fri", {0, 1, 2, 3, 4}),
    ],
)
def test_a_stored_crontab_counts_from_sunday(cron: str, days: set[int]) -> None:
    assert days_from_crontab(cron) == frozenset(days)


def test_no_day_and_bad_crontab_are_refused() -> None:
    with pytest.raises(ValidationError):
        crontab_days(set())
    with pytest.raises(ValidationError):
        days_from_crontab("funday")


@pytest.mark.parametrize(
    ("days", "label"),
    [
        (set(range(7)), "every day"),
        ({0, 1, 2, 3, 4}, "Monday to Friday"),
        ({5, 6}, "Saturday, Sunday"),
        ({0, 2, 4}, "Monday, Wednesday, Friday"),
        ({6}, "Sunday"),
    ],
)
def test_days_read_as_words(days: set[int], label: str) -> None:
    assert days_label(days) == label


def test_the_window_text_round_trips() -> None:
    assert days_text({6, 5}) == "5,6"
    assert days_text(set(range(7))) == ""
    assert parse_days(days_text({1, 3})) == {1, 3}


def test_a_schedule_reads_as_words() -> None:
    assert crontab_label(minute="5", hour="4", day_of_week="mon-fri") == "Monday to Friday at 04:05 UTC"
    assert crontab_label(minute="*/15", hour="*", day_of_week="*") == "every day, crontab minute '*/15' hour '*' (UTC)"
