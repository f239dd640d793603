"""The `--server NAME [--in-customer NAME]` choice shared by the agent commands (agent_record, agent_selftest)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from servers.models import Server


def add_server_arguments(parser: CommandParser) -> None:
    parser.add_argument("--server", required=True, help="server name (unique across customers, or add --in-customer)")
    parser.add_argument("--in-customer", help="the server's customer")


def chosen_server(options: dict[str, Any]) -> Server:
    servers = Server.objects.select_related("customer", "credential").filter(name=options["server"])
    if options.get("in_customer"):
        servers = servers.filter(customer__name=options["in_customer"])
    found = list(servers[:2])
    if not found:
        raise CommandError("no server matches")
    if len(found) > 1:
        raise CommandError("several customers have a server of that name; add --in-customer")
    return found[0]
