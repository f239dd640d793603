"""The C: volume: folders and files with security descriptors, and WOW64 file redirection."""

from __future__ import annotations

from collections.abc import Sequence

from winlab.windows import security as sec
from winlab.windows import sids
from winlab.windows.context import HostContext
from winlab.windows.errors import ERROR_PATH_NOT_FOUND, Win32Error
from winlab.windows.tokens import Token
from winlab.windows.tree import Node, SecuredTree, SetSecurityResult, normalize

SYSTEM32 = "C:\\Windows\\System32"
SYSWOW64 = "C:\\Windows\\SysWOW64"
SYSNATIVE = "C:\\Windows\\Sysnative"
# Folders the File System Redirector leaves alone for 32-bit processes (MS Learn, File System Redirector).
REDIRECTION_EXEMPT = ("catroot", "catroot2", "driverstore", "drivers\\etc", "logfiles", "spool")

A, D = sec.allow, sec.deny
F = sec.AceFlags
RX = sec.FILE_READ_EXECUTE


class FileSystem:
    """Files and folders of drive C:. Paths are case-insensitive, backslash-separated."""

    def __init__(self, ctx: HostContext, root_sd: sec.SecurityDescriptor) -> None:
        root = Node(name="C:", kind=sec.ObjectKind.DIRECTORY, sd=root_sd)
        self.tree = SecuredTree(ctx, root, registry=False, cost_seconds=ctx.acl_cost_seconds, label="fs")
        # Text of the few files whose content the model keeps (the agent's journal), by lower-cased path.
        self.contents: dict[str, str] = {}

    # --- paths --------------------------------------------------------------------------
    @staticmethod
    def redirect(path: str, *, wow64: bool) -> str:
        """The path a process really opens: 32-bit processes see SysWOW64 for System32; Sysnative for 64-bit."""
        norm = normalize(path)
        low = norm.lower()
        sys32 = SYSTEM32.lower()
        if wow64 and (low == sys32 or low.startswith(sys32 + "\\")):
            rest = norm[len(SYSTEM32) :].lstrip("\\")
            if any(rest.lower() == ex or rest.lower().startswith(ex + "\\") for ex in REDIRECTION_EXEMPT):
                return norm
            return SYSWOW64 + ("\\" + rest if rest else "")
        if low == SYSNATIVE.lower() or low.startswith(SYSNATIVE.lower() + "\\"):
            if not wow64:
                raise Win32Error(ERROR_PATH_NOT_FOUND, path)
            return SYSTEM32 + norm[len(SYSNATIVE) :]
        return norm

    def exists(self, path: str) -> bool:
        return self.tree.exists(path)

    def is_dir(self, path: str) -> bool:
        node = self.tree.find(path)
        return node is not None and node.kind is sec.ObjectKind.DIRECTORY

    def list_dir(self, path: str, token: Token | None = None) -> list[str]:
        node = self.tree.node(path)
        self.tree.require(node, token, sec.FILE_LIST_DIRECTORY)
        return sorted((c.name for c in node.children.values()), key=str.lower)

    def count(self, path: str) -> int:
        return self.tree.count(path)

    # --- security ------------------------------------------------------------------------
    def get_sd(self, path: str, token: Token | None = None) -> sec.SecurityDescriptor:
        return self.tree.get_sd(path, token)

    def get_sddl(self, path: str, token: Token | None = None) -> str:
        return sec.to_sddl(self.get_sd(path, token))

    def set_dacl(
        self, path: str, dacl: Sequence[sec.Ace], token: Token | None, *, protected: bool | None = None
    ) -> SetSecurityResult:
        return self.tree.set_security(path, token, dacl=dacl, protected=protected)

    def set_owner(self, path: str, owner: str, token: Token | None) -> SetSecurityResult:
        return self.tree.set_security(path, token, owner=owner)

    def set_protection(self, path: str, protected: bool, token: Token | None) -> SetSecurityResult:
        """SetAccessRuleProtection(protected, preserveInheritance=True) + Set-Acl."""
        sd = self.get_sd(path, token)
        return self.tree.set_security(path, token, dacl=sd.dacl, protected=protected)

    def add_access_rule(self, path: str, ace: sec.Ace, token: Token | None) -> SetSecurityResult:
        return self.tree.add_access_rule(path, ace, token)

    def remove_access_rule(self, path: str, ace: sec.Ace, token: Token | None) -> SetSecurityResult:
        return self.tree.remove_access_rule(path, ace, token)

    def restore_sddl(self, path: str, sddl: str, token: Token | None) -> SetSecurityResult:
        return self.tree.restore_sddl(path, sddl, token)

    def can(self, path: str, token: Token, desired: int) -> bool:
        return self.tree.can(path, token, desired)

    def inject_fault(self, path: str, code: int) -> None:
        """Make every security write, delete or move of ``path`` fail with ``code`` (e.g. 5 or 32)."""
        self.tree.faults[normalize(path).lower()] = code

    def clear_fault(self, path: str) -> None:
        self.tree.faults.pop(normalize(path).lower(), None)

    # --- content -------------------------------------------------------------------------
    def create_dir(
        self,
        path: str,
        token: Token | None = None,
        *,
        owner: str | None = None,
        explicit: Sequence[sec.Ace] = (),
        protected: bool = False,
        exist_ok: bool = False,
    ) -> Node:
        return self.tree.create(
            path,
            sec.ObjectKind.DIRECTORY,
            token,
            owner=owner,
            explicit=explicit,
            protected=protected,
            exist_ok=exist_ok,
        )

    def create_file(
        self,
        path: str,
        token: Token | None = None,
        *,
        owner: str | None = None,
        group: str | None = None,
        explicit: Sequence[sec.Ace] = (),
        protected: bool = False,
    ) -> Node:
        return self.tree.create(
            path, sec.ObjectKind.FILE, token, owner=owner, group=group, explicit=explicit, protected=protected
        )

    def makedirs(self, path: str) -> Node:
        """Create missing folders along ``path`` with inherited security only (build-time helper)."""
        parts = normalize(path).split("\\")
        node = self.tree.root
        for part in parts[1:]:
            child = node.children.get(part.lower())
            if child is None:
                child = self.tree.create(f"{node.path}\\{part}", sec.ObjectKind.DIRECTORY)
            node = child
        return node

    def delete(self, path: str, token: Token | None = None, *, recursive: bool = False) -> None:
        self.tree.delete(path, token, recursive=recursive)
        gone = normalize(path).lower()
        for key in [k for k in self.contents if k == gone or k.startswith(gone + "\\")]:
            del self.contents[key]

    def read_text(self, path: str) -> str | None:
        """The kept text of a file (None when the model keeps none or the file does not exist)."""
        return self.contents.get(normalize(path).lower()) if self.exists(path) else None

    def write_text(self, path: str, text: str, token: Token | None = None) -> None:
        """Create the file if missing (inheriting its folder's DACL) and replace its text."""
        if not self.exists(path):
            self.create_file(path, token)
        else:
            self.tree.require(self.tree.node(path), token, sec.FILE_WRITE_DATA)
        self.contents[normalize(path).lower()] = text
        self.tree.ctx.mutated("fs.write", normalize(path))

    def append_text(self, path: str, text: str, token: Token | None = None) -> None:
        """FileMode.Append: create the file if missing (inheriting its folder's DACL), add to its end."""
        if not self.exists(path):
            self.create_file(path, token)
        else:
            self.tree.require(self.tree.node(path), token, sec.FILE_APPEND_DATA)
        key = normalize(path).lower()
        self.contents[key] = (self.contents.get(key) or "") + text
        self.tree.ctx.mutated("fs.append", normalize(path))

    def move(self, src: str, dst_dir: str, token: Token | None = None) -> Node:
        return self.tree.move(src, dst_dir, token)


# --- default descriptors ----------------------------------------------------------------------
def system_file_sd(*, app_packages: bool, restricted_packages: bool) -> sec.SecurityDescriptor:
    """A System32/SysWOW64 file: owned by TrustedInstaller, protected, TI full and read+execute for the rest."""
    dacl = [
        A(sids.TRUSTED_INSTALLER, sec.FILE_ALL_ACCESS),
        A(sids.ADMINISTRATORS, RX),
        A(sids.LOCAL_SYSTEM, RX),
        A(sids.USERS, RX),
    ]
    if app_packages:
        dacl.append(A(sids.ALL_APPLICATION_PACKAGES, RX))
    if restricted_packages:
        dacl.append(A(sids.ALL_RESTRICTED_APPLICATION_PACKAGES, RX))
    return sec.SecurityDescriptor(
        owner=sids.TRUSTED_INSTALLER, group=sids.TRUSTED_INSTALLER, dacl=tuple(dacl), protected=True
    )


def system_folder_dacl(*, app_packages: bool, restricted_packages: bool) -> tuple[sec.Ace, ...]:
    """C:\\Windows, System32, SysWOW64, Program Files: TrustedInstaller-owned protected folders."""
    dacl = [
        A(sids.TRUSTED_INSTALLER, sec.FILE_ALL_ACCESS),
        A(sids.TRUSTED_INSTALLER, sec.GENERIC_ALL, F.CI | F.IO),
        A(sids.LOCAL_SYSTEM, sec.FILE_MODIFY),
        A(sids.LOCAL_SYSTEM, sec.GENERIC_ALL, F.OI | F.CI | F.IO),
        A(sids.ADMINISTRATORS, sec.FILE_MODIFY),
        A(sids.ADMINISTRATORS, sec.GENERIC_ALL, F.OI | F.CI | F.IO),
        A(sids.USERS, RX),
        A(sids.USERS, sec.GENERIC_READ | sec.GENERIC_EXECUTE, F.OI | F.CI | F.IO),
        A(sids.CREATOR_OWNER, sec.GENERIC_ALL, F.OI | F.CI | F.IO),
    ]
    if app_packages:
        dacl += [
            A(sids.ALL_APPLICATION_PACKAGES, RX),
            A(sids.ALL_APPLICATION_PACKAGES, sec.GENERIC_READ | sec.GENERIC_EXECUTE, F.OI | F.CI | F.IO),
        ]
    if restricted_packages:
        dacl += [
            A(sids.ALL_RESTRICTED_APPLICATION_PACKAGES, RX),
            A(sids.ALL_RESTRICTED_APPLICATION_PACKAGES, sec.GENERIC_READ | sec.GENERIC_EXECUTE, F.OI | F.CI | F.IO),
        ]
    return tuple(dacl)


def drive_root_sd() -> sec.SecurityDescriptor:
    """C:\\ on Server: Administrators/SYSTEM full, Users read+execute and create folders, CREATOR OWNER."""
    dacl = (
        A(sids.ADMINISTRATORS, sec.FILE_ALL_ACCESS, F.OI | F.CI),
        A(sids.LOCAL_SYSTEM, sec.FILE_ALL_ACCESS, F.OI | F.CI),
        A(sids.CREATOR_OWNER, sec.GENERIC_ALL, F.OI | F.CI | F.IO),
        A(sids.USERS, RX, F.OI | F.CI),
        A(sids.USERS, sec.FILE_APPEND_DATA, F.CI),
        A(sids.USERS, sec.FILE_WRITE_DATA, F.CI | F.IO),
    )
    return sec.SecurityDescriptor(owner=sids.TRUSTED_INSTALLER, group=sids.TRUSTED_INSTALLER, dacl=dacl)
