"""`manage.py import_profile FILE`: a new version of the profile the file names, or a new profile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from lockdown.exchange import guess_format, parse_document
from lockdown.management.commands._document_file import read_document_file
from lockdown.rules import ProfileError
from lockdown.services import SYSTEM_SCOPE, ProfileServiceError, profile_import
from servers.audit import Actor


class Command(BaseCommand):
    help = "Import a YAML or JSON profile file (validated; nothing is saved on error)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        text = read_document_file(path)
        try:
            document = parse_document(text, guess_format(path.name, text))
            outcome = profile_import(
                scope=SYSTEM_SCOPE, actor=Actor.system("import_profile"), document=document, source_name=path.name
            )
        except (ProfileError, ProfileServiceError) as exc:
            raise CommandError(str(exc)) from None
        version = outcome.version
        if outcome.created_profile:
            self.stdout.write(f"Created profile {version.profile.slug} with version {version.number}.")
        elif outcome.created_version:
            self.stdout.write(f"Created {version.profile.slug} version {version.number}.")
        else:
            self.stdout.write(f"Nothing new: identical to {version.profile.slug} version {version.number}.")
