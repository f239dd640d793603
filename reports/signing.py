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
metadata together. It travels as a detached `<report>.sig` file, and a PDF also carries it
embedded (a PDF comment `%fleet-lockdown-signature: <base64 manifest>` after `%%EOF`, which
readers ignore); a PDF's `sha256` is over its bytes *without* that last line. A CSV carries no
signature line (a spreadsheet would read it as a row): its `sha256` is over all of its bytes,
and its signature is only the `.sig`. (Older CSVs ended with `# fleet-lockdown-signature: ...`;
`split_embedded` still reads that line.) `verify_report` checks the
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
    # "valid", "no_signature", "unknown_format", "modified" (the file's hash is not in the manifest),
    # "bad_signature" (the manifest was altered) or "unknown_key" (signed, but not by the trusted key).
    kind: str = "valid"


def verify_bytes(data: bytes, manifest: dict[str, Any] | None, trusted_public_key: bytes) -> Verification:
    """Check `data` (a report or its evidence) against a manifest and a trusted public key."""
    body, embedded = split_embedded(data)
    if manifest is None:
        manifest = embedded
    if manifest is None:
        return Verification(
            False, "no signature: give --signature FILE (the .sig) or a file with an embedded one", kind="no_signature"
        )
    if manifest.get("format") != FORMAT or manifest.get("algorithm") != "Ed25519":
        return Verification(
            False, f"unknown signature format {manifest.get('format')!r}", manifest, kind="unknown_format"
        )
    digest = sha256_hex(body)
    part = next(
        (name for name in ("report", "evidence") if isinstance(manifest.get(name), dict)
         and manifest[name].get("sha256") == digest),
        "",
    )  # fmt: skip
    if not part:
        return Verification(
            False,
            f"MODIFIED: the file's SHA-256 {digest} matches neither the report nor its evidence",
            manifest,
            kind="modified",
        )
    if not manifest_authentic(manifest, trusted_public_key):
        key_note, kind = "", "bad_signature"
        if manifest.get("public_key") != base64.b64encode(trusted_public_key).decode("ascii"):
            key_note, kind = f" (signed by key {manifest.get('key_id')!r}, not this installation's key)", "unknown_key"
        return Verification(
            False, f"BAD SIGNATURE: the manifest was altered or not signed by us{key_note}", manifest, kind=kind
        )
    return Verification(True, f"OK: {part} {manifest[part].get('filename')} is intact and signed", manifest, part)


def manifest_authentic(manifest: dict[str, Any], trusted_public_key: bytes) -> bool:
    """Whether the manifest's Ed25519 signature is valid under the trusted key (the file is not looked at)."""
    try:
        signature = base64.b64decode(str(manifest.get("signature", "")), validate=True)
        Ed25519PublicKey.from_public_bytes(trusted_public_key).verify(
            signature, canonical({k: v for k, v in manifest.items() if k != "signature"})
        )
    except (ValueError, InvalidSignature):
        return False
    return True


@dataclass(frozen=True)
class Verdict:
    """What the Verify a report page says: `kind` is valid / tampered / mismatch / unknown_key / unreadable."""

    kind: str
    title: str
    detail: str
    verification: Verification


def verdict_for(data: bytes, filename: str, manifest: dict[str, Any] | None, trusted_public_key: bytes) -> Verdict:
    """`verify_bytes` (as `manage.py verify_report` runs it), told apart for a person: a file whose hash
    is not in an authentic manifest was edited, unless the manifest is visibly another file's."""
    result = verify_bytes(data, manifest, trusted_public_key)
    signed = result.manifest or {}
    if result.ok:
        report = signed.get("report", {})
        return Verdict(
            "valid",
            "Valid: the file is intact and was signed by this installation",
            f"{result.message}; report #{report.get('id')} for {report.get('customer') or 'the whole fleet'}, "
            f"{report.get('period_start')} to {report.get('period_end')}, signed {signed.get('signed_at')} "
            f"with key {signed.get('key_id')}.",
            result,
        )
    if result.kind == "modified" and manifest_authentic(signed, trusted_public_key):
        tampered = Verdict(
            "tampered",
            "Tampered: the file was changed after it was signed",
            f"{result.message}. The signature is genuine; the file is not what was signed.",
            result,
        )
        if manifest is None:
            return tampered  # the file's own embedded signature: it was this file, and it changed
        names = sorted({str(signed.get(part, {}).get("filename")) for part in ("report", "evidence")})
        body, embedded = split_embedded(data)
        if embedded is not None and manifest_authentic(embedded, trusted_public_key):
            intact = embedded.get("report", {}).get("sha256") == sha256_hex(body)
            if intact:  # the file is intact by its own signature: the .sig is another report's
                return Verdict(
                    "mismatch",
                    "The signature file does not belong to this report",
                    f"The signature is genuine, but it is for {' and '.join(names)}; this file is intact by its "
                    "own embedded signature. Upload the .sig that was downloaded with this report.",
                    result,
                )
            return tampered
        if filename and filename not in names:
            return Verdict(
                "mismatch",
                "The signature file does not belong to this report",
                f"The signature is genuine, but it is for {' and '.join(names)}, and this file ({filename}) is "
                "not in it. Upload the .sig that was downloaded with this file; if this is that file renamed, "
                "it was changed after it was signed.",
                result,
            )
        return tampered
    if result.kind == "modified":
        return Verdict(
            "tampered", "Tampered: neither the file nor the signature is what was signed", result.message, result
        )
    if result.kind == "bad_signature":
        return Verdict("tampered", "Tampered: the signature file was altered", result.message, result)
    if result.kind == "unknown_key":
        return Verdict(
            "unknown_key",
            "Signed by an unknown key",
            f"{result.message}. Only reports signed with this installation's key (see Signing key) are ours.",
            result,
        )
    return Verdict("unreadable", "No usable signature", result.message, result)
