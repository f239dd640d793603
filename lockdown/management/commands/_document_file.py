"""Reading the document file an import command names (import_profile, import_advisories): size-capped, UTF-8."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError

from lockdown.exchange import decode_upload
from lockdown.rules import ProfileError


def read_document_file(path: Path) -> str:
    """The text of `path`, at most FLEET_MAX_UPLOAD_BYTES and UTF-8; anything else is a CommandError."""
    limit: int = settings.FLEET_MAX_UPLOAD_BYTES
    try:
        with path.open("rb") as handle:
            raw = handle.read(limit + 1)
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from None
    if len(raw) > limit:
        raise CommandError(f"{path} is larger than the limit of {limit:,} bytes")
    try:
        return decode_upload(raw)
    except ProfileError as exc:
        raise CommandError(str(exc)) from None
