"""Numeric access masks, generic-right mapping and coverage.

Rights are always compared as numbers (DESIGN.md): names differ between .NET, icacls and
the SDDL, and read-back masks carry bits nobody asked for. A rule is met when the observed
mask *covers* the wanted one, `(have & want) == want`; extra bits never cause drift.

Deny masks (decision): we deny `ReadAndExecute` WITHOUT `Synchronize` (0x0200A9), exactly
what .NET writes for a Deny rule (`FileSystemAccessRule.AccessMaskFromRights` strips
Synchronize from denies other than FullControl). Denying SYNCHRONIZE is pointless (FILE_EXECUTE
alone stops process creation) and would make a .NET-written deny look like drift. Because
coverage is used, a deny written with Synchronize (0x1200A9, e.g. by another tool) also
satisfies the rule.
"""

from __future__ import annotations

from typing import Final

from lockdown.rules.vocabulary import AccessName

SYNCHRONIZE: Final = 0x00100000

# Generic rights (high bits). Windows stores them in inheritable ACEs (typically CREATOR
# OWNER and the inherit-only halves of default DACLs); they must be mapped before comparing.
GENERIC_READ: Final = 0x80000000
GENERIC_WRITE: Final = 0x40000000
GENERIC_EXECUTE: Final = 0x20000000
GENERIC_ALL: Final = 0x10000000
_GENERIC_BITS: Final = GENERIC_READ | GENERIC_WRITE | GENERIC_EXECUTE | GENERIC_ALL

# File system (FileSystemRights, with Synchronize as .NET reads back an Allow).
FILE_READ: Final = 0x00120089  # Read = FILE_GENERIC_READ
FILE_WRITE: Final = 0x00120116  # Write = FILE_GENERIC_WRITE
FILE_READ_WRITE: Final = FILE_READ | FILE_WRITE  # 0x12019F
FILE_READ_EXECUTE: Final = 0x001200A9  # ReadAndExecute
FILE_FULL: Final = 0x001F01FF  # FullControl
FILE_DENY_READ_EXECUTE: Final = FILE_READ_EXECUTE & ~SYNCHRONIZE  # 0x0200A9, see module doc
FILE_GENERIC_EXECUTE: Final = 0x001200A0

# Registry (RegistryRights).
KEY_READ: Final = 0x00020019  # ReadKey
KEY_WRITE: Final = 0x00020006
KEY_FULL: Final = 0x000F003F  # FullControl

_FILE_GENERIC_MAP: Final = {
    GENERIC_READ: FILE_READ,
    GENERIC_WRITE: FILE_WRITE,
    GENERIC_EXECUTE: FILE_GENERIC_EXECUTE,
    GENERIC_ALL: FILE_FULL,
}
_KEY_GENERIC_MAP: Final = {
    GENERIC_READ: KEY_READ,
    GENERIC_WRITE: KEY_WRITE,
    GENERIC_EXECUTE: KEY_READ,  # KEY_EXECUTE == KEY_READ
    GENERIC_ALL: KEY_FULL,
}

_FILE_ALLOW: Final = {
    AccessName.READ: FILE_READ,
    AccessName.READ_WRITE: FILE_READ_WRITE,
    AccessName.READ_EXECUTE: FILE_READ_EXECUTE,
    AccessName.FULL: FILE_FULL,
}
_KEY_ALLOW: Final = {
    AccessName.READ: KEY_READ,
    AccessName.FULL: KEY_FULL,
}
_FILE_DENY: Final = {
    AccessName.READ_EXECUTE: FILE_DENY_READ_EXECUTE,
    AccessName.FULL: FILE_FULL,
}


def file_allow_mask(access: AccessName) -> int:
    """Mask granted by a file or folder Allow rule."""
    return _FILE_ALLOW[access]


def file_deny_mask(access: AccessName) -> int:
    """Mask denied by a file Deny rule (without Synchronize, see the module docstring)."""
    return _FILE_DENY[access]


def registry_allow_mask(access: AccessName) -> int:
    """Mask granted by a registry key Allow rule."""
    return _KEY_ALLOW[access]


def allowed_file_access(access: AccessName) -> bool:
    """Whether `access` has a file Allow mask."""
    return access in _FILE_ALLOW


def allowed_file_deny(access: AccessName) -> bool:
    """Whether `access` has a file Deny mask."""
    return access in _FILE_DENY


def allowed_registry_access(access: AccessName) -> bool:
    """Whether `access` has a registry mask."""
    return access in _KEY_ALLOW


def map_generic(mask: int, *, registry: bool) -> int:
    """Replace GENERIC_* bits with the specific file or registry rights they stand for."""
    table = _KEY_GENERIC_MAP if registry else _FILE_GENERIC_MAP
    specific = mask & ~_GENERIC_BITS
    for generic, mapped in table.items():
        if mask & generic:
            specific |= mapped
    return specific


def covers(have: int, want: int) -> bool:
    """True when every bit of `want` is in `have` (extra bits are fine)."""
    return (have & want) == want


def format_mask(mask: int) -> str:
    """`0x001200A9`, the spelling used in reasons and reports."""
    return f"0x{mask:08X}"


# --- Rights in words (reports, pages): the names Windows' Security tab uses -----------------
FILE_MODIFY: Final = 0x001301BF  # Modify = ReadAndExecute | Write | Delete
_FILE_NAMED: Final = (
    (FILE_FULL, "Full control"),
    (FILE_MODIFY, "Modify"),
    (FILE_READ_WRITE | FILE_READ_EXECUTE, "Read, write & execute"),
    (FILE_READ_WRITE, "Read & write"),
    (FILE_READ_EXECUTE, "Read & execute"),
    (FILE_DENY_READ_EXECUTE, "Read & execute"),
    (FILE_READ, "Read"),
    (FILE_WRITE, "Write"),
)
_KEY_NAMED: Final = (
    (KEY_FULL, "Full control"),
    (KEY_READ | KEY_WRITE, "Read & write"),
    (KEY_READ, "Read"),
    (KEY_WRITE, "Write"),
)
_COMMON_BITS: Final = (
    (0x00010000, "Delete"),
    (0x00020000, "Read permissions"),
    (0x00040000, "Change permissions"),
    (0x00080000, "Take ownership"),
)
_FILE_BITS: Final = (
    (0x0001, "List folder / read data"),
    (0x0002, "Create files / write data"),
    (0x0004, "Create folders / append data"),
    (0x0008, "Read extended attributes"),
    (0x0010, "Write extended attributes"),
    (0x0020, "Traverse folder / execute file"),
    (0x0040, "Delete subfolders and files"),
    (0x0080, "Read attributes"),
    (0x0100, "Write attributes"),
    *_COMMON_BITS,
)
_KEY_BITS: Final = (
    (0x0001, "Query value"),
    (0x0002, "Set value"),
    (0x0004, "Create subkey"),
    (0x0008, "Enumerate subkeys"),
    (0x0010, "Notify"),
    (0x0020, "Create link"),
    *_COMMON_BITS,
)


def rights_in_words(mask: int, *, registry: bool) -> str:
    """`0x001200A9` -> "Read & execute"; `0x001200AB` -> "Read & execute, plus Create files / write data".

    Generic bits are mapped first; Synchronize is never named on its own (every Allow carries it).
    Bits no name covers stay as a number, so nothing is hidden."""
    mask = map_generic(mask, registry=registry)
    if mask & ~SYNCHRONIZE == 0:
        return "No access" if mask == 0 else "Synchronize only"
    named, bits = (_KEY_NAMED, _KEY_BITS) if registry else (_FILE_NAMED, _FILE_BITS)
    words: list[str] = []
    rest = mask & ~SYNCHRONIZE
    for value, name in named:
        if covers(mask, value & ~SYNCHRONIZE):
            words.append(name)
            rest &= ~value
            break
    extra = [name for value, name in bits if rest & value]
    for value, _name in bits:
        rest &= ~value
    if rest:
        extra.append(f"other rights {format_mask(rest)}")
    if not words:
        return ", ".join(extra)
    return words[0] + (", plus " + ", ".join(extra) if extra else "")
