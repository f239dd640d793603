"""A lint for StrictMode hazards in the agent (it runs under `Set-StrictMode -Version 2.0`).

What Windows PowerShell 5.1 does under strict mode 2 (System.Management.Automation's binders,
PSGetMemberBinder.PropertyDoesntExist / GetIDictionaryMember; the same logic is in
PowerShell/PowerShell src/System.Management.Automation/engine/runtime/Binding/Binders.cs):
- reading a property an object does not have throws PropertyNotFoundStrict — a JSON field the
  engine left out (`$A.view` when `view` is optional), a hashtable key that is absent, and *any*
  property of `$null`, `.Count` and `.Length` included;
- calling a method on `$null` throws InvokeMethodOnNull in every mode.

So a member access on a value that can be `$null` or lack the member needs a guard. Values this lint
treats as possibly `$null`: results of a command run with `-ErrorAction SilentlyContinue|Ignore`,
`.Owner` / `.Group` of a security descriptor (null when the descriptor has none: .NET
CommonObjectSecurity.GetOwner / RawSecurityDescriptor.Owner), `$null` itself, and `Get-FleetField
... -Default $null`. Optional contract arguments (`"name?"` in lockdown.engine.program.PRIMITIVES)
may be absent from the JSON. A use is guarded when it sits inside an `if`/`elseif` (or a `-and`
chain) whose condition names the value (`$null -ne $x`, `$x`, `$A.PSObject.Properties['view']`),
or after an `if` naming it that returns/throws, or after the variable is assigned again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import tree_sitter

from tests.unit.agent.psapi import core
from tests.unit.agent.pstree import parse, text_of, walk

MAYBE_NULL_MEMBERS = {"owner", "group"}


@dataclass(frozen=True)
class Hazard:
    line: int
    function: str
    text: str
    why: str

    def __str__(self) -> str:
        return f"{self.line}: {self.function}: {self.text} ({self.why})"


def _maybe_null_source(value: tree_sitter.Node) -> str | None:
    node = core(value)
    if node.type == "variable" and text_of(node).lower() == "$null":
        return "assigned $null"
    if node.type == "command":
        text = text_of(node)
        if re.search(r"-ErrorAction\s+(SilentlyContinue|Ignore)\b", text, re.IGNORECASE):
            return "a command run with -ErrorAction SilentlyContinue"
        if text_of(node.children[0]).lower() == "get-fleetfield" and re.search(r"-Default\s+\$null\b", text, re.I):
            return "Get-FleetField -Default $null"
    if node.type == "member_access" and text_of(node.children[2]).lower() in MAYBE_NULL_MEMBERS:
        return f".{text_of(node.children[2])} of a descriptor (null when it has none)"
    return None


def _conditions(node: tree_sitter.Node) -> list[str]:
    """The text of every condition that guards `node`: enclosing if/elseif conditions, `-and` left sides."""
    found = []
    child, parent = node, node.parent
    while parent is not None:
        if parent.type in ("if_statement", "elseif_clause"):
            condition = next((c for c in parent.children if c.type == "pipeline"), None)
            body = next((c for c in parent.children if c.type == "statement_block"), None)
            if condition is not None and body is not None and body.start_byte <= child.start_byte:
                found.append(text_of(condition))
        if parent.type == "logical_expression":
            for sibling in parent.children:
                if sibling.end_byte <= child.start_byte:
                    found.append(text_of(sibling))
        child, parent = parent, parent.parent
    return found


def _early_exits(node: tree_sitter.Node) -> list[tuple[int, str]]:
    """(byte, condition) of every `if (cond) { ... return|throw }` before `node` in its enclosing blocks."""
    found = []
    ancestor = node.parent
    while ancestor is not None:
        if ancestor.type == "statement_list":
            for statement in ancestor.children:
                if statement.end_byte > node.start_byte:
                    break
                if statement.type == "if_statement":
                    body = text_of(next((c for c in statement.children if c.type == "statement_block"), statement))
                    condition = next((c for c in statement.children if c.type == "pipeline"), None)
                    if condition is not None and re.search(r"\b(return|throw|continue|break)\b", body):
                        found.append((statement.end_byte, text_of(condition)))
        ancestor = ancestor.parent
    return found


def _names(condition: str, subject: str) -> bool:
    return re.search(re.escape(subject) + r"(?![\w])", condition, re.IGNORECASE) is not None


def hazards(text: str, optional_args: dict[str, set[str]] | None = None) -> list[Hazard]:
    """Unguarded member accesses on possibly-null values; `optional_args`: function -> optional arg names."""
    root = parse(text).root_node
    found: list[Hazard] = []
    for function in (n for n in walk(root) if n.type == "function_statement"):
        name = text_of(next(c for c in function.children if c.type == "function_name"))
        sources: dict[str, list[tuple[int, str | None]]] = {}
        for node in walk(function):
            if node.type == "assignment_expression" and core(node.children[0]).type == "variable":
                variable = text_of(core(node.children[0])).lower()
                sources.setdefault(variable, []).append((node.end_byte, _maybe_null_source(node.children[-1])))
        for node in walk(function):
            if node.type not in ("member_access", "invokation_expression") or text_of(node.children[1]) != ".":
                continue
            target = core(node.children[0])
            member = text_of(node.children[2])
            if target.type != "variable":
                continue
            variable = text_of(target).lower()
            why = None
            after = 0
            subject = text_of(target)
            if variable == "$a" and member.lower() in (optional_args or {}).get(name, set()):
                why = f"optional argument '{member}' may be absent from the program JSON"
                subject = f"PSObject.Properties['{member}']"
            else:
                earlier = [(end, why) for end, why in sources.get(variable, []) if end <= node.start_byte]
                if earlier and earlier[-1][1] is not None:
                    why = f"{text_of(target)} may be $null: {earlier[-1][1]}"
                    after = earlier[-1][0]
            if why is None:
                continue
            if node.parent is not None and node.parent.type == "left_assignment_expression" and variable == "$a":
                continue
            guarded = any(_names(c, subject) for c in _conditions(node))
            guarded = guarded or any(
                _names(c, subject) and (variable == "$a" or end >= after) for end, c in _early_exits(node)
            )
            if not guarded:
                found.append(Hazard(node.start_point[0] + 1, name, text_of(node), why))
    return found
