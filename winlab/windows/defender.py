"""Microsoft Defender's exclusion list (Add-/Remove-/Set-MpPreference -ExclusionPath), or its absence."""

from __future__ import annotations

from winlab.windows.context import HostContext
from winlab.windows.errors import ERROR_ACCESS_DENIED, HRESULT_DEFENDER_UNAVAILABLE, Win32Error
from winlab.windows.tokens import Token

HIDDEN_FOR_NON_ADMINS = "N/A: Must be an administrator to view exclusions"


class Defender:
    """Defender on a host: ``installed`` False means the cmdlets fail (no WinDefend service)."""

    def __init__(self, ctx: HostContext, *, installed: bool) -> None:
        self.ctx = ctx
        self.installed = installed
        self.realtime = installed
        self.exclusion_paths: list[str] = []

    def _require(self, token: Token | None) -> None:
        if not self.installed:
            raise Win32Error(HRESULT_DEFENDER_UNAVAILABLE)
        if token is not None and not token.is_admin:
            raise Win32Error(ERROR_ACCESS_DENIED)

    def get_exclusion_paths(self, token: Token | None = None) -> list[str]:
        """(Get-MpPreference).ExclusionPath; since platform 4.18.23070 hidden from non-admins."""
        if not self.installed:
            raise Win32Error(HRESULT_DEFENDER_UNAVAILABLE)
        if token is not None and not token.is_admin:
            return [HIDDEN_FOR_NON_ADMINS]
        return list(self.exclusion_paths)

    def add_exclusion_paths(self, paths: list[str], token: Token | None = None) -> list[str]:
        """Add-MpPreference -ExclusionPath: appends what is missing (case-insensitive); returns the added."""
        self._require(token)
        known = {p.lower().rstrip("\\") for p in self.exclusion_paths}
        added = []
        for path in paths:
            key = path.lower().rstrip("\\")
            if key not in known:
                self.exclusion_paths.append(path)
                known.add(key)
                added.append(path)
        if added:
            self.ctx.mutated("defender.add_exclusion", ";".join(added))
        return added

    def remove_exclusion_paths(self, paths: list[str], token: Token | None = None) -> list[str]:
        self._require(token)
        drop = {p.lower().rstrip("\\") for p in paths}
        removed = [p for p in self.exclusion_paths if p.lower().rstrip("\\") in drop]
        if removed:
            self.exclusion_paths = [p for p in self.exclusion_paths if p not in removed]
            self.ctx.mutated("defender.remove_exclusion", ";".join(removed))
        return removed

    def set_exclusion_paths(self, paths: list[str], token: Token | None = None) -> bool:
        """Set-MpPreference -ExclusionPath: replaces the whole list."""
        self._require(token)
        if self.exclusion_paths == list(paths):
            return False
        self.exclusion_paths = list(paths)
        self.ctx.mutated("defender.set_exclusions", ";".join(paths))
        return True

    def is_excluded(self, path: str) -> bool:
        low = path.lower()
        return any(
            low == p.lower().rstrip("\\") or low.startswith(p.lower().rstrip("\\") + "\\") for p in self.exclusion_paths
        )

    def state(self) -> dict[str, object]:
        return {"installed": self.installed, "realtime": self.realtime, "exclusion_paths": list(self.exclusion_paths)}
