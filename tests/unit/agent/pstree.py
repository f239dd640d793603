"""Syntax-tree helpers over the agent's PowerShell (tree-sitter-powershell).

What a function "does" is summarised as facts: `cmd:<command>` (lower-case), `member:<name>`
(method/property/static member), `type:<type name>` (type literals and New-Object -TypeName),
`finally:<cmd or member>` for calls inside a `finally` block, `var:<$variable>` (lower-case),
`str:<literal>` (quotes stripped) and `arg:<bare command argument>` (e.g. `-MethodName Change`).
A handler's facts include those of every agent function it calls, transitively, so shared
helpers count for each handler using them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import tree_sitter
import tree_sitter_powershell

LANGUAGE = tree_sitter.Language(tree_sitter_powershell.language())


def parse(text: str) -> tree_sitter.Tree:
    return tree_sitter.Parser(LANGUAGE).parse(text.encode("utf-8"))


def walk(node: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    yield node
    for child in node.children:
        yield from walk(child)


def text_of(node: tree_sitter.Node) -> str:
    return (node.text or b"").decode("utf-8")


def error_nodes(tree: tree_sitter.Tree) -> list[tuple[int, int]]:
    return [n.start_point for n in walk(tree.root_node) if n.type == "ERROR" or n.is_missing]


def normalise_type(name: str) -> str:
    name = name.strip().strip("[]").replace(" ", "")
    while name.endswith("[]"):
        name = name[:-2]
    return name


def command_names(root: tree_sitter.Node) -> list[str]:
    return [text_of(n) for n in walk(root) if n.type == "command_name"]


def type_names(root: tree_sitter.Node) -> list[str]:
    """Type literals `[Some.Type]` plus `New-Object -TypeName X` / `New-Object X` arguments."""
    found = [normalise_type(text_of(n.child_by_field_name("type") or n)) for n in walk(root) if n.type == "type_spec"]
    for node in walk(root):
        if node.type != "command" or text_of(node.children[0]).lower() != "new-object":
            continue
        for element in walk(node):
            if element.type == "generic_token":
                found.append(normalise_type(text_of(element)))
                break
    return found


@dataclass
class Function:
    name: str
    node: tree_sitter.Node
    body: tree_sitter.Node | None

    def own_facts(self) -> set[str]:
        root = self.body or self.node
        facts = {f"cmd:{c.lower()}" for c in command_names(root)}
        facts |= {f"type:{t}" for t in type_names(root)}
        facts |= {f"member:{text_of(n)}" for n in walk(root) if n.type == "member_name"}
        facts |= {f"var:{text_of(n).lower()}" for n in walk(root) if n.type == "variable"}
        facts |= {f"str:{text_of(n)[1:-1]}" for n in walk(root) if n.type == "string_literal"}
        facts |= {f"arg:{text_of(n)}" for n in walk(root) if n.type == "generic_token"}
        for clause in (n for n in walk(root) if n.type == "finally_clause"):
            facts |= {f"finally:{c.lower()}" for c in command_names(clause)}
            facts |= {f"finally:{text_of(n)}" for n in walk(clause) if n.type == "member_name"}
        return facts

    def calls(self) -> set[str]:
        root = self.body or self.node
        return {c.lower() for c in command_names(root)}


def functions(tree: tree_sitter.Tree) -> dict[str, Function]:
    found: dict[str, Function] = {}
    for node in walk(tree.root_node):
        if node.type == "function_statement":
            name = next(text_of(c) for c in node.children if c.type == "function_name")
            body = next((c for c in node.children if c.type == "script_block"), None)
            found[name.lower()] = Function(name, node, body)
    return found


def closure_facts(name: str, funcs: dict[str, Function]) -> set[str]:
    seen: set[str] = set()
    facts: set[str] = set()
    pending = [name.lower()]
    while pending:
        current = pending.pop()
        if current in seen or current not in funcs:
            continue
        seen.add(current)
        facts |= funcs[current].own_facts()
        pending.extend(funcs[current].calls())
    return facts


def blank_function(text: str, name: str) -> str:
    """The script with `name`'s body emptied (its braces kept): the mutation the tests must catch."""
    funcs = functions(parse(text))
    target = funcs[name.lower()]
    if target.body is None:
        return text
    raw = text.encode("utf-8")
    blanked = raw[: target.body.start_byte] + b"\n" + raw[target.body.end_byte :]
    return blanked.decode("utf-8")
