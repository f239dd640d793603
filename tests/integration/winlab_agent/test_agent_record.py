"""`manage.py agent_record` against a winlab host over real WinRM: it writes a transcript that replays, and a
transcript with one edited result does not."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import call_command

from tests.integration.winlab_agent.conftest import start_lab
from winlab.agent.replay import replay
from winlab.lab import Lab
from winlab.persist import write_private_json
from winlab.windows.factory import HostSpec
from winlab.windows.mailenable import Edition
from winlab.windows.state import state_diff

pytestmark = [pytest.mark.django_db, pytest.mark.winlab]
SPEC = HostSpec(name="S22REC", os="2022", edition=Edition.ENTERPRISE, version="10.43", store_files=8)


@pytest.fixture(scope="module")
def recorded_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, Path]]:
    tmp = tmp_path_factory.mktemp("winlab-record")
    lab = start_lab(tmp, [SPEC])
    path = tmp / "inventory.json"
    write_private_json(path, lab.inventory())
    try:
        yield lab, path
    finally:
        lab.stop()


def test_agent_record_writes_a_transcript_that_replays_and_leaves_the_host_as_it_was(
    recorded_lab: tuple[Lab, Path], tmp_path: Path
) -> None:
    lab, inventory = recorded_lab
    call_command("import_winlab", str(inventory), "--customer", "Acme")
    model = lab.host(SPEC.name).model
    before = model.to_state_dict()
    out = tmp_path / "t.json"
    call_command("agent_record", "--server", SPEC.name, "--recorded-from", "winlab", "--out", str(out))
    assert state_diff(before, model.to_state_dict()) == []
    document = json.loads(out.read_text(encoding="utf-8"))
    assert document["recorded_from"] == "winlab"
    assert len(document["invocations"]) == 4
    assert SPEC.name not in out.read_text(encoding="utf-8").upper()
    password = next(e for e in lab.inventory()["hosts"] if e["name"] == SPEC.name)["password"]
    assert password not in out.read_text(encoding="utf-8")
    assert replay(document) == []

    step = next(s for s in document["invocations"][2]["result"]["steps"] if s["id"] == "w.disable2")
    step["result"]["after"] = 0
    assert replay(document) == [
        "invocation 3: step w.disable2 (user_set_flags): result.after: recorded 0, replayed 66050"
    ]
