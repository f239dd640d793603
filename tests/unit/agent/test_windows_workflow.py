"""The GitHub workflow that records transcripts on hosted Windows runners (never run from here).

It cannot run on the project's machines; what can be checked is that it is well-formed, covers both
images the issue names, uses only commands that exist, never prints the recorder's password, and
stays out of `.ci/run`.
"""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
WORKFLOW = ROOT / ".github" / "workflows" / "windows-agent.yml"


def _steps() -> list[dict]:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))["jobs"]["record"]["steps"]


def test_it_records_on_both_windows_images_and_uploads_the_transcripts() -> None:
    job = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))["jobs"]["record"]
    assert job["strategy"]["matrix"]["os"] == ["windows-2019", "windows-2022"]
    runs = "\n".join(step.get("run", "") for step in _steps())
    assert "manage.py agent_record --server RUNNER --recorded-from windows" in runs
    assert "manage.py agent_selftest --server RUNNER --json" in runs
    assert any(step.get("uses", "").startswith("actions/upload-artifact@") for step in _steps())


def test_the_recorders_password_is_masked_and_never_echoed() -> None:
    runs = "\n".join(step.get("run", "") for step in _steps())
    assert 'Write-Output "::add-mask::$pw"' in runs
    assert runs.index("::add-mask::") < runs.index("$env:GITHUB_ENV")
    assert "FLEET_RECORD_PASSWORD" not in runs.replace('"FLEET_RECORD_PASSWORD=$pw"', "")


def test_the_management_commands_it_calls_exist_and_it_is_not_part_of_ci() -> None:
    commands = ROOT / "lockdown" / "management" / "commands"
    assert (commands / "agent_record.py").exists()
    assert (commands / "agent_selftest.py").exists()
    assert "windows-agent" not in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
