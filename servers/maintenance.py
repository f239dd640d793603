"""Customers' maintenance windows: when a change that interrupts mail may start."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.exceptions import ValidationError


@dataclass(frozen=True)
class Window:
    """One occurrence of a maintenance window, as aware datetimes."""

    start: datetime
    end: datetime

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


def parse_days(text: str) -> frozenset[int]:
    """'5,6' → {5, 6}; empty means every day. Raises ValidationError on anything else."""
    if not text.strip():
        return frozenset(range(7))
    days: set[int] = set()
    for part in text.replace(" ", "").split(","):
        if not part.isdigit() or not 0 <= int(part) <= 6:
            raise ValidationError("Weekdays are numbers 0 (Monday) to 6 (Sunday), separated by commas.")
        days.add(int(part))
    return frozenset(days)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"Unknown time zone {name[:64]!r} (use a name like Europe/Berlin).") from None


def current_or_next_window(*, days: str, start: time, hours: int, tz_name: str, now: datetime) -> Window:
    """The window open at `now`, or the next one to open. `now` must be aware."""
    tz = zone(tz_name)
    allowed = parse_days(days)
    local_now = now.astimezone(tz)
    length = timedelta(hours=max(1, hours))
    # Yesterday's window may still be open (a window that crosses midnight).
    for offset in range(-1, 8):
        day = (local_now + timedelta(days=offset)).date()
        if day.weekday() not in allowed:
            continue
        opens = datetime.combine(day, start, tzinfo=tz)
        window = Window(start=opens, end=opens + length)
        if window.end > now:
            return window
    raise ValidationError("No maintenance window found in the next week.")  # unreachable with ≥ 1 day
