"""The host-side journal: an apply whose result is lost is still rolled back (recover_job_ids).

No Celery and no database: the apply goes through `remote.run_agent` over real WinRM, its result is
dropped on the floor (what a dead worker does), and a rollback that names the job id in
`recover_job_ids` reads the changes back from the host's journal and undoes them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from lockdown.agent import AGENT_VERSION
from lockdown.engine.driver import journal_records
from lockdown.rules import AgentRequest, AgentResult, ChangeRecord, RuleAction
from lockdown.rules.vocabulary import AgentMode
from remote.transport import run_agent
from tests.integration.winlab_agent.conftest import (
    SERVICE_PASSWORD,
    STATE_DIFF_IGNORED,
    connection,
    discover,
    name_of,
    plan_for,
)
from winlab.agent.primitives import JOURNAL_DIR as JOURNAL
from winlab.agent.primitives import JOURNAL_ROOT as ROOT
from winlab.agent.primitives import journal_path
from winlab.lab import Lab
from winlab.windows import security as sec
from winlab.windows import sids
from winlab.windows.state import state_diff

pytestmark = pytest.mark.winlab


def _apply(lab: Lab, name: str, job_id: str) -> AgentResult:
    plan = plan_for(discover(lab, name), sql=False)
    request = AgentRequest(
        agent_version=AGENT_VERSION, mode=AgentMode.APPLY, job_id=job_id, plan=plan, service_password=SERVICE_PASSWORD
    )
    return run_agent(connection(lab, name), request)


def _rollback(
    lab: Lab, name: str, job_id: str, rollback: Sequence[ChangeRecord], recover: Sequence[str]
) -> AgentResult:
    request = AgentRequest(
        agent_version=AGENT_VERSION,
        mode=AgentMode.ROLLBACK,
        job_id=job_id,
        rollback=list(rollback),
        recover_job_ids=list(recover),
    )
    return run_agent(connection(lab, name), request)


def test_an_apply_journals_its_changes_in_an_administrators_only_folder(lab: Lab) -> None:
    name = name_of("spare")
    fs = lab.host(name).model.fs
    applied = _apply(lab, name, "41.7")
    try:
        assert applied.error is None, applied.error
        assert applied.changes
        assert {c.job_id for c in applied.changes} == {"41.7"}
        text = fs.read_text(journal_path("41.7"))
        assert text is not None
        recorded = journal_records([json.loads(line) for line in text.splitlines()], "41.7")
        # Every change is journalled; the result's ACL records carry the host's read-back as `after`.
        assert [(c.rule_id, c.target, c.sequence, c.before) for c in recorded] == [
            (c.rule_id, c.target, c.sequence, c.before)
            for c in applied.changes
            if c.sequence in {r.sequence for r in recorded}
        ]
        assert {c.sequence for c in recorded} >= {
            c.sequence
            for c in applied.changes
            if c.after != c.before and c.target_kind.value not in ("file", "directory", "registry_key")
        }
        for folder in (ROOT, JOURNAL):
            sd = fs.get_sd(folder)
            assert sd.protected
            assert {ace.sid for ace in sd.dacl} == {sids.LOCAL_SYSTEM, sids.ADMINISTRATORS}
            assert all(ace.type is sec.AceType.ALLOW and not ace.inherited for ace in sd.dacl)
    finally:
        _rollback(lab, name, "41.8", applied.changes, [])
    assert not fs.exists(ROOT)


def test_an_apply_whose_result_was_lost_is_rolled_back_from_the_journal(lab: Lab) -> None:
    name = name_of("spare")
    host = lab.host(name).model
    with lab.host(name).binding.lock:
        baseline = host.to_state_dict()
    applied = _apply(lab, name, "42.9")
    assert applied.error is None, applied.error
    assert applied.changes
    lost = len(applied.changes)
    del applied  # the worker died: nothing of the result was stored

    rolled = _rollback(lab, name, "43.10", [], ["42.9"])
    assert rolled.error is None, rolled.error
    assert rolled.action is RuleAction.ROLLED_BACK
    assert len(rolled.recovered) == lost
    assert {c.job_id for c in rolled.recovered} == {"42.9"}
    assert {i.action for i in rolled.items} == {RuleAction.ROLLED_BACK}
    with lab.host(name).binding.lock:
        assert state_diff(baseline, host.to_state_dict(), ignore=STATE_DIFF_IGNORED) == []
    assert host.health().ok

    again = _rollback(lab, name, "44.11", [], ["42.9"])  # the journal is spent: nothing is recovered twice
    assert again.error is None
    assert again.recovered == []
    assert again.action is RuleAction.NONE


def test_journal_entries_already_in_the_request_are_not_recovered_twice(lab: Lab) -> None:
    name = name_of("spare")
    host = lab.host(name).model
    with lab.host(name).binding.lock:
        baseline = host.to_state_dict()
    applied = _apply(lab, name, "45.12")
    assert applied.error is None, applied.error
    stored = applied.changes[: len(applied.changes) // 2]  # part of the result reached the database
    rolled = _rollback(lab, name, "46.13", stored, ["45.12"])
    assert rolled.error is None, rolled.error
    assert [(c.job_id, c.sequence) for c in rolled.recovered] == [
        ("45.12", c.sequence) for c in applied.changes[len(stored) :]
    ]
    with lab.host(name).binding.lock:
        assert state_diff(baseline, host.to_state_dict(), ignore=STATE_DIFF_IGNORED) == []


def test_recover_job_ids_are_only_sent_with_a_rollback_and_cannot_name_a_path() -> None:
    with pytest.raises(ValueError, match="recover_job_ids"):
        AgentRequest(agent_version=AGENT_VERSION, mode=AgentMode.DISCOVER, job_id="1.1", recover_job_ids=["1.2"])
    with pytest.raises(ValueError, match="pattern"):
        AgentRequest(agent_version=AGENT_VERSION, mode=AgentMode.ROLLBACK, job_id="1.1", recover_job_ids=["..\\x"])


def test_a_journal_planted_by_someone_else_is_not_read(lab: Lab) -> None:
    """Users may create folders under ProgramData: a journal not owned by an administrator is refused."""
    name = name_of("spare")
    fs = lab.host(name).model.fs
    user = "S-1-5-21-1-2-3-1001"
    with lab.host(name).binding.lock:
        fs.create_dir(ROOT, owner=user)
        fs.create_dir(JOURNAL, owner=user)
        fs.create_file(journal_path("47.14"), owner=user)
        fs.contents[journal_path("47.14").lower()] = "[]"
    try:
        rolled = _rollback(lab, name, "48.15", [], ["47.14"])
        assert rolled.error is not None
        assert rolled.error.code == "agent_error"
        assert "not by an administrator" in rolled.error.message
    finally:
        with lab.host(name).binding.lock:
            fs.delete(ROOT, recursive=True)
