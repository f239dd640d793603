"""Every .NET type and member the agent's PowerShell uses exists in .NET Framework 4.5, with that arity;
every cmdlet parameter it passes exists in Windows PowerShell 5.1.

The references are committed data, so these tests need neither Mono nor Windows:
- lockdown/agent/surface/dotnet.json: the public surface of the types the agent names, read from
  Mono's .NET Framework 4.5 reference assemblies by lockdown/agent/surface/refresh.py;
- lockdown/agent/cmdlets.json: each cmdlet's 5.1 parameters, each with its Microsoft Learn page
  (MicrosoftDocs/PowerShell-Docs reference/5.1, read for this table).
What they cannot prove: that a member *behaves* as the agent expects, that a member PowerShell
adapts (hashtable keys, ADSI, CIM, PSObject) exists, or anything about a value whose type the
walker cannot infer from its assignment (those uses are counted, not checked).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest

from tests.unit.agent.psapi import Surface, check, uses
from tests.unit.agent.pstree import parse, text_of, walk

AGENT = Path(__file__).resolve().parents[3] / "lockdown" / "agent"
SCRIPTS = sorted(AGENT.rglob("*.ps1"))


@cache
def surface() -> Surface:
    return Surface(json.loads((AGENT / "surface" / "dotnet.json").read_text(encoding="utf-8")))


@cache
def cmdlets() -> dict:
    return json.loads((AGENT / "cmdlets.json").read_text(encoding="utf-8"))


def problems(text: str, name: str = "agent.ps1") -> list[str]:
    return [p for use in uses(text, surface(), name) if (p := check(use, surface()))]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_dotnet_use_exists_in_net_framework_4_5(script: Path) -> None:
    assert problems(script.read_text(encoding="utf-8"), script.name) == []


def test_the_walker_sees_the_agents_dotnet_uses() -> None:
    """The walker finds the uses it claims to check (a walker that found nothing would pass above)."""
    found = {str(u).split(": ", 1)[1] for s in SCRIPTS for u in uses(s.read_text(encoding="utf-8"), surface(), s.name)}
    for expected in (
        "static [System.Net.IPAddress]::TryParse(2 arguments)",
        "ctor [System.IO.FileStream](6 arguments)",
        "instance [System.Net.Sockets.TcpClient].BeginConnect(4 arguments)",
        "instance [System.Threading.WaitHandle].WaitOne(1 argument)",
        "static [FleetLockdown.Lsa]::Holders(1 argument)",
        "set [System.Net.HttpWebRequest].AllowAutoRedirect",
        "type [Microsoft.Win32.RegistryView]",
    ):
        assert expected in found


# Each plant: (script, text in it, replacement, what the report must name). Renaming one member,
# changing one call's arity, or one type turns the test above red, and says where.
PLANTS = [
    ("primitives.ps1", "[System.Net.IPAddress]::TryParse(", "[System.Net.IPAddress]::TryParze(", "TryParze"),
    ("primitives.ps1", "TryParse([string]$A.host, [ref]$ip)", "TryParse([string]$A.host, [ref]$ip, 1)", "TryParse"),
    ("primitives.ps1", "[System.IO.FileMode]::Append", "[System.IO.FileMode]::Appends", "Appends"),
    ("primitives.ps1", "System.Net.Sockets.TcpClient\n", "System.Net.Sockets.TcpClients\n", "TcpClients"),
    ("primitives.ps1", "4096, [System.IO.FileOptions]::WriteThrough)", "4096, 1, 2, 3)", "FileStream"),
    ("primitives.ps1", "$client.BeginConnect(", "$client.BeginConnects(", "BeginConnects"),
    ("primitives.ps1", "AsyncWaitHandle.WaitOne(", "AsyncWaitHandle.WaitOnce(", "WaitOnce"),
    ("primitives.ps1", "$reader.Read($buffer, 0, $buffer.Length)", "$reader.Read($buffer, 0)", "Read"),
    ("primitives.ps1", ".ReadTimeout =", ".CanRead =", "CanRead cannot be set"),
    ("primitives.ps1", "[FleetLockdown.Lsa]::Holders(", "[FleetLockdown.Lsa]::Holder(", "Holder"),
    ("bootstrap.ps1", "[Text.Encoding]::UTF8", "[Text.Encoding]::WebName", "WebName"),  # an instance member, statically
    ("bootstrap.ps1", "[Convert]::FromBase64String(", "[Convert]::FromBase64Strings(", "FromBase64Strings"),
    (
        "executor.ps1",
        "[System.Security.Principal.WindowsIdentity]",
        "[System.Security.Principal.WindowIdentity]",
        "WindowIdentity",
    ),
]


@pytest.mark.parametrize(("script", "old", "new", "named"), PLANTS, ids=[p[3] for p in PLANTS])
def test_a_planted_wrong_dotnet_use_is_reported(script: str, old: str, new: str, named: str) -> None:
    text = (AGENT / script).read_text(encoding="utf-8")
    assert old in text, f"the plant's anchor left {script}: update the plant"
    line = text[: text.index(old)].count("\n") + 1
    found = problems(text.replace(old, new, 1), script)
    assert found, f"planting {new!r} went unnoticed"
    assert any(named in p and f"{script}:{line}:" in p for p in found), found


# --- cmdlet parameters ------------------------------------------------------------------------


def _functions(root) -> dict[str, set[str]]:
    """The agent's own functions: name (lower-case) -> its parameter names (lower-case)."""
    found = {}
    for node in walk(root):
        if node.type == "function_statement":
            name = text_of(next(c for c in node.children if c.type == "function_name")).lower()
            found[name] = {
                text_of(v).lstrip("$").lower()
                for p in walk(node)
                if p.type == "script_parameter"
                for v in p.children
                if v.type == "variable"
            }
    return found


def parameter_problems(texts: dict[str, str]) -> list[str]:
    table = {k.lower(): v for k, v in cmdlets()["cmdlets"].items()}
    common = table.pop("__common__")
    common_names = {n.lower() for n in common["parameters"]} | {
        a.lower() for p in common["parameters"].values() for a in p.get("aliases", [])
    }
    roots = {name: parse(text).root_node for name, text in texts.items()}
    functions: dict[str, set[str]] = {}
    for root in roots.values():
        functions |= _functions(root)
    found = []
    for name, root in roots.items():
        for command in (n for n in walk(root) if n.type == "command"):
            called = text_of(command.children[0])
            passed = [
                (text_of(p).lstrip("-").rstrip(":"), p.start_point[0] + 1)
                for e in command.children
                if e.type == "command_elements"
                for p in e.children
                if p.type == "command_parameter"
            ]
            if called.lower() in functions:
                allowed = functions[called.lower()]
                where = "its param block"
            elif called.lower() in table:
                entry = table[called.lower()]
                allowed = {p.lower() for p in entry["parameters"]} | {
                    a.lower() for p in entry["parameters"].values() for a in p.get("aliases", [])
                }
                if not entry["parameters"].keys().isdisjoint({"Confirm", "WhatIf"}):
                    allowed |= {"confirm", "whatif"}
                allowed |= common_names
                where = entry["source"]
            elif called.lower().endswith(".exe") or called == "&":
                continue  # native programs (netsh.exe) and the bootstrap's `& $agent`
            else:
                found.append(
                    f"{name}:{command.start_point[0] + 1}: {called} is in no table (lockdown/agent/cmdlets.json)"
                )
                continue
            for parameter, line in passed:
                if parameter.lower() not in allowed:
                    found.append(f"{name}:{line}: {called} has no parameter -{parameter} ({where})")
    return found


def _texts() -> dict[str, str]:
    return {s.name: s.read_text(encoding="utf-8") for s in SCRIPTS}


def test_every_cmdlet_parameter_exists_in_windows_powershell_5_1() -> None:
    assert parameter_problems(_texts()) == []


def test_every_cmdlet_in_the_table_names_its_5_1_source() -> None:
    for name, entry in cmdlets()["cmdlets"].items():
        assert entry["source"].startswith("https://learn.microsoft.com/"), name
        assert "view=powershell-5.1" in entry["source"] or "windowsserver" in entry["source"], name
        assert not entry.get("unverified"), (name, entry.get("unverified"))


PARAMETER_PLANTS = [
    ("primitives.ps1", "Get-Item -LiteralPath", "Get-Item -LiteralPth", "Get-Item has no parameter -LiteralPth"),
    ("primitives.ps1", "-ErrorAction SilentlyContinue", "-ErrorActions SilentlyContinue", "-ErrorActions"),
    (
        "primitives.ps1",
        "ConvertTo-Json -InputObject",
        "ConvertTo-Json -Input",
        "ConvertTo-Json has no parameter -Input",
    ),
    ("executor.ps1", "Get-FleetField -Object", "Get-FleetField -Objekt", "Get-FleetField has no parameter -Objekt"),
]


@pytest.mark.parametrize(("script", "old", "new", "named"), PARAMETER_PLANTS, ids=[p[3] for p in PARAMETER_PLANTS])
def test_a_planted_wrong_parameter_is_reported(script: str, old: str, new: str, named: str) -> None:
    texts = _texts()
    assert old in texts[script], f"the plant's anchor left {script}: update the plant"
    texts[script] = texts[script].replace(old, new, 1)
    found = parameter_problems(texts)
    assert any(named in p and p.startswith(f"{script}:") for p in found), found
