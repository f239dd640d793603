"""Agent v2: no statement of a primitive, an executor function or the top level emits a stray value.

The lint is generic over the syntax tree (tests.unit.agent.pslint.py). The mutation tests prove it
bites: every silencing it accepted is removed, one at a time, and the lint must then report exactly
that statement; planted leaks of each kind are reported too.
"""

from __future__ import annotations

import pytest

from tests.unit.agent.pslint import EXECUTOR_PS1, PRIMITIVES_PS1, TOP_LEVEL, Leak, lint, lint_agent, read
from tests.unit.agent.pstree import parse


def test_no_primitive_or_helper_in_primitives_ps1_leaks_a_value() -> None:
    primitives, _ = lint_agent()
    assert primitives.leaks == []


def test_no_executor_function_or_top_level_statement_leaks_a_value() -> None:
    _, executor = lint_agent()
    assert executor.leaks == []


def test_the_lint_saw_the_silencings_it_must_protect() -> None:
    primitives, executor = lint_agent()
    # Every ADSI / .NET call in the primitives is voided: dozens of them, not a handful.
    assert len(primitives.voidings) > 50
    assert len(executor.voidings) > 5


def _mutants(index: int) -> list[tuple[str, int, str]]:
    texts = [read(PRIMITIVES_PS1), read(EXECUTOR_PS1)]
    result = lint(texts)[index]
    text = texts[index]
    raw = text.encode("utf-8")
    return [(v.function, v.line, (raw[: v.start] + raw[v.end :]).decode("utf-8")) for v in result.voidings]


@pytest.mark.parametrize("index", [0, 1], ids=["primitives.ps1", "executor.ps1"])
def test_removing_any_single_silencing_is_reported_at_that_statement(index: int) -> None:
    texts = [read(PRIMITIVES_PS1), read(EXECUTOR_PS1)]
    mutants = _mutants(index)
    assert mutants
    for function, line, mutated in mutants:
        assert not parse(mutated).root_node.has_error, (function, line)
        changed = list(texts)
        changed[index] = mutated
        leaks = lint(changed)[index].leaks
        assert [(leak.function, leak.line) for leak in leaks] == [(function, line)], (function, line, leaks)


def _lint_primitives_with(old: str, new: str) -> list[Leak]:
    text = read(PRIMITIVES_PS1)
    assert text.count(old) == 1, old
    mutated = text.replace(old, new)
    assert not parse(mutated).root_node.has_error
    return lint([mutated, read(EXECUTOR_PS1)])[0].leaks


def test_planted_unvoided_adsi_call_is_found() -> None:
    # The v1 bug: an ADSI SetInfo() whose $null lands in the primitive's output.
    leaks = _lint_primitives_with(
        "    [void]$group.SetInfo()\n    [void]$group.psbase.RefreshCache()\n",
        "    $group.SetInfo()\n    [void]$group.psbase.RefreshCache()\n",
    )
    assert [(leak.function, leak.statement) for leak in leaks] == [("Invoke-FleetOpGroupCreate", "$group.SetInfo()")]


def test_planted_leaks_of_every_kind_are_found() -> None:
    old = "    $null = Start-Sleep -Milliseconds ([int]([double]$A.seconds * 1000))\n"
    planted = [
        "Start-Sleep -Milliseconds 1",  # a command
        "'a bare string'",  # an expression
        "$A.seconds + 1",  # arithmetic
        "Get-FleetAdsiSid -Entry $null",  # a local function that returns a value
        "@(1, 2) | ForEach-Object { $_ }",  # a pipeline not ending in Out-Null
        "[int]$A.seconds",  # a cast that is not [void]
    ]
    for statement in planted:
        leaks = _lint_primitives_with(old, old + "    " + statement + "\n")
        assert [(leak.function, leak.statement) for leak in leaks] == [("Invoke-FleetOpSleep", statement)], statement


def test_planted_leak_inside_nested_blocks_is_found() -> None:
    old = "    $null = Start-Sleep -Milliseconds ([int]([double]$A.seconds * 1000))\n"
    nested = "    try { if ($true) { foreach ($x in @(1)) { $y = 1 } } else { $q.Add(1) } } finally { $z.Dispose() }\n"
    leaks = _lint_primitives_with(old, old + nested)
    assert sorted(leak.statement for leak in leaks) == ["$q.Add(1)", "$z.Dispose()"]


def test_a_primitive_may_return_only_a_hashtable_literal_or_a_variable() -> None:
    old = "    return @{ changed = $false }\n}\n"
    text = read(PRIMITIVES_PS1)
    assert text.rstrip().endswith(old.rstrip())
    for bad in ("return @($A.seconds)", "return $a, $b", "return (Get-Date)"):
        mutated = text.rstrip()[: -len(old.rstrip())] + "    " + bad + "\n}\n"
        leaks = lint([mutated, read(EXECUTOR_PS1)])[0].leaks
        assert [leak.function for leak in leaks] == ["Invoke-FleetOpSleep"], bad


def test_a_leak_at_the_top_level_is_found() -> None:
    text = read(EXECUTOR_PS1).replace("$ErrorActionPreference = 'Stop'\n", "$ErrorActionPreference = 'Stop'\n'oops'\n")
    leaks = lint([read(PRIMITIVES_PS1), text])[1].leaks
    assert [(leak.function, leak.statement) for leak in leaks] == [(TOP_LEVEL, "'oops'")]


def test_switch_statements_are_refused() -> None:
    # tree-sitter-powershell mis-parses `switch ... default`, so the agent uses if/elseif only.
    old = "    $null = Start-Sleep -Milliseconds ([int]([double]$A.seconds * 1000))\n"
    leaks = _lint_primitives_with(old, old + "    switch ($A.seconds) { 1 { $y = 1 } }\n")
    assert [leak.function for leak in leaks] == ["Invoke-FleetOpSleep"]
