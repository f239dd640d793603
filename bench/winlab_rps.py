"""Issue 3: how many WinRM requests one winlab process serves, and `run_cmd` latency under load.

One winlab process (`bench.labserver`, a child) serves N hosts (default 500, HTTP + NTLM with
message encryption). For 1, 10 and 100 concurrent clients (threads, each with its own pywinrm
`Protocol` to its own host, so NTLM runs once per client) every client repeats
open shell → `echo` → read output → close shell for a fixed time. Reported: HTTP requests per
second (winlab's counters), commands per second, and the latency of one such `run_cmd` (p50/p95).

    .venv/bin/python bench/winlab_rps.py [--hosts 500] [--seconds 8] [--clients 1,10,100]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from winrm.protocol import Protocol

from bench.labserver import LabProcess, percentile, print_table, write_result


def protocol_for(entry: dict[str, Any]) -> Protocol:
    return Protocol(
        endpoint=f"http://{entry['address']}:{entry['winrm']['http_port']}/wsman",
        transport="ntlm",
        username=entry["username"],
        password=entry["password"],
        message_encryption="auto",
        read_timeout_sec=30,
        operation_timeout_sec=20,
    )


def run_cmd(protocol: Protocol) -> None:
    shell = protocol.open_shell()
    try:
        command = protocol.run_command(shell, "echo", ["bench"])
        out, _err, code = protocol.get_command_output(shell, command)
        protocol.cleanup_command(shell, command)
        if code != 0 or b"bench" not in out:
            raise RuntimeError(f"unexpected answer {code} {out!r}")
    finally:
        protocol.close_shell(shell)


def level(lab: LabProcess, hosts: list[dict[str, Any]], clients: int, seconds: float) -> dict[str, Any]:
    protocols = [protocol_for(hosts[i % len(hosts)]) for i in range(clients)]
    for protocol in protocols:  # NTLM handshake and a first command outside the measurement
        run_cmd(protocol)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client(index: int) -> None:
        start.wait()
        while time.monotonic() < stop_at[0]:
            began = time.perf_counter()
            try:
                run_cmd(protocols[index])
            except Exception as exc:
                errors.append(repr(exc)[:200])
                return
            latencies[index].append(time.perf_counter() - began)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    before = sum(lab.requests().values())
    cpu_before = lab.cpu_seconds()
    stop_at[0] = time.monotonic() + seconds
    began = time.monotonic()
    start.wait()
    for thread in threads:
        thread.join(timeout=seconds + 60)
    elapsed = time.monotonic() - began
    requests = sum(lab.requests().values()) - before
    flat = [value for values in latencies for value in values]
    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "http_requests": requests,
        "requests_per_s": round(requests / elapsed, 1),
        "run_cmd_per_s": round(len(flat) / elapsed, 1),
        "requests_per_run_cmd": round(requests / len(flat), 2) if flat else None,
        "p50_ms": round(1000 * percentile(flat, 50), 1),
        "p95_ms": round(1000 * percentile(flat, 95), 1),
        "server_cpu_pct": round(100 * (lab.cpu_seconds() - cpu_before) / elapsed, 0),
        "errors": errors[:5],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", default="1,10,100")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-rps-") as folder, LabProcess(args.hosts, Path(folder)) as lab:
        hosts = lab.inventory["hosts"]
        print(f"winlab: {len(hosts)} hosts started in {lab.start_s:.2f} s (one process)")
        rows = [level(lab, hosts, int(c), args.seconds) for c in args.clients.split(",")]
    print_table(
        ["clients", "req/s", "run_cmd/s", "req/run_cmd", "p50 ms", "p95 ms", "server CPU %", "errors"],
        [
            [r["clients"], r["requests_per_s"], r["run_cmd_per_s"], r["requests_per_run_cmd"], r["p50_ms"],
             r["p95_ms"], r["server_cpu_pct"], len(r["errors"])]
            for r in rows
        ],
    )  # fmt: skip
    path = write_result("winlab_rps", {"hosts": args.hosts, "start_s": lab.start_s, "levels": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
