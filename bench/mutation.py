"""Mutation testing of the agent engine with mutmut (pinned in the dev extras and constraints.txt).

    .venv/bin/python bench/mutation.py                       # every engine module, 2 workers
    .venv/bin/python bench/mutation.py --modules sddl,health # a subset
    .venv/bin/python bench/mutation.py --report              # no run: read the last results

Configuration is `[tool.mutmut]` in pyproject.toml: the engine modules that are mutated and the
fast unit tests that run against each mutant (mutmut runs only the tests that reach the mutated
function, fastest first, and stops at the first failure). mutmut works in `mutants/` (git-ignored)
and keeps its verdicts there, so a second run only re-tests what changed; `--fresh` deletes it.

Prints killed / survived / timeout / no-test counts per module and overall, the score
(killed + timeout) / total, and each survivor as `file:line  mutant-name  - old / + new`; writes
`bench/results/mutation.json`.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MUTANTS = ROOT / "mutants"
# name -> the file mutated: the engine, and the framing that builds the agent's stdin and reads its output
FILES = {m: f"lockdown/engine/{m}.py" for m in ("sddl", "observe", "changes", "health", "driver", "program")}
FILES["framing"] = "lockdown/agent/__init__.py"
MODULES = tuple(FILES)


def _dotted(module: str) -> str:
    """mutmut's module name of a file (a package's __init__ is the package)."""
    return FILES[module].removesuffix(".py").removesuffix("/__init__").replace("/", ".")


STATUS: dict[int | None, str] = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests"}
STATUS |= {34: "skipped", 36: "timeout"}
STATUS |= {-24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout", 37: "type check", None: "not checked"}


def _mutmut() -> str:
    exe = Path(sys.executable).parent / "mutmut"
    return str(exe) if exe.exists() else "mutmut"


def _def_lines(source: str) -> dict[str, int]:
    """mutmut's mangled function names (`x_f`, `xǁClassǁmethod`) -> line of the `def` in the original."""
    out: dict[str, int] = {}
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            out[f"x_{node.name}"] = node.lineno
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    out[f"xǁ{node.name}ǁ{item.name}"] = item.lineno
    return out


def _body(lines: list[str]) -> list[str]:
    """The lines after the `def` (its name differs in every copy, so it is not compared)."""
    for n, line in enumerate(lines):
        if line.lstrip().startswith(("def ", "async def ")):
            return lines[n + 1 :]
    return lines


def _where(module: str, key: str, mutated: list[str], spans: dict[str, list[int]], defs: dict[str, int]) -> dict:
    """file:line and the changed lines of one mutant, from the mutated copy mutmut wrote."""
    func, _, _num = key.rpartition(".")[2].rpartition("__mutmut_")
    orig, mut = spans.get(f"{func}__mutmut_orig"), spans.get(key.rpartition(".")[2])
    out: dict[str, Any] = {"name": key, "file": FILES[module], "line": None, "old": "", "new": ""}
    if not orig or not mut:
        return out
    a, b = _body(mutated[orig[0] - 1 : orig[1]]), _body(mutated[mut[0] - 1 : mut[1]])
    base = defs.get(func.rsplit("__", 1)[0] if func.endswith("__") else func)
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            if base is not None:
                # both copies start at their `def` line; the original's def is at `base`
                out["line"] = base + 1 + i1
            out["old"] = " | ".join(x.strip() for x in a[i1:i2])
            out["new"] = " | ".join(x.strip() for x in b[j1:j2])
            break
    return out


def collect(modules: tuple[str, ...]) -> dict[str, Any]:
    per: dict[str, Counter[str]] = {}
    survivors: list[dict[str, Any]] = []
    timeouts: list[str] = []
    for module in modules:
        meta = MUTANTS / f"{FILES[module]}.meta"
        if not meta.exists():
            continue
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        counter: Counter[str] = Counter(STATUS.get(code, "suspicious") for code in codes.values())
        per[module] = counter
        bad = [k for k, c in codes.items() if STATUS.get(c, "suspicious") in ("survived", "no tests", "suspicious")]
        timeouts += [k for k, c in codes.items() if STATUS.get(c) == "timeout"]
        if bad:
            mutated = (MUTANTS / FILES[module]).read_text().splitlines()
            spans = json.loads((MUTANTS / f"{FILES[module]}.spans").read_text())["spans"]
            defs = _def_lines((ROOT / FILES[module]).read_text())
            for key in sorted(bad, key=lambda k: (k.rpartition("__mutmut_")[0], int(k.rpartition("_")[2]))):
                entry = _where(module, key, mutated, spans, defs)
                entry["status"] = STATUS.get(codes[key], "suspicious")
                survivors.append(entry)
    total: Counter[str] = sum(per.values(), Counter())
    n = sum(total.values())
    checked = n - total["not checked"]
    score = (total["killed"] + total["timeout"]) / checked if checked else 0.0
    return {"modules": {m: dict(c) for m, c in per.items()}, "total": dict(total), "mutants": n,
            "checked": checked, "score": score, "survivors": survivors, "timeouts": timeouts}  # fmt: skip


def print_report(data: dict[str, Any]) -> None:
    cols = ("killed", "survived", "timeout", "no tests", "suspicious", "not checked")
    print(f"{'module':<10}" + "".join(f"{c:>13}" for c in cols) + f"{'total':>8}")
    for module, counter in [*data["modules"].items(), ("all", data["total"])]:
        print(f"{module:<10}" + "".join(f"{counter.get(c, 0):>13}" for c in cols) + f"{sum(counter.values()):>8}")
    print(f"\nscore (killed + timeout) / checked = {data['score']:.1%} of {data['checked']} checked mutants")
    print(f"\nsurvivors ({len(data['survivors'])}):")
    for s in data["survivors"]:
        where = f"{s['file']}:{s['line']}" if s["line"] else s["file"]
        print(f"  {where:<28} {s['name']}  [{s['status']}]\n      - {s['old']}\n      + {s['new']}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modules", default=",".join(MODULES), help="comma-separated engine modules")
    ap.add_argument("--max-children", type=int, default=2, help="parallel mutant workers (cores)")
    ap.add_argument("--fresh", action="store_true", help="delete mutants/ first (forget earlier verdicts)")
    ap.add_argument("--report", action="store_true", help="only report the verdicts mutmut already has")
    args = ap.parse_args()
    modules = tuple(m.strip() for m in args.modules.split(",") if m.strip())
    unknown = set(modules) - set(MODULES)
    if unknown:
        ap.error(f"unknown module(s): {', '.join(sorted(unknown))}")
    started = time.monotonic()
    if not args.report:
        if args.fresh and MUTANTS.exists():
            shutil.rmtree(MUTANTS)
        # naming mutants makes mutmut re-test them all; with no names it keeps earlier verdicts
        globs = [] if set(modules) == set(MODULES) else [f"{_dotted(m)}.x*" for m in modules]
        cmd = [_mutmut(), "run", "--max-children", str(args.max_children), *globs]
        print("$", " ".join(cmd), flush=True)
        # mutmut's progress line redraws with \r; keep it off a captured log
        proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, check=False)
        if proc.returncode not in (0, 1):
            print(f"mutmut exited {proc.returncode}", file=sys.stderr)
            return proc.returncode
    data = collect(modules)
    data["seconds"] = round(time.monotonic() - started, 1)
    print_report(data)
    print(f"\n{data['seconds']} s")
    out = ROOT / "bench" / "results" / "mutation.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
