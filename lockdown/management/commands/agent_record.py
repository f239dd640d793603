"""`manage.py agent_record --server NAME [--out FILE] [--recorded-from winlab|windows]`: record a transcript.

Sends four programs to the server over its WinRM connection, exactly as jobs do (`jobs.runner.connection_for`,
`remote.transport.run_program`): discover, every read primitive over the built-in profile's objects, every write
primitive on scratch objects it creates and removes in the same program, and a check that they are gone
(`lockdown.engine.transcript.record`). Writes the normalised transcript (tests/transcripts/README.md); put it
in tests/transcripts/ and the contract test replays it against winlab.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from lockdown.engine.transcript import RecordRefused, record
from lockdown.management.commands._server_arg import add_server_arguments, chosen_server
from remote.errors import RemoteError


class Command(BaseCommand):
    help = "Record a transcript of the agent's primitives on one server (reads, and writes on scratch objects only)."

    def add_arguments(self, parser: CommandParser) -> None:
        add_server_arguments(parser)
        parser.add_argument("--out", type=Path, help="file to write (default: transcript-<server>-<UTC time>.json)")
        parser.add_argument(
            "--recorded-from",
            choices=["winlab", "windows", "unknown"],
            default="unknown",
            help="what the server is: written into the transcript as `recorded_from`",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from jobs.runner import RunFailed, connection_for, health_targets
        from remote.transport import run_program

        server = chosen_server(options)
        try:
            conn = connection_for(server)
        except RunFailed as failure:
            raise CommandError(failure.message) from None
        try:
            document = record(
                lambda program: run_program(conn, program),
                recorded_from=options["recorded_from"],
                targets=health_targets(server),
            )
        except RecordRefused as refused:
            raise CommandError(
                f"{server.name} refused the recorder's program: {refused.code}: {refused.message}"
            ) from None
        except RemoteError as error:
            raise CommandError(f"{server.name}: {error.kind}: {error.message}") from None
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        out: Path = options["out"] or Path(f"transcript-{server.name}-{stamp}.json")
        out.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        steps = sum(len(i["result"].get("steps") or []) for i in document["invocations"])
        self.stdout.write(
            f"{out}: {len(document['invocations'])} invocations, {steps} steps recorded from {server.name}"
        )
