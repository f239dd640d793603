"""Agent v2 against the wire contract (lockdown.engine.program), checked over the syntax tree.

The expected data (PRIMITIVES, SQL_STATEMENTS) is imported, never copied. Nothing here runs
PowerShell: it cannot run on this machine.
"""

from __future__ import annotations

import re

import pytest

from lockdown.engine.program import PRIMITIVES, SQL_STATEMENTS
from tests.unit.agent.pslint import (
    EXECUTOR_PS1,
    PRIMITIVE_PREFIX,
    PRIMITIVES_PS1,
    args_read,
    assignments,
    comments,
    hash_entries,
    hash_keys,
    line_count,
    op_function_name,
    read,
    returned_values,
)
from tests.unit.agent.pstree import Function, command_names, error_nodes, functions, parse, text_of, walk

MAX_PRIMITIVE_LINES = 45
RESULT_BEGIN = "FLEET-LOCKDOWN-RESULT-BEGIN"
RESULT_END = "FLEET-LOCKDOWN-RESULT-END"


def _primitive_functions() -> dict[str, Function]:
    return {k: v for k, v in functions(parse(read(PRIMITIVES_PS1))).items() if k.startswith(PRIMITIVE_PREFIX)}


def _primitive(op: str) -> Function:
    return _primitive_functions()[op_function_name(op).lower()]


def _dispatch_table() -> dict[str, str]:
    tree = parse(read(EXECUTOR_PS1))
    tables = assignments(tree.root_node, "$script:FleetOps")
    assert len(tables) == 1
    assert tables[0].type == "hash_literal_expression"
    entries = hash_entries(tables[0])
    assert all(node.type == "string_literal" for node in entries.values())
    return {key: text_of(node).strip("'") for key, node in entries.items()}


# --- (a) parse ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [PRIMITIVES_PS1, EXECUTOR_PS1], ids=lambda p: p.name)
def test_file_parses_without_error_or_missing_nodes(path) -> None:
    tree = parse(read(path))
    assert not tree.root_node.has_error, error_nodes(tree)
    assert not any(n.is_missing for n in walk(tree.root_node))


def test_the_joined_agent_script_parses() -> None:
    tree = parse(read(PRIMITIVES_PS1) + "\n" + read(EXECUTOR_PS1))
    assert not tree.root_node.has_error, error_nodes(tree)


# --- (c) one function per primitive, the dispatch table, result keys, args, length ---------------


def test_every_primitive_has_exactly_one_function_and_no_other_op_function_exists() -> None:
    text = read(PRIMITIVES_PS1) + "\n" + read(EXECUTOR_PS1)
    declared = re.findall(r"(?im)^\s*function\s+(Invoke-FleetOp\w+)", text)
    assert sorted(d.lower() for d in declared) == sorted(op_function_name(op).lower() for op in PRIMITIVES)
    assert len(declared) == len(set(d.lower() for d in declared)) == len(PRIMITIVES) == 32


def test_the_dispatch_table_maps_each_op_to_its_function_and_nothing_else() -> None:
    assert _dispatch_table() == {op: op_function_name(op) for op in PRIMITIVES}


def test_the_dispatch_is_the_only_dynamic_call() -> None:
    tree = parse(read(EXECUTOR_PS1))
    invocations = [n for n in walk(tree.root_node) if n.type == "command_invokation_operator"]
    assert len(invocations) == 1
    command = invocations[0].parent
    assert text_of(command).startswith("& $command -A $Arguments")
    assert "$command = $script:FleetOps[$Op]" in text_of(functions(tree)["invoke-fleetprimitive"].node)
    assert not any(n.type == "command_invokation_operator" for n in walk(parse(read(PRIMITIVES_PS1)).root_node))


@pytest.mark.parametrize("op", sorted(PRIMITIVES))
def test_each_returned_hashtable_has_exactly_the_contract_result_keys(op: str) -> None:
    func = _primitive(op)
    expected = sorted(PRIMITIVES[op][1])
    values = returned_values(func)
    assert values, f"{op}: no return"
    for value in values:
        if value.type == "hash_literal_expression":
            assert sorted(hash_keys(value)) == expected, (op, text_of(value)[:80])
            continue
        assert value.type == "variable", (op, text_of(value))
        literals = assignments(func.body or func.node, text_of(value))
        assert len(literals) == 1, (op, text_of(value))
        assert literals[0].type == "hash_literal_expression", (op, text_of(value))
        assert sorted(hash_keys(literals[0])) == expected
        indexed = re.findall(re.escape(text_of(value)) + r"\['(\w+)'\]\s*=", text_of(func.node))
        assert set(indexed) <= set(expected), (op, indexed)


@pytest.mark.parametrize("op", sorted(PRIMITIVES))
def test_each_primitive_reads_exactly_its_contract_args(op: str) -> None:
    names, other_uses = args_read(_primitive(op))
    assert names == {n.rstrip("?") for n in PRIMITIVES[op][0]}, op
    assert other_uses == 0, f"{op}: $A used other than as $A.<name>"


@pytest.mark.parametrize("op", sorted(PRIMITIVES))
def test_each_primitive_is_short_and_takes_param_a(op: str) -> None:
    func = _primitive(op)
    assert line_count(func) <= MAX_PRIMITIVE_LINES, (op, line_count(func))
    assert re.search(r"param\(\$A\)", text_of(func.node)), op


# --- (d) no code built from data ------------------------------------------------------------------


@pytest.mark.parametrize("path", [PRIMITIVES_PS1, EXECUTOR_PS1], ids=lambda p: p.name)
def test_no_code_is_built_or_evaluated_from_strings(path) -> None:
    text = read(path)
    tree = parse(text)
    commands = {c.lower() for c in command_names(tree.root_node)}
    assert not commands & {"invoke-expression", "iex", "invoke-command", "start-process", "new-module"}
    lowered = text.lower()
    for construct in (
        "[scriptblock]::create",
        "newscriptblock",
        "invokescript",
        "-encodedcommand",
        "executioncontext.invokecommand",
    ):
        assert construct not in lowered, construct


def test_add_type_compiles_only_the_constant_source_or_loads_an_assembly() -> None:
    text = read(PRIMITIVES_PS1) + "\n" + read(EXECUTOR_PS1)
    tree = parse(text)
    calls = [n for n in walk(tree.root_node) if n.type == "command" and text_of(n.children[0]).lower() == "add-type"]
    assert calls
    for call in calls:
        arguments = text_of(call)[len("Add-Type") :].strip()
        assert arguments in (
            "-TypeDefinition $script:FleetNativeSource -Language CSharp",
            "-AssemblyName System.ServiceProcess",
        ), arguments
    sources = assignments(tree.root_node, "$script:FleetNativeSource")
    assert len(sources) == 1
    assert text_of(sources[0]).startswith("@'"), "the C# must be a verbatim here-string (no expansion)"


def test_the_sql_table_holds_exactly_the_contract_statements_as_verbatim_text() -> None:
    tree = parse(read(PRIMITIVES_PS1))
    tables = assignments(tree.root_node, "$script:FleetSqlStatements")
    assert len(tables) == 1
    entries = hash_entries(tables[0])
    assert sorted(entries) == sorted(SQL_STATEMENTS)
    for name, node in entries.items():
        literal = text_of(node)
        assert node.type == "string_literal", name
        assert literal.startswith(("'", "@'")), name
    writes = assignments(tree.root_node, "$script:FleetSqlWrites")
    assert len(writes) == 1
    assert set(re.findall(r"'(\w+)'", text_of(writes[0]))) <= set(SQL_STATEMENTS)


def test_identifiers_are_quotenamed_and_sql_text_comes_only_from_the_table() -> None:
    tree = parse(read(PRIMITIVES_PS1))
    entries = hash_entries(assignments(tree.root_node, "$script:FleetSqlStatements")[0])
    for name in (
        "create_login",
        "drop_login",
        "create_user",
        "drop_user",
        "grant",
        "revoke",
        "user_exists",
        "permissions",
    ):
        assert "QUOTENAME(@" in text_of(entries[name]), name
    for name in ("grant", "revoke"):
        assert "sys.fn_builtin_permissions" in text_of(entries[name]), name
    sql = text_of(_primitive("sql").node)
    assert re.findall(r"CommandText\s*=\s*(.+)", sql) == ["$script:FleetSqlStatements[[string]$A.statement]"]
    assert "SqlParameter" in sql
    # No value of the step is concatenated into anything but an error message or a parameter name.
    for line in sql.splitlines():
        if re.search(r"\+ *\(?\[?\w*\]?\$(A|property)\b|\$(A|property)\.\w+ *\+", line):
            assert "throw" in line or "'@' + $property.Name" in line, line


# --- (e) every primitive cites its technique ------------------------------------------------------

_API_NAME = re.compile(
    r"\b[A-Z][A-Za-z0-9]+(\.[A-Z][A-Za-z0-9]+)+|\b[A-Z][A-Za-z0-9]+::[A-Z][A-Za-z0-9]+|\b[A-Z][a-z0-9]+[A-Z][A-Za-z0-9]+\b|https?://"
)


@pytest.mark.parametrize("op", sorted(PRIMITIVES))
def test_each_primitive_has_a_comment_citing_a_source(op: str) -> None:
    text = "\n".join(comments(_primitive(op)))
    assert re.search(r"Sources?:|https?://", text), op
    assert _API_NAME.search(text), op


# --- executor contract markers --------------------------------------------------------------------


def test_executor_strict_mode_version_markers_and_refusals() -> None:
    text = read(EXECUTOR_PS1)
    assert "Set-StrictMode -Version 2.0" in text
    assert "$script:FleetAgentVersion = '2.0.0'" in text
    assert f"'{RESULT_BEGIN}'" in text
    assert f"'{RESULT_END}'" in text
    assert "[Console]::Out.WriteLine" in text
    for code in ("constrained_language", "not_64bit_process", "not_elevated", "version_mismatch", "bad_program"):
        assert f"'{code}'" in text, code
    for code in ("unbound_var", "expect_failed", "skipped", "journal_failed"):
        assert f"'{code}'" in text, code
    assert "$ExecutionContext.SessionState.LanguageMode" in text
    assert "[Environment]::Is64BitProcess" in text
    assert text.rstrip().endswith("return (Invoke-FleetProgram -ProgramJson ([string]$args[0]))")


def test_executor_variable_pattern_is_the_contracts() -> None:
    from lockdown.engine.program import VAR_PATTERN

    assigned = assignments(parse(read(EXECUTOR_PS1)).root_node, "$script:FleetVarPattern")
    assert [text_of(a).strip("'") for a in assigned] == [VAR_PATTERN.pattern]


def test_no_powershell_7_only_syntax() -> None:
    for path in (PRIMITIVES_PS1, EXECUTOR_PS1):
        tree = parse(read(path))
        tokens = {n.type for n in walk(tree.root_node)}
        assert not tokens & {"&&", "||"}, path.name
        code = re.sub(r"@'.*?'@", "", read(path), flags=re.DOTALL)
        code = re.sub(r"'[^'\n]*'", "''", code)
        for construct in ("??", "?.", "-Parallel", "using namespace", "::new(", "-AsHashtable", "clean {"):
            assert construct not in code, (path.name, construct)
