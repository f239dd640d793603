"""`manage.py import_winlab FILE --customer NAME`: add a winlab fleet's hosts as servers.

Reads the inventory `python -m winlab serve` writes. Each host becomes a Server of the customer
(created if missing) with its own Credential (the built-in Administrator and its generated
password, encrypted with `Credential.set_secret`), HTTPS with the lab CA as its CA bundle (or
HTTP + NTLM with `--scheme http`) and its mail ports. Re-importing updates what changed (the
servers are matched by customer and name). Every create or update is audited as the system
actor "import_winlab"; secrets never reach the audit trail.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from servers.audit import Actor, audit_record, diff, snapshot
from servers.binding import bind
from servers.choices import AuthMethod, Declared, TLSVerify, WinRMScheme
from servers.models import Credential, Customer, Server
from servers.services import CREDENTIAL_AUDIT_FIELDS, SERVER_AUDIT_FIELDS

ACTOR = Actor.system("import_winlab")


def _web(entry: dict[str, Any]) -> dict[str, Any]:
    web = entry.get("webmail")
    if not isinstance(web, dict) or not isinstance(web.get("url"), str):
        return {}
    # The health check probes the page on the host itself; the lab's bare host names are not URLs Django
    # accepts, and the page answers under any name, so the record names localhost.
    parts = urlsplit(web["url"])
    url = urlunsplit((parts.scheme, "localhost", parts.path, parts.query, ""))
    return {"webmail_url": url, "web_self_signed": bool(web.get("self_signed"))}


def _slice(text: str | None) -> slice:
    if not text:
        return slice(None)
    start, _, end = text.partition(":")
    try:
        return slice(int(start) if start else None, int(end) if end else None)
    except ValueError:
        raise CommandError(f"--slice must look like 0:14 or 14: (got {text!r})") from None


class Command(BaseCommand):
    help = "Import (or update) the hosts of a winlab inventory as servers of one customer."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("inventory", type=Path)
        parser.add_argument("--customer", required=True)
        parser.add_argument("--scheme", choices=["https", "http"], default="https")
        parser.add_argument("--slice", default=None, help="only hosts START:END of the inventory (Python slice)")
        parser.add_argument(
            "--leave-sql-unknown",
            action="store_true",
            help="do not declare each host's SQL mode from the inventory (rules that need it stay 'needs input')",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["inventory"]
        try:
            inventory = json.loads(path.read_text(encoding="utf-8"))
            hosts = list(inventory["hosts"])[_slice(options["slice"])]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CommandError(f"cannot read the winlab inventory {path}: {exc}") from None
        created = updated = 0
        with transaction.atomic():
            customer, new_customer = Customer.objects.get_or_create(name=options["customer"])
            if new_customer:
                audit_record(
                    actor=ACTOR, action="customer.create", obj=customer, changes={"name": [None, customer.name]}
                )
            for entry in hosts:
                was_new = self._import_host(customer, entry, options["scheme"], not options["leave_sql_unknown"])
                created += was_new
                updated += not was_new
        self.stdout.write(f"import_winlab: {created} created, {updated} updated for {customer.name}")

    def _import_host(self, customer: Customer, entry: dict[str, Any], scheme: str, declare_sql: bool) -> bool:
        name = str(entry["name"])
        credential = Credential.objects.filter(customer=customer, name=f"winlab {name}").first()
        if credential is None:
            credential = Credential(customer=customer, name=f"winlab {name}", username=str(entry["username"]))
            credential.auth = AuthMethod.NTLM
            credential.set_secret(str(entry["password"]))
            credential.secret_changed_at = timezone.now()
            credential.save()
            changes: dict[str, Any] = diff({}, snapshot(credential, CREDENTIAL_AUDIT_FIELDS))
            changes["secret"] = "set"  # noqa: S105 (a marker, not the secret)
            audit_record(actor=ACTOR, action="credential.create", obj=credential, changes=changes)
        else:
            before = snapshot(credential, CREDENTIAL_AUDIT_FIELDS)
            credential.username = str(entry["username"])
            changes = {}
            if credential.reveal_secret() != str(entry["password"]):
                credential.set_secret(str(entry["password"]))
                credential.secret_changed_at = timezone.now()
                changes["secret"] = "replaced"  # noqa: S105 (a marker, not the secret)
            changes.update(diff(before, snapshot(credential, CREDENTIAL_AUDIT_FIELDS)))
            if changes:
                credential.save()
                audit_record(actor=ACTOR, action="credential.update", obj=credential, changes=changes)
        https = scheme == "https" and entry["winrm"].get("https_port")
        ports = entry.get("mail_ports", {})
        values: dict[str, Any] = {
            "address": str(entry["address"]),
            "winrm_scheme": WinRMScheme.HTTPS if https else WinRMScheme.HTTP,
            "winrm_port": int(entry["winrm"]["https_port" if https else "http_port"]),
            "tls_verify": TLSVerify.CA_BUNDLE if https else TLSVerify.SYSTEM,
            "tls_ca_bundle": Path(entry["ca_path"]).read_text(encoding="ascii") if https else "",
            "smtp_port": int(ports.get("smtp") or 25),
            "pop_port": int(ports.get("pop") or 110),
            "imap_port": int(ports.get("imap") or 143),
            "credential": credential,
            # The login pages as the MSP's records would have them (the health check probes them on the host).
            **_web(entry),
            # The inventory plays the part of the MSP's own records: whether a host keeps MailEnable's
            # configuration in SQL Server is known to the operator, not discoverable (DESIGN.md).
            **(
                {"sql_integrated": Declared.YES if entry["mailenable"].get("sql") else Declared.NO}
                if declare_sql
                else {}
            ),
            "notes": f"winlab: {entry['os']['caption']}, MailEnable {entry['mailenable']['edition']} "
            f"{entry['mailenable']['version']}",
        }
        server = Server.objects.filter(customer=customer, name=name).first()
        is_new = server is None
        if server is None:
            server = Server(customer=customer, name=name)
            before_server: dict[str, Any] = {}
        else:
            before_server = snapshot(server, (*SERVER_AUDIT_FIELDS, "tls_ca_bundle"))
        for field, value in values.items():
            setattr(server, field, value)
        server.full_clean(exclude=["facts", "compliance_counts"])
        bind(server)  # the lab's own inventory, imported by whoever runs manage.py: an admin's act
        server.save()
        changes = diff(before_server, snapshot(server, (*SERVER_AUDIT_FIELDS, "tls_ca_bundle")))
        if is_new or changes:
            audit_record(
                actor=ACTOR, action="server.create" if is_new else "server.update", obj=server, changes=changes
            )
        return is_new
