"""A winlab fleet in a child process for the benchmarks (clients and server must not share one GIL).

`python -m bench.labserver --hosts N --inventory FILE [--first-address K] [--time-scale 0]` starts a
`Lab` (free WinRM and mail ports on 127.77.x.y addresses from index K, HTTP only), writes the
inventory, prints `ready` and then answers JSON commands, one per line on stdin:
`{"cmd": "latency", "seconds": 0.05}` (every host), `{"cmd": "counters"}` (HTTP requests and
commands per host), `{"cmd": "reset"}` (counters to zero), `{"cmd": "stop"}`. `LabProcess` drives it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def serve(argv: list[str] | None = None) -> int:
    from winlab.lab import Lab
    from winlab.persist import write_private_json
    from winlab.windows.clock import ManualClock

    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, required=True)
    parser.add_argument("--inventory", type=Path, required=True)
    parser.add_argument("--first-address", type=int, default=20000)
    parser.add_argument("--time-scale", type=float, default=0.0)
    parser.add_argument("--store-files", type=int, default=30)
    args = parser.parse_args(argv)
    started = time.monotonic()
    lab = Lab(
        hosts=args.hosts,
        seed=0,
        store_files=args.store_files,
        lab_dir=args.inventory.parent / "lab",
        clock=ManualClock(),
        time_scale=args.time_scale,
        winrm_ports=(0, None),  # type: ignore[arg-type]  # HTTP (NTLM + encryption) only
        mail_ports={},
        first_address=args.first_address,
    )
    lab.start()
    write_private_json(args.inventory, lab.inventory())
    print(json.dumps({"ready": True, "start_s": round(time.monotonic() - started, 2)}), flush=True)
    try:
        for line in sys.stdin:
            command = json.loads(line)
            reply: dict[str, Any] = {"ok": True}
            if command["cmd"] == "latency":
                for name in lab.hosts:
                    lab.server(name).faults.latency_s = float(command["seconds"])
            elif command["cmd"] == "counters":
                reply["hosts"] = {
                    name: {"requests": c.requests, "commands": c.commands_run, "shells": c.shells_created}
                    for name in lab.hosts
                    for c in [lab.server(name).counters.snapshot()]
                }
            elif command["cmd"] == "reset":
                for name in lab.hosts:
                    lab.server(name).counters.reset()
            elif command["cmd"] == "stop":
                break
            print(json.dumps(reply), flush=True)
    finally:
        lab.stop()
    return 0


class LabProcess:
    """Start `bench.labserver` as a child (own process group) and talk to it; always stop it."""

    def __init__(self, hosts: int, folder: Path, *, first_address: int = 20000, time_scale: float = 0.0) -> None:
        self.inventory_path = folder / "inventory.json"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.labserver", "--hosts", str(hosts), "--inventory", str(self.inventory_path),
             "--first-address", str(first_address), "--time-scale", str(time_scale)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )  # fmt: skip
        ready = self._read()
        self.start_s = float(ready["start_s"])
        self.inventory: dict[str, Any] = json.loads(self.inventory_path.read_text(encoding="utf-8"))

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the lab server exited")
        return dict(json.loads(line))

    def command(self, cmd: str, **fields: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
        self.process.stdin.flush()
        return self._read()

    def requests(self) -> dict[str, int]:
        return {name: c["requests"] for name, c in self.command("counters")["hosts"].items()}

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.command("stop")
                self.process.wait(timeout=20)
            except (OSError, RuntimeError, ValueError, subprocess.TimeoutExpired):
                pass
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def __enter__(self) -> LabProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process from /proc/<pid>/stat (no psutil)."""
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [[f"{c:.3f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for index, row in enumerate(cells):
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))


def write_result(name: str, data: dict[str, Any]) -> Path:
    path = ROOT / "bench" / "results" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":
    raise SystemExit(serve())
