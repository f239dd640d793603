"""A big store costs modelled time per ACL change, and that time reaches the WinRM client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from lockdown.rules.vocabulary import AgentMode
from tests.integration.winlab_agent.conftest import (
    SPECS,
    discover,
    judged_not_compliant,
    outcomes,
    plan_for,
    run,
    start_lab,
)
from winlab.lab import Lab

pytestmark = [pytest.mark.winlab, pytest.mark.slow]
BIG = replace(SPECS["spare"], name="BIGSTORE", store_files=3000)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    running = start_lab(tmp_path_factory.mktemp("winlab-big"), [BIG])
    try:
        yield running
    finally:
        running.stop()


def test_store_propagation_takes_modelled_time_and_the_output_waits_for_it(lab: Lab) -> None:
    host = lab.host("BIGSTORE")
    plan = plan_for(discover(lab, "BIGSTORE"), sql=False)
    host.binding.time_scale = 0.05
    clock_before, work_before = host.model.ctx.clock.now(), host.model.work
    started = time.monotonic()
    try:
        applied = run(lab, "BIGSTORE", AgentMode.APPLY, plan)
    finally:
        host.binding.time_scale = 0.0
    real = time.monotonic() - started
    modelled = host.model.ctx.clock.now() - clock_before
    assert applied.error is None
    assert host.model.work - work_before > 3000  # every store file got the store group's inherited ACE
    assert modelled > 3000 * 0.002  # ~2 ms per object (x1.5 while Defender scans the store)
    assert real >= modelled * 0.05 * 0.9  # the result came back only after the modelled time, scaled
    assert judged_not_compliant(outcomes(plan, run(lab, "BIGSTORE", AgentMode.VERIFY, plan))) == []
