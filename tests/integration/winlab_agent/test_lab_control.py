"""The lab's control surface (token-protected HTTP, the CLI's `state`/`fault`) and state persistence."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from lockdown.rules.vocabulary import AgentMode
from tests.integration.winlab_agent.conftest import SPECS, discover, name_of, plan_for, run
from winlab.__main__ import main
from winlab.control import ControlClient, ControlError, ControlServer
from winlab.lab import Lab
from winlab.persist import write_private_json
from winlab.windows.clock import ManualClock
from winlab.windows.state import state_diff

pytestmark = pytest.mark.winlab


def _lab(tmp: Path) -> Lab:
    return Lab([SPECS["spare"]], lab_dir=tmp, clock=ManualClock(), time_scale=0.0, mail_ports={}, persist=True)


def test_control_surface_state_faults_and_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with _lab(tmp_path) as lab:
        control = ControlServer(lab, tmp_path)
        control.start()
        try:
            inventory = tmp_path / "inventory.json"
            write_private_json(inventory, lab.inventory())
            assert stat.S_IMODE((tmp_path / "control.json").stat().st_mode) == 0o600
            name = name_of("spare")
            discover(lab, name)
            assert main(["state", "--inventory", str(inventory), "--host", name]) == 0
            state = json.loads(capsys.readouterr().out)
            assert state["counters"]["requests"] >= 9
            assert state["counters"]["encrypted_requests"] > 0
            assert state["counters"]["auth_failures"] == 0
            assert "mutations" in state["counters"]
            assert state["accounts"]["users"]["Administrator"]["sid"].endswith("-500")
            assert main(["fault", "--inventory", str(inventory), "--host", name, "--latency", "0.05"]) == 0
            assert lab.server(name).faults.latency_s == 0.05
            assert main(["fault", "--inventory", str(inventory), "--host", name, "--deny", "C:\\Windows"]) == 0
            assert ControlClient(tmp_path).state(name)["faults"]["files"] == ["c:\\windows"]
            assert main(["fault", "--inventory", str(inventory), "--host", name, "--clear"]) == 0
            assert lab.server(name).faults.latency_s == 0.0
            assert not lab.host(name).model.fs.tree.faults
            bad = ControlClient(tmp_path)
            bad.token = "wrong"
            with pytest.raises(ControlError, match="401"):
                bad.state(name)
        finally:
            control.stop()


def test_state_survives_a_restart_of_the_lab(tmp_path: Path) -> None:
    name = name_of("spare")
    with _lab(tmp_path) as lab:
        plan = plan_for(discover(lab, name), sql=False)
        assert run(lab, name, AgentMode.APPLY, plan).error is None
        saved = lab.host(name).model.to_state_dict()
        password = lab.inventory()["hosts"][0]["password"]
        mutations = lab.host(name).model.mutations
    with _lab(tmp_path) as again:
        assert state_diff(saved, again.host(name).model.to_state_dict()) == []
        assert again.inventory()["hosts"][0]["password"] == password
        assert again.host(name).model.mutations == mutations
        assert again.host(name).model.health().ok
        assert run(again, name, AgentMode.APPLY, plan).changes == []  # still hardened, with the same IME_SYSTEM
