"""Render times of the fleet pages with 10,000 servers × 180 outcomes, in a database of its own.

    .venv/bin/python bench/bench_pages.py [--servers 10000] [--outcomes 180] [--repeat 30]
                                          [--database-url sqlite:////tmp/fleet-bench.sqlite3]

Loads (bulk_create) customers, servers with their denormalised status, one ServerCompliance
row per server holding `--outcomes` outcomes, history rows for 100 servers, a 50-host verify
job with its log and a fleet-wide verify job over every server, then times each page through
Django's test client as an MSP admin and prints p50/p95 (target p95 < 300 ms). The database
is created fresh unless `--keep` finds it already loaded; it never touches var/fleet.sqlite3.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
STATUSES = ["compliant", "drifted", "failing", "unreachable", "never_verified"]
RULE_STATUSES = ["compliant"] * 14 + ["drift", "not_applicable", "waived", "error"]


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", type=int, default=10_000)
    parser.add_argument("--outcomes", type=int, default=180)
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--database-url", default=f"sqlite:///{tempfile.gettempdir()}/fleet-bench.sqlite3")
    parser.add_argument("--keep", action="store_true", help="reuse an already loaded bench database")
    return parser.parse_args()


def _outcome(index: int, seed: int) -> dict[str, object]:
    status = RULE_STATUSES[(index + seed) % len(RULE_STATUSES)]
    return {
        "rule_id": f"file_acl.mailenable_bin.rule_{index:03d}",
        "target": f"C:\\Program Files (x86)\\Mail Enable\\Bin\\MESMTPC{index}.exe",
        "section": f"Section {index % 12}: NTFS permissions",
        "status": status,
        "underlying_status": "drift" if status == "waived" else None,
        "action": "none",
        "expected_text": "IME_SYSTEM: Read & execute (0x1200a9), inherited to files",
        "expected": {"principal": "IME_SYSTEM", "mask": 1179817},
        "observed_text": "IME_SYSTEM: no entry" if status != "compliant" else "IME_SYSTEM: Read & execute (0x1200a9)",
        "observed": {"aces": [{"sid": "S-1-5-21-1-2-3-1001", "mask": 1179817}]},
        "reason": "",
        "risk": "low",
        "risk_note": None,
        "waiver_justification": "Vendor requirement" if status == "waived" else None,
    }


def load(servers: int, outcomes: int, customers: int) -> dict[str, int]:
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from jobs.models import HostRun, HostRunEvent, Job, RuleResult, ServerCompliance
    from lockdown import clock
    from servers.models import Customer, Membership, Server

    now = clock.now()
    started = time.perf_counter()
    with transaction.atomic():
        Customer.objects.bulk_create([Customer(name=f"Customer {c:04d}") for c in range(customers)])
        customer_ids = list(Customer.objects.order_by("pk").values_list("pk", flat=True))
        Server.objects.bulk_create(
            [
                Server(
                    customer_id=customer_ids[n % customers],
                    name=f"mx{n:05d}",
                    address=f"mx{n:05d}.example.net",
                    status=STATUSES[n % len(STATUSES)],
                    compliance_pct=None if n % 5 == 4 else 60.0 + (n * 7) % 41,
                    last_verified_at=None if n % 5 == 4 else now,
                    facts={"os_caption": "Microsoft Windows Server 2022 Standard", "powershell_version": "5.1"},
                )
                for n in range(servers)
            ],
            batch_size=1000,
        )
        server_rows = list(Server.objects.order_by("pk").values_list("pk", "name", "customer_id"))
        small = Job.objects.create(kind="verify", state="succeeded", description="Verify 50 servers", started_at=now)
        fleet = Job.objects.create(kind="verify", state="succeeded", description="Verify the fleet", started_at=now)
        HostRun.objects.bulk_create(
            [
                HostRun(
                    job=fleet, server_id=pk, server_name=name, customer_id=cid, customer_name="c", state="succeeded"
                )
                for pk, name, cid in server_rows
            ],
            batch_size=1000,
        )
        HostRun.objects.bulk_create(
            [
                HostRun(
                    job=small, server_id=pk, server_name=name, customer_id=cid, customer_name="c", state="succeeded"
                )
                for pk, name, cid in server_rows[:50]
            ]
        )
        small_runs = list(HostRun.objects.filter(job=small).values_list("pk", flat=True))
        HostRunEvent.objects.bulk_create(
            [
                HostRunEvent(host_run_id=r, seq=s, at=now, message=f"step {s} of run {r}")
                for r in small_runs
                for s in range(8)
            ]
        )
        run_of = dict(HostRun.objects.filter(job=fleet).values_list("server_id", "pk"))
    print(f"  servers, jobs: {time.perf_counter() - started:.1f} s")
    batch: list[ServerCompliance] = []
    for index, (pk, _name, _cid) in enumerate(server_rows):
        if index % 5 == 4:
            continue  # never verified
        batch.append(
            ServerCompliance(
                server_id=pk,
                host_run_id=run_of[pk],
                verified_at=now,
                profile_label="mailenable-builtin v3",
                outcomes=[_outcome(i, index) for i in range(outcomes)],
                summary={"total": outcomes},
            )
        )
        if len(batch) == 200:
            ServerCompliance.objects.bulk_create(batch)
            batch = []
    ServerCompliance.objects.bulk_create(batch)
    print(f"  + compliance rows: {time.perf_counter() - started:.1f} s")
    history = [
        RuleResult(
            server_id=pk,
            host_run_id=run_of[pk],
            rule_id=f"file_acl.mailenable_bin.rule_{i:03d}",
            target=f"C:\\Program Files (x86)\\Mail Enable\\Bin\\MESMTPC{i}.exe",
            section="NTFS",
            status="drift" if day % 2 else "compliant",
            created_at=now - timedelta(days=day),
        )
        for pk, _name, _cid in server_rows[:100]
        for i in range(outcomes)
        for day in range(2)
    ]
    RuleResult.objects.bulk_create(history, batch_size=2000)
    admin = get_user_model().objects.create_user("bench-admin", password="bench-password-123")
    Membership.objects.create(user=admin, customer=None, role="admin")
    print(f"  loaded in {time.perf_counter() - started:.1f} s")
    return {"small_job": small.pk, "fleet_job": fleet.pk, "server": server_rows[0][0]}


def main() -> None:
    args = _parse()
    os.environ["DATABASE_URL"] = args.database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("FLEET_LOG_LEVEL", "ERROR")
    if args.database_url.startswith("sqlite:///") and not args.keep:
        Path(args.database_url.removeprefix("sqlite:///")).unlink(missing_ok=True)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, setup_test_environment
    from django.urls import reverse

    from jobs.models import Job
    from servers.models import Server

    setup_test_environment()
    call_command("migrate", verbosity=0)
    if args.keep and Server.objects.exists():
        jobs = list(Job.objects.order_by("pk").values_list("pk", flat=True))
        ids = {
            "small_job": jobs[0],
            "fleet_job": jobs[1],
            "server": Server.objects.order_by("pk").values_list("pk", flat=True)[0],
        }
    else:
        print(f"loading {args.servers} servers × {args.outcomes} outcomes into {args.database_url}")
        ids = load(args.servers, args.outcomes, args.customers)
    from django.contrib.auth import get_user_model

    client = Client()
    client.force_login(get_user_model().objects.get(username="bench-admin"))
    pages = {
        "dashboard": reverse("dashboard"),
        "server list, page 1": reverse("server_list"),
        "server list, search": reverse("server_list") + "?q=mx0421",
        "server list, page 120": reverse("server_list") + "?page=120",
        "server page (180 outcomes)": reverse("server_detail", kwargs={"server_id": ids["server"]}),
        "server page, problems only": reverse("server_detail", kwargs={"server_id": ids["server"]}) + "?show=problems",
        "server page, search": reverse("server_detail", kwargs={"server_id": ids["server"]}) + "?q=system32",
        "customer page": reverse(
            "customer_detail", kwargs={"customer_id": Server.objects.get(pk=ids["server"]).customer_id}
        ),
        "job page (50 hosts)": reverse("job_detail", kwargs={"job_id": ids["small_job"]}),
        f"job page ({args.servers} hosts)": reverse("job_detail", kwargs={"job_id": ids["fleet_job"]}),
    }
    print(f"\n{'page':<32} {'p50 ms':>8} {'p95 ms':>8} {'queries':>8}  (n={args.repeat}, target p95 < 300 ms)")
    for name, url in pages.items():
        client.get(url)  # warm caches and the session
        timings = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            response = client.get(url)
            timings.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (url, response.status_code)
        with CaptureQueriesContext(connection) as captured:
            client.get(url)
        timings.sort()
        p95 = timings[min(len(timings) - 1, round(0.95 * (len(timings) - 1)))]
        flag = "" if p95 < 300 else "  <-- over target"
        print(f"{name:<32} {statistics.median(timings):8.1f} {p95:8.1f} {len(captured.captured_queries):8d}{flag}")


if __name__ == "__main__":
    main()
