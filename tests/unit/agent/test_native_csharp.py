"""The agent's Add-Type C# compiles as .NET Framework 4.5 code, and its native shapes are Windows' own.

Windows PowerShell 5.1's Add-Type compiles with the .NET Framework's CodeDom C# compiler (C# 5);
here Mono's `mcs -sdk:4.5 -langversion:5 -warnaserror+` stands in for it. The compiled classes are
then run under Mono on this x64 machine by `native_probe.cs`, which prints each struct's marshalled
size and each P/Invoke's native parameter sizes; they must equal the x64 shapes of the Win32
declarations (each with its Microsoft Learn page below). Mono marshals by the same rules on x64
(natural alignment, IntPtr = 8, bool = 4-byte BOOL unless MarshalAs U1), so a dropped parameter, a
`bool` where Windows takes a 1-byte BOOLEAN, or an `int` where it takes a pointer turns this red.
What it cannot prove: that the entry points behave as documented, or that the LSA buffers are
read correctly (that needs Windows; see README "What was verified").

Needs Mono (`apt-get install mono-devel`); skipped without `mcs` unless REQUIRE_MONO=1 (CI sets it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.unit.agent.pslint import assignments
from tests.unit.agent.pstree import parse, text_of

HERE = Path(__file__).resolve().parent
AGENT = HERE.parents[2] / "lockdown" / "agent"
HAVE_MONO = shutil.which("mcs") is not None and shutil.which("mono") is not None
if not HAVE_MONO and os.environ.get("REQUIRE_MONO") == "1":
    raise RuntimeError("REQUIRE_MONO=1 but Mono's mcs/mono are missing: apt-get install mono-devel")
pytestmark = pytest.mark.skipif(not HAVE_MONO, reason="Mono is not installed: apt-get install mono-devel")

_LEARN = "https://learn.microsoft.com/en-us/windows/win32/api/"
# (class, entry point) -> (dll, x64 size of the return value, x64 size of each parameter, source).
# BOOL and NTSTATUS/ULONG/DWORD are 4 bytes, BOOLEAN 1, HANDLE and every pointer 8.
PINVOKE = {
    ("TokenPrivilege", "AdjustTokenPrivileges"): (
        "advapi32.dll",
        4,
        [8, 4, 8, 4, 8, 8],
        _LEARN + "securitybaseapi/nf-securitybaseapi-adjusttokenprivileges",
    ),
    ("TokenPrivilege", "OpenProcessToken"): (
        "advapi32.dll",
        4,
        [8, 4, 8],
        _LEARN + "processthreadsapi/nf-processthreadsapi-openprocesstoken",
    ),
    ("TokenPrivilege", "LookupPrivilegeValue"): (
        "advapi32.dll",
        4,
        [8, 8, 8],
        _LEARN + "winbase/nf-winbase-lookupprivilegevaluew",
    ),
    ("TokenPrivilege", "GetCurrentProcess"): (
        "kernel32.dll",
        8,
        [],
        _LEARN + "processthreadsapi/nf-processthreadsapi-getcurrentprocess",
    ),
    ("TokenPrivilege", "CloseHandle"): ("kernel32.dll", 4, [8], _LEARN + "handleapi/nf-handleapi-closehandle"),
    ("Lsa", "LsaOpenPolicy"): ("advapi32.dll", 4, [8, 8, 4, 8], _LEARN + "ntsecapi/nf-ntsecapi-lsaopenpolicy"),
    ("Lsa", "LsaEnumerateAccountsWithUserRight"): (
        "advapi32.dll",
        4,
        [8, 8, 8, 8],
        _LEARN + "ntsecapi/nf-ntsecapi-lsaenumerateaccountswithuserright",
    ),
    ("Lsa", "LsaAddAccountRights"): (
        "advapi32.dll",
        4,
        [8, 8, 8, 4],
        _LEARN + "ntsecapi/nf-ntsecapi-lsaaddaccountrights",
    ),
    ("Lsa", "LsaRemoveAccountRights"): (
        "advapi32.dll",
        4,
        [8, 8, 1, 8, 4],
        _LEARN + "ntsecapi/nf-ntsecapi-lsaremoveaccountrights",
    ),
    ("Lsa", "LsaFreeMemory"): ("advapi32.dll", 4, [8], _LEARN + "ntsecapi/nf-ntsecapi-lsafreememory"),
    ("Lsa", "LsaClose"): ("advapi32.dll", 4, [8], _LEARN + "ntsecapi/nf-ntsecapi-lsaclose"),
    ("Lsa", "LsaNtStatusToWinError"): ("advapi32.dll", 4, [4], _LEARN + "ntsecapi/nf-ntsecapi-lsantstatustowinerror"),
    ("Logon", "LogonUser"): ("advapi32.dll", 4, [8, 8, 8, 4, 4, 8], _LEARN + "winbase/nf-winbase-logonuserw"),
    ("Logon", "CloseHandle"): ("kernel32.dll", 4, [8], _LEARN + "handleapi/nf-handleapi-closehandle"),
}
# The string-taking entry points must marshal as UTF-16 so the runtime binds the ...W export.
UNICODE = {"LookupPrivilegeValue", "LogonUser"}
# Struct -> x64 sizeof, from the SDK declarations.
STRUCTS = {
    # TOKEN_PRIVILEGES with one LUID_AND_ATTRIBUTES: DWORD + (LUID 8 + DWORD 4), 4-aligned (winnt.h)
    "TokenPrivilege+TokPriv1Luid": 16,
    "Lsa+LSA_UNICODE_STRING": 16,  # USHORT, USHORT, 4 padding, PWSTR (lsalookup.h)
    "Lsa+LSA_OBJECT_ATTRIBUTES": 48,  # ULONG+pad, HANDLE, PLSA_UNICODE_STRING, ULONG+pad, PVOID, PVOID (lsalookup.h)
    "Lsa+LSA_ENUMERATION_INFORMATION": 8,  # PSID (ntsecapi.h)
}


def native_source() -> str:
    literal = text_of(
        assignments(
            parse((AGENT / "primitives.ps1").read_text(encoding="utf-8")).root_node, "$script:FleetNativeSource"
        )[0]
    )
    return literal[len("@'\n") : -len("\n'@")]


def compile_and_probe(source: str, folder: Path) -> subprocess.CompletedProcess[str]:
    (folder / "native.cs").write_text(source, encoding="utf-8")
    flags = ["-sdk:4.5", "-langversion:5", "-warn:4", "-warnaserror+", f"-out:{folder / 'probe.exe'}"]
    built = subprocess.run(
        ["mcs", *flags, str(folder / "native.cs"), str(HERE / "native_probe.cs")],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if built.returncode != 0:
        return built
    return subprocess.run(["mono", str(folder / "probe.exe")], capture_output=True, text=True, check=False, timeout=120)


def shape_problems(output: str) -> list[str]:
    found: list[str] = []
    seen_pinvoke, seen_structs = set(), set()
    for line in output.splitlines():
        fields = line.split("\t")
        if fields[0] == "S":
            name = fields[1].removeprefix("FleetLockdown.")
            seen_structs.add(name)
            if STRUCTS.get(name) != int(fields[2]):
                found.append(f"struct {name} marshals as {fields[2]} bytes, Windows x64 has {STRUCTS.get(name)}")
        elif fields[0] == "P":
            owner, entry, dll, charset, returned = (
                fields[1].removeprefix("FleetLockdown."),
                fields[2],
                fields[3],
                fields[4],
                int(fields[5]),
            )
            sizes = [int(s) for s in fields[6].split(",") if s]
            seen_pinvoke.add((owner, entry))
            expected = PINVOKE.get((owner, entry))
            if expected is None:
                found.append(f"{owner}.{entry}: a P/Invoke with no row in PINVOKE (add it with its Learn page)")
                continue
            if (dll, returned, sizes) != expected[:3]:
                found.append(
                    f"{owner}.{entry}: {dll} returns {returned} takes {sizes}; "
                    f"Windows x64: {expected[:3]} ({expected[3]})"
                )
            if entry in UNICODE and charset != "Unicode":
                found.append(f"{owner}.{entry}: CharSet {charset}, must be Unicode (the ...W export)")
    found += [f"{o}.{e}: declared in PINVOKE, missing from the C#" for o, e in sorted(set(PINVOKE) - seen_pinvoke)]
    found += [f"struct {s}: expected, missing from the C#" for s in sorted(set(STRUCTS) - seen_structs)]
    return found


def surface_problems(output: str) -> list[str]:
    """The committed surface (dotnet.json) of FleetLockdown.* must be what this C# compiles to."""
    compiled = {(f[1], f[2], f[3]) for f in (line.split("\t") for line in output.splitlines()) if f[0] == "M"}
    types = json.loads((AGENT / "surface" / "dotnet.json").read_text(encoding="utf-8"))["types"]
    committed = {
        (name, m["name"], ";".join(m["parameters"]))
        for name, entry in types.items()
        if name.startswith("FleetLockdown.")
        for m in entry["members"]
        if m["kind"] == "method" and m["static"]
    }
    if compiled == committed:
        return []
    return [
        "dotnet.json is stale for the Add-Type classes (run python -m lockdown.agent.surface.refresh): "
        f"only compiled {sorted(compiled - committed)}, only committed {sorted(committed - compiled)}"
    ]


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> str:
    done = compile_and_probe(native_source(), tmp_path_factory.mktemp("native"))
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_native_csharp_compiles_as_net_4_5_csharp_5(probe: str) -> None:
    assert "\tFleetLockdown.Lsa\t" in probe


def test_structs_and_pinvoke_signatures_have_windows_x64_shapes(probe: str) -> None:
    assert shape_problems(probe) == []


def test_the_committed_surface_matches_the_compiled_classes(probe: str) -> None:
    assert surface_problems(probe) == []


# Each plant breaks one Add-Type signature; the named check must say so.
PLANTS = [
    (
        "LsaNtStatusToWinError(uint status)",
        "LsaNtStatusToWinError(ulong status)",
        "LsaNtStatusToWinError",
        shape_problems,
    ),
    ("out IntPtr buffer, out int count);", "out IntPtr buffer);", "error CS", None),
    ("[MarshalAs(UnmanagedType.U1)] bool AllRights", "bool AllRights", "LsaRemoveAccountRights", shape_problems),
    (
        "public int Count; public long Luid; public int Attr;",
        "public int Count; public long Luid; public long Attr;",
        "TokPriv1Luid",
        shape_problems,
    ),
    (
        "public static string[] Holders(string right)",
        "public static string[] Holders(string right, int limit)",
        "stale",
        surface_problems,
    ),
    ("int logonType, int provider", "long logonType, int provider", "LogonUser", shape_problems),
    (
        "public static void Add(string sid, string right) {",
        "public static void Add(string sid, string right) { int unused;",
        "CS0168",
        None,
    ),
]


@pytest.mark.parametrize(("old", "new", "named", "checker"), PLANTS, ids=[p[2] for p in PLANTS])
def test_a_broken_add_type_signature_is_reported(tmp_path, old, new, named, checker) -> None:
    source = native_source()
    assert old in source, "the plant's anchor left the C#: update the plant"
    done = compile_and_probe(source.replace(old, new, 1), tmp_path)
    if checker is None:
        assert done.returncode != 0
        assert named in done.stdout + done.stderr
        return
    assert done.returncode == 0, done.stdout + done.stderr
    assert any(named in p for p in checker(done.stdout)), checker(done.stdout)
