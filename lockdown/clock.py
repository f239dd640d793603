"""The clock waivers are judged by. Tests move it (`set_now`, `frozen`) instead of sleeping.

Call `clock.now()` through the module (`from lockdown import clock`), never
`from lockdown.clock import now`, so an override reaches every caller.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from django.utils import timezone

_frozen_at: datetime | None = None


def now() -> datetime:
    """The current time (timezone-aware), or the time a test set."""
    return _frozen_at if _frozen_at is not None else timezone.now()


def set_now(value: datetime | None) -> None:
    """Freeze the clock at `value` (aware), or let it run again with None."""
    global _frozen_at
    if value is not None and timezone.is_naive(value):
        raise ValueError("the clock takes timezone-aware datetimes")
    _frozen_at = value


@contextmanager
def frozen(at: datetime) -> Iterator[None]:
    """Freeze the clock at `at` for the duration of a block."""
    previous = _frozen_at
    set_now(at)
    try:
        yield
    finally:
        set_now(previous)
