"""`manage.py take_compliance_snapshot`: record today's compliance per customer (beat does it hourly)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from reports.services import compliance_snapshot_take


class Command(BaseCommand):
    help = "Write today's ComplianceSnapshot rows (idempotent: a later run of the same day replaces them)."

    def handle(self, *args: Any, **options: Any) -> None:
        count = compliance_snapshot_take()
        self.stdout.write(f"take_compliance_snapshot: {count} customers recorded")
