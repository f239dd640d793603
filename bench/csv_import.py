"""CSV import of N rows: the upload request (checks the file, records it) vs the background import.

    .venv/bin/python bench/csv_import.py --rows 10000

Runs against a throw-away SQLite database (or DATABASE_URL), as an MSP admin, through Django's test
client for the request and `server_import_run` for the worker's part. Prints a table and writes
bench/results/csv_import.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000)
    rows = parser.parse_args().rows
    scratch = tempfile.mkdtemp(prefix="csv-bench-")
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{scratch}/bench.sqlite3")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.core.management import call_command
    from django.test import Client
    from django.urls import reverse

    settings.ALLOWED_HOSTS = ["testserver"]
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    call_command("migrate", interactive=False, verbosity=0)
    from servers import csv_import
    from servers.choices import Role
    from servers.models import Customer, Membership, Server, ServerImport
    from tests.factories import UserFactory

    admin: Any = UserFactory(username="bench-admin")
    Membership.objects.create(user=admin, customer=None, role=Role.ADMIN)
    customer = Customer.objects.create(name="Bench Ltd")
    body = "name,customer,address,winrm_scheme,winrm_port,tls_verify\n" + "".join(
        f"mx-{i:05d},{customer.name},10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256},https,5986,system\n"
        for i in range(rows)
    )
    csv_import.set_enqueue(lambda _pk: None)  # the worker's part is timed on its own below
    client = Client()
    client.force_login(admin)
    started = time.perf_counter()
    response = client.post(reverse("server_import"), {"file": SimpleUploadedFile("b.csv", body.encode())})
    request_s = time.perf_counter() - started
    assert response.status_code == 302, response.status_code
    record = ServerImport.objects.get()
    started = time.perf_counter()
    state = csv_import.server_import_run(record.pk)
    worker_s = time.perf_counter() - started
    created = Server.objects.count()
    result = {
        "rows": rows,
        "bytes": len(body),
        "request_s": round(request_s, 3),
        "worker_s": round(worker_s, 2),
        "rows_per_s": round(rows / worker_s),
        "state": state,
        "created": created,
        "database": settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1],
    }
    print("| rows | upload request | background import | rows/s | created |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| {rows:,} | {request_s * 1000:.0f} ms | {worker_s:.1f} s | {result['rows_per_s']:,} | {created:,} |")
    out = ROOT / "bench" / "results" / "csv_import.json"
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
