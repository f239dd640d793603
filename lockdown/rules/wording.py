"""Expected and observed state in words: access masks and well-known SIDs as people name them.

The engine compares numbers and SIDs (DESIGN.md) and writes them into its sentences
("effective 0x001200A9"); pages that list many servers at once show the same sentence with
the numbers named ("effective read & execute"). The evidence keeps the raw values.
"""

from __future__ import annotations

import re
from typing import Final

from lockdown.rules import masks, principals

# Exact masks the profile grants or denies, by the name Windows' security dialog gives them.
MASK_NAMES: Final[dict[int, str]] = {
    0: "no access",
    masks.FILE_READ: "read",
    masks.FILE_READ_EXECUTE: "read & execute",
    masks.FILE_DENY_READ_EXECUTE: "read & execute",
    masks.FILE_READ_WRITE: "read & write",
    masks.FILE_WRITE: "write",
    masks.FILE_FULL: "full control",
    masks.KEY_READ: "read key",
    masks.KEY_WRITE: "write key",
    masks.KEY_FULL: "full control of the key",
}
# Single bits, for masks that are not one of the above (what a grant lacks, an odd read-back).
# File-system meanings; the registry's low bits differ (query value, set value ...), so a
# registry mask outside MASK_NAMES reads a little file-ish, which the evidence resolves.
BIT_NAMES: Final[tuple[tuple[int, str], ...]] = (
    (0x00000001, "read data"),
    (0x00000002, "write data"),
    (0x00000004, "append data"),
    (0x00000008, "read extended attributes"),
    (0x00000010, "write extended attributes"),
    (0x00000020, "execute"),
    (0x00000040, "delete child"),
    (0x00000080, "read attributes"),
    (0x00000100, "write attributes"),
    (0x00010000, "delete"),
    (0x00020000, "read permissions"),
    (0x00040000, "change permissions"),
    (0x00080000, "take ownership"),
    (masks.SYNCHRONIZE, "synchronize"),
    (masks.GENERIC_ALL, "generic all"),
    (masks.GENERIC_EXECUTE, "generic execute"),
    (masks.GENERIC_WRITE, "generic write"),
    (masks.GENERIC_READ, "generic read"),
)
SID_NAMES: Final[dict[str, str]] = {
    principals.EVERYONE: "Everyone",
    principals.AUTHENTICATED_USERS: "Authenticated Users",
    principals.LOCAL_SYSTEM: "SYSTEM",
    principals.BUILTIN_ADMINISTRATORS: "Administrators",
    principals.BUILTIN_USERS: "Users",
    principals.TRUSTED_INSTALLER: "TrustedInstaller",
    "S-1-3-0": "CREATOR OWNER",
    "S-1-5-6": "SERVICE",
    "S-1-5-19": "LOCAL SERVICE",
    "S-1-5-20": "NETWORK SERVICE",
    "S-1-5-32-547": "Power Users",
    "S-1-5-32-551": "Backup Operators",
}

_MASK_RE: Final = re.compile(r"\b0x[0-9A-Fa-f]{1,8}\b")
# "ReadKey (0x20019)": the right is already named (as .NET names it), so its number just goes.
_NAMED_MASK_RE: Final = re.compile(r"\b([A-Z][A-Za-z]+) \(0x[0-9A-Fa-f]{1,8}\)")
_SID_RE: Final = re.compile(r"\bS-1-\d{1,13}(?:-\d{1,10}){1,15}\b")


def mask_words(mask: int) -> str:
    """ "read & execute" for 0x001200A9; unknown masks as the rights they hold, in bit order."""
    if mask in MASK_NAMES:
        return MASK_NAMES[mask]
    names = [name for bit, name in BIT_NAMES if mask & bit]
    leftover = mask & ~sum(bit for bit, _ in BIT_NAMES)
    if leftover:
        names.append(f"other rights ({masks.format_mask(leftover)})")
    return ", ".join(names)


def sid_words(sid: str) -> str:
    """A well-known SID by name; any other as the account it is, by its last number (RID)."""
    if sid in SID_NAMES:
        return SID_NAMES[sid]
    return f"account with RID {sid.rsplit('-', 1)[-1]}"


def in_words(text: str) -> str:
    """`text` with every hex access mask and SID replaced by its name."""
    text = _NAMED_MASK_RE.sub(r"\1", text)
    text = _MASK_RE.sub(lambda m: mask_words(int(m.group(0), 16)), text)
    return _SID_RE.sub(lambda m: sid_words(m.group(0)), text)
