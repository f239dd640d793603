"""Reliability fixtures: a REAL Celery worker process, a real broker and winlab over real WinRM.

- `fleet(specs)` starts a winlab `Lab` in this process (ManualClock, `time_scale=0`, free mail
  ports), writes its inventory and imports it with `manage.py import_winlab --scheme http`.
- `workers.start()` starts `python -m celery -A config worker --pool threads` in its own process
  group, against the database this test uses (built from `connection.settings_dict`, so it is
  pytest-django's test database) and a broker: `CELERY_BROKER_URL` (Redis in CI), or kombu's
  filesystem transport in a temporary folder, or a private `redis-server` (`private_redis`).
  Every worker gets a queue of its own (`-Q` plus `CELERY_TASK_DEFAULT_QUEUE`), so a shared Redis
  never hands our messages to someone else's worker, nor theirs to ours; this process sends to
  the same queue through `jobs.services.set_enqueue`.
- Waits poll the database with deadlines; every child is killed by process group in teardown.

The tests need a database two processes can share: PostgreSQL, or SQLite in a file (used when
only `tests/reliability` runs on SQLite). With pytest-django's in-memory SQLite they skip, unless
REQUIRE_SERVICES=1, where they fail.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from django.core.management import call_command
from django.db import connection

from jobs import services
from jobs.choices import HostRunState, JobKind
from jobs.models import HostRun, Job
from jobs.services import JobOptions, job_create
from servers.audit import Actor
from servers.models import Server
from servers.tenancy import Scope
from winlab.lab import Lab
from winlab.persist import write_private_json
from winlab.windows.clock import ManualClock
from winlab.windows.factory import HostSpec
from winlab.windows.mailenable import Edition

ROOT = Path(__file__).resolve().parents[2]
REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"
WORKER_READY_S = 60.0
# The run deadline the worker gives every agent call: a host whose Receives time out fails after this.
RUN_TIMEOUT_S = 8

# Hosts every harden of the built-in profile brings to compliance (no PowerShell 2.0, no filtered admin).
HEALTHY_TEMPLATES: tuple[HostSpec, ...] = (
    HostSpec(os="2022", edition=Edition.STANDARD, version="10.43"),
    HostSpec(os="2019", edition=Edition.ENTERPRISE, version="10.43"),
    HostSpec(os="2016", edition=Edition.PROFESSIONAL, version="10.43", install_path="plesk"),
    HostSpec(os="2008r2", edition=Edition.PROFESSIONAL, version="9.83", wmf51=True),
    HostSpec(os="2022", edition=Edition.ENTERPRISE, version="10.43", wsearch=True),
)


def healthy_specs(count: int, prefix: str = "HL") -> list[HostSpec]:
    from dataclasses import replace

    return [
        replace(HEALTHY_TEMPLATES[i % len(HEALTHY_TEMPLATES)], name=f"{prefix}{i + 1:03d}", seed=i, store_files=20)
        for i in range(count)
    ]


MSP = Scope(user_id=None, msp_role="admin")
ACTOR = Actor.system("reliability")


def start_job(kind: JobKind, servers: Sequence[Server], **options: Any) -> Job:
    """Create a job like the UI does; its runs reach the worker through the test's enqueue."""
    return job_create(scope=MSP, actor=ACTOR, kind=kind, servers=list(servers), options=JobOptions(**options))


# --- waiting -------------------------------------------------------------------------------------
def wait_until(predicate: Callable[[], Any], *, timeout: float, what: str, every: float = 0.1) -> Any:
    """Poll `predicate` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            states = list(HostRun.objects.values_list("server_name", "state", "error_kind"))
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}; host runs: {states[:60]}")
        time.sleep(every)


def job_done(job: Job, timeout: float) -> Job:
    """Wait until the job is no longer active, and return it fresh."""
    wait_until(lambda: not Job.objects.get(pk=job.pk).is_active, timeout=timeout, what=f"job #{job.pk} to end")
    return Job.objects.get(pk=job.pk)


def open_runs() -> int:
    return HostRun.objects.filter(state__in=[HostRunState.QUEUED, HostRunState.RUNNING]).count()


# --- the database ---------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None, tmp_path_factory) -> None:
    """SQLite: when this folder's tests set the test database up, put it in a file two processes share."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3"):
        folder = tmp_path_factory.mktemp("reliability-var")
        database.setdefault("TEST", {})["NAME"] = str(folder / "fleet.sqlite3")


@dataclass
class SharedDatabase:
    """How a child process reaches the database this test uses (environment variables)."""

    env: dict[str, str]
    sqlite_folder: Path | None


@pytest.fixture
def shared_db(transactional_db: None) -> SharedDatabase:
    settings_dict = connection.settings_dict
    name = str(settings_dict["NAME"])
    if connection.vendor == "postgresql":
        user = settings_dict.get("USER") or ""
        password = settings_dict.get("PASSWORD") or ""
        auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        host = settings_dict.get("HOST") or "127.0.0.1"
        port = settings_dict.get("PORT") or 5432
        return SharedDatabase({"DATABASE_URL": f"postgres://{auth}{host}:{port}/{name}"}, None)
    if connection.vendor == "sqlite" and "memory" not in name and name != "":
        folder = Path(name).parent
        # The worker's settings put SQLite (with WAL and IMMEDIATE transactions) at FLEET_VAR_DIR/fleet.sqlite3.
        if Path(name).name == "fleet.sqlite3":
            return SharedDatabase({"FLEET_VAR_DIR": str(folder)}, folder)
    reason = f"needs a database a worker process can share (PostgreSQL or SQLite in a file), not {name!r}"
    if REQUIRE_SERVICES:
        pytest.fail(f"REQUIRE_SERVICES=1: {reason}")
    pytest.skip(reason)


# --- brokers --------------------------------------------------------------------------------------
@dataclass
class Broker:
    """A broker URL plus what a kombu client needs to use it."""

    url: str
    transport_options: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)


def _filesystem_broker(folder: Path) -> Broker:
    for sub in ("queue", "processed", "control"):
        (folder / "broker" / sub).mkdir(parents=True, exist_ok=True)
    options = {
        "data_folder_in": str(folder / "broker" / "queue"),
        "data_folder_out": str(folder / "broker" / "queue"),
        "processed_folder": str(folder / "broker" / "processed"),
        "control_folder": str(folder / "broker" / "control"),
        "store_processed": False,
    }
    # The worker's settings build exactly these folders under FLEET_VAR_DIR when no broker URL is set.
    return Broker("filesystem://", options, {"FLEET_VAR_DIR": str(folder)})


@pytest.fixture
def broker(shared_db: SharedDatabase, tmp_path: Path) -> Broker:
    url = os.environ.get("CELERY_BROKER_URL") or os.environ.get("REDIS_URL") or ""
    if url:
        return Broker(url, {"visibility_timeout": 7200}, {"CELERY_BROKER_URL": url, "REDIS_URL": url})
    if shared_db.sqlite_folder is None:
        return _filesystem_broker(tmp_path)
    return _filesystem_broker(shared_db.sqlite_folder)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivateRedis:
    """A throw-away `redis-server` on a spare loopback port that keeps nothing (no RDB, no AOF)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        try:
            wait_until(lambda: _ping(client), timeout=10, what=f"redis-server on port {self.port}")
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: whatever it held (queued messages) is gone."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        self.kill()
        self.start()


def _ping(client: Any) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if not Path("/usr/bin/redis-server").exists() and not _which("redis-server"):
        if REQUIRE_SERVICES:
            pytest.fail("REQUIRE_SERVICES=1 but redis-server is not installed")
        pytest.skip("redis-server is not installed")
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def _which(program: str) -> str | None:
    import shutil

    return shutil.which(program)


# --- workers --------------------------------------------------------------------------------------
@dataclass
class Worker:
    """One `celery worker` process (its own process group) and the queue it consumes."""

    process: subprocess.Popen[bytes]
    queue: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def kill(self) -> None:
        """kill -9 of the whole process group: no shutdown code runs, nothing is acknowledged."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


class Workers:
    """Starts workers for one test; this process's enqueue sends to their queue on their broker."""

    def __init__(self, db: SharedDatabase, broker: Broker, folder: Path) -> None:
        self.db = db
        self.broker = broker
        self.folder = folder
        self.queue = f"reliability-{uuid.uuid4().hex[:12]}"
        self.started: list[Worker] = []
        self.broker_urls = {broker.url}
        self._sender: Celery | None = None
        # At once, not at the first worker: a job created before it must wait in *our* queue, never
        # reach the default queue of the settings' broker (another process's worker would take it).
        self._install_sender()

    def use_broker(self, broker: Broker) -> None:
        """Send (and start later workers) on another broker, e.g. a private redis-server."""
        self.broker = broker
        self.broker_urls.add(broker.url)
        self._install_sender()

    def _install_sender(self) -> None:
        if self._sender is not None:
            self._sender.close()
        sender = Celery("reliability-sender", broker=self.broker.url, set_as_current=False)
        sender.conf.broker_transport_options = dict(self.broker.transport_options)
        sender.conf.broker_connection_retry_on_startup = True
        self._sender = sender

        url = self.broker.url

        def enqueue(host_run_id: int) -> None:
            # An explicit connection: Celery prefers $CELERY_BROKER_URL over the app's own broker_url.
            with sender.connection_for_write(url) as broker_connection:
                sender.send_task(
                    "jobs.run_host_run", args=[host_run_id], queue=self.queue, connection=broker_connection
                )

        services.set_enqueue(enqueue)

    def child_env(self, extra_env: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of a child process (worker or `manage.py`) on this test's database, broker, queue."""
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in {"DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "FLEET_VAR_DIR"}
        }
        env.update(self.db.env)
        env.update(self.broker.env)
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "config.settings",
                "CELERY_TASK_DEFAULT_QUEUE": self.queue,
                "FLEET_RUN_TIMEOUT_S": str(RUN_TIMEOUT_S),
                "FLEET_HEARTBEAT_EVERY_S": "2",
                "FLEET_LOG_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(extra_env or {})
        return env

    def start(self, *, concurrency: int = 8, extra_env: dict[str, str] | None = None) -> Worker:
        env = self.child_env(extra_env)
        index = len(self.started)
        log_path = self.folder / f"worker-{index}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "threads",
                 "--concurrency", str(concurrency), "-Q", self.queue, "-n", f"{self.queue}-{index}@%h",
                 "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"],
                cwd=ROOT,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        worker = Worker(process, self.queue, log_path)
        self.started.append(worker)
        deadline = time.monotonic() + WORKER_READY_S
        while " ready." not in worker.log():
            if process.poll() is not None or time.monotonic() > deadline:
                worker.kill()
                pytest.fail(f"the Celery worker did not start:\n{worker.log()[-4000:]}")
            time.sleep(0.1)
        return worker

    def close(self) -> None:
        for worker in self.started:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                worker.stop()
        services.set_enqueue(None)
        if self._sender is not None:
            self._sender.close()
            self._sender = None
        for url in self.broker_urls:
            self._forget_our_redis_messages(url)

    def _forget_our_redis_messages(self, url: str) -> None:
        """Shared Redis: drop this test's queue and the unacknowledged messages a killed worker left.

        Only entries routed to our own queue are touched (never a flush): otherwise kombu would
        restore them into a queue nobody consumes once the visibility timeout has passed.
        """
        if not url.startswith("redis://"):
            return
        import json

        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        try:
            client.delete(self.queue, f"_kombu.binding.{self.queue}", f"_kombu.binding_permanent.{self.queue}")
            for tag, raw in client.hscan_iter("unacked", count=500):
                try:
                    _payload, _exchange, routing_key = json.loads(raw)
                except (ValueError, TypeError):
                    continue
                if routing_key == self.queue:
                    client.hdel("unacked", tag)
                    client.zrem("unacked_index", tag)
        except redis.RedisError:
            pass  # a private redis-server already gone: nothing to clean
        finally:
            client.close()


@pytest.fixture
def workers(shared_db: SharedDatabase, broker: Broker, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(shared_db, broker, tmp_path)
    try:
        yield pool
    finally:
        pool.close()


# --- winlab fleets --------------------------------------------------------------------------------
@dataclass
class LabFleet:
    """A running lab and the servers `import_winlab` made of it (by host name)."""

    lab: Lab
    customer: str
    servers: dict[str, Server]

    def server(self, name: str) -> Server:
        return self.servers[name]

    def all(self) -> list[Server]:
        return list(self.servers.values())


@pytest.fixture
def fleet(shared_db: SharedDatabase, tmp_path_factory) -> Iterator[Callable[..., LabFleet]]:
    labs: list[Lab] = []

    def start(specs: Sequence[HostSpec], customer: str = "Reliability") -> LabFleet:
        folder = tmp_path_factory.mktemp("lab")
        lab = Lab(list(specs), lab_dir=folder, clock=ManualClock(), time_scale=0.0, mail_ports={})
        lab.start()
        labs.append(lab)
        inventory = folder / "inventory.json"
        write_private_json(inventory, lab.inventory())
        call_command("import_winlab", str(inventory), "--customer", customer, "--scheme", "http", stdout=io.StringIO())
        servers = {s.name: s for s in Server.objects.filter(customer__name=customer).select_related("customer")}
        return LabFleet(lab, customer, servers)

    try:
        yield start
    finally:
        for lab in labs:
            lab.stop()
