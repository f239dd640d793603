"""lockdown.rules is pure Python: no module may import Django, directly or indirectly."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import lockdown.rules

RULES_DIR = Path(lockdown.rules.__file__).resolve().parent
REPO_ROOT = RULES_DIR.parents[1]


def _module_names() -> list[str]:
    return sorted(f"lockdown.rules.{p.stem}" for p in RULES_DIR.glob("*.py") if p.stem != "__init__")


def test_rules_package_has_the_expected_modules():
    # Guards the other tests in this file against silently scanning nothing.
    assert {"lockdown.rules.compile", "lockdown.rules.evaluate", "lockdown.rules.contract"} <= set(_module_names())


def test_no_rules_module_mentions_django_in_its_imports():
    offenders = []
    for path in RULES_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            offenders += [f"{path.name}: {n}" for n in names if n == "django" or n.startswith("django.")]
    assert offenders == []


def test_importing_every_rules_module_does_not_load_django():
    script = (
        "import importlib, json, sys\n"
        f"for name in {_module_names()!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m == 'django' or m.startswith('django.'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == []
