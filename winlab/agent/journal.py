"""The agent's journal on the host: each ChangeRecord of an apply, written before the agent returns.

Same contract as `Write-FleetJournal` / `Read-FleetJournal` / `Remove-FleetJournal` in common.ps1:
`C:\\ProgramData\\FleetLockdown\\journal\\<job_id>.json` holds the JSON list of the run's changes,
rewritten after every change (so a run whose result is lost — a dead worker, a dropped
connection — leaves what it did on the host). The folders are protected, SYSTEM and
Administrators only. A rollback that undid a job's changes deletes its file, and the folders when
they are empty, so "apply then rollback" leaves the host as it was.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Final

from lockdown.rules.contract import ChangeRecord
from winlab.windows import security as sec
from winlab.windows import sids
from winlab.windows.host import WindowsHost
from winlab.windows.tokens import Token

PROGRAM_DATA: Final = "C:\\ProgramData"
ROOT: Final = PROGRAM_DATA + "\\FleetLockdown"
JOURNAL: Final = ROOT + "\\journal"
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._-]")
_FOLDER_DACL: Final = (
    sec.allow(sids.LOCAL_SYSTEM, sec.FILE_ALL_ACCESS, sec.AceFlags.OI | sec.AceFlags.CI),
    sec.allow(sids.ADMINISTRATORS, sec.FILE_ALL_ACCESS, sec.AceFlags.OI | sec.AceFlags.CI),
)


class JournalError(Exception):
    """A journal the agent will not read (as Read-FleetJournal's throw: the rollback fails with agent_error)."""


def journal_path(job_id: str) -> str:
    """The journal file of one job id (characters a file name cannot hold become '_')."""
    return f"{JOURNAL}\\{_UNSAFE.sub('_', job_id)}.json"


def _ensure_folders(host: WindowsHost, token: Token) -> None:
    fs = host.fs
    if not fs.exists(PROGRAM_DATA):
        fs.create_dir(PROGRAM_DATA, token)
    for path in (ROOT, JOURNAL):
        if not fs.exists(path):
            fs.create_dir(path, token, owner=sids.ADMINISTRATORS, explicit=_FOLDER_DACL, protected=True)


def write_journal(host: WindowsHost, token: Token, job_id: str, changes: Iterable[ChangeRecord]) -> None:
    """Rewrite the job's journal with all its changes so far (called after each change)."""
    _ensure_folders(host, token)
    text = json.dumps([c.model_dump(mode="json") for c in changes], sort_keys=True, separators=(",", ":"))
    host.fs.write_text(journal_path(job_id), text, token)


def _assert_trusted(host: WindowsHost, token: Token, path: str) -> None:
    """Assert-FleetJournalTrusted: a journal path owned by someone else (planted) is never read."""
    owner = host.fs.get_sd(path).owner
    if owner not in {sids.LOCAL_SYSTEM, sids.ADMINISTRATORS, token.user}:
        raise JournalError(f"journal path is owned by {owner}, not by an administrator: {path}")


def read_journal(host: WindowsHost, token: Token, job_id: str) -> list[ChangeRecord]:
    """The journal entries of a job (empty when it has none), each with its job_id."""
    path = journal_path(job_id)
    text = host.fs.read_text(path)
    if text is None:
        return []
    for checked in (ROOT, JOURNAL, path):
        _assert_trusted(host, token, checked)
    entries = [ChangeRecord.model_validate(entry) for entry in json.loads(text)]
    return [e if e.job_id == job_id else e.model_copy(update={"job_id": job_id}) for e in entries]


def remove_journal(host: WindowsHost, token: Token, job_id: str) -> None:
    """Delete a job's journal; then the journal folder and FleetLockdown when they are empty."""
    fs = host.fs
    path = journal_path(job_id)
    if fs.exists(path):
        fs.delete(path, token)
    for folder in (JOURNAL, ROOT):
        if fs.exists(folder) and not fs.list_dir(folder, token):
            fs.delete(folder, token)
