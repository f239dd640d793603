"""SDDL as Windows prints it (`GetSecurityDescriptorSddlForm`), parsed and written by the engine.

Independent of winlab's model on purpose: the engine must not share code with the emulated
Windows it is tested against. Grammar and aliases: Microsoft Learn, "Security Descriptor String
Format", "ACE Strings", "SID Strings" (learn.microsoft.com/windows/win32/secauthz/…).
Only the owner and the DACL are read (`sd_read` asks for the Owner and Access sections).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Final

from lockdown.rules.observed import Ace
from lockdown.rules.vocabulary import AceFlag, AceType

# SID string aliases ("SID Strings"); only those a local DACL can carry.
SID_ALIASES: Final = {
    "WD": "S-1-1-0", "CO": "S-1-3-0", "CG": "S-1-3-1", "OW": "S-1-3-4", "NU": "S-1-5-2", "IU": "S-1-5-4",
    "SU": "S-1-5-6", "AN": "S-1-5-7", "ED": "S-1-5-9", "PS": "S-1-5-10", "AU": "S-1-5-11", "RC": "S-1-5-12",
    "SY": "S-1-5-18", "LS": "S-1-5-19", "NS": "S-1-5-20", "BA": "S-1-5-32-544", "BU": "S-1-5-32-545",
    "BG": "S-1-5-32-546", "PU": "S-1-5-32-547", "AO": "S-1-5-32-548", "SO": "S-1-5-32-549",
    "PO": "S-1-5-32-550", "BO": "S-1-5-32-551", "RE": "S-1-5-32-552", "RU": "S-1-5-32-554",
    "RD": "S-1-5-32-555", "NO": "S-1-5-32-556", "MU": "S-1-5-32-558", "LU": "S-1-5-32-559",
    "IS": "S-1-5-32-568", "CY": "S-1-5-32-569", "ER": "S-1-5-32-573", "RM": "S-1-5-32-580",
    "AC": "S-1-15-2-1", "WR": "S-1-5-33", "LW": "S-1-16-4096", "ME": "S-1-16-8192", "HI": "S-1-16-12288",
    "SI": "S-1-16-16384",
}  # fmt: skip
# Access rights strings ("ACE Strings"): generic, standard, file and registry aliases.
RIGHTS: Final = {
    "GA": 0x10000000, "GX": 0x20000000, "GW": 0x40000000, "GR": 0x80000000,
    "RC": 0x00020000, "SD": 0x00010000, "WD": 0x00040000, "WO": 0x00080000,
    "RP": 0x10, "WP": 0x20, "CC": 0x1, "DC": 0x2, "LC": 0x4, "SW": 0x8, "LO": 0x80, "DT": 0x40, "CR": 0x100,
    "FA": 0x001F01FF, "FR": 0x00120089, "FW": 0x00120116, "FX": 0x001200A0,
    "KA": 0x000F003F, "KR": 0x00020019, "KW": 0x00020006, "KX": 0x00020019,
}  # fmt: skip
FLAGS: Final = {"CI": AceFlag.CONTAINER_INHERIT, "OI": AceFlag.OBJECT_INHERIT, "NP": AceFlag.NO_PROPAGATE,
                "IO": AceFlag.INHERIT_ONLY}  # fmt: skip
INHERITED: Final = "ID"
FLAG_ORDER: Final = ("OI", "CI", "NP", "IO")
_SID_RE: Final = re.compile(r"^S-1-\d+(-\d+)*$", re.IGNORECASE)
_ACE_RE: Final = re.compile(r"\(([^()]*)\)")


class SddlError(ValueError):
    """Text that is not the SDDL the engine understands (the item reports it as an error)."""


@dataclass(frozen=True)
class Descriptor:
    """The owner and DACL of one object, as read."""

    owner: str | None
    protected: bool
    dacl_flags: str
    aces: tuple[Ace, ...] = field(default_factory=tuple)

    @property
    def explicit(self) -> tuple[Ace, ...]:
        return tuple(a for a in self.aces if not a.inherited)


def _sid(text: str) -> str:
    if text in SID_ALIASES:
        return SID_ALIASES[text]
    if _SID_RE.match(text):
        return text.upper()
    raise SddlError(f"unknown SID or alias {text!r}")


def _mask(text: str) -> int:
    if text.lower().startswith("0x"):
        return int(text, 16)
    if text.isdigit():
        return int(text)
    if len(text) % 2:
        raise SddlError(f"bad rights {text!r}")
    mask = 0
    for i in range(0, len(text), 2):
        part = text[i : i + 2]
        if part not in RIGHTS:
            raise SddlError(f"bad right {part!r}")
        mask |= RIGHTS[part]
    return mask


def _sections(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    pos, depth, key, start = 0, 0, None, 0
    while pos < len(text):
        ch = text[pos]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0 and ch in "OGDS" and pos + 1 < len(text) and text[pos + 1] == ":":
            if key is not None:
                out[key] = text[start:pos]
            key, start = ch, pos + 2
            pos += 2
            continue
        pos += 1
    if key is None:
        raise SddlError("no section in the SDDL")
    out[key] = text[start:]
    return out


def parse_ace(raw: str) -> Ace:
    parts = raw.split(";")
    if len(parts) != 6 or parts[0] not in ("A", "D"):
        raise SddlError(f"unsupported ACE {raw!r}")
    kind, flag_text, rights, _guid, _iguid, trustee = parts
    flags: list[AceFlag] = []
    inherited = False
    for i in range(0, len(flag_text), 2):
        letters = flag_text[i : i + 2]
        if letters == INHERITED:
            inherited = True
        elif letters in FLAGS:
            flags.append(FLAGS[letters])
        else:
            raise SddlError(f"bad ACE flag {letters!r}")
    ace_type = AceType.ALLOW if kind == "A" else AceType.DENY
    return Ace(sid=_sid(trustee), type=ace_type, mask=_mask(rights), inherited=inherited, flags=flags)


@functools.lru_cache(maxsize=4096)
def parse(text: str) -> Descriptor:
    """Owner and DACL of `O:..D:..` text (a G: or S: section is ignored).

    Cached: a host's files share few distinct descriptors, and the result is immutable.
    """
    sections = _sections(text.strip())
    owner = _sid(sections["O"]) if "O" in sections else None
    dacl = sections.get("D", "")
    head = dacl.split("(", 1)[0]
    if re.sub(r"P|AI|AR", "", head):
        raise SddlError(f"bad DACL flags {head!r}")
    aces = tuple(parse_ace(raw) for raw in _ACE_RE.findall(dacl[len(head) :]))
    return Descriptor(owner=owner, protected="P" in re.findall(r"AI|AR|P", head), dacl_flags=head, aces=aces)


def ace_text(ace: Ace, sid: str | None = None) -> str:
    """One ACE in SDDL; `sid` overrides the ACE's (a `{{VAR}}` the executor fills in)."""
    flags = "".join(letters for letters in FLAG_ORDER if FLAGS[letters] in ace.flags)
    if ace.inherited:
        flags += INHERITED
    kind = "A" if ace.type is AceType.ALLOW else "D"
    return f"({kind};{flags};0x{ace.mask:x};;;{sid or ace.sid})"


def dacl_text(aces: list[tuple[Ace, str | None]], *, protected: bool) -> str:
    """The `D:` section the engine writes: explicit ACEs only (Windows recomputes the inherited),
    each with an optional SID override (see `ace_text`)."""
    head = "PAI" if protected else "AI"
    return "D:" + head + "".join(ace_text(a, sid) for a, sid in aces if not a.inherited)
