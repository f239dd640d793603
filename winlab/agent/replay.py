"""Replay a transcript (`lockdown.engine.transcript`) against winlab's executor and primitives.

The replay builds the winlab host the transcript names (`replay.winlab_spec`, prepared as the lab
prepares its hosts), logs the WinRM account on as the lab's shell does, runs every recorded program
in order through `run_program` (so substitution, bind and the journal append are the executor's),
normalises each result exactly as the recorder did, and lists every difference. A transcript
recorded on real Windows thereby checks winlab against Windows; one recorded from winlab checks
that winlab still behaves as it did.
"""

from __future__ import annotations

from typing import Any, Final

from lockdown.agent import AGENT_VERSION
from lockdown.engine.program import Program
from lockdown.engine.transcript import (
    SECRET,
    Normaliser,
    check_document,
    differences,
    program_document,
    result_document,
    scratch_password,
    scratch_token,
)
from winlab.agent.executor import run_program
from winlab.agent.primitives import MAIL_PORTS
from winlab.lab import ADMINISTRATOR, prepare_winrm_accounts
from winlab.mail import Protocol
from winlab.windows.clock import ManualClock
from winlab.windows.factory import HostSpec, build_host
from winlab.windows.tokens import LogonType

REPLAY_HOST: Final = "REPLAYHOST"


def _mail_ports(replay: dict[str, Any]) -> dict[int, Protocol]:
    ports: dict[int, Protocol] = dict(MAIL_PORTS)
    for number, protocol in (replay.get("mail_ports") or {}).items():
        if protocol in ("smtp", "pop", "imap"):
            ports[int(number)] = protocol
    return ports


def replay(document: Any) -> list[str]:
    """Every difference between the transcript's results and winlab's (empty: winlab agrees)."""
    data = check_document(document)
    replay_section = data.get("replay") or {}
    spec = HostSpec(name=REPLAY_HOST, **(replay_section.get("winlab_spec") or {}))
    host = build_host(spec, ManualClock())
    accounts = prepare_winrm_accounts(host)
    token = host.logon(ADMINISTRATOR, accounts[ADMINISTRATOR], LogonType.NETWORK)
    normaliser = Normaliser(computer=host.accounts.machine_name.upper(), user=ADMINISTRATOR, scratch=scratch_token())
    ports = _mail_ports(replay_section)
    found: list[str] = []
    for n, entry in enumerate(data["invocations"], start=1):
        recorded_program = dict(entry["program"])
        names = list((recorded_program.get("secrets") or {}).keys())
        try:
            concrete = normaliser.restore({k: v for k, v in recorded_program.items() if k != "secrets"})
        except KeyError as exc:
            found.append(f"invocation {n}: the program names a SID placeholder the replay has not seen ({exc})")
            break
        concrete["secrets"] = {name: scratch_password() for name in names}
        program = Program.model_validate(concrete)
        normaliser.value(program_document(program))  # SIDs in arguments count in order, as when recording
        result, _exit = run_program(host, token, program.to_stdin_json(), agent_version=AGENT_VERSION, mail_ports=ports)
        replayed = normaliser.value(result_document(result))
        found += [f"invocation {n}: {line}" for line in _compare(entry["result"], replayed)]
    return found


def _compare(recorded: Any, replayed: dict[str, Any]) -> list[str]:
    """Differences, named by step id and primitive where the result lists steps."""
    out: list[str] = []
    if not isinstance(recorded, dict):
        return [f"the recorded result is not an object: {recorded!r}"]
    for key in sorted(set(recorded) | set(replayed)):
        a, b = recorded.get(key), replayed.get(key)
        if key in ("steps", "on_failure") and isinstance(a, list) and isinstance(b, list):
            if len(a) != len(b):
                out.append(f"{key}: recorded {len(a)} steps, replayed {len(b)}")
            for step_a, step_b in zip(a, b, strict=False):
                name = f"step {step_a.get('id')} ({step_a.get('op')})" if isinstance(step_a, dict) else key
                out += [f"{name}: {line}" for line in differences(step_a, step_b)]
        else:
            out += list(differences(a, b, key))
    return out


__all__ = ["REPLAY_HOST", "SECRET", "replay"]
