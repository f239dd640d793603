"""The .ps1 files use only commands and .NET types on the allow-list (Server 2008 R2 + WMF 5.1),
and the allow-list carries a reason per entry and nothing unused."""

from __future__ import annotations

from lockdown.agent import ps1_files, read_ps1
from tests.unit.agent.pstree import command_names, functions, parse, type_names


def _allowlist() -> dict[tuple[str, str], str]:
    entries: dict[tuple[str, str], str] = {}
    for line in read_ps1("allowlist.txt").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        head, sep, reason = line.partition(" -- ")
        kind, _, name = head.partition(" ")
        assert sep, f"allow-list entry without a reason: {line!r}"
        assert reason.strip(), f"allow-list entry without a reason: {line!r}"
        assert kind in {"command", "type"}, line
        entries[(kind, name.strip().lower())] = reason
    return entries


def _used() -> tuple[set[str], set[str]]:
    commands: set[str] = set()
    types: set[str] = set()
    for name in ps1_files():
        tree = parse(read_ps1(name))
        own = set(functions(tree))
        commands |= {c.lower() for c in command_names(tree.root_node)} - own
        types |= {t.lower() for t in type_names(tree.root_node)}
    agent_functions = set(functions(parse("\n".join(read_ps1(n) for n in ps1_files()))))
    return commands - agent_functions, types


def test_every_command_used_is_allow_listed() -> None:
    allowed = {name for kind, name in _allowlist() if kind == "command"}
    commands, _ = _used()
    assert sorted(commands - allowed) == []


def test_every_type_used_is_allow_listed() -> None:
    allowed = {name for kind, name in _allowlist() if kind == "type"}
    _, types = _used()
    assert sorted(types - allowed) == []


def test_the_allow_list_has_no_unused_entries() -> None:
    commands, types = _used()
    unused = [f"{kind} {name}" for kind, name in _allowlist() if name not in (commands if kind == "command" else types)]
    assert unused == []


def test_no_module_only_on_newer_windows_is_used_unguarded() -> None:
    # LocalAccounts (New-LocalUser...) is missing on 2008 R2 and in 32-bit PowerShell; ADSI is used.
    commands, _ = _used()
    assert not {c for c in commands if c.endswith("-localuser") or c.endswith("-localgroupmember")}
    assert "set-acl" not in commands  # rewrites the owner (ansible#20553); SetAccessControl writes the DACL only
