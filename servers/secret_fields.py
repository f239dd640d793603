"""The one registry of fields that hold Fernet tokens, and what is derived from it.

A field holds a secret at rest only as an `EncryptedTextField`: the registry is every such field of
every installed model (`encrypted_fields()`), so key rotation (`manage.py rotate_encryption_keys`),
the deploy check (`manage.py check --deploy`: every stored token decrypts, and with the first key)
and the tests that guard the registry all read the same list. A model that stores a token in a plain
TextField is caught by `tests/integration/servers/test_secret_fields.py` (by name, and by scanning the
database for Fernet tokens after every kind of secret was stored).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from django.apps import apps
from django.conf import settings
from django.db import connection, models

# Every Fernet token starts with version byte 0x80, which base64 spells "gAAAAA" for current timestamps.
FERNET_PREFIX = "gAAAAA"


class EncryptedTextField(models.TextField):  # type: ignore[type-arg]
    """A TextField that holds a Fernet token (servers.crypto.encrypt_secret), or "" when unset.

    The column is an ordinary text column: `deconstruct` reports TextField, so migrations and the
    schema are those of a TextField (the class only marks the field for the registry).
    """

    description = "Fernet token of a secret"

    def deconstruct(self) -> Any:
        name, _path, args, kwargs = super().deconstruct()
        return name, "django.db.models.TextField", args, kwargs


@dataclass(frozen=True)
class SecretField:
    model: type[models.Model]
    name: str

    @property
    def label(self) -> str:
        return f"{self.model._meta.label}.{self.name}"


def encrypted_fields() -> list[SecretField]:
    """Every EncryptedTextField of every installed concrete model, in a stable order."""
    out = [
        SecretField(model, field.name)
        for model in apps.get_models()
        if not model._meta.proxy
        for field in model._meta.concrete_fields
        if isinstance(field, EncryptedTextField)
    ]
    return sorted(out, key=lambda f: f.label)


@dataclass(frozen=True)
class TokenReport:
    field: SecretField
    stored: int
    undecryptable: int  # no configured key decrypts it
    unrotated: int  # decrypts, but not with the first key


def token_reports(keys: list[str] | None = None, batch_size: int = 500) -> Iterator[TokenReport]:
    """Per registered field: how many stored tokens decrypt with no key, or not with the first one."""
    keys = list(settings.FLEET_ENCRYPTION_KEYS if keys is None else keys)
    fernets = [Fernet(key.encode()) for key in keys]
    tables = set(connection.introspection.table_names())
    for field in encrypted_fields():
        if field.model._meta.db_table not in tables:
            continue  # not migrated yet: nothing stored
        stored = undecryptable = unrotated = 0
        values = field.model._default_manager.exclude(**{field.name: ""}).values_list(field.name, flat=True)
        for value in values.iterator(chunk_size=batch_size):
            stored += 1
            token = str(value).encode("ascii", "replace")
            which = next((n for n, f in enumerate(fernets) if _decrypts(f, token)), None)
            if which is None:
                undecryptable += 1
            elif which > 0:
                unrotated += 1
        yield TokenReport(field, stored, undecryptable, unrotated)


def _decrypts(fernet: Fernet, token: bytes) -> bool:
    try:
        fernet.decrypt(token)
    except InvalidToken:
        return False
    return True
