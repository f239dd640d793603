"""Re-encrypt every stored secret under the newest FLEET_ENCRYPTION_KEYS key.

Rotation: put a new key first in FLEET_ENCRYPTION_KEYS (keep the old ones after it), run
this command, check with `manage.py check --deploy` (it reports any token not under the first
key), then drop the old keys. Every field of the registry (`servers.secret_fields`: each
EncryptedTextField of every model) is rewritten, all in one transaction; it prints only counts,
never a secret. A token that no key decrypts stops the command before anything is written.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from servers.audit import Actor, audit_record
from servers.crypto import SecretDecryptionError, rotate_ciphertext
from servers.secret_fields import encrypted_fields


class Command(BaseCommand):
    help = "Re-encrypt every stored secret with the first key of FLEET_ENCRYPTION_KEYS."

    def handle(self, *args: Any, **options: Any) -> None:
        total = 0
        counts: dict[str, int] = {}
        with transaction.atomic():
            for field in encrypted_fields():
                manager = field.model._default_manager
                rows = manager.select_for_update().exclude(**{field.name: ""}).only("pk", field.name)
                changed = []
                for row in rows.iterator(chunk_size=500):
                    try:
                        setattr(row, field.name, rotate_ciphertext(getattr(row, field.name)))
                    except SecretDecryptionError:
                        raise CommandError(
                            f"{field.label} of row {row.pk} decrypts with none of FLEET_ENCRYPTION_KEYS: nothing was "
                            "re-encrypted (put back the key it was encrypted with, after the new one)"
                        ) from None
                    changed.append(row)
                manager.bulk_update(changed, [field.name], batch_size=500)
                counts[field.label] = len(changed)
                total += len(changed)
                self.stdout.write(f"{field.label}: {len(changed)} re-encrypted")
            audit_record(
                actor=Actor.system("rotate_encryption_keys"),
                action="secrets.rotate",
                changes={"rows": total, "fields": counts},
            )
        self.stdout.write(self.style.SUCCESS(f"{total} secrets now use the newest key"))
