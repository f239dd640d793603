"""`manage.py agent_selftest --server NAME [--json]`: may this server run the agent? Read-only.

Connects over the server's WinRM connection (`jobs.runner.selftest_server`, the same code the server page's
"Agent self-test" job runs) and checks, in two read-only invocations, the PowerShell version, the language
mode, elevation (UAC remote filtering), a 64-bit process, that every object of the server's profile can be
read, runs a verify and lists what a harden would change. Prints a table for a person, or with `--json`
the report for support. Exits non-zero when a check failed. Secrets never appear in either.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from lockdown.engine.selftest import render_table
from lockdown.management.commands._server_arg import add_server_arguments, chosen_server


class Command(BaseCommand):
    help = "Read-only agent self-test of one server: verdicts per check and what a harden would change."

    def add_arguments(self, parser: CommandParser) -> None:
        add_server_arguments(parser)
        parser.add_argument("--json", action="store_true", help="print the report as JSON (for support)")

    def handle(self, *args: Any, **options: Any) -> None:
        from jobs.runner import RunFailed, selftest_server

        server = chosen_server(options)
        try:
            report = selftest_server(server, f"selftest-{server.pk}")
        except RunFailed as failure:
            raise CommandError(failure.message) from None
        if options["json"]:
            data = {"server": server.name, "customer": server.customer.name, **report.model_dump(mode="json")}
            self.stdout.write(json.dumps(data, indent=2, sort_keys=True))
        else:
            self.stdout.write("\n".join(render_table(report, server.name)))
        if not report.ok:
            failed = ", ".join(c.name for c in report.checks if c.verdict == "fail")
            raise CommandError(f"{server.name} is not ready for the agent ({failed})")
