"""Secrets at rest and in logs: encryption round trip, key rotation, redaction."""

from __future__ import annotations

import base64
import logging

import pytest
from cryptography.fernet import Fernet

from servers import crypto


@pytest.fixture
def keys(settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FLEET_ENCRYPTION_KEYS = [old]
    return old, new


def test_ciphertext_is_not_the_plaintext_and_decrypts_back(keys):
    token = crypto.encrypt_secret("Pa55-w0rd!")
    assert "Pa55-w0rd!" not in token
    assert crypto.decrypt_secret(token) == "Pa55-w0rd!"


def test_rotation_re_encrypts_under_the_newest_key(keys, settings):
    old, new = keys
    token = crypto.encrypt_secret("rotate-me-please")
    settings.FLEET_ENCRYPTION_KEYS = [new, old]
    rotated = crypto.rotate_ciphertext(token)
    settings.FLEET_ENCRYPTION_KEYS = [new]
    assert crypto.decrypt_secret(rotated) == "rotate-me-please"
    with pytest.raises(crypto.SecretDecryptionError):
        crypto.decrypt_secret(token)


def test_decryption_error_does_not_carry_the_token(keys, settings):
    token = crypto.encrypt_secret("abc-secret")
    settings.FLEET_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(crypto.SecretDecryptionError) as excinfo:
        crypto.decrypt_secret(token)
    assert token not in str(excinfo.value)


def test_redact_removes_raw_base64_and_utf16_forms():
    secret = "Canary-Secret-9f3a"
    crypto.register_secret(secret)
    utf16 = base64.b64encode(secret.encode("utf-16-le")).decode()
    utf8 = base64.b64encode(secret.encode()).decode()
    text = f"raw={secret} b64={utf8} encoded={utf16}"
    cleaned = crypto.redact(text)
    assert secret not in cleaned
    assert utf8 not in cleaned
    assert utf16 not in cleaned
    assert cleaned.count("[REDACTED]") == 3


def test_log_filter_redacts_known_secrets(caplog):
    crypto.register_secret("Log-Canary-77aa")
    logger = logging.getLogger("fleet.test")
    logger.addFilter(crypto.RedactSecretsFilter())
    with caplog.at_level(logging.INFO, logger="fleet.test"):
        logger.info("connecting with %s", "Log-Canary-77aa")
    assert "Log-Canary-77aa" not in caplog.text
    assert "[REDACTED]" in caplog.text
