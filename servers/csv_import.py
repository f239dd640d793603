"""Server import from CSV: every row is validated by `ServerForm`; any bad row rejects the file."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from servers.audit import Actor, audit_record
from servers.choices import Declared, TLSVerify, WinRMScheme
from servers.forms import ServerForm
from servers.models import Credential, Customer, Server
from servers.services import server_create
from servers.tenancy import Action, Scope

REQUIRED_COLUMNS = ("name", "customer", "address")
OPTIONAL_COLUMNS = (
    "winrm_scheme",
    "winrm_port",
    "tls_verify",
    "tls_fingerprint",
    "credential",
    "smtp_port",
    "pop_port",
    "imap_port",
    "webmail_url",
    "admin_url",
    "sql_integrated",
    "integrated_auth",
    "tags",
    "notes",
)
ALL_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
MAX_ROWS = 10_000
# A cell a spreadsheet would run as a formula: refused on the way in (and escaped on export).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class ImportResult:
    """Row-numbered errors (row 1 is the header), or the servers created."""

    errors: list[str] = field(default_factory=list)
    created: list[Server] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _decode(upload: UploadedFile[bytes]) -> tuple[str | None, str | None]:
    limit: int = settings.FLEET_MAX_UPLOAD_BYTES
    if upload.size is not None and upload.size > limit:
        return None, f"The file is {upload.size:,} bytes; the limit is {limit:,} bytes."
    raw = upload.read(limit + 1)
    if len(raw) > limit:
        return None, f"The file is larger than the limit of {limit:,} bytes."
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        return None, f"The file is not UTF-8 (byte {exc.start + 1}). Save it as CSV UTF-8 and try again."


def _row_data(row: dict[str, str], scope: Scope, customers: dict[str, Customer]) -> tuple[dict[str, Any], list[str]]:
    problems: list[str] = []
    for column, value in row.items():
        if value and value.startswith(FORMULA_PREFIXES):
            problems.append(f"{column}: a value may not start with = + - @ or a control character")
    customer = customers.get(row.get("customer", "").strip().lower())
    scheme = (row.get("winrm_scheme") or WinRMScheme.HTTPS).strip().lower()
    data: dict[str, Any] = {
        "customer": customer.pk if customer else "",
        "name": row.get("name", ""),
        "address": row.get("address", ""),
        "winrm_scheme": scheme,
        "winrm_port": row.get("winrm_port") or (5985 if scheme == WinRMScheme.HTTP else 5986),
        "tls_verify": (row.get("tls_verify") or TLSVerify.SYSTEM).strip().lower(),
        "tls_fingerprint": row.get("tls_fingerprint", ""),
        "smtp_port": row.get("smtp_port") or 25,
        "pop_port": row.get("pop_port") or 110,
        "imap_port": row.get("imap_port") or 143,
        "webmail_url": row.get("webmail_url", ""),
        "admin_url": row.get("admin_url", ""),
        "sql_integrated": (row.get("sql_integrated") or Declared.UNKNOWN).strip().lower(),
        "integrated_auth": (row.get("integrated_auth") or Declared.UNKNOWN).strip().lower(),
        "tags_text": row.get("tags", ""),
        "notes": row.get("notes", ""),
        "credential": "",
    }
    if data["integrated_auth"] == Declared.YES:
        # Declaring it grants SYSTEM-equivalent rights and needs a per-server acknowledgement in the form.
        problems.append(
            "integrated_auth: 'yes' cannot be imported (it grants IME_SYSTEM SYSTEM-equivalent rights); "
            "import the row with 'no' or 'unknown', then set it to yes on the server's edit page and acknowledge it"
        )
        data["integrated_auth"] = Declared.UNKNOWN
    if customer is None:
        problems.append(f"customer: no customer called {row.get('customer', '')[:60]!r} that you may add servers to")
    credential_name = (row.get("credential") or "").strip()
    if credential_name and customer is not None and not scope.can(Action.MANAGE_CREDENTIALS, customer):
        # servers.binding: where a credential is sent is an MSP admin's choice
        problems.append("credential: only an MSP admin may bind a credential; leave the column empty")
    elif credential_name and customer is not None:
        credential = scope.filter(Credential.objects.filter(customer=customer, name=credential_name)).first()
        if credential is None:
            problems.append(f"credential: {customer.name} has no credential called {credential_name[:60]!r}")
        else:
            data["credential"] = credential.pk
    return data, problems


def import_servers_csv(*, scope: Scope, actor: Actor, upload: UploadedFile[bytes]) -> ImportResult:
    """Validate the whole file first; create nothing unless every row is valid."""
    result = ImportResult()
    text, error = _decode(upload)
    if text is None:
        result.errors.append(error or "The file cannot be read.")
        return result
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [column.strip().lower() for column in (reader.fieldnames or [])]
    unknown = [column for column in header if column not in ALL_COLUMNS]
    missing = [column for column in REQUIRED_COLUMNS if column not in header]
    if unknown or missing or len(set(header)) != len(header):
        parts = []
        if missing:
            parts.append(f"missing columns: {', '.join(missing)}")
        if unknown:
            parts.append(f"unknown columns: {', '.join(c[:40] for c in unknown)}")
        if len(set(header)) != len(header):
            parts.append("a column appears twice")
        result.errors.append(f"Row 1 (header): {'; '.join(parts)}. Allowed columns: {', '.join(ALL_COLUMNS)}.")
        return result
    reader.fieldnames = header
    allowed = scope.customers_where(Action.EDIT_SERVERS)
    customer_qs = Customer.objects.all() if allowed is None else Customer.objects.filter(pk__in=sorted(allowed))
    customers = {customer.name.lower(): customer for customer in customer_qs}
    valid: list[tuple[int, dict[str, Any], list[str]]] = []
    seen: dict[tuple[int, str], int] = {}
    try:
        rows = list(reader)
    except csv.Error as exc:
        result.errors.append(f"The CSV cannot be parsed: {exc}")
        return result
    if not rows:
        result.errors.append("The file has a header but no rows.")
        return result
    if len(rows) > MAX_ROWS:
        result.errors.append(f"The file has {len(rows):,} rows; at most {MAX_ROWS:,} can be imported at once.")
        return result
    for number, row in enumerate(rows, start=2):
        if None in row or any(value is None for value in row.values()):
            result.errors.append(f"Row {number}: wrong number of cells")
            continue
        clean_row = {key: (value or "") for key, value in row.items() if key is not None}
        data, problems = _row_data(clean_row, scope, customers)
        form = ServerForm(data=data, scope=scope)
        if not form.is_valid():
            for field_name, messages in form.errors.items():
                label = "tags" if field_name == "tags_text" else field_name
                problems.extend(f"{label}: {message}" for message in messages)
        key = (int(data["customer"] or 0), str(data["name"]).strip().lower())
        if key in seen:
            problems.append(f"name: the same server appears on row {seen[key]}")
        seen.setdefault(key, number)
        if problems:
            result.errors.extend(f"Row {number}: {problem}" for problem in problems)
        else:
            valid.append((number, form.cleaned_data, form.cleaned_data["tags_text"]))
    if result.errors:
        return result
    with transaction.atomic():
        for _number, cleaned, tags in valid:
            data = {key: value for key, value in cleaned.items() if key != "tags_text"}
            result.created.append(server_create(scope=scope, actor=actor, data=data, tags=tags))
        audit_record(
            actor=actor, action="server.import", changes={"rows": len(valid)}, object_repr=f"{len(valid)} servers"
        )
    return result
