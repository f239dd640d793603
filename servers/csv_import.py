"""Server import from CSV: every row is validated by `ServerForm`; any bad row rejects the file.

The request checks the file (size, UTF-8, header) and records a `ServerImport`; a worker checks the rows
with progress and creates the servers (`server_import_run`): the page follows it (`server_import_detail`)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from servers.audit import Actor, audit_record
from servers.choices import Declared, TLSVerify, WinRMScheme
from servers.forms import ServerForm
from servers.models import Credential, Customer, Server, ServerImport
from servers.services import server_create
from servers.tenancy import Action, Scope
from servers.tenancy import require as scope_require

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


def template_csv(customer_name: str) -> str:
    """The import file's header and one example row that imports as it is (for `customer_name`)."""
    example = {
        "name": "mail01",
        "customer": customer_name,
        "address": "mail01.example.com",
        "winrm_scheme": WinRMScheme.HTTPS.value,
        "winrm_port": "5986",
        "tls_verify": TLSVerify.SYSTEM.value,
        "smtp_port": "25",
        "pop_port": "110",
        "imap_port": "143",
        "sql_integrated": Declared.UNKNOWN.value,
        "integrated_auth": Declared.NO.value,
        "tags": "example",
        "notes": "Replace this row with your servers",
    }
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=ALL_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerow({column: example.get(column, "") for column in ALL_COLUMNS})
    return out.getvalue()


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


MAX_SHOWN_ERRORS = 500
PROGRESS_EVERY_ROWS = 200

Progress = Callable[[int, int], None]


def read_upload(upload: UploadedFile[bytes]) -> tuple[str | None, list[str]]:
    """The upload's text and header checked, in the request (cheap); row checks run in the background."""
    text, error = _decode(upload)
    if text is None:
        return None, [error or "The file cannot be read."]
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header_problem = _header_problem(reader)
    except csv.Error as exc:
        return None, [f"The CSV cannot be parsed: {exc}"]
    return (None, [header_problem]) if header_problem else (text, [])


def _header_problem(reader: csv.DictReader[str]) -> str | None:
    header = [column.strip().lower() for column in (reader.fieldnames or [])]
    unknown = [column for column in header if column not in ALL_COLUMNS]
    missing = [column for column in REQUIRED_COLUMNS if column not in header]
    if not (unknown or missing or len(set(header)) != len(header)):
        reader.fieldnames = header
        return None
    parts = []
    if missing:
        parts.append(f"missing columns: {', '.join(missing)}")
    if unknown:
        parts.append(f"unknown columns: {', '.join(c[:40] for c in unknown)}")
    if len(set(header)) != len(header):
        parts.append("a column appears twice")
    return f"Row 1 (header): {'; '.join(parts)}. Allowed columns: {', '.join(ALL_COLUMNS)}."


def import_servers_text(*, scope: Scope, actor: Actor, text: str, progress: Progress | None = None) -> ImportResult:
    """Validate every row first; create nothing unless every row is valid. `progress(done, total)`
    is called every PROGRESS_EVERY_ROWS rows while checking."""
    result = ImportResult()
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header_problem = _header_problem(reader)
        rows = [] if header_problem else list(reader)
    except csv.Error as exc:
        result.errors.append(f"The CSV cannot be parsed: {exc}")
        return result
    if header_problem:
        result.errors.append(header_problem)
        return result
    if not rows:
        result.errors.append("The file has a header but no rows.")
        return result
    if len(rows) > MAX_ROWS:
        result.errors.append(f"The file has {len(rows):,} rows; at most {MAX_ROWS:,} can be imported at once.")
        return result
    allowed = scope.customers_where(Action.EDIT_SERVERS)
    customer_qs = Customer.objects.all() if allowed is None else Customer.objects.filter(pk__in=sorted(allowed))
    customers = {customer.name.lower(): customer for customer in customer_qs}
    valid: list[tuple[int, dict[str, Any], list[str]]] = []
    seen: dict[tuple[int, str], int] = {}
    for number, row in enumerate(rows, start=2):
        if progress is not None and (number - 2) % PROGRESS_EVERY_ROWS == 0:
            progress(number - 2, len(rows))
        if None in row or any(value is None for value in row.values()):
            result.errors.append(f"Row {number}: wrong number of cells")
            continue
        clean_row = {key: (value or "") for key, value in row.items() if key is not None}
        data, problems = _row_data(clean_row, scope, customers)
        form = ServerForm(data=data, scope=scope)
        if not form.is_valid():
            for field_name, messages in form.errors.items():
                label = "tags" if field_name == "tags_text" else field_name
                if label == "customer" and any(p.startswith("customer: ") for p in problems):
                    continue  # already said which customer was not found
                problems.extend(f"{label}: {message}" for message in messages)
        key = (int(data["customer"] or 0), str(data["name"]).strip().lower())
        if key in seen:
            problems.append(f"name: the same server appears on row {seen[key]}")
        seen.setdefault(key, number)
        if problems:
            result.errors.extend(f"Row {number}: {problem}" for problem in problems)
        else:
            valid.append((number, form.cleaned_data, form.cleaned_data["tags_text"]))
    if progress is not None:
        progress(len(rows), len(rows))
    if result.errors:
        return result
    for _number, cleaned, tags in valid:
        data = {key: value for key, value in cleaned.items() if key != "tags_text"}
        result.created.append(server_create(scope=scope, actor=actor, data=data, tags=tags))
    audit_record(actor=actor, action="server.import", changes={"rows": len(valid)}, object_repr=f"{len(valid)} servers")
    return result


Enqueue = Callable[[int], None]


def _default_enqueue(import_id: int) -> None:
    from servers.tasks import run_server_import

    run_server_import.delay(import_id)


_enqueue: Enqueue = _default_enqueue


def set_enqueue(function: Enqueue | None) -> None:
    """Tests replace how imports reach the broker (e.g. run inline); None restores Celery."""
    global _enqueue
    _enqueue = function or _default_enqueue


def server_import_start(*, scope: Scope, user: Any, filename: str, text: str) -> ServerImport:
    """Record the import and hand it to a worker once the record is committed."""
    from lockdown import clock

    scope_require(scope, Action.EDIT_SERVERS)
    record = ServerImport.objects.create(created_by=user, created_at=clock.now(), filename=filename[:200], content=text)
    transaction.on_commit(lambda: _enqueue(record.pk))
    return record


def server_import_run(import_id: int) -> str:
    """The worker's side: the owner's scope *now* (a revoked right stops the import), rows checked with
    progress, then every server created in one transaction with the final state."""
    from django.contrib.auth import get_user_model

    from lockdown import clock
    from servers.tenancy import scope_for_user

    record = ServerImport.objects.filter(pk=import_id).first()
    if record is None or record.state in {ServerImport.State.SUCCEEDED, ServerImport.State.FAILED}:
        return "done already"
    user = get_user_model().objects.get(pk=record.created_by_id)
    scope = scope_for_user(user)
    ServerImport.objects.filter(pk=import_id).update(state=ServerImport.State.VALIDATING, processed_rows=0)

    def progress(done: int, total: int) -> None:
        ServerImport.objects.filter(pk=import_id).update(processed_rows=done, total_rows=total)

    with transaction.atomic():
        if not scope.can(Action.EDIT_SERVERS):
            result = ImportResult(errors=["You may no longer add servers: nothing was imported."])
        else:
            result = import_servers_text(scope=scope, actor=Actor(user=user), text=record.content, progress=progress)
        state = ServerImport.State.SUCCEEDED if result.ok else ServerImport.State.FAILED
        ServerImport.objects.filter(pk=import_id).update(
            state=state,
            created_count=len(result.created),
            errors=result.errors[:MAX_SHOWN_ERRORS],
            finished_at=clock.now(),
            content="",
        )
    return state
