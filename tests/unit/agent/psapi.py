"""What .NET surface the agent's PowerShell uses, read from its syntax tree (tree-sitter-powershell).

`uses(path)` lists every place a .ps1 names a .NET type or member:
- type literals (`[System.IO.File]`, `[byte[]]`, casts, `-is [T]`) and `New-Object -TypeName T`;
- static members: `[T]::Member(args)` (a method with that many arguments) and `[T]::Member`
  (a property, field or enum value);
- constructors: `New-Object -TypeName T -ArgumentList ...` (its argument count);
- instance members on a value whose type is known from its assignment (`$x = New-Object T`,
  `$x = [T]::Create(...)`, `$x = [T]$y`, `[T]$Parameter`, `$x = $known.Method()`): `$x.Method(args)`,
  `$x.Property`, and `$x.Property = value` (which must be settable).

`check(use, surface)` answers whether the committed surface (lockdown/agent/surface/dotnet.json)
has it with that arity. Type names resolve as PowerShell resolves them (TypeResolver.cs in
PowerShell/PowerShell): a scope type, a built-in accelerator, then the name in the loaded
assemblies case-insensitively, then with the implied `using namespace System` ("System." + name).
Member names bind case-insensitively (PowerShell's .NET adapter).

Values whose members PowerShell adapts at run time (hashtables and ordered dictionaries, whose keys
read as properties; PSObject/PSCustomObject; ADSI's DirectoryEntry; CIM instances; System.Object)
are not checked member by member: there the surface says nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import tree_sitter

from tests.unit.agent.pstree import parse, text_of, walk

# Single-child wrappers the grammar puts around every expression.
_WRAPPERS = {
    "pipeline",
    "pipeline_chain",
    "logical_expression",
    "bitwise_expression",
    "comparison_expression",
    "additive_expression",
    "multiplicative_expression",
    "format_expression",
    "range_expression",
    "array_literal_expression",
    "unary_expression",
    "expression_with_unary_operator",
    "argument_expression",
    "logical_argument_expression",
    "bitwise_argument_expression",
    "comparison_argument_expression",
    "additive_argument_expression",
    "multiplicative_argument_expression",
    "format_argument_expression",
    "range_argument_expression",
    "statement_list",
    "left_assignment_expression",
}

# Members PowerShell gives every object (about_Intrinsic_Members; Count/Length since 3.0:
# about_Properties, "Properties of scalar objects and collections"): not .NET members.
INTRINSIC_MEMBERS = {"count", "length", "psobject", "psbase", "pstypenames", "foreach", "where"}

# Types whose members PowerShell adapts (keys as properties, ADSI/CIM/WMI adapters, PSObject):
# a member of these is not checked against the .NET surface.
ADAPTED_TYPES = {
    "System.Object",
    "System.Collections.Hashtable",
    "System.Collections.IDictionary",
    "System.Collections.Specialized.OrderedDictionary",
    "System.Management.Automation.PSObject",
    "System.Management.Automation.PSCustomObject",
    "System.DirectoryServices.DirectoryEntry",
    "Microsoft.Management.Infrastructure.CimInstance",
}


@dataclass(frozen=True)
class Use:
    """One use of the .NET surface. `kind`: type | static | ctor | instance | set."""

    kind: str
    type_name: str  # as written (resolved by check())
    member: str = ""
    arity: int | None = None  # arguments of a call; None for a property/field read
    line: int = 0
    file: str = ""

    def __str__(self) -> str:
        call = "" if self.arity is None else f"({self.arity} argument{'s' if self.arity != 1 else ''})"
        member = f"::{self.member}" if self.kind == "static" else f".{self.member}" if self.member else ""
        return f"{self.file}:{self.line}: {self.kind} [{self.type_name}]{member}{call}"


def core(node: tree_sitter.Node) -> tree_sitter.Node:
    """The expression inside the grammar's single-child wrappers and parentheses."""
    while True:
        named = [c for c in node.children if c.is_named]
        wrapper = node.type in _WRAPPERS and len(node.children) == 1
        if len(named) == 1 and (wrapper or node.type == "parenthesized_expression"):
            node = named[0]
        else:
            return node


def written_type(type_literal: tree_sitter.Node) -> str:
    spec = next(c for c in type_literal.children if c.type == "type_spec")
    return text_of(spec).replace(" ", "")


def element_type(name: str) -> str:
    name = name.strip()
    while name.endswith("[]"):
        name = name[:-2]
    return name


def argument_count(argument_list: tree_sitter.Node) -> int:
    expressions = [c for c in argument_list.children if c.type == "argument_expression_list"]
    if not expressions:
        return 0
    return sum(1 for c in expressions[0].children if c.type == "argument_expression")


def list_count(value: tree_sitter.Node) -> int:
    """How many arguments `-ArgumentList <value>` passes: `a, b` and `@(a, b)` are two, `(,x)` one."""
    node = core(value)
    if node.type == "array_expression":
        inner = [c for c in node.children if c.is_named]
        if not inner:
            return 0
        node = core(inner[0])
    if node.type == "array_literal_expression":
        return sum(1 for c in node.children if c.type == ",") + 1
    return 1


def _command_arguments(command: tree_sitter.Node) -> dict[str, list[tree_sitter.Node]]:
    """A command's named arguments: lower-case parameter name -> the argument nodes after it."""
    found: dict[str, list[tree_sitter.Node]] = {}
    current: str | None = None
    positional: list[tree_sitter.Node] = []
    for elements in (c for c in command.children if c.type == "command_elements"):
        for child in elements.children:
            if child.type == "command_argument_sep":
                continue
            if child.type == "command_parameter":
                current = text_of(child).lstrip("-").rstrip(":").lower()
                found.setdefault(current, [])
            elif current is not None and not found[current]:
                found[current].append(child)
            else:
                positional.append(child)
    found["<positional>"] = positional
    return found


def new_object_type(command: tree_sitter.Node) -> tuple[str, int] | None:
    if text_of(command.children[0]).lower() != "new-object":
        return None
    arguments = _command_arguments(command)
    names = arguments.get("typename") or arguments["<positional>"][:1]
    if not names:
        return None
    values = arguments.get("argumentlist")
    return text_of(names[0]), (list_count(values[0]) if values else 0)


class Surface:
    """The committed .NET surface (lockdown/agent/surface/dotnet.json)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.types: dict[str, dict[str, Any]] = data["types"]
        self._lower = {name.lower(): name for name in self.types}
        self.accelerators = {k.lower(): v for k, v in data["accelerators"].items()}

    def resolve(self, written: str) -> str | None:
        name = element_type(written)
        if "[" in name:  # a generic instance: List[string] -> its definition
            name = name.split("[", 1)[0] + "`" + str(name.count(",") + 1)
        for candidate in (self.accelerators.get(name.lower()), name, f"System.{name}"):
            if candidate and candidate.lower() in self._lower:
                return self._lower[candidate.lower()]
        return None

    def lineage(self, name: str) -> Iterator[dict[str, Any]]:
        """The type, its base classes and every interface it implements, each once."""
        queue, seen = [name], set()
        while queue:
            current = queue.pop(0)
            if current in seen or current not in self.types:
                continue
            seen.add(current)
            entry = self.types[current]
            yield entry
            queue.extend([entry["base"], *entry["interfaces"]] if entry["base"] else entry["interfaces"])

    def members(self, type_name: str, member: str, *, static: bool) -> list[dict[str, Any]]:
        wanted = member.lower()
        return [
            m
            for entry in self.lineage(type_name)
            for m in entry["members"]
            if m["name"].lower() == wanted and bool(m["static"]) == static and m["kind"] != "ctor"
        ]

    def ctors(self, type_name: str) -> list[dict[str, Any]]:
        return [m for m in self.types[type_name]["members"] if m["kind"] == "ctor"]


def fits(member: dict[str, Any], arity: int) -> bool:
    total = len(member["parameters"])
    if member["params_array"]:
        return arity >= member["required"]
    return member["required"] <= arity <= total


def member_type(surface: Surface, type_name: str, member: str, arity: int | None, *, static: bool) -> str | None:
    """The (return) type of a member use, when every matching overload agrees on it."""
    matches = surface.members(type_name, member, static=static)
    if arity is None:
        matches = [m for m in matches if m["kind"] in ("property", "field")]
    else:
        matches = [m for m in matches if m["kind"] == "method" and fits(m, arity)]
    results = {m["type"] for m in matches}
    if len(results) != 1:
        return None
    found = results.pop()
    return None if found.endswith("&") else found


def check(use: Use, surface: Surface) -> str | None:
    """None when the surface has `use`; otherwise what is wrong, in words."""
    resolved = surface.resolve(use.type_name)
    if resolved is None:
        return f"{use}: no type [{use.type_name}] in the .NET Framework 4.5 surface"
    if use.kind == "type" or resolved in ADAPTED_TYPES:
        return None
    if use.kind == "ctor" and use.type_name.endswith("[]"):
        if use.arity == 1:  # New-Object T[] n: an array of n elements (one length per rank)
            return None
        return f"{use}: an array type takes one length, not {use.arity}"
    if use.kind == "ctor":
        ctors = surface.ctors(resolved)
        struct = surface.types[resolved]["kind"] in ("struct", "enum")
        if use.arity == 0 and struct:
            return None
        if any(fits(c, use.arity or 0) for c in ctors):
            return None
        shapes = sorted({len(c["parameters"]) for c in ctors})
        return f"{use}: [{resolved}] has no constructor taking {use.arity} (it takes {shapes})"
    static = use.kind == "static"
    if not static and use.member.lower() in INTRINSIC_MEMBERS:
        return None
    found = surface.members(resolved, use.member, static=static)
    if not found:
        where = "static" if static else "instance"
        return f"{use}: [{resolved}] has no public {where} member {use.member}"
    if use.arity is None:
        readable = [m for m in found if m["kind"] in ("property", "field") or m["kind"] == "method"]
        if use.kind == "set" and not any(m.get("settable") for m in readable):
            return f"{use}: {resolved}.{use.member} cannot be set"
        return None
    methods = [m for m in found if m["kind"] == "method"]
    if any(fits(m, use.arity) for m in methods):
        return None
    if not methods and any(m["kind"] == "property" and m["type"] in surface.types for m in found):
        return None  # a delegate-typed property invoked: not used by the agent; accept
    shapes = sorted({len(m["parameters"]) for m in methods})
    return f"{use}: {resolved}.{use.member} takes {shapes} arguments, not {use.arity}"


class _Walker:
    def __init__(self, surface: Surface, file: str) -> None:
        self.surface = surface
        self.file = file
        self.found: list[Use] = []

    def use(
        self, kind: str, type_name: str, node: tree_sitter.Node, member: str = "", arity: int | None = None
    ) -> None:
        self.found.append(Use(kind, type_name, member, arity, node.start_point[0] + 1, self.file))

    def type_of(self, node: tree_sitter.Node, env: dict[str, str | None]) -> str | None:
        node = core(node)
        if node.type == "variable":
            return env.get(text_of(node).lower())
        if node.type == "cast_expression":
            literal = next(c for c in node.children if c.type == "type_literal")
            return self.surface.resolve(written_type(literal))
        if node.type == "command":
            created = new_object_type(node)
            return self.surface.resolve(created[0]) if created else None
        if node.type in ("invokation_expression", "member_access"):
            target, operator, member = node.children[0], text_of(node.children[1]), node.children[2]
            arguments = next((c for c in node.children if c.type == "argument_list"), None)
            arity = argument_count(arguments) if arguments is not None else None
            if operator == "::" and core(target).type == "type_literal":
                owner = self.surface.resolve(written_type(core(target)))
                static = True
            else:
                owner = self.type_of(target, env)
                static = False
            if owner is None or owner in ADAPTED_TYPES:
                return None
            return member_type(self.surface, owner, text_of(member), arity, static=static)
        return None

    def scan(self, body: tree_sitter.Node, env: dict[str, str | None]) -> None:
        """Record every use under `body`, typing variables from assignments in document order."""
        assigned: dict[str, set[str | None]] = {}
        for node in walk(body):
            if node.type == "assignment_expression":
                target = core(node.children[0])
                if target.type == "variable":
                    value = node.children[-1]
                    assigned.setdefault(text_of(target).lower(), set()).add(self.type_of(value, env))
                    kinds = assigned[text_of(target).lower()]
                    env[text_of(target).lower()] = next(iter(kinds)) if len(kinds) == 1 else None
                elif target.type == "cast_expression":
                    literal = next(c for c in target.children if c.type == "type_literal")
                    variable = next((c for c in walk(target) if c.type == "variable"), None)
                    if variable is not None:
                        env[text_of(variable).lower()] = self.surface.resolve(written_type(literal))
                elif target.type == "member_access" and text_of(target.children[1]) == ".":
                    owner = self.type_of(target.children[0], env)
                    if owner is not None:
                        self.use("set", owner, target, text_of(target.children[2]))
            elif node.type == "type_literal":
                self.use("type", written_type(node), node)
            elif node.type == "command":
                created = new_object_type(node)
                if created is not None:
                    self.use("ctor", created[0], node, arity=created[1])
            elif node.type in ("invokation_expression", "member_access"):
                self._member(node, env)

    def _member(self, node: tree_sitter.Node, env: dict[str, str | None]) -> None:
        target, operator, member = node.children[0], text_of(node.children[1]), node.children[2]
        if member.type != "member_name" or any(c.type != "simple_name" for c in member.children):
            return  # $x.$name: a dynamic member
        arguments = next((c for c in node.children if c.type == "argument_list"), None)
        arity = argument_count(arguments) if arguments is not None else None
        parent = node.parent
        assigned_to = parent is not None and parent.type == "left_assignment_expression"
        if operator == "::" and core(target).type == "type_literal":
            self.use("static", written_type(core(target)), node, text_of(member), arity)
        elif operator == "." and not assigned_to:
            owner = self.type_of(target, env)
            if owner is not None:
                self.use("instance", owner, node, text_of(member), arity)


def parameter_types(function: tree_sitter.Node, surface: Surface) -> dict[str, str | None]:
    env: dict[str, str | None] = {}
    for parameter in (n for n in walk(function) if n.type == "script_parameter"):
        variable = next(c for c in parameter.children if c.type == "variable")
        literals = [n for n in walk(parameter) if n.type == "type_literal"]
        env[text_of(variable).lower()] = surface.resolve(written_type(literals[0])) if literals else None
    return env


def uses(text: str, surface: Surface, file: str = "") -> list[Use]:
    """Every .NET use in a script, functions scanned one by one (each with its own variables)."""
    root = parse(text).root_node
    walker = _Walker(surface, file)
    functions = [n for n in walk(root) if n.type == "function_statement"]
    for function in functions:
        walker.scan(function, parameter_types(function, surface))
    inside = {(f.start_byte, f.end_byte) for f in functions}
    for statement in root.children[0].children if root.children else []:
        if (statement.start_byte, statement.end_byte) not in inside and statement.type != "function_statement":
            walker.scan(statement, {})
    unique: dict[tuple[str, str, str, int | None, int], Use] = {}
    for use in walker.found:
        unique.setdefault((use.kind, use.type_name, use.member, use.arity, use.line), use)
    return list(unique.values())
