"""Issues 5 and agent v2: what verify, harden and rollback cost through `remote.run_agent`.

On one winlab host (a child `bench.labserver` process, HTTP + NTLM with encryption; Server 2022,
MailEnable 10, built-in profile), on loopback and with 50 ms injected per HTTP request:

- **verify**: a full verify of the plan through `remote.run_agent` (new connection per invocation);
- **echo (fresh)**: `run_cmd('echo')` on a new pywinrm `Protocol` (handshake included, like
  run_agent): the "empty command" the verify is compared with; **echo (reused)**: on one open
  `Protocol` (the floor of any WinRM call);
- **harden** (first, on the fresh host), **harden again** (nothing left to change) and
  **rollback** of the first harden's changes, with the 50 ms latency only;
- `--per-rule`: one `echo` per checked plan item in one shell (the one-command-per-rule floor).

Per operation: WinRM invocations (counted on the controller, calls of
`remote.transport.run_command_payload`, and on winlab, commands run), HTTP requests (winlab's
counters), wall time, **controller CPU** (`time.process_time()` of this process around
`run_agent`: the engine + transport; winlab runs in its child process, so none of its CPU is in
it), split into WinRM transport (inside `run_command_payload`: pywinrm, NTLM sealing, requests),
stdin building (`build_stdin`: gzip), result decoding (base64 + pydantic validation of the host's
JSON) and the rest (the engine: programs, observations, the `AgentResult`); stdin payload bytes;
result bytes: the host's JSON document (decoded), its stdout (base64 block) and the HTTP bodies
received (encrypted SOAP, what crossed the wire); and the `AgentResult` JSON the jobs layer gets.

The measurement wraps functions of `remote.transport` by name, so the same script runs unchanged
on agent v1 (`run_agent` → `build_stdin` / `run_command_payload` / `decode_result`) and v2
(`run_agent` → engine → `run_program` → the same names, `decode_program_result`).

    .venv/bin/python bench/agent_cost.py [--reps 15] [--per-rule] [--out NAME] [--profile]
        [--profile-slug mailenable-hardened|mailenable-current-baseline]
    .venv/bin/python bench/agent_cost.py --compare BEFORE.json AFTER.json   # before/after table

`--profile-slug mailenable-current-baseline` compiles the plan from the current baseline (the guide's rules plus
its verify-only checks, `load_baseline_profile`) with the shipped advisory file, as the jobs layer does; its
three `smtp_probe` checks are the worker's own TCP connection to the mail port, not part of `run_agent`, so they
are not measured here (`jobs_fleet.py --profile-slug` includes them).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import cProfile
import io
import json
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import remote.transport as transport
from bench.labserver import LabProcess, print_table, write_result
from bench.winlab_rps import protocol_for, run_cmd
from lockdown.agent import AGENT_VERSION, RESULT_BEGIN, RESULT_END
from lockdown.rules import compile_plan, load_builtin_profile
from lockdown.rules.advisories import load_builtin_advisories
from lockdown.rules.builtin import load_baseline_profile
from lockdown.rules.contract import AgentRequest, AgentResult
from lockdown.rules.vocabulary import AgentMode, Tristate
from remote import HostConnection, Scheme, TlsVerify, run_agent
from remote.connection import AuthMethod

HOST_INDEX = 1  # ME002: Server 2022 with MailEnable 10 (the first template is PowerShell 2.0)
SERVICE_PASSWORD = "Bench-Ime-System-Pw-42!"
LATENCIES = (("loopback", 0.0), ("50 ms", 0.05))
GUIDE_SLUG, BASELINE_SLUG = "mailenable-hardened", "mailenable-current-baseline"
DECODE_NAME = "decode_program_result" if hasattr(transport, "decode_program_result") else "decode_result"


def connection(entry: dict[str, Any]) -> HostConnection:
    return HostConnection(
        address=entry["address"],
        username=entry["username"],
        password=entry["password"],
        scheme=Scheme.HTTP,
        port=entry["winrm"]["http_port"],
        auth=AuthMethod.NTLM,
        tls_verify=TlsVerify.OFF,
        run_timeout_s=300,
    )


def result_json_bytes(stdout: bytes) -> int:
    """Length of the JSON document in the result block (what the controller decodes and validates)."""
    lines = [line.strip() for line in stdout.decode("ascii", errors="replace").splitlines()]
    try:
        body = "".join(lines[lines.index(RESULT_BEGIN) + 1 : lines.index(RESULT_END)])
        return len(base64.b64decode(body, validate=True))
    except (ValueError, binascii.Error):
        return 0


@dataclass
class Tally:
    """What the wrapped transport functions saw during one `run_agent` call."""

    invocations: int = 0
    stdin_bytes: int = 0
    stdout_bytes: int = 0
    result_json_bytes: int = 0
    http_sent_bytes: int = 0
    http_received_bytes: int = 0
    cpu_winrm_s: float = 0.0
    cpu_stdin_s: float = 0.0
    cpu_decode_s: float = 0.0
    per_invocation: list[dict[str, int]] = field(default_factory=list)


class Probe:
    """Wraps `remote.transport`'s build_stdin, run_command_payload, the result decoder and the HTTP
    adapter's `send` (bodies only: request body, response Content-Length) while installed;
    `tally` is the current run's."""

    def __init__(self) -> None:
        self.tally = Tally()

    @contextmanager
    def installed(self) -> Iterator[Probe]:
        build, payload_run, decode = (
            transport.build_stdin,
            transport.run_command_payload,
            getattr(transport, DECODE_NAME),
        )
        send = transport._HostAdapter.send
        probe = self

        def timed_build(*args: Any, **kwargs: Any) -> bytes:
            began = time.process_time()
            try:
                return build(*args, **kwargs)
            finally:
                probe.tally.cpu_stdin_s += time.process_time() - began

        def counted_run(conn: HostConnection, payload: bytes, **kwargs: Any) -> Any:
            began = time.process_time()
            try:
                output = payload_run(conn, payload, **kwargs)
            finally:
                probe.tally.cpu_winrm_s += time.process_time() - began
            t = probe.tally
            t.invocations += 1
            t.stdin_bytes += len(payload)
            t.stdout_bytes += len(output.stdout)
            document = result_json_bytes(output.stdout)
            t.result_json_bytes += document
            t.per_invocation.append({"stdin": len(payload), "stdout": len(output.stdout), "json": document})
            return output

        def timed_decode(*args: Any, **kwargs: Any) -> Any:
            began = time.process_time()
            try:
                return decode(*args, **kwargs)
            finally:
                probe.tally.cpu_decode_s += time.process_time() - began

        def counted_send(adapter: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            response = send(adapter, request, *args, **kwargs)
            body = request.body or b""
            probe.tally.http_sent_bytes += len(body)
            # Content-Length, not len(response.content): reading the body here would break NTLM's hook.
            probe.tally.http_received_bytes += int(response.headers.get("Content-Length") or 0)
            return response

        setattr(transport, "build_stdin", timed_build)  # noqa: B010
        setattr(transport, "run_command_payload", counted_run)  # noqa: B010
        setattr(transport, DECODE_NAME, timed_decode)
        setattr(transport._HostAdapter, "send", counted_send)  # noqa: B010
        try:
            yield self
        finally:
            setattr(transport, "build_stdin", build)  # noqa: B010
            setattr(transport, "run_command_payload", payload_run)  # noqa: B010
            setattr(transport, DECODE_NAME, decode)
            setattr(transport._HostAdapter, "send", send)  # noqa: B010


def agent_call(
    lab: LabProcess, probe: Probe, name: str, conn: HostConnection, request: AgentRequest
) -> tuple[AgentResult, dict[str, Any]]:
    """One `run_agent`, with its counts (lab counters are read outside the timed window)."""
    before = lab.command("counters")["hosts"][name]
    probe.tally = Tally()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = run_agent(conn, request)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    after = lab.command("counters")["hosts"][name]
    t = probe.tally
    return result, {
        "wall_ms": round(1000 * wall, 1),
        "cpu_s": round(cpu, 4),
        "cpu_winrm_s": round(t.cpu_winrm_s, 4),
        "cpu_stdin_s": round(t.cpu_stdin_s, 4),
        "cpu_decode_s": round(t.cpu_decode_s, 4),
        "cpu_engine_s": round(cpu - t.cpu_winrm_s - t.cpu_stdin_s - t.cpu_decode_s, 4),
        "invocations": t.invocations,
        "host_commands": after["commands"] - before["commands"],
        "requests": after["requests"] - before["requests"],
        "stdin_bytes": t.stdin_bytes,
        "result_json_bytes": t.result_json_bytes,
        "stdout_bytes": t.stdout_bytes,
        "http_sent_bytes": t.http_sent_bytes,
        "http_received_bytes": t.http_received_bytes,
        "agent_result_bytes": len(result.model_dump_json(exclude_none=True)),
        "per_invocation": t.per_invocation,
        "error": result.error.code if result.error is not None else None,
        "action": str(result.action) if result.action is not None else None,
        "changes": len(result.changes),
        "items": len(result.items),
    }


def median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of every numeric field over repetitions (sizes and counts are the same each time)."""
    out: dict[str, Any] = {"reps": len(rows)}
    for key, value in rows[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = round(statistics.median(r[key] for r in rows), 4)
        else:
            out[key] = value
    return out


def timed(lab: LabProcess, name: str, reps: int, action: Callable[[], None]) -> dict[str, Any]:
    before = lab.requests()[name]
    times, cpus = [], []
    for _ in range(reps):
        cpu0, began = time.process_time(), time.perf_counter()
        action()
        times.append(time.perf_counter() - began)
        cpus.append(time.process_time() - cpu0)
    return {
        "wall_ms": round(1000 * statistics.median(times), 1),
        "cpu_s": round(statistics.median(cpus), 4),
        "requests": round((lab.requests()[name] - before) / reps, 1),
        "reps": reps,
    }


def profile_verify(conn: HostConnection, request: AgentRequest, reps: int = 5) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(reps):
        run_agent(conn, request)
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(45)
    return f"cProfile of {reps} verifies (loopback), cumulative:\n{text.getvalue()}"


def measure(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"agent_version": AGENT_VERSION, "date": time.strftime("%Y-%m-%d")}
    probe = Probe()
    with (
        tempfile.TemporaryDirectory(prefix="bench-agent-") as folder,
        LabProcess(4, Path(folder)) as lab,
        probe.installed(),
    ):
        entry = lab.inventory["hosts"][HOST_INDEX]
        name = entry["name"]
        conn = connection(entry)
        discover = AgentRequest(agent_version=AGENT_VERSION, mode=AgentMode.DISCOVER, job_id="bench-discover")
        discovered, results["discover"] = agent_call(lab, probe, name, conn, discover)
        assert discovered.facts is not None
        facts = discovered.facts.model_copy(update={"sql_integrated": Tristate.NO, "integrated_auth": Tristate.NO})
        if args.profile_slug == BASELINE_SLUG:
            plan = compile_plan(load_baseline_profile(), facts, load_builtin_advisories().advisories)
        else:
            plan = compile_plan(load_builtin_profile(), facts)
        results["profile_slug"] = args.profile_slug
        checked = [item for item in plan.items if item.status is None]
        results["plan_items"], results["checked_items"] = len(plan.items), len(checked)
        verify = AgentRequest(agent_version=AGENT_VERSION, mode=AgentMode.VERIFY, job_id="bench-verify", plan=plan)
        agent_call(lab, probe, name, conn, verify)  # warm-up (imports, caches)
        reused = protocol_for(entry)
        run_cmd(reused)

        def per_rule() -> None:
            shell = reused.open_shell()
            try:
                for _item in checked:
                    command = reused.run_command(shell, "echo", ["rule"])
                    reused.get_command_output(shell, command)
                    reused.cleanup_command(shell, command)
            finally:
                reused.close_shell(shell)

        for label, latency in LATENCIES:
            lab.command("latency", seconds=latency)
            reps = args.reps if latency == 0 else max(3, args.reps // 3)
            row: dict[str, Any] = {
                "verify": median_row([agent_call(lab, probe, name, conn, verify)[1] for _ in range(reps)]),
                "echo_fresh": timed(lab, name, reps, lambda: run_cmd(protocol_for(entry))),
                "echo_reused": timed(lab, name, reps, lambda: run_cmd(reused)),
            }
            if args.per_rule:
                row["per_rule"] = timed(lab, name, 3 if latency == 0 else 1, per_rule)
            row["ratio_verify_to_echo_fresh"] = round(row["verify"]["wall_ms"] / row["echo_fresh"]["wall_ms"], 2)
            row["ratio_verify_to_echo_reused"] = round(row["verify"]["wall_ms"] / row["echo_reused"]["wall_ms"], 2)
            results[label] = row
        # Harden (first, on the fresh host), harden again, rollback: 50 ms, once each (they change the host).
        lab.command("latency", seconds=0.05)
        harden = AgentRequest(
            agent_version=AGENT_VERSION,
            mode=AgentMode.APPLY,
            job_id="bench-harden-1",
            plan=plan,
            service_password=SERVICE_PASSWORD,
        )
        applied, results["harden"] = agent_call(lab, probe, name, conn, harden)
        again = harden.model_copy(update={"job_id": "bench-harden-2"})
        results["harden_again"] = agent_call(lab, probe, name, conn, again)[1]
        verify_after = verify.model_copy(update={"job_id": "bench-verify-hardened"})
        results["verify_hardened"] = agent_call(lab, probe, name, conn, verify_after)[1]
        rollback = AgentRequest(
            agent_version=AGENT_VERSION, mode=AgentMode.ROLLBACK, job_id="bench-rollback", rollback=applied.changes
        )
        results["rollback"] = agent_call(lab, probe, name, conn, rollback)[1]
        lab.command("latency", seconds=0.0)
        if args.profile:
            results["profile"] = profile_verify(conn, verify)
    return results


def summary_rows(results: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(what, unit, value) for the before/after table."""
    v0, v50 = results["loopback"]["verify"], results["50 ms"]["verify"]
    rows: list[tuple[str, str, Any]] = [
        ("agent version", "", results["agent_version"]),
        ("profile", "", results.get("profile_slug", GUIDE_SLUG)),
        ("plan items (checked on the host)", "", f"{results['plan_items']} ({results['checked_items']})"),
        ("verify: invocations (winlab commands)", "", f"{v50['invocations']} ({v50['host_commands']})"),
        ("verify: HTTP requests", "", v50["requests"]),
        ("verify: wall, 50 ms", "ms", v50["wall_ms"]),
        ("empty command (echo, new Protocol): wall, 50 ms", "ms", results["50 ms"]["echo_fresh"]["wall_ms"]),
        ("verify / empty command, 50 ms", "x", results["50 ms"]["ratio_verify_to_echo_fresh"]),
        ("verify / empty command, loopback", "x", results["loopback"]["ratio_verify_to_echo_fresh"]),
        ("verify: controller CPU, loopback", "s", v0["cpu_s"]),
        ("verify: controller CPU, 50 ms", "s", v50["cpu_s"]),
        ("  of which WinRM transport (pywinrm, NTLM, HTTP)", "s", v0["cpu_winrm_s"]),
        ("  of which stdin (gzip + base64)", "s", v0["cpu_stdin_s"]),
        ("  of which result decode + validation", "s", v0["cpu_decode_s"]),
        ("  of which engine / rest", "s", v0["cpu_engine_s"]),
        ("empty command: controller CPU, loopback", "s", results["loopback"]["echo_fresh"]["cpu_s"]),
        ("verify: stdin payload", "B", v50["stdin_bytes"]),
        ("verify: result JSON (decoded)", "B", v50["result_json_bytes"]),
        ("verify: result on stdout (base64)", "B", v50["stdout_bytes"]),
        ("verify: HTTP bodies received / sent", "B", f"{v50['http_received_bytes']} / {v50['http_sent_bytes']}"),
        ("verify: AgentResult JSON (to the jobs layer)", "B", v50["agent_result_bytes"]),
    ]
    for key, label in (("harden", "harden (fresh host)"), ("harden_again", "harden again"), ("rollback", "rollback")):
        r = results[key]
        rows += [
            (f"{label}: invocations (winlab commands)", "", f"{r['invocations']} ({r['host_commands']})"),
            (f"{label}: HTTP requests", "", r["requests"]),
            (f"{label}: wall, 50 ms", "ms", r["wall_ms"]),
            (f"{label}: controller CPU", "s", r["cpu_s"]),
            (f"{label}: result JSON (decoded) / HTTP received", "B", f"{r['result_json_bytes']} / "
             f"{r['http_received_bytes']}"),
            (f"{label}: stdin payload", "B", r["stdin_bytes"]),
            (f"{label}: outcome", "", f"{r['action']}, {r['changes']} changes, error {r['error']}"),
        ]  # fmt: skip
    return rows


def compare(before_path: Path, after_path: Path) -> int:
    before = json.loads(before_path.read_text(encoding="utf-8"))
    after = json.loads(after_path.read_text(encoding="utf-8"))
    after_rows = {what: value for what, _unit, value in summary_rows(after)}
    rows = [[what, unit, value, after_rows.get(what, "-")] for what, unit, value in summary_rows(before)]
    print_table(["what", "unit", f"before ({before_path.name})", f"after ({after_path.name})"], rows)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--per-rule", action="store_true", help="also time one echo per checked plan item")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of 5 verifies (loopback)")
    parser.add_argument("--out", default="agent_cost", help="name of bench/results/<name>.json")
    parser.add_argument(
        "--profile-slug",
        choices=(GUIDE_SLUG, BASELINE_SLUG),
        default=GUIDE_SLUG,
        help="the built-in profile the plan is compiled from (default: the guide's)",
    )
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args()
    if args.compare:
        return compare(*args.compare)
    results = measure(args)
    print(f"agent {results['agent_version']}: {results['plan_items']} plan items, {results['checked_items']} checked")
    print_table(["what", "unit", "value"], [list(row) for row in summary_rows(results)])
    rows = []
    for label, _latency in LATENCIES:
        for key in ("verify", "echo_fresh", "echo_reused", "per_rule"):
            if key in results[label]:
                r = results[label][key]
                rows.append([label, key, r["wall_ms"], r["cpu_s"], r["requests"], r["reps"]])
    print()
    print_table(["network", "what", "median ms", "CPU s", "HTTP requests", "reps"], rows)
    if "profile" in results:
        print(results["profile"])
    print(f"wrote {write_result(args.out, results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
