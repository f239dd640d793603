"""What every subsystem of one host shares: the clock, the mutation counter, timers."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from winlab.windows.clock import Clock

MUTATION_LOG_LIMIT = 10_000


@dataclass(frozen=True)
class Mutation:
    """One applied state change: when, which subsystem, what object."""

    at: float
    kind: str
    target: str


@dataclass
class HostContext:
    """Counters and time for one host.

    ``mutations`` counts state changes actually applied (a write that sets the same state does
    not count). ``work`` counts objects rewritten, including inherited-ACE propagation, which
    also costs ``acl_cost_seconds`` of clock time per object visited.
    """

    clock: Clock
    acl_cost_seconds: float = 0.002
    registry_cost_seconds: float = 0.0005
    mutations: int = 0
    work: int = 0
    building: bool = False
    log: list[Mutation] = field(default_factory=list)
    io_factor: Callable[[str], float] = lambda _path: 1.0
    _timers: list[tuple[float, int, str, Callable[[float], None]]] = field(default_factory=list)
    _seq: int = 0
    _running: bool = False
    _quiet: int = 0

    def mutated(self, kind: str, target: str) -> None:
        """Record one applied state change (ignored while the host is being built or for mail flow)."""
        if self.building or self._quiet:
            return
        self.mutations += 1
        if len(self.log) < MUTATION_LOG_LIMIT:
            self.log.append(Mutation(self.clock.now(), kind, target))

    @contextmanager
    def quiet(self) -> Iterator[None]:
        """Changes made inside are data (mail moving through queues), not configuration: not counted."""
        self._quiet += 1
        try:
            yield
        finally:
            self._quiet -= 1

    def charge(self, seconds: float, *, work: int = 0) -> None:
        """Spend clock time (and count work) on an operation; free while building."""
        if self.building:
            return
        self.work += work
        if seconds > 0:
            self.clock.advance(seconds)

    def schedule(self, due: float, name: str, callback: Callable[[float], None]) -> None:
        """Run ``callback(due)`` once the clock has reached ``due`` (at the next :meth:`run_due`)."""
        self._seq += 1
        heapq.heappush(self._timers, (due, self._seq, name, callback))

    def cancel(self, name: str) -> None:
        self._timers = [t for t in self._timers if t[2] != name]
        heapq.heapify(self._timers)

    def run_due(self) -> None:
        """Fire every timer whose time has come, oldest first (re-entrant calls are ignored)."""
        if self._running:
            return
        self._running = True
        try:
            while self._timers and self._timers[0][0] <= self.clock.now():
                due, _seq, _name, callback = heapq.heappop(self._timers)
                callback(due)
        finally:
            self._running = False
