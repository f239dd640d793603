"""`make demo`: migrate, create an admin, then run web, Celery worker and beat until Ctrl-C.

Unless FLEET_DEMO_WINLAB=0, a winlab fleet of 20 emulated Windows + MailEnable hosts runs too
(`python -m winlab serve`, state kept in var/winlab/), and its inventory is imported for two
customers (14 hosts for "Demo Customer", 6 for "Second Customer") so tenancy is visible.

Everything runs on this machine with no services: SQLite in var/ and kombu's filesystem
broker (a real queue between the processes). With DATABASE_URL / CELERY_BROKER_URL set, the
same command uses PostgreSQL and Redis.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import IO

BASE_DIR = Path(__file__).resolve().parent.parent
WINLAB_DIR = BASE_DIR / "var" / "winlab"
WINLAB_INVENTORY = WINLAB_DIR / "inventory.json"
WINLAB_HOSTS = 20
WINLAB_CUSTOMERS = (("Demo Customer", ":14"), ("Second Customer", "14:"))
DEMO_NETWORKS = "127.0.0.0/8\n10.20.0.0/16"


def _free_port(preferred: int) -> int:
    candidates: list[int] = [preferred, *range(preferred + 1, preferred + 50)]
    for port in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise SystemExit(f"no free port near {preferred}")


# Two MSP admins, so the four-eyes rules (a waiver needs an approver who is not its proposer)
# can be tried in the demo without creating a user first.
DEMO_ADMINS = ("admin", "approver")
LOG_DIR = BASE_DIR / "var" / "log"


def _prepare() -> list[tuple[str, str | None]]:
    """Migrate and create the demo's MSP admins; returns (username, new password or None if it existed)."""
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)
    from django.contrib.auth import get_user_model

    from servers.choices import Role
    from servers.models import Membership

    user_model = get_user_model()
    accounts: list[tuple[str, str | None]] = []
    for username in DEMO_ADMINS:
        if user_model.objects.filter(username=username).exists():
            accounts.append((username, None))
            continue
        password = secrets.token_urlsafe(15)
        user = user_model.objects.create_superuser(username=username, email="", password=password)
        Membership.objects.create(user=user, customer=None, role=Role.ADMIN)
        accounts.append((username, password))
    return accounts


def banner(url: str, accounts: list[tuple[str, str | None]], logs: Path) -> str:
    """What `make demo` prints last, after every process has started, so nothing scrolls it away."""
    lines = ["", "  " + "=" * 72, f"  Fleet Lockdown is running: {url}   (Ctrl-C stops everything)", ""]
    for username, password in accounts:
        if password:
            lines.append(f"    MSP admin  {username:<10} password: {password}   (shown once, store it now)")
        else:
            lines.append(
                f"    MSP admin  {username:<10} exists (reset: .venv/bin/python manage.py changepassword {username})"
            )
    lines += [
        "",
        "    Two admins, so a waiver one proposes the other can approve.",
        f"    Web, worker, beat and winlab logs: {logs.relative_to(BASE_DIR)}/",
        "  " + "=" * 72,
        "",
    ]
    return "\n".join(lines)


def _log(name: str) -> IO[bytes]:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    return (LOG_DIR / f"{name}.log").open("ab")


def _start_winlab(python: str) -> subprocess.Popen[bytes]:
    """Start the emulated fleet and wait (bounded) for its inventory."""
    WINLAB_INVENTORY.unlink(missing_ok=True)
    command = [python, "-m", "winlab", "serve", "--hosts", str(WINLAB_HOSTS), "--inventory",
               str(WINLAB_INVENTORY.relative_to(BASE_DIR)), "--lab", str(WINLAB_DIR.relative_to(BASE_DIR))]  # fmt: skip
    output = _log("winlab")
    child = subprocess.Popen(command, cwd=BASE_DIR, start_new_session=True, stdout=output, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not WINLAB_INVENTORY.exists():
        if child.poll() is not None or time.monotonic() > deadline:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
            raise SystemExit("  winlab did not start (set FLEET_DEMO_WINLAB=0 to run without it)")
        time.sleep(0.2)
    return child


def _import_winlab() -> None:
    from django.core.management import call_command

    from servers.models import Customer

    for customer, hosts in WINLAB_CUSTOMERS:
        call_command("import_winlab", str(WINLAB_INVENTORY), "--customer", customer, "--slice", hosts)
    # The management networks: the loopback addresses winlab listens on and a pretend MSP office, 10.20.0.0/16
    # (ME003 and ME007 restrict webadmin to it, the other hosts leave it open). An operator's own setting is kept.
    Customer.objects.filter(name__in=[c for c, _ in WINLAB_CUSTOMERS], management_networks="").update(
        management_networks=DEMO_NETWORKS
    )


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(BASE_DIR))
    accounts = _prepare()
    python = sys.executable
    port = _free_port(int(os.environ.get("FLEET_DEMO_PORT", "8000")))
    commands = {
        "web": [python, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        "worker": [
            python,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool",
            "threads",
            "--concurrency",
            "16",
            "-l",
            "INFO",
        ],
        "beat": [
            python,
            "-m",
            "celery",
            "-A",
            "config",
            "beat",
            "-l",
            "INFO",
            "-s",
            str(BASE_DIR / "var" / "celerybeat"),
        ],
    }
    children: dict[str, subprocess.Popen[bytes]] = {}
    if os.environ.get("FLEET_DEMO_WINLAB", "1") != "0":
        children["winlab"] = _start_winlab(python)
        _import_winlab()
        print(f"  winlab: {WINLAB_HOSTS} emulated hosts, inventory {WINLAB_INVENTORY.relative_to(BASE_DIR)}")
    for name, command in commands.items():
        output = _log(name)
        children[name] = subprocess.Popen(
            command, cwd=BASE_DIR, start_new_session=True, stdout=output, stderr=subprocess.STDOUT
        )

    stopping = False

    def stop(_signum: int = 0, _frame: FrameType | None = None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(banner(f"http://127.0.0.1:{port}/", accounts, LOG_DIR), flush=True)
    exit_code = 0
    while not stopping:
        for name, child in children.items():
            if child.poll() is not None:
                print(
                    f"  {name} exited with {child.returncode}; stopping the demo (see var/log/{name}.log)",
                    file=sys.stderr,
                )
                exit_code = 1
                stopping = True
        time.sleep(0.5)
    for child in children.values():
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for child in children.values():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
    print("  Stopped.")
    return exit_code


if __name__ == "__main__":
    raise SystemExit(main())
