"""Output-discipline lint and structure helpers over agent v2's PowerShell (tree-sitter-powershell).

A PowerShell function returns *everything* its statements leave in the pipeline, not just what
`return` names: an unvoided `$user.SetInfo()` (ADSI) adds a `$null` to the output and turns one
dictionary into an array (v1 review, defect #1). The lint walks every statement a function (or the
script's top level) executes — through if/elseif/else, loops and try/catch/finally, but not into
script-block arguments such as `ForEach-Object { ... }`, whose output is wanted — and reports each
statement that can emit a value. A statement is silent when it is:

- an assignment (`$x = ...`, `$null = ...`, `$h['k'] = ...`),
- a `[void]` cast of the whole statement,
- a pipeline whose last command is `Out-Null`,
- a call of a function of the same scripts that itself never returns a value (and is linted),
- control flow (`throw`, `break`, `continue`, a bare `return`), or a `return <value>`: in a
  primitive (`Invoke-FleetOp*`) only `return @{...}` or `return $variable` is allowed.

Everything else (a bare method call, command, expression, string, `switch`, ...) is a leak.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import tree_sitter

import lockdown.agent
from tests.unit.agent.pstree import Function, functions, parse, text_of, walk

AGENT_DIR = Path(lockdown.agent.__file__).parent
PRIMITIVES_PS1 = AGENT_DIR / "primitives.ps1"
EXECUTOR_PS1 = AGENT_DIR / "executor.ps1"
PRIMITIVE_PREFIX = "invoke-fleetop"
TOP_LEVEL = "<top level>"

_CLAUSES = {"elseif_clauses", "elseif_clause", "else_clause", "catch_clauses", "catch_clause", "finally_clause"}
_CONTROL = {"if_statement", "foreach_statement", "for_statement", "while_statement", "do_statement", "try_statement"}


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def op_function_name(op: str) -> str:
    """sd_read -> Invoke-FleetOpSdRead."""
    return "Invoke-FleetOp" + "".join(part.capitalize() for part in op.split("_"))


@dataclass(frozen=True)
class Leak:
    function: str
    line: int  # 1-based
    statement: str


@dataclass(frozen=True)
class Voiding:
    """A silencing the lint accepted: deleting text[start:end] makes the statement emit again."""

    function: str
    line: int
    start: int
    end: int


@dataclass
class LintResult:
    leaks: list[Leak] = field(default_factory=list)
    voidings: list[Voiding] = field(default_factory=list)


def _statement_list(block: tree_sitter.Node) -> list[tree_sitter.Node]:
    """Statements of a statement_block / script_block (its statement_list, possibly in a body)."""
    for child in block.children:
        if child.type == "statement_list":
            return list(child.named_children)
        if child.type == "script_block_body":
            return _statement_list(child)
    return []


def _blocks(statement: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    """The statement blocks a control statement runs (conditions are not descended into)."""
    for child in statement.children:
        if child.type == "statement_block":
            yield child
        elif child.type in _CLAUSES:
            yield from _blocks(child)


def _sole_expression(node: tree_sitter.Node) -> tree_sitter.Node:
    """Descend the single-child expression chain (pipeline_chain > logical_expression > ...)."""
    while node.named_child_count == 1 and node.type not in (
        "cast_expression",
        "hash_literal_expression",
        "command",
        "string_literal",
        "variable",
    ):
        node = node.named_children[0]
    return node


def _returns_value(func: Function) -> bool:
    root = func.body or func.node
    return any(
        n.type == "flow_control_statement" and n.children[0].type == "return" and n.named_child_count > 0
        for n in walk(root)
    )


def silent_functions(funcs: dict[str, Function]) -> set[str]:
    """Lower-case names of the functions that never `return` a value."""
    return {name for name, func in funcs.items() if not _returns_value(func)}


class _Linter:
    def __init__(self, silent: set[str], result: LintResult) -> None:
        self.silent = silent
        self.result = result

    def statements(self, name: str, nodes: list[tree_sitter.Node], *, primitive: bool) -> None:
        for node in nodes:
            self.statement(name, node, primitive=primitive)

    def leak(self, name: str, node: tree_sitter.Node) -> None:
        first_line = text_of(node).splitlines()[0] if text_of(node) else ""
        self.result.leaks.append(Leak(name, node.start_point[0] + 1, first_line.strip()))

    def void(self, name: str, node: tree_sitter.Node, start: int, end: int) -> None:
        self.result.voidings.append(Voiding(name, node.start_point[0] + 1, start, end))

    def statement(self, name: str, node: tree_sitter.Node, *, primitive: bool) -> None:
        kind = node.type
        if kind in ("comment", "function_statement", "empty_statement"):
            return
        if kind in _CONTROL:
            for block in _blocks(node):
                self.statements(name, _statement_list(block), primitive=primitive)
            return
        if kind == "flow_control_statement":
            self.flow(name, node, primitive=primitive)
            return
        if kind == "pipeline":
            self.pipeline(name, node)
            return
        self.leak(name, node)  # switch, trap, data, ... : not allowed in this agent

    def flow(self, name: str, node: tree_sitter.Node, *, primitive: bool) -> None:
        if node.children[0].type != "return" or node.named_child_count == 0 or not primitive:
            return
        value = _sole_expression(node.named_children[0])
        if value.type not in ("hash_literal_expression", "variable"):
            self.leak(name, node)

    def pipeline(self, name: str, node: tree_sitter.Node) -> None:
        first = node.named_children[0]
        if first.type == "assignment_expression":
            target = first.named_children[0]
            if text_of(target).strip().lower() == "$null":
                rhs = first.named_children[-1]
                self.void(name, node, first.start_byte, rhs.start_byte)
            return
        chain = first
        elements = [c for c in chain.children if c.type != "|"]
        last = elements[-1]
        if len(elements) > 1 and last.type == "command" and text_of(last.children[0]).lower() == "out-null":
            bar = next(c for c in reversed(chain.children) if c.type == "|")
            self.void(name, node, bar.start_byte, last.end_byte)
            return
        if len(elements) == 1:
            sole = _sole_expression(chain)
            if sole.type == "cast_expression" and text_of(sole).lower().startswith("[void]"):
                cast_type = sole.named_children[0]
                self.void(name, node, cast_type.start_byte, cast_type.end_byte)
                return
            if sole.type == "command":
                called = next((c for c in sole.children if c.type == "command_name"), None)
                if called is not None and text_of(called).lower() in self.silent:
                    return
        self.leak(name, node)


def lint(texts: list[str]) -> list[LintResult]:
    """One LintResult per script text; silent functions are known across all the texts."""
    trees = [parse(text) for text in texts]
    all_funcs: dict[str, Function] = {}
    for tree in trees:
        all_funcs.update(functions(tree))
    silent = silent_functions(all_funcs)
    results = []
    for tree in trees:
        result = LintResult()
        linter = _Linter(silent, result)
        for name, func in functions(tree).items():
            if func.body is None:
                continue
            linter.statements(func.name, _statement_list(func.body), primitive=name.startswith(PRIMITIVE_PREFIX))
        linter.statements(TOP_LEVEL, list(_top_statements(tree)), primitive=False)
        results.append(result)
    return results


def _top_statements(tree: tree_sitter.Node | tree_sitter.Tree) -> Iterator[tree_sitter.Node]:
    root = tree.root_node if isinstance(tree, tree_sitter.Tree) else tree
    for child in root.children:
        if child.type == "statement_list":
            yield from child.named_children


def lint_agent() -> tuple[LintResult, LintResult]:
    primitives, executor = lint([read(PRIMITIVES_PS1), read(EXECUTOR_PS1)])
    return primitives, executor


# --- structure helpers ---------------------------------------------------------------------------


def hash_keys(literal: tree_sitter.Node) -> list[str]:
    """The keys of a hash literal's own entries (not of nested literals)."""
    keys = []
    for body in (c for c in literal.children if c.type == "hash_literal_body"):
        for entry in (c for c in body.children if c.type == "hash_entry"):
            keys.append(text_of(entry.named_children[0]).strip("'\""))
    return keys


def hash_entries(literal: tree_sitter.Node) -> dict[str, tree_sitter.Node]:
    found = {}
    for body in (c for c in literal.children if c.type == "hash_literal_body"):
        for entry in (c for c in body.children if c.type == "hash_entry"):
            found[text_of(entry.named_children[0]).strip("'\"")] = _sole_expression(entry.named_children[-1])
    return found


def assignments(root: tree_sitter.Node, variable: str) -> list[tree_sitter.Node]:
    """Right-hand sides (sole expressions) of `<variable> = ...` under root (case-insensitive)."""
    found = []
    for node in walk(root):
        if node.type != "assignment_expression":
            continue
        if text_of(node.named_children[0]).strip().lower() == variable.lower():
            found.append(_sole_expression(node.named_children[-1]))
    return found


def returned_values(func: Function) -> list[tree_sitter.Node]:
    root = func.body or func.node
    return [
        _sole_expression(n.named_children[0])
        for n in walk(root)
        if n.type == "flow_control_statement" and n.children[0].type == "return" and n.named_child_count > 0
    ]


def comments(func: Function) -> list[str]:
    root = func.node
    return [text_of(n) for n in walk(root) if n.type == "comment"]


def line_count(func: Function) -> int:
    return func.node.end_point[0] - func.node.start_point[0] + 1


_ARG_MEMBER = re.compile(r"\$A\.(?!PSObject\b)([A-Za-z_][A-Za-z0-9_]*)", re.IGNORECASE)
_ARG_PROPERTY = re.compile(r"\$A\.PSObject\.Properties\['([A-Za-z_][A-Za-z0-9_]*)'\]", re.IGNORECASE)
_ARG_ANY = re.compile(r"\$A\b", re.IGNORECASE)


def args_read(func: Function) -> tuple[set[str], int]:
    """(names read as $A.<name> or $A.PSObject.Properties['<name>'], uses of $A that are neither)."""
    body = text_of(func.body) if func.body else ""
    body = re.sub(r"param\(\s*\$A\s*\)", "", body, count=1, flags=re.IGNORECASE)
    names = set(_ARG_MEMBER.findall(body)) | set(_ARG_PROPERTY.findall(body))
    other = len(_ARG_ANY.findall(body)) - len(_ARG_MEMBER.findall(body)) - len(_ARG_PROPERTY.findall(body))
    return names, other
