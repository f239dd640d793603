"""Every shipped .ps1 parses (tree-sitter-powershell); the bootstrap stays small and PowerShell 2.0-safe."""

from __future__ import annotations

import pytest

from lockdown.agent import (
    AGENT_FILES,
    BOOTSTRAP_FILE,
    MAX_BOOTSTRAP_BYTES,
    POWERSHELL_ARGS,
    RESULT_BEGIN,
    RESULT_END,
    agent_script,
    bootstrap_script,
    encoded_bootstrap,
    ps1_files,
    read_ps1,
)
from tests.unit.agent.pstree import command_names, error_nodes, parse, type_names, walk

CMD_LINE_LIMIT = 8191  # cmd.exe


@pytest.mark.parametrize("name", ps1_files())
def test_ps1_file_parses_without_error(name: str) -> None:
    tree = parse(read_ps1(name))
    assert not tree.root_node.has_error, error_nodes(tree)


def test_the_concatenated_agent_parses_without_error() -> None:
    tree = parse(agent_script())
    assert not tree.root_node.has_error, error_nodes(tree)


def test_the_parser_does_report_broken_powershell() -> None:
    # Guards the parse tests against a parser that accepts anything.
    assert parse("function Broken { if ($x -eq ) { ").root_node.has_error
    assert parse("$a = @{ x = ").root_node.has_error


def test_bootstrap_is_under_two_kilobytes_and_fits_a_command_line() -> None:
    assert len(bootstrap_script().encode("utf-8")) < MAX_BOOTSTRAP_BYTES
    command_line = " ".join(["powershell.exe", *POWERSHELL_ARGS, encoded_bootstrap()])
    assert len(command_line) < CMD_LINE_LIMIT


def test_bootstrap_uses_only_powershell_2_constructs_before_the_version_check() -> None:
    text = bootstrap_script()
    lowered = text.lower()
    for construct in ("[ordered]", "::new(", "class ", "using namespace", "?.", "??", "-asHashtable"):
        assert construct.lower() not in lowered, construct
    tree = parse(text)
    version_check = text.index("$PSVersionTable.PSVersion")
    later_only = {"convertto-json", "convertfrom-json", "select-object"}
    for node in walk(tree.root_node):
        if node.type == "command_name" and (node.text or b"").decode().lower() in later_only:
            assert node.start_byte > text.index("exit 3"), "a WMF 3+ cmdlet runs before the version check"
    assert version_check < text.index("exit 3") < text.index("[ScriptBlock]::Create")
    assert set(type_names(tree.root_node)) <= {
        "Console",
        "Convert",
        "Text.Encoding",
        # stdin is base64 of gzip: all three exist in .NET 2.0 (PowerShell 2.0).
        "IO.MemoryStream",
        "IO.Compression.GZipStream",
        "IO.Compression.CompressionMode",
        "IO.StreamReader",
        "regex",
        "ScriptBlock",
        "int",
        "string",
    }
    assert {c.lower() for c in command_names(tree.root_node)} <= {
        "out-fleetresult",
        "read-fleetline",
        "new-object",
        "foreach-object",
        "where-object",
        "select-object",
        "convertfrom-json",
        "convertto-json",
    }


def test_bootstrap_answers_unsupported_powershell_with_exit_3_and_the_markers() -> None:
    text = bootstrap_script()
    assert "unsupported_powershell" in text
    assert "requires WMF 5.1" in text
    assert "exit 3" in text
    assert f"'{RESULT_BEGIN}'" in text
    assert f"'{RESULT_END}'" in text
    assert "$ProgressPreference = 'SilentlyContinue'" in text


def test_agent_uses_the_python_markers_and_strict_settings() -> None:
    executor = read_ps1("executor.ps1")
    assert f"'{RESULT_BEGIN}'" in executor
    assert f"'{RESULT_END}'" in executor
    assert "Set-StrictMode -Version 2" in executor
    assert "$ProgressPreference = 'SilentlyContinue'" in executor
    assert "$ErrorActionPreference = 'Stop'" in executor


def test_every_convertto_json_passes_depth() -> None:
    # 5.1 truncates silently at depth 2: every serialisation of nested data must pass -Depth.
    for name in (BOOTSTRAP_FILE, *AGENT_FILES):
        for line in read_ps1(name).splitlines():
            if "ConvertTo-Json" in line and not line.lstrip().startswith("#"):
                assert "-Depth" in line, f"{name}: {line.strip()}"


def test_agent_ends_with_the_entry_call() -> None:
    assert AGENT_FILES[-1] == "executor.ps1"
    assert agent_script().rstrip().endswith("return (Invoke-FleetProgram -ProgramJson ([string]$args[0]))")
