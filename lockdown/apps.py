from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db import connections
from django.db.models.signals import post_migrate


def _sync_builtin_after_migrate(sender: AppConfig, using: str = "default", **kwargs: Any) -> None:
    # A partial migrate (e.g. `migrate servers 0001`) may leave our tables missing: skip quietly.
    from lockdown.advisory_store import builtin_advisories_sync
    from lockdown.models import AdvisoryDocument, ProfileVersion
    from lockdown.services import builtin_profile_sync

    if using != "default":  # one database; the syncs themselves are idempotent
        return
    tables = connections[using].introspection.table_names()
    if ProfileVersion._meta.db_table in tables:
        builtin_profile_sync()
    if AdvisoryDocument._meta.db_table in tables:
        builtin_advisories_sync()


class LockdownConfig(AppConfig):
    """Profiles (MSP-wide library of versioned rule sets), their assignment, waivers, and the MailEnable advisories."""

    name = "lockdown"
    verbose_name = "Lockdown profiles and waivers"

    def ready(self) -> None:
        post_migrate.connect(_sync_builtin_after_migrate, sender=self, dispatch_uid="lockdown_builtin_profile_sync")
