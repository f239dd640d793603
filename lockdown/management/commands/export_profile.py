"""`manage.py export_profile SLUG --format json|yaml [--version N]`: print a profile version to stdout."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from lockdown.choices import ExportFormat
from lockdown.exchange import dump_document
from lockdown.models import Profile, ProfileVersion
from lockdown.selectors import version_document


class Command(BaseCommand):
    help = "Print a profile version (default: the latest) as YAML or JSON."

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        # `--version N` picks a profile version; it replaces Django's own --version flag here.
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--format", choices=ExportFormat.values, default=ExportFormat.YAML)
        parser.add_argument("--version", dest="number", type=int, default=None, help="version number (default: latest)")

    def handle(self, *args: Any, **options: Any) -> None:
        profile = Profile.objects.filter(slug=options["slug"]).first()
        if profile is None:
            raise CommandError(f"no profile {options['slug']!r}")
        versions = ProfileVersion.objects.select_related("profile").filter(profile=profile)
        number = options["number"]
        version = versions.filter(number=number).first() if number is not None else versions.order_by("-number").first()
        if version is None:
            raise CommandError(
                f"{profile.slug} has no version {number}" if number else f"{profile.slug} has no version"
            )
        self.stdout.write(dump_document(version_document(version), options["format"]), ending="")
