"""A tree of securable objects (folders/files or registry keys) with Windows inheritance.

Writing a DACL on a container re-derives the inherited ACEs of every descendant, as
SetNamedSecurityInfo does: each visited object costs clock time, each rewritten one counts
as work, protected children stop the walk, and a descendant the caller may not rewrite is
reported as a failure (the parent's own change stays applied).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

from winlab.windows import security as sec
from winlab.windows import sids
from winlab.windows.context import HostContext
from winlab.windows.errors import (
    ERROR_ACCESS_DENIED,
    ERROR_ALREADY_EXISTS,
    ERROR_DIR_NOT_EMPTY,
    ERROR_FILE_NOT_FOUND,
    ERROR_INVALID_OWNER,
    ERROR_PATH_NOT_FOUND,
    Win32Error,
)
from winlab.windows.tokens import Token

RegData = str | int | tuple[str, ...]


@dataclass(frozen=True)
class RegValue:
    """A registry value: its type name (REG_SZ, REG_DWORD, REG_MULTI_SZ, REG_EXPAND_SZ) and data."""

    type: str
    data: RegData


@dataclass(eq=False)
class Node:
    """One securable object. Children are keyed by lower-cased name (Windows names are case-insensitive)."""

    name: str
    kind: sec.ObjectKind
    sd: sec.SecurityDescriptor
    parent: Node | None = None
    children: dict[str, Node] = field(default_factory=dict)
    values: dict[str, RegValue] = field(default_factory=dict)

    @property
    def path(self) -> str:
        parts: list[str] = []
        node: Node | None = self
        while node is not None:
            parts.append(node.name)
            node = node.parent
        return "\\".join(reversed(parts))

    def walk(self) -> Iterator[Node]:
        """This node and all descendants, pre-order, children sorted by name."""
        yield self
        for key in sorted(self.children):
            yield from self.children[key].walk()


@dataclass
class SetSecurityResult:
    """What a security write did: whether the object changed, and the propagation it caused."""

    changed: bool
    visited: int = 0
    rewritten: int = 0
    failures: list[tuple[str, int]] = field(default_factory=list)


def normalize(path: str) -> str:
    parts = [p for p in path.replace("/", "\\").split("\\") if p]
    return "\\".join(parts)


class SecuredTree:
    """Objects addressed by backslash paths below one root (``C:`` or ``HKLM``)."""

    def __init__(self, ctx: HostContext, root: Node, *, registry: bool, cost_seconds: float, label: str) -> None:
        self.ctx = ctx
        self.root = root
        self.registry = registry
        self.cost_seconds = cost_seconds
        self.label = label
        # path (lower) -> Win32 code raised on any security write, delete or move of that object.
        self.faults: dict[str, int] = {}

    # --- lookup -----------------------------------------------------------------------------
    def find(self, path: str) -> Node | None:
        parts = normalize(path).split("\\")
        if parts[0].lower() != self.root.name.lower():
            return None
        node = self.root
        for part in parts[1:]:
            child = node.children.get(part.lower())
            if child is None:
                return None
            node = child
        return node

    def node(self, path: str) -> Node:
        found = self.find(path)
        if found is not None:
            return found
        if self.registry:
            raise Win32Error(ERROR_FILE_NOT_FOUND, path)
        parent = normalize(path).rsplit("\\", 1)[0]
        code = ERROR_FILE_NOT_FOUND if self.find(parent) is not None else ERROR_PATH_NOT_FOUND
        raise Win32Error(code, path)

    def exists(self, path: str) -> bool:
        return self.find(path) is not None

    def count(self, path: str) -> int:
        """Objects in the subtree at ``path`` (itself included)."""
        return sum(1 for _ in self.node(path).walk())

    # --- access -----------------------------------------------------------------------------
    def granted(self, path: str, token: Token, *, backup_intent: bool = False) -> int:
        node = self.node(path)
        return sec.granted_access(node.sd, token, node.kind, backup_intent=backup_intent)

    def can(self, path: str, token: Token, desired: int) -> bool:
        """Whether ``token`` may open ``path`` for ``desired`` (no privileges used)."""
        node = self.find(path)
        if node is None:
            return False
        return sec.access_check(node.sd, token, desired, node.kind)

    def require(self, node: Node, token: Token | None, desired: int, *, backup_intent: bool = False) -> None:
        if token is None:
            return
        if not sec.access_check(node.sd, token, desired, node.kind, backup_intent=backup_intent):
            raise Win32Error(ERROR_ACCESS_DENIED, node.path)

    def _check_fault(self, node: Node) -> None:
        code = self.faults.get(node.path.lower())
        if code is not None:
            raise Win32Error(code, node.path)

    # --- creation and deletion -------------------------------------------------------------
    def default_owner(self, token: Token | None) -> str:
        if token is None or token.user == sids.LOCAL_SYSTEM:
            return sids.LOCAL_SYSTEM if token is not None else sids.ADMINISTRATORS
        return sids.ADMINISTRATORS if token.is_admin else token.user

    def create(
        self,
        path: str,
        kind: sec.ObjectKind,
        token: Token | None = None,
        *,
        owner: str | None = None,
        group: str | None = None,
        explicit: Sequence[sec.Ace] = (),
        protected: bool = False,
        exist_ok: bool = False,
    ) -> Node:
        """Create an object; its DACL is ``explicit`` plus what it inherits from the parent."""
        norm = normalize(path)
        parent_path, _, name = norm.rpartition("\\")
        parent = self.node(parent_path)
        existing = parent.children.get(name.lower())
        if existing is not None:
            if exist_ok:
                return existing
            raise Win32Error(ERROR_ALREADY_EXISTS, norm)
        if self.registry:
            need = sec.KEY_CREATE_SUB_KEY
        else:
            need = sec.FILE_ADD_SUBDIRECTORY if kind is sec.ObjectKind.DIRECTORY else sec.FILE_ADD_FILE
        self.require(parent, token, need)
        sd = sec.SecurityDescriptor(
            owner=owner or self.default_owner(token),
            group=group if group is not None else parent.sd.group,
            dacl=tuple(a.explicit() for a in explicit),
            protected=protected,
        )
        node = Node(name=name, kind=kind, sd=sec.with_inheritance(sd, parent.sd.dacl, kind), parent=parent)
        parent.children[name.lower()] = node
        self.ctx.mutated(f"{self.label}.create", node.path)
        return node

    def delete(self, path: str, token: Token | None = None, *, recursive: bool = False) -> None:
        node = self.node(path)
        if node.parent is None:
            raise Win32Error(ERROR_ACCESS_DENIED, path)
        if node.children and not recursive:
            raise Win32Error(ERROR_DIR_NOT_EMPTY, path)
        self._check_fault(node)
        if token is not None and not (
            sec.access_check(node.sd, token, sec.DELETE, node.kind)
            or sec.access_check(node.parent.sd, token, sec.FILE_DELETE_CHILD, node.parent.kind)
        ):
            raise Win32Error(ERROR_ACCESS_DENIED, path)
        del node.parent.children[node.name.lower()]
        self.ctx.mutated(f"{self.label}.delete", node.path)

    def move(self, src: str, dst_dir: str, token: Token | None = None) -> Node:
        """MoveFile within a volume: the object keeps its security descriptor as it was."""
        node = self.node(src)
        target = self.node(dst_dir)
        assert node.parent is not None
        self._check_fault(node)
        if node.name.lower() in target.children:
            raise Win32Error(ERROR_ALREADY_EXISTS, f"{target.path}\\{node.name}")
        if token is not None:
            may_delete = sec.access_check(node.sd, token, sec.DELETE, node.kind) or sec.access_check(
                node.parent.sd, token, sec.FILE_DELETE_CHILD, node.parent.kind
            )
            need = sec.FILE_ADD_SUBDIRECTORY if node.kind.is_container else sec.FILE_ADD_FILE
            if not may_delete or not sec.access_check(target.sd, token, need, target.kind):
                raise Win32Error(ERROR_ACCESS_DENIED, src)
        del node.parent.children[node.name.lower()]
        node.parent = target
        target.children[node.name.lower()] = node
        return node

    # --- security descriptors --------------------------------------------------------------
    def get_sd(self, path: str, token: Token | None = None) -> sec.SecurityDescriptor:
        """GetNamedSecurityInfo for owner+group+DACL: needs READ_CONTROL (SeBackup helps)."""
        node = self.node(path)
        self.require(node, token, sec.READ_CONTROL, backup_intent=True)
        return node.sd

    def set_security(
        self,
        path: str,
        token: Token | None,
        *,
        owner: str | None = None,
        dacl: Sequence[sec.Ace] | None = None,
        protected: bool | None = None,
    ) -> SetSecurityResult:
        """SetNamedSecurityInfo for the owner and/or DACL (+ protection).

        ACEs flagged INHERITED in ``dacl`` are dropped and re-derived from the parent unless the
        DACL is (made) protected, in which case they are kept as explicit ACEs.
        """
        node = self.node(path)
        self._check_fault(node)
        old = node.sd
        new = old
        if owner is not None and owner != old.owner:
            self.require(node, token, sec.WRITE_OWNER, backup_intent=True)
            if token is not None and not token.has_enabled("SeRestorePrivilege"):
                allowed_owners = {token.user} | ({sids.ADMINISTRATORS} & token.groups)
                if owner not in allowed_owners:
                    raise Win32Error(ERROR_INVALID_OWNER, path)
            new = replace(new, owner=owner)
        if dacl is not None or protected is not None:
            self.require(node, token, sec.WRITE_DAC, backup_intent=True)
            is_protected = old.protected if protected is None else protected
            source = list(old.dacl) if dacl is None else list(dacl)
            if is_protected:
                explicit = tuple(a.explicit() for a in source)
            else:
                explicit = tuple(a for a in source if not a.inherited)
            parent_dacl = node.parent.sd.dacl if node.parent is not None else None
            new = sec.with_inheritance(replace(new, dacl=explicit, protected=is_protected), parent_dacl, node.kind)
        result = SetSecurityResult(changed=new != old)
        if result.changed:
            node.sd = new
            self.ctx.mutated(f"{self.label}.set_security", node.path)
        self.ctx.charge(self._cost(node), work=1 if result.changed else 0)
        if dacl is not None or protected is not None:
            # SetNamedSecurityInfo walks the whole subtree whenever a container's DACL is written.
            for child in self._sorted_children(node):
                self._propagate(child, token, result)
            self.ctx.charge(0.0, work=result.rewritten)
        return result

    def add_access_rule(self, path: str, ace: sec.Ace, token: Token | None) -> SetSecurityResult:
        """Get-Acl, AddAccessRule, Set-Acl (DACL only); a non-canonical DACL raises NonCanonicalAclError."""
        sd = self.get_sd(path, token)
        if not sec.is_canonical(sd.dacl):
            raise sec.NonCanonicalAclError(normalize(path))
        return self.set_security(path, token, dacl=sec.add_access_rule(sd.dacl, ace))

    def remove_access_rule(self, path: str, ace: sec.Ace, token: Token | None) -> SetSecurityResult:
        """Get-Acl, RemoveAccessRuleSpecific, Set-Acl (DACL only); a non-canonical DACL raises as .NET does."""
        sd = self.get_sd(path, token)
        if not sec.is_canonical(sd.dacl):
            raise sec.NonCanonicalAclError(normalize(path))
        return self.set_security(path, token, dacl=sec.remove_access_rule_specific(sd.dacl, ace))

    def restore_sddl(self, path: str, sddl: str, token: Token | None) -> SetSecurityResult:
        """SetSecurityDescriptorSddlForm(sddl, 'Access,Owner') then SetAccessControl."""
        sd = sec.from_sddl(sddl)
        return self.set_security(path, token, owner=sd.owner, dacl=sd.dacl, protected=sd.protected)

    def _cost(self, node: Node) -> float:
        return self.cost_seconds * self.ctx.io_factor(node.path)

    @staticmethod
    def _sorted_children(node: Node) -> list[Node]:
        return [node.children[k] for k in sorted(node.children)]

    def _propagate(self, node: Node, token: Token | None, result: SetSecurityResult) -> None:
        stack = [node]
        total_cost = 0.0
        while stack:
            current = stack.pop()
            if current.sd.protected:
                continue
            result.visited += 1
            total_cost += self._cost(current)
            fault = self.faults.get(current.path.lower())
            if fault is not None:
                result.failures.append((current.path, fault))
                continue
            if token is not None and not sec.access_check(
                current.sd, token, sec.WRITE_DAC, current.kind, backup_intent=True
            ):
                result.failures.append((current.path, ERROR_ACCESS_DENIED))
                continue
            assert current.parent is not None
            new = sec.with_inheritance(current.sd, current.parent.sd.dacl, current.kind)
            if new != current.sd:
                current.sd = new
                result.rewritten += 1
            stack.extend(reversed(self._sorted_children(current)))
        self.ctx.charge(total_cost)
