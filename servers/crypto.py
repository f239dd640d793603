"""Secrets at rest: MultiFernet encryption of credentials, and redaction of secrets in logs.

DANGER: this module handles the administrator passwords of a whole fleet. Plaintext must
never be logged, rendered, put in an exception message or stored outside an encrypted field.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class SecretDecryptionError(RuntimeError):
    """Stored ciphertext cannot be decrypted with any configured key."""


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in keys])


def fernet() -> MultiFernet:
    """The MultiFernet for the configured keys; the first key encrypts, all decrypt."""
    return _fernet(tuple(settings.FLEET_ENCRYPTION_KEYS))


def encrypt_secret(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt_secret(ciphertext: str) -> str:
    try:
        plaintext = fernet().decrypt(ciphertext.encode("ascii")).decode("utf-8")
    except InvalidToken:
        raise SecretDecryptionError("stored secret cannot be decrypted with the configured keys") from None
    register_secret(plaintext)
    return plaintext


def rotate_ciphertext(ciphertext: str) -> str:
    """Re-encrypt under the newest key (MultiFernet.rotate keeps the timestamp)."""
    try:
        return fernet().rotate(ciphertext.encode("ascii")).decode("ascii")
    except InvalidToken:
        raise SecretDecryptionError("stored secret cannot be decrypted with the configured keys") from None


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


# --- Redaction ----------------------------------------------------------------------------
# Every decrypted secret is remembered (in this process only) in the forms it could leak in:
# raw, base64 of UTF-8 and base64 of UTF-16LE (PowerShell's -EncodedCommand). Log records,
# job events and error texts pass through `redact()`.
_known: set[str] = set()
_known_lock = threading.Lock()
_MIN_SECRET_LENGTH = 4


def secret_forms(secret: str) -> set[str]:
    forms = {secret}
    forms.add(base64.b64encode(secret.encode("utf-8")).decode("ascii"))
    forms.add(base64.b64encode(secret.encode("utf-16-le")).decode("ascii"))
    return {form for form in forms if len(form) >= _MIN_SECRET_LENGTH}


def register_secret(secret: str) -> None:
    if len(secret) < _MIN_SECRET_LENGTH:
        return
    with _known_lock:
        if len(_known) > 10_000:
            _known.clear()
        _known.update(secret_forms(secret))


def contains_secret(text: str, extra: tuple[str, ...] = ()) -> bool:
    """Whether `redact(text, extra)` would change anything (one pass over a large text)."""
    with _known_lock:
        forms = set(_known)
    for secret in extra:
        forms |= secret_forms(secret)
    return any(form in text for form in forms)


def redact(text: str, extra: tuple[str, ...] = ()) -> str:
    with _known_lock:
        forms = set(_known)
    for secret in extra:
        forms |= secret_forms(secret)
    for form in sorted(forms, key=len, reverse=True):
        if form in text:
            text = text.replace(form, "[REDACTED]")
    return text


# An authentication token in a log line: an HTTP Authorization value, or a bare base64 NTLMSSP message
# ("NTLMSSP\0" is "TlRMTVNTUA" in base64) as pyspnego logs them.
# A scheme's token has a digit, "+", "/" or "=" in it, so "Basic authentication" stays readable.
_AUTH_TOKEN = re.compile(
    r"\b(Negotiate|NTLM|Kerberos|Basic|CredSSP|Bearer)\s+(?=[A-Za-z0-9+/]*[0-9+/=])[A-Za-z0-9+/=]{12,}"
    r"|TlRMTVNTUA[A-Za-z0-9+/=]*"
)


def redact_tokens(text: str) -> str:
    """Replace authentication tokens (see `_AUTH_TOKEN`) with [REDACTED]."""
    return _AUTH_TOKEN.sub(lambda m: (m.group(1) + " " if m.group(1) else "") + "[REDACTED]", text)


class RedactSecretsFilter(logging.Filter):
    """Logging filter that removes every known secret and authentication token from the message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact_tokens(redact(message))
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True
