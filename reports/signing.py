"""The installation's Ed25519 signing key, and the signature format of reports.

Format (`fleet-lockdown-report-signature/1`), a JSON *manifest*::

    {"format": "fleet-lockdown-report-signature/1", "algorithm": "Ed25519",
     "key_id": "<16 hex>", "public_key": "<base64 raw key>", "signed_at": "<ISO 8601>",
     "report": {"id": 7, "filename": "...pdf", "format": "pdf", "sha256": "<hex>",
                "customer": "Acme" | null, "period_start": "...", "period_end": "...",
                "profile_versions": ["builtin v3"]},
     "evidence": {"filename": "...evidence.json", "sha256": "<hex>"},
     "signature": "<base64 Ed25519 signature>"}

The signature covers the canonical JSON (sorted keys, no spaces, ASCII) of the manifest
without its `signature` member, so it binds the report's bytes, its evidence's bytes and the
metadata together. It travels three ways: as a detached `<report>.sig` file; embedded as the
last line of a CSV (`# fleet-lockdown-signature: <base64 manifest>`) and of a PDF (a PDF
comment `%fleet-lockdown-signature: <base64 manifest>` after `%%EOF`, which readers ignore).
A report's `sha256` is over its bytes *without* that last line. `verify_report` checks the
hash and the signature against the installation's key (not the key the manifest carries:
anyone can sign with a key of their own).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.db import IntegrityError, transaction

from reports.models import SigningKey
from servers.crypto import decrypt_secret, encrypt_secret

FORMAT = "fleet-lockdown-report-signature/1"
MARKER = b"fleet-lockdown-signature: "
# The embedded line: "# " (CSV) or "%" (PDF comment), the marker, base64, newline; at the very end.
_EMBEDDED = re.compile(rb"(?:(?<=\n)|\A)(?:# |%)fleet-lockdown-signature: ([A-Za-z0-9+/=]+)\r?\n?\Z")
KEY_NAME = "installation"


def installation_key() -> SigningKey:
    """The installation's key, generated on first use (a race between two processes keeps one)."""
    key = SigningKey.objects.filter(name=KEY_NAME).first()
    if key is not None:
        return key
    private = Ed25519PrivateKey.generate()
    raw_private = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    raw_public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    try:
        with transaction.atomic():
            return SigningKey.objects.create(
                name=KEY_NAME,
                public_key=base64.b64encode(raw_public).decode("ascii"),
                # DANGER: the private key, encrypted at rest like every credential.
                private_key_encrypted=encrypt_secret(base64.b64encode(raw_private).decode("ascii")),
            )
    except IntegrityError:
        return SigningKey.objects.get(name=KEY_NAME)


def public_key_pem(key: SigningKey) -> str:
    public = Ed25519PublicKey.from_public_bytes(key.public_key_bytes)
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _private(key: SigningKey) -> Ed25519PrivateKey:
    # DANGER: decrypts the signing key; the plaintext never leaves this function's caller.
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(decrypt_secret(key.private_key_encrypted)))


def canonical(data: dict[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sign_manifest(key: SigningKey, manifest: dict[str, Any]) -> dict[str, Any]:
    """Complete `manifest` (report, evidence, signed_at) with the key fields and the signature."""
    unsigned = {k: v for k, v in manifest.items() if k != "signature"}
    unsigned.update(format=FORMAT, algorithm="Ed25519", key_id=key.key_id, public_key=key.public_key)
    signature = _private(key).sign(canonical(unsigned))
    return {**unsigned, "signature": base64.b64encode(signature).decode("ascii")}


def embedded_line(manifest: dict[str, Any], *, pdf: bool) -> bytes:
    encoded = base64.b64encode(canonical(manifest))
    return (b"%" if pdf else b"# ") + MARKER + encoded + b"\n"


def split_embedded(data: bytes) -> tuple[bytes, dict[str, Any] | None]:
    """(the bytes the hash covers, the embedded manifest or None)."""
    offset = max(0, len(data) - 16384)
    match = _EMBEDDED.search(data, offset)
    if match is None:
        return data, None
    try:
        manifest = json.loads(base64.b64decode(match.group(1), validate=True))
    except ValueError:
        return data, None
    if not isinstance(manifest, dict):
        return data, None
    return data[: match.start()], manifest


@dataclass(frozen=True)
class Verification:
    ok: bool
    message: str
    manifest: dict[str, Any] | None = None
    part: str = ""  # "report" or "evidence": which entry of the manifest the file matched


def verify_bytes(data: bytes, manifest: dict[str, Any] | None, trusted_public_key: bytes) -> Verification:
    """Check `data` (a report or its evidence) against a manifest and a trusted public key."""
    body, embedded = split_embedded(data)
    if manifest is None:
        manifest = embedded
    if manifest is None:
        return Verification(False, "no signature: give --signature FILE (the .sig) or a file with an embedded one")
    if manifest.get("format") != FORMAT or manifest.get("algorithm") != "Ed25519":
        return Verification(False, f"unknown signature format {manifest.get('format')!r}", manifest)
    digest = sha256_hex(body)
    part = next(
        (name for name in ("report", "evidence") if isinstance(manifest.get(name), dict)
         and manifest[name].get("sha256") == digest),
        "",
    )  # fmt: skip
    if not part:
        return Verification(False, f"MODIFIED: the file's SHA-256 {digest} matches neither the report nor its evidence")
    try:
        signature = base64.b64decode(str(manifest.get("signature", "")), validate=True)
        Ed25519PublicKey.from_public_bytes(trusted_public_key).verify(
            signature, canonical({k: v for k, v in manifest.items() if k != "signature"})
        )
    except (ValueError, InvalidSignature):
        key_note = ""
        if manifest.get("public_key") != base64.b64encode(trusted_public_key).decode("ascii"):
            key_note = f" (signed by key {manifest.get('key_id')!r}, not this installation's key)"
        return Verification(False, f"BAD SIGNATURE: the manifest was altered or not signed by us{key_note}", manifest)
    return Verification(True, f"OK: {part} {manifest[part].get('filename')} is intact and signed", manifest, part)
