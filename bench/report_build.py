"""The fleet PDF (and CSV) of the 20-host demo fleet: pages, bytes, request vs background build time.

    .venv/bin/python bench/report_build.py [--hosts 20] [--out /tmp/fleet.pdf]

Starts a winlab fleet in a child process (bench.labserver, the demo's mix of hosts: PowerShell 2.0,
a rejected credential among them), imports it as the demo's two customers (14 + 6), verifies every
host over real WinRM, then asks for a fleet PDF as an MSP admin through Django's test client (the
request only queues it) and builds it as a worker would (`report_build`). The trend needs daily
points: the 29 days before today are **synthetic** ComplianceSnapshot rows (said so in the result).
Throw-away SQLite database (or DATABASE_URL). Writes bench/results/report_build.json.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None, help="write the fleet PDF here")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="report-bench-"))
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{scratch}/bench.sqlite3")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.test import Client
    from django.urls import reverse
    from pypdf import PdfReader

    from bench.labserver import LabProcess, write_result
    from jobs import runner, services
    from jobs.choices import JobKind
    from jobs.services import job_create
    from lockdown import clock
    from reports import services as report_services
    from reports.models import ComplianceSnapshot, Report
    from servers.audit import Actor
    from servers.choices import Role
    from servers.models import Customer, Membership, Server
    from servers.tenancy import Scope
    from tests.factories import UserFactory

    settings.ALLOWED_HOSTS = ["testserver"]
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    call_command("migrate", interactive=False, verbosity=0)
    lab = LabProcess(args.hosts, scratch, first_address=31000)
    try:
        split = args.hosts * 14 // 20
        for customer, hosts in (("Demo Customer", f":{split}"), ("Second Customer", f"{split}:")):
            call_command("import_winlab", str(lab.inventory_path), "--customer", customer, "--slice", hosts)
        services.set_enqueue(runner.run_host)
        started = time.perf_counter()
        job_create(
            scope=Scope(user_id=None, msp_role="admin"),
            actor=Actor.system("bench"),
            kind=JobKind.VERIFY,
            servers=list(Server.objects.all()),
        )
        verify_s = time.perf_counter() - started
        services.set_enqueue(None)
    finally:
        lab.stop()
    report_services.compliance_snapshot_take()
    today = clock.now().date()
    for snapshot in list(ComplianceSnapshot.objects.filter(day=today)):
        for back in range(1, 30):  # synthetic history, so the chart has a line to draw
            ComplianceSnapshot.objects.create(
                day=today - timedelta(days=back),
                customer_id=snapshot.customer_id,
                servers_total=snapshot.servers_total,
                compliant=snapshot.compliant,
                verified=snapshot.verified,
                pct_sum=max(0.0, snapshot.pct_sum - snapshot.verified * (back % 10) * 1.5),
                taken_at=clock.now(),
            )
    admin: Any = UserFactory(username="bench-admin")
    Membership.objects.create(user=admin, customer=None, role=Role.ADMIN)
    client = Client()
    client.force_login(admin)
    report_services.set_enqueue(lambda _pk: None)  # the worker's part is timed on its own below
    result: dict[str, Any] = {"hosts": args.hosts, "customers": Customer.objects.count(), "verify_s": verify_s}
    for fmt in ("pdf", "csv"):
        form = {"customer": "fleet", "format": fmt, "start": str(today - timedelta(days=29)), "end": str(today)}
        started = time.perf_counter()
        response = client.post(reverse("report_create"), form)
        request_s = time.perf_counter() - started
        assert response.status_code == 302, response.status_code
        report = Report.objects.order_by("-id").first()
        assert report is not None
        started = time.perf_counter()
        state = report_services.report_build(report.pk)
        build_s = time.perf_counter() - started
        report.refresh_from_db()
        entry: dict[str, Any] = {"request_s": request_s, "build_s": build_s, "state": state,
                                 "bytes": len(bytes(report.content))}  # fmt: skip
        if fmt == "pdf":
            reader = PdfReader(io.BytesIO(bytes(report.content)))
            entry["pages"] = len(reader.pages)
            entry["page1_first_line"] = reader.pages[0].extract_text().splitlines()[0]
            if args.out:
                args.out.write_bytes(bytes(report.content))
        result[fmt] = entry
    result["trend"] = "29 synthetic daily snapshots before today, then today's live figure"
    path = write_result("report_build", result)
    print(f"verify of {args.hosts} hosts: {verify_s:.1f} s")
    for fmt in ("pdf", "csv"):
        e = result[fmt]
        print(f"{fmt}: request {e['request_s'] * 1000:.0f} ms (queues), build {e['build_s']:.2f} s, "
              f"{e['bytes']} bytes" + (f", {e['pages']} pages" if "pages" in e else ""))  # fmt: skip
    print(f"written to {path}")


if __name__ == "__main__":
    main()
