"""Issue 5: what one agent invocation costs next to an empty command and to one command per rule.

On the same winlab host (a child `bench.labserver` process, HTTP + NTLM with encryption):
- **verify**: a full verify of the built-in profile through `remote.run_agent` (new connection,
  NTLM handshake, bootstrap + agent + plan on stdin, one JSON result);
- **echo (fresh)**: `run_cmd('echo')` on a new pywinrm `Protocol` (handshake included, like run_agent);
- **echo (reused)**: `run_cmd('echo')` on one `Protocol` kept open (the floor of any WinRM call);
- **per rule**: one `echo` command per plan item (≈ 180) in one shell on one connection, the
  cheapest way a one-command-per-rule design could do it (no PowerShell start-up counted).
On loopback and with 50 ms injected per HTTP request. Ratios and HTTP requests (winlab counters).

    .venv/bin/python bench/agent_cost.py [--reps 15]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.labserver import LabProcess, print_table, write_result
from bench.winlab_rps import protocol_for, run_cmd
from lockdown.agent import AGENT_VERSION
from lockdown.rules import compile_plan, load_builtin_profile
from lockdown.rules.contract import AgentRequest
from lockdown.rules.vocabulary import AgentMode, Tristate
from remote import HostConnection, Scheme, TlsVerify, run_agent
from remote.connection import AuthMethod

HOST_INDEX = 1  # ME002: Server 2022 with MailEnable 10 (the first template is PowerShell 2.0)


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


def measure(lab: LabProcess, name: str, reps: int, action: Callable[[], None]) -> dict[str, float]:
    before = lab.requests()[name]
    times = []
    for _ in range(reps):
        began = time.perf_counter()
        action()
        times.append(time.perf_counter() - began)
    return {
        "median_ms": round(1000 * statistics.median(times), 1),
        "requests": round((lab.requests()[name] - before) / reps, 1),
        "reps": reps,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as folder, LabProcess(4, Path(folder)) as lab:
        entry = lab.inventory["hosts"][HOST_INDEX]
        name = entry["name"]
        conn = connection(entry)
        discovered = run_agent(conn, AgentRequest(agent_version=AGENT_VERSION, mode=AgentMode.DISCOVER, job_id="b"))
        assert discovered.facts is not None
        facts = discovered.facts.model_copy(update={"sql_integrated": Tristate.NO, "integrated_auth": Tristate.NO})
        plan = compile_plan(load_builtin_profile(), facts)
        verify = AgentRequest(agent_version=AGENT_VERSION, mode=AgentMode.VERIFY, job_id="b", plan=plan)
        checked = [item for item in plan.items if item.status is None]
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

        for label, latency, per_rule_reps in (("loopback", 0.0, 3), ("50 ms", 0.05, 1)):
            lab.command("latency", seconds=latency)
            reps = args.reps if latency == 0 else max(3, args.reps // 3)
            row = {
                "verify": measure(lab, name, reps, lambda: run_agent(conn, verify) and None),
                "echo_fresh": measure(lab, name, reps, lambda: run_cmd(protocol_for(entry))),
                "echo_reused": measure(lab, name, reps, lambda: run_cmd(reused)),
                "per_rule": measure(lab, name, per_rule_reps, per_rule),
            }
            row["ratio_verify_to_echo_fresh"] = round(row["verify"]["median_ms"] / row["echo_fresh"]["median_ms"], 2)
            row["ratio_verify_to_echo_reused"] = round(row["verify"]["median_ms"] / row["echo_reused"]["median_ms"], 2)
            row["ratio_per_rule_to_verify"] = round(row["per_rule"]["median_ms"] / row["verify"]["median_ms"], 1)
            results[label] = row
        lab.command("latency", seconds=0.0)
    results["plan_items"] = len(plan.items)
    results["checked_items"] = len(checked)
    rows = []
    for label in ("loopback", "50 ms"):
        row = results[label]
        for key in ("verify", "echo_fresh", "echo_reused", "per_rule"):
            rows.append([label, key, row[key]["median_ms"], row[key]["requests"], row[key]["reps"]])
    print(f"plan: {len(plan.items)} items, {len(checked)} checked on the host (one command each in 'per_rule')")
    print_table(["network", "what", "median ms", "HTTP requests", "reps"], rows)
    for label in ("loopback", "50 ms"):
        row = results[label]
        print(
            f"{label}: verify / echo(fresh) = {row['ratio_verify_to_echo_fresh']}x, verify / echo(reused) = "
            f"{row['ratio_verify_to_echo_reused']}x, per-rule / verify = {row['ratio_per_rule_to_verify']}x"
        )
    print(f"wrote {write_result('agent_cost', results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
