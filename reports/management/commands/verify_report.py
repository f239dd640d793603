"""`manage.py verify_report FILE [--signature SIG] [--public-key KEY]`: is this report intact and ours?

FILE is a report (PDF or CSV) or its evidence JSON. The signature comes from `--signature`
(the detached `.sig`), else from `FILE.sig` beside it, else from the line embedded at the end
of a PDF (a CSV has none: give its `.sig`). The Verify a report page runs the same check
(`signing.verify_bytes`, through `signing.verdict_for`). It is checked against this
installation's public key, or against `--public-key` (base64 raw key or a PEM file) to check
offline. Exit status 0 only when the file's SHA-256 is in the manifest and the Ed25519
signature over the manifest is valid.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.core.management.base import BaseCommand, CommandError, CommandParser

from reports import signing

MAX_BYTES = 512 * 1024 * 1024


def _trusted_key(value: str | None) -> bytes:
    if not value:
        return signing.installation_key().public_key_bytes
    path = Path(value)
    if path.exists():
        loaded = serialization.load_pem_public_key(path.read_bytes())
        if not isinstance(loaded, Ed25519PublicKey):
            raise CommandError("--public-key: not an Ed25519 public key")
        return loaded.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        raise CommandError("--public-key: give a PEM file or the base64 raw key") from None
    if len(raw) != 32:
        raise CommandError("--public-key: an Ed25519 key is 32 bytes")
    return raw


class Command(BaseCommand):
    help = "Check that a report (or its evidence JSON) is unmodified and signed by this installation."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--signature", type=Path, default=None, help="the detached .sig manifest")
        parser.add_argument("--public-key", default=None, help="trusted key: PEM file or base64 (default: ours)")

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        try:
            if path.stat().st_size > MAX_BYTES:
                raise CommandError(f"{path} is larger than {MAX_BYTES} bytes")
            data = path.read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc}") from None
        sig_path: Path | None = options["signature"]
        if sig_path is None and path.with_name(path.name + ".sig").exists():
            sig_path = path.with_name(path.name + ".sig")
        manifest = None
        if sig_path is not None:
            try:
                manifest = json.loads(sig_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise CommandError(f"cannot read the signature {sig_path}: {exc}") from None
            if not isinstance(manifest, dict):
                raise CommandError(f"{sig_path} is not a signature manifest")
        result = signing.verify_bytes(data, manifest, _trusted_key(options["public_key"]))
        if not result.ok:
            raise CommandError(f"{path}: {result.message}")
        report = (result.manifest or {}).get("report", {})
        self.stdout.write(
            f"{path}: {result.message}; report #{report.get('id')} for {report.get('customer') or 'the whole fleet'}, "
            f"{report.get('period_start')} to {report.get('period_end')}, key {result.manifest.get('key_id')}"
            if result.manifest
            else f"{path}: {result.message}"
        )
