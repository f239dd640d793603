"""Issue 6: verify and harden of 100 and 500 winlab hosts through `manage.py run_job --all --wait`.

Everything real: PostgreSQL (a separate database, `fleet_bench`, created and migrated here),
Redis (`CELERY_BROKER_URL`, default redis://127.0.0.1:6379/0, on a queue of this run's own),
one Celery worker process with the thread pool, and one winlab process (`bench.labserver`)
serving the hosts over HTTP + NTLM with encryption. Per case:
- hosts per minute: hosts / wall time of `run_job --wait` (job creation to the last host);
- per-host latency p50/p95: HostRun.finished_at - started_at;
- HTTP requests per host: winlab's counters;
- database statements per host: PostgreSQL `pg_stat_database.xact_commit` delta of `fleet_bench`
  (Django runs in autocommit, so every statement outside an atomic block is one commit and an
  atomic block is one: a close lower bound of statements, counted without touching the code);
  `tup_inserted` + `tup_updated` per host as the write volume;
- worker CPU: utime + stime of the worker process from /proc/<pid>/stat;
- WinRM invocations per host: winlab's command counters (one per agent program run).

`--profile-slug mailenable-current-baseline` makes the current baseline every imported customer's default
profile (the guide's rules plus its verify-only checks), so each verify also makes the worker's SMTP probe
of the host (winlab's SMTP listener: EHLO, RCPT TO, STARTTLS), which is no WinRM invocation.

    CELERY_BROKER_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/jobs_fleet.py \
        [--hosts 500] [--small 100] [--threads 32] [--latency 0,0.05] [--kinds verify,reverify,harden] \
        [--profile-slug mailenable-hardened|mailenable-current-baseline]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DB_NAME = "fleet_bench"
PG = "postgres://postgres@127.0.0.1:5432"

from bench.labserver import LabProcess, percentile, print_table, proc_cpu_seconds, write_result  # noqa: E402


def psql(sql: str, database: str = "postgres") -> str:
    return subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-tAc", sql],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()


def prepare_database(env: dict[str, str]) -> None:
    # DB_NAME is a constant of this script, not input.
    if psql(f"SELECT 1 FROM pg_database WHERE datname='{DB_NAME}'") != "1":  # noqa: S608
        psql(f"CREATE DATABASE {DB_NAME}")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=300)
    # A clean slate each run: only our own database's job and server tables.
    psql(
        "TRUNCATE jobs_hostrunevent, jobs_ruleresult, jobs_changerecord, jobs_servercompliance, "
        "jobs_serviceaccountsecret, jobs_hostrun, jobs_job, servers_server, servers_credential, servers_customer "
        "CASCADE",
        DB_NAME,
    )


def db_counters() -> dict[str, int]:
    row = psql(
        f"SELECT xact_commit, tup_inserted, tup_updated, tup_returned FROM pg_stat_database WHERE datname='{DB_NAME}'",  # noqa: S608
        DB_NAME,
    ).split("|")
    return dict(zip(("commits", "inserted", "updated", "returned"), map(int, row), strict=True))


class Worker:
    def __init__(self, env: dict[str, str], threads: int, log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "threads", "--concurrency",
                 str(threads), "-Q", env["CELERY_TASK_DEFAULT_QUEUE"], "-n", f"bench-{uuid.uuid4().hex[:6]}@%h",
                 "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        time.sleep(3)  # -l WARNING prints no "ready"; tasks sent earlier simply wait in the queue
        if self.process.poll() is not None:
            raise RuntimeError(log.read_text(errors="replace")[-3000:])

    def cpu(self) -> float:
        return proc_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def run_case(env: dict[str, str], lab: LabProcess, worker: Worker, kind: str, target: list[str], hosts: int) -> dict:
    from jobs.models import HostRun, Job

    requests_before = sum(lab.requests().values())
    commands_before = host_commands(lab)
    db_before = db_counters()
    cpu_before = worker.cpu()
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "manage.py", "run_job", kind, *target, "--wait", "--max-in-flight", "500", "--timeout", "900"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1000,
    )  # fmt: skip
    wall = time.monotonic() - began
    cpu = worker.cpu() - cpu_before
    time.sleep(1.5)  # pg_stat_database is flushed by each backend about once a second
    db_after = db_counters()
    requests = sum(lab.requests().values()) - requests_before
    commands = host_commands(lab) - commands_before
    job = Job.objects.order_by("-id").first()
    assert job is not None
    runs = list(HostRun.objects.filter(job=job).values_list("state", "started_at", "finished_at"))
    durations = [(end - start).total_seconds() for _state, start, end in runs if start and end]
    states: dict[str, int] = {}
    for state, _start, _end in runs:
        states[state] = states.get(state, 0) + 1
    return {
        "kind": kind,
        "hosts": hosts,
        "exit": done.returncode,
        "states": states,
        "wall_s": round(wall, 1),
        "hosts_per_min": round(60 * hosts / wall, 0),
        "p50_s": round(percentile(durations, 50), 2),
        "p95_s": round(percentile(durations, 95), 2),
        "http_per_host": round(requests / hosts, 1),
        "invocations": commands,
        "invocations_per_host": round(commands / hosts, 2),
        "db_commits_per_host": round((db_after["commits"] - db_before["commits"]) / hosts, 1),
        "db_rows_written_per_host": round(
            (db_after["inserted"] + db_after["updated"] - db_before["inserted"] - db_before["updated"]) / hosts, 1
        ),
        "worker_cpu_s": round(cpu, 1),
        "worker_cpu_pct": round(100 * cpu / wall, 0),
    }


def host_commands(lab: LabProcess) -> int:
    """Commands winlab ran over all hosts (each WinRM invocation of an agent program is one)."""
    return sum(int(host["commands"]) for host in lab.command("counters")["hosts"].values())


def assign_profile(slug: str) -> None:
    """Every customer's default profile: the newest version of the built-in profile `slug`."""
    from lockdown import services
    from lockdown.models import ProfileVersion
    from servers.models import Customer

    services.builtin_profile_sync()  # both built-in profiles exist in the database
    version = ProfileVersion.objects.filter(profile__slug=slug).order_by("-number").first()
    assert version is not None, f"no built-in profile {slug}"
    Customer.objects.update(default_profile_version=version)


def forget_queue(url: str, queue: str) -> None:
    """Remove this run's own queue and kombu binding keys from the (shared) Redis; never a flush."""
    if url.startswith("redis://"):
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        try:
            client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
        finally:
            client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=500)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--threads", default="32", help="comma-separated thread-pool sizes to compare")
    parser.add_argument("--latency", default="0,0.05")
    parser.add_argument("--kinds", default="verify,reverify,harden")
    parser.add_argument("--name", default="jobs_fleet")
    parser.add_argument(
        "--profile-slug",
        choices=("mailenable-hardened", "mailenable-current-baseline"),
        default="mailenable-hardened",
        help="the built-in profile every customer follows (default: the guide's)",
    )
    args = parser.parse_args()
    broker = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
    queue = f"bench-{uuid.uuid4().hex[:10]}"
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "FLEET_VAR_DIR"}}
    env.update(
        DATABASE_URL=f"{PG}/{DB_NAME}",
        CELERY_BROKER_URL=broker,
        CELERY_TASK_DEFAULT_QUEUE=queue,
        FLEET_GLOBAL_MAX_IN_FLIGHT="500",
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE")})
    import django

    django.setup()
    prepare_database(env)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as folder, LabProcess(args.hosts, Path(folder)) as lab:
        print(f"winlab: {args.hosts} hosts in {lab.start_s:.1f} s", flush=True)
        inventory = str(lab.inventory_path)
        for customer, part in (("Small", f":{args.small}"), ("Rest", f"{args.small}:")):
            subprocess.run(
                [sys.executable, "manage.py", "import_winlab", inventory, "--customer", customer, "--scheme", "http",
                 "--slice", part],
                cwd=ROOT, env=env, check=True, timeout=600, capture_output=True,
            )  # fmt: skip
        assign_profile(args.profile_slug)
        for threads in [int(t) for t in args.threads.split(",")]:
            worker = Worker(env, threads, Path(folder) / f"worker-{threads}.log")
            try:
                for latency in [float(x) for x in args.latency.split(",")]:
                    lab.command("latency", seconds=latency)
                    for kind in args.kinds.split(","):
                        # "reverify": the whole fleet again, facts now known (no discover): the steady state.
                        sizes = [(args.small, ["--customer", "Small"]), (args.hosts, ["--all"])]
                        for hosts, target in sizes[1:] if kind == "reverify" else sizes:
                            case = run_case(env, lab, worker, kind.replace("reverify", "verify"), target, hosts)
                            case.update(kind=kind, threads=threads, latency_ms=int(latency * 1000))
                            case["profile"] = args.profile_slug
                            print(case, flush=True)
                            results.append(case)
                lab.command("latency", seconds=0.0)
            finally:
                worker.stop()
    print_table(
        ["threads", "latency ms", "kind", "hosts", "wall s", "hosts/min", "p50 s", "p95 s", "HTTP/host",
         "invocations/host", "DB commits/host", "rows written/host", "worker CPU %", "states"],
        [[r["threads"], r["latency_ms"], r["kind"], r["hosts"], r["wall_s"], r["hosts_per_min"], r["p50_s"],
          r["p95_s"], r["http_per_host"], r["invocations_per_host"], r["db_commits_per_host"],
          r["db_rows_written_per_host"], r["worker_cpu_pct"], r["states"]] for r in results],
    )  # fmt: skip
    forget_queue(broker, queue)
    print(f"wrote {write_result(args.name, {'queue': queue, 'results': results})}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
