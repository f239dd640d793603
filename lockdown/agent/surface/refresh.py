"""Refresh lockdown/agent/surface/dotnet.json: the .NET surface the agent's PowerShell may use.

Run from the repository root, on a machine with Debian's Mono (`apt-get install mono-devel`):

    .venv/bin/python -m lockdown.agent.surface.refresh

It reads every type the .ps1 files name (tree-sitter, `tests/unit/agent/psapi.py`), resolves each
as PowerShell would (an accelerator, the name, "System." + the name), and lists the public members
of those types, their base classes and interfaces, and the types their members return (one level,
so `$x = [T]::M(); $x.N()` can be checked), from the **reference assemblies of the .NET Framework
4.5 profile** that Mono ships (`/usr/lib/mono/4.5-api/*.dll`: metadata only, the public API of
.NET Framework 4.5). The reading is done by `Extract.cs` with Mono.Cecil (metadata only: nothing is
loaded or run). The agent's own Add-Type classes (FleetLockdown.*) are compiled from the constant
C# in primitives.ps1 with `mcs -sdk:4.5` and read the same way.

PowerShell's own types (System.Management.Automation) are not in Mono: the few the agent names are
listed by hand below, each with its source, and marked `"curated"` in the output.

The test (`tests/unit/agent/test_dotnet_surface.py`) reads only the committed JSON: it needs no Mono.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "dotnet.json"
REFERENCE = Path("/usr/lib/mono/4.5-api")
CECIL = Path("/usr/lib/mono/gac/Mono.Cecil/0.11.0.0__0738eb9f132ed756/Mono.Cecil.dll")

# PowerShell's built-in type accelerators the agent uses. Source: `CoreTypes` and
# `TypeAccelerators` in PowerShell/PowerShell src/System.Management.Automation/engine/parser/
# TypeResolver.cs (commit 04976d4); each of these is also listed for Windows PowerShell 5.1 in
# about_Type_Accelerators. Case-insensitive, as there (StringComparer.OrdinalIgnoreCase).
ACCELERATORS = {
    "adsi": "System.DirectoryServices.DirectoryEntry",
    "bool": "System.Boolean",
    "byte": "System.Byte",
    "char": "System.Char",
    "CmdletBinding": "System.Management.Automation.CmdletBindingAttribute",
    "double": "System.Double",
    "hashtable": "System.Collections.Hashtable",
    "int": "System.Int32",
    "int64": "System.Int64",
    "long": "System.Int64",
    "ordered": "System.Collections.Specialized.OrderedDictionary",
    "pscustomobject": "System.Management.Automation.PSObject",
    "psobject": "System.Management.Automation.PSObject",
    "ref": "System.Management.Automation.PSReference",
    "regex": "System.Text.RegularExpressions.Regex",
    "scriptblock": "System.Management.Automation.ScriptBlock",
    "string": "System.String",
    "switch": "System.Management.Automation.SwitchParameter",
    "timespan": "System.TimeSpan",
    "type": "System.Type",
    "void": "System.Void",
}

_PS_SOURCE = "PowerShell/PowerShell src/System.Management.Automation/engine/"
# System.Management.Automation types (not in Mono), as the agent uses them: kind and the members
# it touches, from PowerShell's source (the same public API as Windows PowerShell 5.1's
# System.Management.Automation.dll reference assembly).
CURATED: dict[str, dict[str, Any]] = {
    "System.Management.Automation.PSObject": {"source": _PS_SOURCE + "MshObject.cs", "kind": "class"},
    "System.Management.Automation.PSCustomObject": {"source": _PS_SOURCE + "MshObject.cs", "kind": "class"},
    "System.Management.Automation.PSReference": {"source": _PS_SOURCE + "LanguagePrimitives.cs", "kind": "class"},
    "System.Management.Automation.ScriptBlock": {
        "source": _PS_SOURCE + "runtime/CompiledScriptBlock.cs",
        "kind": "class",
    },
    "System.Management.Automation.SwitchParameter": {"source": _PS_SOURCE + "MshCommandRuntime.cs", "kind": "struct"},
    "System.Management.Automation.CmdletBindingAttribute": {
        "source": _PS_SOURCE + "Attributes.cs",
        "kind": "class",
    },
}


def _written_types() -> set[str]:
    sys.path.insert(0, str(ROOT))
    from tests.unit.agent.psapi import element_type, new_object_type, written_type
    from tests.unit.agent.pstree import parse, text_of, walk

    names: set[str] = set()
    for path in sorted((ROOT / "lockdown" / "agent").rglob("*.ps1")):
        root = parse(path.read_text(encoding="utf-8")).root_node
        for node in walk(root):
            if node.type == "type_literal":
                names.add(element_type(written_type(node)))
            elif node.type == "command" and text_of(node.children[0]).lower() == "new-object":
                created = new_object_type(node)
                if created:
                    names.add(element_type(created[0]))
    return names


def _native_source() -> str:
    sys.path.insert(0, str(ROOT))
    from tests.unit.agent.pslint import assignments
    from tests.unit.agent.pstree import parse, text_of

    text = (ROOT / "lockdown" / "agent" / "primitives.ps1").read_text(encoding="utf-8")
    literal = text_of(assignments(parse(text).root_node, "$script:FleetNativeSource")[0])
    return literal[len("@'\n") : -len("\n'@")]


def _needed_types(types: dict[str, dict[str, Any]]) -> set[str]:
    """Types the agent's member uses land on that the surface does not list yet."""
    from tests.unit.agent.psapi import Surface, uses

    surface = Surface({"types": types, "accelerators": ACCELERATORS})
    needed = set()
    for path in sorted((ROOT / "lockdown" / "agent").rglob("*.ps1")):
        for use in uses(path.read_text(encoding="utf-8"), surface, str(path)):
            if use.kind in ("instance", "set") and surface.resolve(use.type_name) is None:
                needed.add(use.type_name)
    return needed


def _run(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"{command[0]} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def _parse(lines: str, types: dict[str, dict[str, Any]], missing: set[str]) -> None:
    for line in lines.splitlines():
        fields = line.split("\t")
        if fields[0] == "X":
            missing.add(fields[1])
        elif fields[0] == "T":
            _, name, assembly, kind, base, interfaces = fields
            types[name] = {
                "assembly": assembly,
                "kind": kind,
                "base": base,
                "interfaces": [i for i in interfaces.split(";") if i],
                "members": [],
            }
        elif fields[0] == "M":
            _, owner, name, kind, static, parameters, required, params_array, of_type, settable = fields
            member = {
                "name": name,
                "kind": kind,
                "static": static == "1",
                "parameters": [p for p in parameters.split(";") if p],
                "required": int(required),
                "params_array": params_array == "1",
                "type": of_type,
            }
            if kind in ("property", "field"):
                member["settable"] = settable == "1"
            types[owner]["members"].append(member)


def _dump(data: dict[str, Any]) -> str:
    """JSON with one line per type header and per member, so a refresh diffs by member."""
    head = {k: v for k, v in data.items() if k != "types"}
    lines = [json.dumps(head, sort_keys=True)[:-1] + ', "types": {']
    for number, (name, entry) in enumerate(data["types"].items()):
        rest = {k: v for k, v in entry.items() if k != "members"}
        members = ",\n".join("  " + json.dumps(m, sort_keys=True) for m in entry["members"])
        comma = "," if number < len(data["types"]) - 1 else ""
        body = json.dumps(rest, sort_keys=True)[:-1] + ', "members": [\n' + members + "]}"
        lines.append(f"{json.dumps(name)}: {body}{comma}")
    return "\n".join(lines) + "}}\n"


def main() -> int:
    written = _written_types()
    candidates: set[str] = set()
    for name in written:
        accelerated = {k.lower(): v for k, v in ACCELERATORS.items()}.get(name.lower())
        candidates |= {accelerated} if accelerated else {name, f"System.{name}"}
    candidates -= set(CURATED)
    with tempfile.TemporaryDirectory() as scratch:
        tool = Path(scratch) / "Extract.exe"
        _run(["mcs", "-langversion:5", f"-r:{CECIL}", f"-out:{tool}", str(HERE / "Extract.cs")])
        native = Path(scratch) / "FleetNative.dll"
        (Path(scratch) / "native.cs").write_text(_native_source(), encoding="utf-8")
        _run(
            ["mcs", "-sdk:4.5", "-langversion:5", "-target:library", f"-out:{native}", str(Path(scratch) / "native.cs")]
        )
        assemblies = sorted(str(p) for p in REFERENCE.glob("*.dll"))
        while True:
            types: dict[str, dict[str, Any]] = {}
            missing: set[str] = set()
            _parse(_run(["mono", str(tool), "1", *assemblies, str(native), "--", *sorted(candidates)]), types, missing)
            # A member returns a type two levels down ($x = $a.B(); $x.C()): add it and read again.
            needed = _needed_types(types) - candidates
            if not needed:
                break
            candidates |= needed
    for name, entry in CURATED.items():
        types[name] = {"curated": entry["source"], "kind": entry["kind"], "base": "", "interfaces": [], "members": []}
    for entry in types.values():
        entry["members"].sort(key=lambda m: (m["name"].lower(), m["kind"], len(m["parameters"]), m["parameters"]))
    unresolved = sorted(
        n
        for n in written
        if not any(c.lower() in {t.lower() for t in types} for c in (ACCELERATORS.get(n, ""), n, f"System.{n}") if c)
        and not any(k.lower() == n.lower() for k in ACCELERATORS)
    )
    data = {
        "format": 1,
        "generated_by": "lockdown/agent/surface/refresh.py",
        "reference": "Mono 4.5-api reference assemblies (.NET Framework 4.5 public API), read with Mono.Cecil",
        "accelerators": ACCELERATORS,
        "types": dict(sorted(types.items())),
    }
    OUTPUT.write_text(_dump(data), encoding="utf-8")
    print(f"{OUTPUT.relative_to(ROOT)}: {len(types)} types, {sum(len(t['members']) for t in types.values())} members")
    if unresolved:
        print("named in the agent but found in no 4.5 assembly:", ", ".join(unresolved))
    return 1 if unresolved else 0


if __name__ == "__main__":
    raise SystemExit(main())
