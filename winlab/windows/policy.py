"""Group Policy that defines user rights: each refresh resets a right's holders to the GPO's list.

Windows refreshes policy every 90 minutes plus a random 0-30 minute offset; ``gpupdate``
refreshes at once. A right the GPO defines therefore reverts any local change on refresh.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from winlab.windows.context import HostContext
from winlab.windows.lsa import Lsa

REFRESH_INTERVAL = 90 * 60.0
REFRESH_MAX_OFFSET = 30 * 60.0


@dataclass
class GroupPolicyObject:
    """A GPO's User Rights Assignment section: right -> the exact list of SIDs it grants."""

    name: str
    user_rights: dict[str, tuple[str, ...]] = field(default_factory=dict)


class GroupPolicy:
    """Linked GPOs and their refresh timer on the host's clock."""

    def __init__(self, ctx: HostContext, lsa: Lsa, seed: int) -> None:
        self.ctx = ctx
        self.lsa = lsa
        self.gpos: list[GroupPolicyObject] = []
        self.refreshes = 0
        self._rng = random.Random(seed)  # noqa: S311 - a deterministic schedule, not security
        self.next_refresh: float | None = None

    def link(self, gpo: GroupPolicyObject, *, refresh_in: float | None = None) -> None:
        """Link a GPO (a fault for tests: it will revert the rights it defines at the next refresh).

        ``refresh_in`` moves the next background refresh to that many seconds from now (the refresh
        that happens to fall inside a long job); the interval after it is the usual one.
        """
        self.gpos.append(gpo)
        if refresh_in is not None:
            self.ctx.cancel("gpo-refresh")
            self.next_refresh = self.ctx.clock.now() + max(0.0, refresh_in)
            self.ctx.schedule(self.next_refresh, "gpo-refresh", self._on_timer)
        elif self.next_refresh is None:
            self._schedule(self.ctx.clock.now())

    def unlink(self, name: str) -> None:
        self.gpos = [g for g in self.gpos if g.name != name]
        if not self.gpos:
            self.ctx.cancel("gpo-refresh")
            self.next_refresh = None

    def _schedule(self, after: float) -> None:
        self.next_refresh = after + REFRESH_INTERVAL + self._rng.uniform(0, REFRESH_MAX_OFFSET)
        self.ctx.schedule(self.next_refresh, "gpo-refresh", self._on_timer)

    def _on_timer(self, due: float) -> None:
        self.refresh()
        if self.gpos:
            self._schedule(due)

    def refresh(self) -> int:
        """Apply every linked GPO now (gpupdate /force); returns how many rights were reset."""
        self.refreshes += 1
        changed = 0
        merged: dict[str, tuple[str, ...]] = {}
        for gpo in self.gpos:  # later links win, as with GPO precedence
            merged.update(gpo.user_rights)
        for right, holders in sorted(merged.items()):
            if self.lsa.set_holders(right, holders, source="gpo.refresh"):
                changed += 1
        return changed
