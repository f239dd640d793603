"""StrictMode hazards: no member access on a value that can be $null or lack the member, unguarded.

The agent runs under `Set-StrictMode -Version 2.0`, where such an access throws (see strictlint.py
for the sources). The lint is heuristic: it knows the possibly-null sources listed there; it cannot
see a value that is null for another reason (a .NET method documented to return null, say).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lockdown.engine.program import PRIMITIVES
from tests.unit.agent.pslint import op_function_name
from tests.unit.agent.strictlint import hazards

AGENT = Path(__file__).resolve().parents[3] / "lockdown" / "agent"
SCRIPTS = sorted(AGENT.rglob("*.ps1"))
OPTIONAL = {
    op_function_name(op): {n.rstrip("?") for n in spec[0] if n.endswith("?")} for op, spec in PRIMITIVES.items()
}


def test_the_contract_has_optional_arguments_for_the_lint_to_guard() -> None:
    assert OPTIONAL["Invoke-FleetOpSdRead"] == {"view"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_no_unguarded_member_access_on_a_possibly_null_value(script: Path) -> None:
    assert [str(h) for h in hazards(script.read_text(encoding="utf-8"), OPTIONAL)] == []


GUARD = "if ($null -ne $A.PSObject.Properties['view']) { $view = $A.view }"


def test_an_unguarded_optional_argument_is_reported() -> None:
    text = (AGENT / "primitives.ps1").read_text(encoding="utf-8")
    assert text.count(GUARD) == 2, "the plant's anchor changed: update the test"
    found = hazards(text.replace(GUARD, "$view = $A.view", 1), OPTIONAL)
    assert [h.function for h in found] == ["Invoke-FleetOpSdRead"]
    assert "optional argument 'view'" in found[0].why


SNIPPETS = {
    "silently": (
        "function F {\n  $c = Get-Command -Name Get-MpPreference -ErrorAction SilentlyContinue\n  $c.Name\n}\n",
        "function F {\n  $c = Get-Command -Name Get-MpPreference -ErrorAction SilentlyContinue\n"
        "  if ($null -eq $c) { return $null }\n  $c.Name\n}\n",
    ),
    "owner": (
        "function F {\n  param($Sd)\n  $o = $Sd.Owner\n  return $o.Value\n}\n",
        "function F {\n  param($Sd)\n  $o = $Sd.Owner\n  if ($null -ne $o) { return $o.Value }\n}\n",
    ),
    "null": (
        "function F {\n  $x = $null\n  [void]$x.Close()\n}\n",
        "function F {\n  $x = $null\n  $x = New-Object -TypeName System.Text.StringBuilder\n  [void]$x.Clear()\n}\n",
    ),
    "field": (
        "function F {\n  param($O)\n  $v = Get-FleetField -Object $O -Name 'x' -Default $null\n  $v.Length\n}\n",
        "function F {\n  param($O)\n  $v = Get-FleetField -Object $O -Name 'x' -Default $null\n"
        "  $v -and $v.Length\n}\n",
    ),
}


@pytest.mark.parametrize("case", sorted(SNIPPETS))
def test_a_possibly_null_value_needs_a_guard(case: str) -> None:
    unguarded, guarded = SNIPPETS[case]
    assert [h.line for h in hazards(unguarded)] == [{"silently": 3, "null": 3}.get(case, 4)]
    assert hazards(guarded) == []
