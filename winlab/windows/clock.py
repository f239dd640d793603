"""The injectable clock: delays, expiries and costs move it; tests never sleep."""

from __future__ import annotations

from typing import Protocol

# 2024-01-01T00:00:00Z: a fixed start keeps every host build deterministic.
DEFAULT_EPOCH = 1_704_067_200.0


class Clock(Protocol):
    """Seconds since the Unix epoch that only move when someone advances them (or real time passes)."""

    def now(self) -> float: ...

    def advance(self, seconds: float) -> None: ...


class ManualClock:
    """A clock that moves only through :meth:`advance`; share one across a fleet to give it one timeline."""

    def __init__(self, start: float = DEFAULT_EPOCH) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._now += seconds
