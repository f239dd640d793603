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
