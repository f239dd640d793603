"""HKLM with its security descriptors, values, and the 64-bit / 32-bit (WOW6432Node) views."""

from __future__ import annotations

from collections.abc import Sequence

from winlab.windows import security as sec
from winlab.windows import sids
from winlab.windows.context import HostContext
from winlab.windows.errors import ERROR_ACCESS_DENIED, ERROR_FILE_NOT_FOUND, Win32Error
from winlab.windows.tokens import Token
from winlab.windows.tree import Node, RegData, RegValue, SecuredTree, SetSecurityResult, normalize

A = sec.allow
F = sec.AceFlags
HKLM = "HKLM"
ALIASES = {"hkey_local_machine": HKLM, "hklm:": HKLM, "hklm": HKLM}


def canonical_path(path: str) -> str:
    """``HKLM:\\SOFTWARE\\x`` / ``HKEY_LOCAL_MACHINE\\SOFTWARE\\x`` -> ``HKLM\\SOFTWARE\\x``."""
    parts = normalize(path).split("\\")
    parts[0] = ALIASES.get(parts[0].lower(), parts[0])
    return "\\".join(parts)


def view_path(path: str, view: int) -> str:
    """Where a path lands in the given registry view (KEY_WOW64_32KEY redirects HKLM\\SOFTWARE)."""
    if view not in (32, 64):
        raise ValueError("view must be 32 or 64")
    canon = canonical_path(path)
    parts = canon.split("\\")
    software = len(parts) >= 2 and parts[0] == HKLM and parts[1].lower() == "software"
    if view == 32 and software and (len(parts) == 2 or parts[2].lower() != "wow6432node"):
        return "\\".join([HKLM, parts[1], "WOW6432Node", *parts[2:]])
    return canon


class RegistryKey:
    """An open key handle (RegOpenKeyEx result): the access granted at open decides what it may do."""

    def __init__(self, registry: Registry, node: Node, token: Token | None, access: int, view: int) -> None:
        self._registry = registry
        self._node = node
        self.token = token
        self.access = access
        self.view = view

    @property
    def path(self) -> str:
        return self._node.path

    def _need(self, right: int) -> None:
        if self.token is not None and self.access & right != right:
            raise Win32Error(ERROR_ACCESS_DENIED, self.path)

    def value_names(self) -> list[str]:
        self._need(sec.KEY_QUERY_VALUE)
        return sorted((v for v in self._node.values), key=str.lower)

    def get_value(self, name: str) -> RegValue:
        self._need(sec.KEY_QUERY_VALUE)
        for key, value in self._node.values.items():
            if key.lower() == name.lower():
                return value
        raise Win32Error(ERROR_FILE_NOT_FOUND, f"{self.path}\\{name}")

    def get(self, name: str, default: RegData | None = None) -> RegData | None:
        try:
            return self.get_value(name).data
        except Win32Error as exc:
            if exc.code == ERROR_FILE_NOT_FOUND:
                return default
            raise

    def set_value(self, name: str, data: RegData, type: str = "REG_SZ") -> bool:
        """Write a value; returns False (and counts nothing) when it already holds exactly that."""
        self._need(sec.KEY_SET_VALUE)
        value = RegValue(type, data)
        existing = [k for k in self._node.values if k.lower() == name.lower()]
        if existing and self._node.values[existing[0]] == value:
            return False
        for k in existing:
            del self._node.values[k]
        self._node.values[name] = value
        self._registry.tree.ctx.mutated("registry.set_value", f"{self.path}\\{name}")
        return True

    def delete_value(self, name: str) -> None:
        self._need(sec.KEY_SET_VALUE)
        existing = [k for k in self._node.values if k.lower() == name.lower()]
        if not existing:
            raise Win32Error(ERROR_FILE_NOT_FOUND, f"{self.path}\\{name}")
        del self._node.values[existing[0]]
        self._registry.tree.ctx.mutated("registry.delete_value", f"{self.path}\\{name}")

    def subkey_names(self) -> list[str]:
        self._need(sec.KEY_ENUMERATE_SUB_KEYS)
        return sorted((c.name for c in self._node.children.values()), key=str.lower)


class Registry:
    """HKLM. Open keys through a view: ``open(path, view=32)`` is what a 32-bit program sees."""

    def __init__(self, ctx: HostContext, root_sd: sec.SecurityDescriptor) -> None:
        root = Node(name=HKLM, kind=sec.ObjectKind.REGISTRY_KEY, sd=root_sd)
        self.tree = SecuredTree(ctx, root, registry=True, cost_seconds=ctx.registry_cost_seconds, label="registry")

    def resolve(self, path: str, view: int = 64) -> str:
        return view_path(path, view)

    def exists(self, path: str, view: int = 64) -> bool:
        return self.tree.exists(self.resolve(path, view))

    def open(self, path: str, view: int = 64, token: Token | None = None, access: int = sec.KEY_READ) -> RegistryKey:
        node = self.tree.node(self.resolve(path, view))
        if token is not None:
            granted = sec.granted_access(node.sd, token, node.kind)
            wanted = sec.KEY_MAPPING.map(access)
            if wanted & ~granted:
                raise Win32Error(ERROR_ACCESS_DENIED, node.path)
        return RegistryKey(self, node, token, sec.KEY_MAPPING.map(access), view)

    def create_key(
        self,
        path: str,
        view: int = 64,
        token: Token | None = None,
        *,
        explicit: Sequence[sec.Ace] = (),
        protected: bool = False,
        owner: str | None = None,
    ) -> RegistryKey:
        """RegCreateKeyEx: creates missing keys along the path (each needs KEY_CREATE_SUB_KEY on its parent)."""
        target = self.resolve(path, view)
        parts = target.split("\\")
        node = self.tree.root
        for i, part in enumerate(parts[1:], start=1):
            child = node.children.get(part.lower())
            if child is None:
                last = i == len(parts) - 1
                child = self.tree.create(
                    f"{node.path}\\{part}",
                    sec.ObjectKind.REGISTRY_KEY,
                    token,
                    explicit=explicit if last else (),
                    protected=protected if last else False,
                    owner=owner if last else None,
                )
            node = child
        return RegistryKey(self, node, token, sec.KEY_ALL_ACCESS, view)

    def delete_key(self, path: str, view: int = 64, token: Token | None = None, *, recursive: bool = False) -> None:
        self.tree.delete(self.resolve(path, view), token, recursive=recursive)

    def get_sd(self, path: str, view: int = 64, token: Token | None = None) -> sec.SecurityDescriptor:
        return self.tree.get_sd(self.resolve(path, view), token)

    def get_sddl(self, path: str, view: int = 64, token: Token | None = None) -> str:
        return sec.to_sddl(self.get_sd(path, view, token))

    def set_dacl(
        self,
        path: str,
        dacl: Sequence[sec.Ace],
        token: Token | None,
        *,
        view: int = 64,
        protected: bool | None = None,
    ) -> SetSecurityResult:
        return self.tree.set_security(self.resolve(path, view), token, dacl=dacl, protected=protected)

    def set_owner(self, path: str, owner: str, token: Token | None, *, view: int = 64) -> SetSecurityResult:
        return self.tree.set_security(self.resolve(path, view), token, owner=owner)

    def add_access_rule(self, path: str, ace: sec.Ace, token: Token | None, *, view: int = 64) -> SetSecurityResult:
        return self.tree.add_access_rule(self.resolve(path, view), ace, token)

    def remove_access_rule(self, path: str, ace: sec.Ace, token: Token | None, *, view: int = 64) -> SetSecurityResult:
        return self.tree.remove_access_rule(self.resolve(path, view), ace, token)

    def restore_sddl(self, path: str, sddl: str, token: Token | None, *, view: int = 64) -> SetSecurityResult:
        return self.tree.restore_sddl(self.resolve(path, view), sddl, token)

    def can(self, path: str, token: Token, desired: int, *, view: int = 64) -> bool:
        return self.tree.can(self.resolve(path, view), token, desired)

    def inject_fault(self, path: str, code: int, *, view: int = 64) -> None:
        self.tree.faults[self.resolve(path, view).lower()] = code

    def count(self, path: str, view: int = 64) -> int:
        return self.tree.count(self.resolve(path, view))


def hive_sd(*, app_packages: bool) -> sec.SecurityDescriptor:
    """HKLM\\SOFTWARE and HKLM\\SYSTEM: protected; SYSTEM/Administrators full, Users read (inherited by subkeys)."""
    dacl = [
        A(sids.CREATOR_OWNER, sec.KEY_ALL_ACCESS, F.CI | F.IO),
        A(sids.LOCAL_SYSTEM, sec.KEY_ALL_ACCESS, F.CI),
        A(sids.ADMINISTRATORS, sec.KEY_ALL_ACCESS, F.CI),
        A(sids.USERS, sec.KEY_READ, F.CI),
    ]
    if app_packages:
        dacl.append(A(sids.ALL_APPLICATION_PACKAGES, sec.KEY_READ, F.CI))
    return sec.SecurityDescriptor(owner=sids.ADMINISTRATORS, group=sids.LOCAL_SYSTEM, dacl=tuple(dacl), protected=True)


def trustedinstaller_key_sd() -> sec.SecurityDescriptor:
    """A servicing key (e.g. Component Based Servicing): TrustedInstaller full, everyone else read, protected."""
    dacl = (
        A(sids.TRUSTED_INSTALLER, sec.KEY_ALL_ACCESS, F.CI),
        A(sids.LOCAL_SYSTEM, sec.KEY_READ, F.CI),
        A(sids.ADMINISTRATORS, sec.KEY_READ, F.CI),
        A(sids.USERS, sec.KEY_READ, F.CI),
    )
    return sec.SecurityDescriptor(owner=sids.TRUSTED_INSTALLER, group=sids.TRUSTED_INSTALLER, dacl=dacl, protected=True)
