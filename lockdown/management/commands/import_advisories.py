"""`manage.py import_advisories FILE`: make a MailEnable advisory file (YAML or JSON) the set in force."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from lockdown.advisory_store import advisories_import
from lockdown.management.commands._document_file import read_document_file
from lockdown.rules.advisories import AdvisoryError
from lockdown.services import SYSTEM_SCOPE
from servers.audit import Actor


def _ids(ids: tuple[str, ...]) -> str:
    return ", ".join(ids) if ids else "none"


class Command(BaseCommand):
    help = "Import a MailEnable advisory file (validated; nothing is saved on error) and print what changed."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        text = read_document_file(path)
        try:
            outcome = advisories_import(
                scope=SYSTEM_SCOPE, actor=Actor.system("import_advisories"), text=text, source_name=path.name
            )
        except AdvisoryError as exc:
            raise CommandError(str(exc)) from None
        if not outcome.created:
            self.stdout.write(f"Nothing new: {path.name} is the advisory set in force.")
            return
        diff, updated = outcome.diff, outcome.document.updated.isoformat()
        self.stdout.write(f"Imported {path.name} (updated {updated}).")
        self.stdout.write(f"Added: {_ids(diff.added)}")
        self.stdout.write(f"Removed: {_ids(diff.removed)}")
        self.stdout.write(f"Changed: {_ids(diff.changed)}")
