"""Customers' maintenance windows: when a change that interrupts mail may start."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from celery.schedules import ParseException, crontab_parser
from django.core.exceptions import ValidationError

# One numbering of weekdays in every form: Python's (and ISO's) Monday first, shown by name.
# Crontab's day_of_week counts from Sunday (0 or 7); crontab_days() writes names, never numbers,
# so a stored schedule cannot be read with the wrong numbering.
WEEKDAYS: tuple[str, ...] = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
WEEKDAY_CHOICES = [(str(number), name) for number, name in enumerate(WEEKDAYS)]
_CRON_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TIME_ZONES = sorted(available_timezones() - {"localtime", "Factory"})
TIME_ZONE_CHOICES = [(name, name.replace("_", " ")) for name in TIME_ZONES]


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


def days_text(days: frozenset[int] | set[int]) -> str:
    """{5, 6} → '5,6' (Monday = 0); every day → '' (how Customer.maintenance_days stores it)."""
    return "" if len(days) == 7 else ",".join(str(day) for day in sorted(days))


def days_label(days: frozenset[int] | set[int]) -> str:
    """{0,1,2,3,4} → 'Monday to Friday'; {5, 6} → 'Saturday, Sunday'; all → 'every day'."""
    ordered = sorted(days)
    if len(ordered) == 7:
        return "every day"
    if len(ordered) > 2 and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{WEEKDAYS[ordered[0]]} to {WEEKDAYS[ordered[-1]]}"
    return ", ".join(WEEKDAYS[day] for day in ordered) or "no day"


def crontab_days(days: frozenset[int] | set[int]) -> str:
    """Monday-first weekday numbers → a crontab day_of_week in names: {0, 4} → 'mon,fri'; all → '*'."""
    if not days:
        raise ValidationError("Choose at least one day.")
    return "*" if len(days) == 7 else ",".join(_CRON_NAMES[day] for day in sorted(days))


def days_from_crontab(day_of_week: str) -> frozenset[int]:
    """A crontab day_of_week ('*', '1-5', 'mon-fri', '0,6', '7') → Monday-first weekday numbers."""
    try:
        sunday_first = crontab_parser(7).parse(day_of_week.strip() or "*")
    except (ParseException, ValueError):
        raise ValidationError(f"{day_of_week[:64]!r} is not a crontab day of week.") from None
    return frozenset((number - 1) % 7 for number in sunday_first)


def crontab_label(*, minute: str, hour: str, day_of_week: str) -> str:
    """'15', '4', 'mon-fri' → 'Monday to Friday at 04:15 UTC'; anything fancier is shown as crontab."""
    try:
        days = days_label(days_from_crontab(day_of_week))
    except ValidationError:
        days = f"days {day_of_week!r}"
    if minute.isdigit() and hour.isdigit():
        return f"{days} at {int(hour):02d}:{int(minute):02d} UTC"
    return f"{days}, crontab minute {minute!r} hour {hour!r} (UTC)"


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
