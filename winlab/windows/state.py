"""A deterministic diff of two ``to_state_dict()`` snapshots, for "rollback restores the state" tests."""

from __future__ import annotations

import json


def state_diff(before: object, after: object, *, ignore: tuple[str, ...] = (), limit: int = 200) -> list[str]:
    """Sorted differences as ``path: old -> new`` lines; an empty list means equal.

    ``ignore`` drops every difference whose path starts with one of the prefixes (e.g.
    ``"fs/C:\\\\Program Files (x86)\\\\Mail Enable\\\\Queues"`` to ignore mail flow).
    """
    out: list[str] = []
    _diff(before, after, "", out)
    lines = sorted(line for line in out if not any(line.startswith(prefix) for prefix in ignore))
    return lines[:limit]


def _show(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=str)[:160]


def _diff(a: object, b: object, path: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            sub = f"{path}/{key}" if path else str(key)
            if key not in a:
                out.append(f"{sub}: <absent> -> {_show(b[key])}")
            elif key not in b:
                out.append(f"{sub}: {_show(a[key])} -> <absent>")
            else:
                _diff(a[key], b[key], sub, out)
    elif a != b:
        out.append(f"{path}: {_show(a)} -> {_show(b)}")
