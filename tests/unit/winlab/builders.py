"""Small hosts for the emulated-Windows unit tests (few store files and registry subkeys, so fast)."""

from __future__ import annotations

from winlab.windows.clock import ManualClock
from winlab.windows.factory import HostSpec, build_host
from winlab.windows.host import WindowsHost


def make_host(**overrides: object) -> WindowsHost:
    spec = HostSpec(**{"store_files": 12, "registry_subkeys": 5, **overrides})  # type: ignore[arg-type]
    return build_host(spec, ManualClock())
