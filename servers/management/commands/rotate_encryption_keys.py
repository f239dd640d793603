"""Re-encrypt every stored secret under the newest FLEET_ENCRYPTION_KEYS key.

Rotation: put a new key first in FLEET_ENCRYPTION_KEYS (keep the old ones after it), run
this command, then drop the old keys. It rewrites each ciphertext in one transaction and
prints only counts, never a secret.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import transaction

from servers.audit import Actor, audit_record
from servers.crypto import rotate_ciphertext

# (app_label.Model, field) pairs holding Fernet tokens. Later apps append theirs here.
ENCRYPTED_FIELDS: list[tuple[str, str]] = [("servers.Credential", "secret_encrypted")]


class Command(BaseCommand):
    help = "Re-encrypt every stored secret with the first key of FLEET_ENCRYPTION_KEYS."

    def handle(self, *args: Any, **options: Any) -> None:
        total = 0
        with transaction.atomic():
            for label, field in ENCRYPTED_FIELDS:
                model = apps.get_model(label)
                rows = model.objects.select_for_update().exclude(**{field: ""}).only("pk", field)
                changed = []
                for row in rows:
                    setattr(row, field, rotate_ciphertext(getattr(row, field)))
                    changed.append(row)
                model.objects.bulk_update(changed, [field], batch_size=500)
                total += len(changed)
                self.stdout.write(f"{label}.{field}: {len(changed)} re-encrypted")
            audit_record(actor=Actor.system("rotate_encryption_keys"), action="secrets.rotate", changes={"rows": total})
        self.stdout.write(self.style.SUCCESS(f"{total} secrets now use the newest key"))
