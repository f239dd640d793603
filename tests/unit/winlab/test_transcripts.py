"""The transcript contract test: every transcript under tests/transcripts/ replays against winlab without a difference.

A transcript recorded on real Windows (`manage.py agent_record --recorded-from windows`) dropped into that folder
becomes a fidelity test of winlab; the shipped ones were recorded from winlab (tests/transcripts/README.md).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Final

import pytest

from lockdown.agent import AGENT_VERSION
from lockdown.engine.program import ProgramResult
from lockdown.engine.transcript import Normaliser, TranscriptError, record
from lockdown.rules.contract import HealthTargets
from winlab.agent.executor import run_program
from winlab.agent.replay import replay
from winlab.lab import prepare_winrm_accounts
from winlab.windows.clock import ManualClock
from winlab.windows.factory import HostSpec, build_host
from winlab.windows.mailenable import Edition
from winlab.windows.state import state_diff
from winlab.windows.tokens import LogonType

TRANSCRIPTS: Final = Path(__file__).resolve().parents[2] / "transcripts"
FILES: Final = sorted(TRANSCRIPTS.glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def step(document: dict[str, Any], invocation: int, step_id: str) -> dict[str, Any]:
    steps = document["invocations"][invocation]["result"]["steps"]
    found: dict[str, Any] = next(s for s in steps if s["id"] == step_id)
    return found


def test_the_folder_holds_transcripts() -> None:
    assert len(FILES) >= 2
    assert {load(f)["recorded_from"] for f in FILES} == {"winlab"}  # none from Windows yet: README says so


@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_every_transcript_replays_against_winlab_without_a_difference(path: Path) -> None:
    assert replay(load(path)) == []


def test_an_edited_result_makes_the_replay_fail_and_names_the_step() -> None:
    document = load(TRANSCRIPTS / "winlab-2019-professional.json")
    edited = copy.deepcopy(document)
    step(edited, 2, "w.add2")["result"]["changed"] = True  # the second group_member_add changed nothing
    assert replay(edited) == [
        "invocation 3: step w.add2 (group_member_add): result.changed: recorded True, replayed False"
    ]


def test_an_edited_read_of_a_seed_object_makes_the_replay_fail() -> None:
    document = load(TRANSCRIPTS / "winlab-2019-professional.json")
    reads = [s for s in document["invocations"][1]["result"]["steps"] if s["op"] == "sd_read" and s["result"]["exists"]]
    reads[0]["result"]["sddl"] = reads[0]["result"]["sddl"] + "(A;;FA;;;WD)"
    problems = replay(document)
    assert len(problems) == 1
    assert problems[0].startswith(f"invocation 2: step {reads[0]['id']} (sd_read): result.sddl: recorded ")


def test_an_edited_error_code_makes_the_replay_fail() -> None:
    document = load(TRANSCRIPTS / "winlab-2019-professional.json")
    step(document, 2, "w.svc_stop")["error"]["code"] = "win32_5"
    assert replay(document) == [
        "invocation 3: step w.svc_stop (service_control): error.code: recorded 'win32_5', replayed 'win32_1060'"
    ]


def test_a_document_of_another_format_version_is_refused() -> None:
    document = load(FILES[0])
    document["format_version"] = 2
    with pytest.raises(TranscriptError):
        replay(document)


def _record_in_process(spec: HostSpec) -> tuple[dict[str, Any], list[str], int, dict[str, str]]:
    host = build_host(spec, ManualClock())
    accounts = prepare_winrm_accounts(host)
    token = host.logon("Administrator", accounts["Administrator"], LogonType.NETWORK)
    before = host.to_state_dict()
    sent: dict[str, str] = {}

    def invoke(program: Any) -> ProgramResult:
        sent.update({name: value.get_secret_value() for name, value in program.secrets.items()})
        return run_program(host, token, program.to_stdin_json(), agent_version=AGENT_VERSION)[0]

    document = record(invoke, recorded_from="winlab", targets=HealthTargets())
    return document, state_diff(before, host.to_state_dict()), host.mutations, sent


def test_recording_leaves_the_host_as_it_was_writes_no_secret_and_replays() -> None:
    document, diff, mutations, secrets = _record_in_process(
        HostSpec(name="TRX01", os="2022", edition=Edition.STANDARD, version="10.43", store_files=5)
    )
    assert diff == []  # every scratch object was removed again
    assert mutations > 0  # ... after being written (the writes ran)
    text = json.dumps(document)
    assert len(secrets) == 2
    assert not any(value in text for value in secrets.values())
    assert "TRX01" not in text.upper()
    assert [len(i["result"]["steps"]) > 0 for i in document["invocations"]] == [True] * 4
    assert replay(document) == []


def test_normaliser_numbers_machine_sids_and_rids_by_first_appearance_and_restores_them() -> None:
    normal = Normaliser(computer="MAIL01", user="Administrator", scratch="qwertyui")
    raw = {
        "MAIL01\\flt_qwertyui_u": "S-1-5-21-11-22-33-1004",
        "sddl": "O:S-1-5-21-11-22-33-500D:(A;;FA;;;S-1-5-21-44-55-66-1004)(A;;FA;;;S-1-5-80-123)(A;;FA;;;BA)",
        "who": "mail01\\Administrator",
        "group": "Administrators",
        "other": "MAIL010 at 2026-12-02T05:31:33Z",
    }
    assert normal.value(raw) == {
        "<COMPUTER>\\flt_<SCRATCH>_u": "S-1-5-21-<M1>-<R1>",
        "sddl": "O:S-1-5-21-<M1>-500D:(A;;FA;;;S-1-5-21-<M2>-<R1>)(A;;FA;;;S-1-5-80-123)(A;;FA;;;BA)",
        "who": "<COMPUTER>\\<USER>",
        "group": "Administrators",
        "other": "MAIL010 at <TIME>",
    }
    assert normal.restore("S-1-5-21-<M2>-<R1> on <COMPUTER>") == "S-1-5-21-44-55-66-1004 on MAIL01"
    with pytest.raises(KeyError):
        normal.restore("S-1-5-21-<M3>")
