"""An audit event's `changes` as rows people read: "field: old → new".

Pure Python (no Django), so the rules below are unit-tested without a database. Services write
`{field: [old, new]}` (`servers.audit.diff`) or, for events that record a value rather than a
change, `{field: value}`; values are JSON (None, bools, numbers, strings, lists, dicts).

- None reads "—", an empty string "(empty)", booleans "yes"/"no", lists "a, b" ("none" when
  empty), dicts "key: value; ...".
- A value longer than `LONG` characters or spanning lines never widens the page: it is shortened
  to its first line (a PEM block to its kind and SHA-256 fingerprint), and the whole text is kept
  in `full` for the page to put behind <details>.
- Secrets are never in the audit data (`servers.audit.audit_record` replaces them); fields named in
  `hidden` are still shown only as the marker the trail stored, whatever their value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

LONG: Final = 120
FIRST_LINE: Final = 80
EMPTY: Final = "—"
BLANK: Final = "(empty)"
HIDDEN: Final = "[secret changed]"
# Fields whose two-item list is one recorded value, not a [before, after] pair.
VALUE_FIELDS: Final = frozenset({"period", "servers", "canary_servers", "services", "fields"})

_PEM_RE: Final = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)\s*-----END \1-----", re.DOTALL)


@dataclass(frozen=True)
class Shown:
    """One value: a short single line, and the whole text when the line is shortened."""

    text: str
    full: str = ""

    @property
    def shortened(self) -> bool:
        return bool(self.full)


@dataclass(frozen=True)
class ChangeRow:
    """ "field: old → new", or "field: value" (`old` is None) for a recorded value."""

    field: str
    new: Shown
    old: Shown | None = None

    @property
    def text(self) -> str:
        """The row as one line of plain text (CSV export)."""
        if self.old is None:
            return f"{self.field}: {self.new.full or self.new.text}"
        return f"{self.field}: {self.old.full or self.old.text} → {self.new.full or self.new.text}"


def pem_summary(text: str) -> str | None:
    """ "certificate, SHA-256 3F:A2:…" for text holding a PEM block; None otherwise."""
    match = _PEM_RE.search(text)
    if match is None:
        return None
    kind = match.group(1).lower()
    try:
        der = base64.b64decode("".join(match.group(2).split()), validate=True)
    except (binascii.Error, ValueError):
        der = match.group(0).encode()
    digest = hashlib.sha256(der).hexdigest().upper()
    fingerprint = ":".join(digest[i : i + 2] for i in range(0, 16, 2))
    count = len(_PEM_RE.findall(text))
    more = f" (+{count - 1} more)" if count > 1 else ""
    return f"{kind}, SHA-256 {fingerprint}…{more}"


def _plain(value: Any) -> str:
    if value is None:
        return EMPTY
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value == "":
        return BLANK
    if isinstance(value, (list, tuple)):
        return ", ".join(_plain(item) for item in value) if value else "none"
    if isinstance(value, dict):
        return "; ".join(f"{key}: {_plain(item)}" for key, item in value.items()) if value else "none"
    return str(value)


def shown(value: Any) -> Shown:
    """A value as a short line (and its whole text when that line had to be shortened)."""
    text = _plain(value)
    pem = pem_summary(text)
    if pem is not None:
        return Shown(pem, text)
    if len(text) <= LONG and "\n" not in text and "\r" not in text:
        return Shown(text)
    first = text.strip().splitlines()[0] if text.strip() else ""
    if len(first) > FIRST_LINE:
        first = first[:FIRST_LINE]
    return Shown(first.rstrip() + " …", text)


def change_rows(changes: Mapping[str, Any], *, hidden: frozenset[str] = frozenset()) -> list[ChangeRow]:
    """The rows of one event's `changes`, in the order they were recorded."""
    rows: list[ChangeRow] = []
    if not isinstance(changes, Mapping):
        return [ChangeRow("changes", shown(changes))]
    for field, value in changes.items():
        name = str(field)
        if name in hidden:
            rows.append(ChangeRow(name, Shown(HIDDEN)))
        elif isinstance(value, list) and len(value) == 2 and name not in VALUE_FIELDS:
            rows.append(ChangeRow(name, shown(value[1]), shown(value[0])))
        else:
            rows.append(ChangeRow(name, shown(value)))
    return rows
