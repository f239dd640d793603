"""Only remote/ imports pywinrm in production code, and remote/ never loads Django."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
# Tests and benchmarks drive winlab as a client with pywinrm directly; production code must not.
CLIENT_DIRS = {"tests", "bench"}
SKIP = {".venv", "var", "node_modules", ".git"}


def _python_files() -> list[Path]:
    return [
        p
        for p in REPO.rglob("*.py")
        if not (set(p.relative_to(REPO).parts) & SKIP) and p.relative_to(REPO).parts[0] not in CLIENT_DIRS
    ]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_scan_sees_the_repository() -> None:
    files = {p.relative_to(REPO).as_posix() for p in _python_files()}
    assert "remote/transport.py" in files
    assert "lockdown/agent/__init__.py" in files


def test_only_remote_imports_pywinrm() -> None:
    offenders = sorted(
        p.relative_to(REPO).as_posix()
        for p in _python_files()
        if p.relative_to(REPO).parts[0] != "remote"
        and any(name == "winrm" or name.startswith("winrm.") for name in _imports(p))
    )
    assert offenders == []


def test_remote_does_not_import_django() -> None:
    script = (
        "import json, sys, remote, remote.transport, lockdown.agent, lockdown.engine.driver, "
        "lockdown.agent.passwords\n"
        "print(json.dumps(sorted(m for m in sys.modules if m == 'django' or m.startswith('django.'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == []
