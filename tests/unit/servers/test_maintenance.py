"""Maintenance windows: the window open now, or the next one, in the customer's time zone."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest
from django.core.exceptions import ValidationError

from servers.maintenance import current_or_next_window, parse_days


def _window(now: datetime, **overrides):
    args = {"days": "5,6", "start": time(1, 0), "hours": 4, "tz_name": "Europe/Berlin", "now": now}
    args.update(overrides)
    return current_or_next_window(**args)


def test_next_window_is_the_next_allowed_weekday_in_local_time():
    # Monday 2026-11-30 10:00 UTC → Saturday 2026-12-05 01:00 Berlin (00:00 UTC).
    window = _window(datetime(2026, 11, 30, 10, 0, tzinfo=UTC))
    assert window.start == datetime(2026, 12, 5, 0, 0, tzinfo=UTC)
    assert window.end == datetime(2026, 12, 5, 4, 0, tzinfo=UTC)


def test_an_open_window_is_returned_while_it_lasts():
    now = datetime(2026, 12, 5, 2, 30, tzinfo=UTC)  # Saturday 03:30 in Berlin
    window = _window(now)
    assert window.contains(now)


def test_a_window_crossing_midnight_is_still_open_the_next_day():
    # Every day 22:00–04:00 UTC; at 02:00 the window that opened yesterday is open.
    now = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
    window = _window(now, days="", start=time(22, 0), hours=6, tz_name="UTC")
    assert window.start == datetime(2026, 11, 30, 22, 0, tzinfo=UTC)
    assert window.contains(now)


def test_daylight_saving_time_is_honoured():
    # Berlin is UTC+2 in summer: Saturday 2026-07-04 01:00 local = 2026-07-03 23:00 UTC.
    window = _window(datetime(2026, 7, 1, 12, 0, tzinfo=UTC))
    assert window.start == datetime(2026, 7, 3, 23, 0, tzinfo=UTC)


@pytest.mark.parametrize("text", ["7", "mon", "1;2", "-1"])
def test_bad_weekdays_are_refused(text):
    with pytest.raises(ValidationError):
        parse_days(text)


def test_unknown_time_zone_is_refused():
    with pytest.raises(ValidationError):
        _window(datetime(2026, 11, 30, tzinfo=UTC), tz_name="Mars/Olympus")
