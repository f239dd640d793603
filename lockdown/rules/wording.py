"""Expected and observed state in words: access masks and well-known SIDs as people name them.

The engine compares numbers and SIDs (DESIGN.md) and writes them into its sentences
("effective 0x001200A9"); pages and reports show the same sentence with the numbers named
("effective Read & execute"). The evidence keeps the raw values.
"""

from __future__ import annotations

import re
from typing import Final

from lockdown.rules import masks, principals

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
    "S-1-5-32-546": "Guests",
    "S-1-5-4": "INTERACTIVE",
    "S-1-5-2": "NETWORK",
    "S-1-15-2-1": "ALL APPLICATION PACKAGES",
    "S-1-15-2-2": "ALL RESTRICTED APPLICATION PACKAGES",
}

# A right already named as .NET names it ("ReadKey (0x20019)") or a bare mask ("effective 0x001200A9"):
# either way the words Windows' Security tab uses replace it (`masks.rights_in_words`).
_NAMED_MASK_RE: Final = re.compile(
    r"(?:(?:ReadAndExecute without Synchronize|ReadAndExecute|FullControl|ReadKey|Read\|Write|Modify|Read|Write) )?"
    r"\((0x[0-9A-Fa-f]{1,8})\)|\b(0x[0-9A-Fa-f]{1,8})\b"
)
_SID_RE: Final = re.compile(r"\bS-1-\d{1,13}(?:-\d{1,10}){1,15}\b")
_BREAK_AFTER_RE: Final = re.compile(r"(?<=[\\/._])")


def sid_words(sid: str) -> str:
    """A well-known SID by name; a machine or domain account (S-1-5-21-…) by its last number (RID); any other
    SID as it is (its last number names no account: S-1-15-2-1 is no "RID 1")."""
    if sid in SID_NAMES:
        return SID_NAMES[sid]
    if sid.startswith("S-1-5-21-"):
        return f"account with RID {sid.rsplit('-', 1)[-1]}"
    return sid


def in_words(text: object, *, registry: bool) -> str:
    """`text` with every access mask and SID replaced by its name ("effective 0x001200A9 for S-1-5-32-545"
    -> "effective Read & execute for Users"). `registry`: the masks are a key's (their low bits differ)."""

    def rights(match: re.Match[str]) -> str:
        return masks.rights_in_words(int(match.group(1) or match.group(2), 16), registry=registry)

    words = _NAMED_MASK_RE.sub(rights, "" if text is None else str(text))
    return _SID_RE.sub(lambda m: sid_words(m.group(0)), words)


def is_registry_rule(rule_id: str) -> bool:
    """Whether a rule's masks are registry rights (its targets are keys)."""
    return rule_id.startswith("registry_acl")


def break_points(text: str) -> list[str]:
    """`text` cut after each path separator, dot and underscore, so a page can offer a line break there
    (`<wbr>`) instead of breaking a name mid-word. Joining the parts gives `text` back."""
    return [part for part in _BREAK_AFTER_RE.split(text) if part]
