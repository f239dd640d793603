"""Injected faults: latency, rejected logins, connections dropped mid-shell, host down."""

from __future__ import annotations

import time

import pytest
import requests
from winrm.exceptions import InvalidCredentialsError

from tests.integration.winlab.conftest import Lab

pytestmark = pytest.mark.winlab


def test_latency_is_added_to_every_request(lab: Lab, charlie) -> None:
    start = time.perf_counter()
    lab.session("CHARLIE").run_cmd("hostname")
    baseline = time.perf_counter() - start
    charlie.faults.latency_s = 0.05
    start = time.perf_counter()
    lab.session("CHARLIE").run_cmd("hostname")
    assert time.perf_counter() - start >= baseline + 8 * 0.05 * 0.9


def test_rejected_logins_fault_fails_every_login(lab: Lab, charlie) -> None:
    charlie.faults.reject_logins = True
    with pytest.raises(InvalidCredentialsError):
        lab.session("CHARLIE").run_cmd("hostname")
    charlie.faults.reject_logins = False
    assert lab.session("CHARLIE").run_cmd("hostname").status_code == 0


def test_connection_dropped_mid_shell_raises_connection_error(lab: Lab, charlie) -> None:
    protocol = lab.protocol("CHARLIE")
    shell_id = protocol.open_shell()
    charlie.faults.drop_connections = 1
    with pytest.raises(requests.exceptions.ConnectionError):
        protocol.run_command(shell_id, "hostname")
    assert charlie.counters.dropped_connections >= 1
    assert lab.session("CHARLIE").run_cmd("hostname").status_code == 0


def test_host_down_refuses_connections_until_it_comes_back(lab: Lab, charlie) -> None:
    lab.fleet.set_down("CHARLIE")
    with pytest.raises(requests.exceptions.ConnectionError):
        lab.session("CHARLIE").run_cmd("hostname")
    lab.fleet.set_down("CHARLIE", False)
    assert lab.session("CHARLIE").run_cmd("hostname").std_out == b"CHARLIE\r\n"


def test_other_hosts_keep_serving_while_one_is_down(lab: Lab, charlie) -> None:
    lab.fleet.set_down("CHARLIE")
    assert lab.session("ALPHA").run_cmd("hostname").std_out == b"ALPHA\r\n"
