"""Security descriptors: ACEs with numeric masks, SDDL, inheritance, and the access check.

Semantics follow Windows: DACLs are walked in order (canonical order puts explicit deny
first), generic rights are mapped per object type, the owner implicitly gets READ_CONTROL
and WRITE_DAC, and enabled SeBackup/SeRestore/SeTakeOwnership privileges grant access
regardless of the DACL for operations opened with backup intent (SetNamedSecurityInfo).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import Enum, IntFlag, StrEnum

from winlab.windows import sids
from winlab.windows.tokens import Token

# --- standard and specific rights ----------------------------------------------------------
DELETE = 0x00010000
READ_CONTROL = 0x00020000
WRITE_DAC = 0x00040000
WRITE_OWNER = 0x00080000
SYNCHRONIZE = 0x00100000
ACCESS_SYSTEM_SECURITY = 0x01000000
GENERIC_ALL = 0x10000000
GENERIC_EXECUTE = 0x20000000
GENERIC_WRITE = 0x40000000
GENERIC_READ = 0x80000000

FILE_READ_DATA = 0x1  # FILE_LIST_DIRECTORY on folders
FILE_WRITE_DATA = 0x2  # FILE_ADD_FILE
FILE_APPEND_DATA = 0x4  # FILE_ADD_SUBDIRECTORY
FILE_READ_EA = 0x8
FILE_WRITE_EA = 0x10
FILE_EXECUTE = 0x20  # FILE_TRAVERSE
FILE_DELETE_CHILD = 0x40
FILE_READ_ATTRIBUTES = 0x80
FILE_WRITE_ATTRIBUTES = 0x100
FILE_LIST_DIRECTORY = FILE_READ_DATA
FILE_ADD_FILE = FILE_WRITE_DATA
FILE_ADD_SUBDIRECTORY = FILE_APPEND_DATA

FILE_GENERIC_READ = 0x120089
FILE_GENERIC_WRITE = 0x120116
FILE_GENERIC_EXECUTE = 0x1200A0
FILE_ALL_ACCESS = 0x1F01FF
FILE_READ_EXECUTE = FILE_GENERIC_READ | FILE_GENERIC_EXECUTE  # 0x1200A9, FileSystemRights.ReadAndExecute
FILE_MODIFY = 0x1301BF

KEY_QUERY_VALUE = 0x1
KEY_SET_VALUE = 0x2
KEY_CREATE_SUB_KEY = 0x4
KEY_ENUMERATE_SUB_KEYS = 0x8
KEY_NOTIFY = 0x10
KEY_READ = 0x20019
KEY_WRITE = 0x20006
KEY_EXECUTE = 0x20019
KEY_ALL_ACCESS = 0xF003F


class ObjectKind(Enum):
    """What a security descriptor protects; decides generic mapping and inheritance."""

    FILE = "file"
    DIRECTORY = "directory"
    REGISTRY_KEY = "key"

    @property
    def is_container(self) -> bool:
        return self is not ObjectKind.FILE


@dataclass(frozen=True)
class GenericMapping:
    """GENERIC_MAPPING: what GR/GW/GX/GA mean for one object type."""

    read: int
    write: int
    execute: int
    all: int

    def map(self, mask: int) -> int:
        """Replace generic bits with the specific rights they stand for."""
        out = mask & ~(GENERIC_ALL | GENERIC_EXECUTE | GENERIC_WRITE | GENERIC_READ)
        if mask & GENERIC_READ:
            out |= self.read
        if mask & GENERIC_WRITE:
            out |= self.write
        if mask & GENERIC_EXECUTE:
            out |= self.execute
        if mask & GENERIC_ALL:
            out |= self.all
        return out


FILE_MAPPING = GenericMapping(FILE_GENERIC_READ, FILE_GENERIC_WRITE, FILE_GENERIC_EXECUTE, FILE_ALL_ACCESS)
KEY_MAPPING = GenericMapping(KEY_READ, KEY_WRITE, KEY_EXECUTE, KEY_ALL_ACCESS)


def mapping_for(kind: ObjectKind) -> GenericMapping:
    return KEY_MAPPING if kind is ObjectKind.REGISTRY_KEY else FILE_MAPPING


# --- ACEs and descriptors ------------------------------------------------------------------
class AceType(StrEnum):
    ALLOW = "A"
    DENY = "D"


class AceFlags(IntFlag):
    """ACE header flags with their Windows values."""

    NONE = 0
    OI = 0x01  # OBJECT_INHERIT_ACE
    CI = 0x02  # CONTAINER_INHERIT_ACE
    NP = 0x04  # NO_PROPAGATE_INHERIT_ACE
    IO = 0x08  # INHERIT_ONLY_ACE
    ID = 0x10  # INHERITED_ACE


INHERITANCE_FLAGS = AceFlags.OI | AceFlags.CI | AceFlags.NP | AceFlags.IO


@dataclass(frozen=True)
class Ace:
    """One access control entry: allow/deny, trustee SID, numeric mask, header flags."""

    type: AceType
    sid: str
    mask: int
    flags: AceFlags = AceFlags.NONE

    @property
    def inherited(self) -> bool:
        return bool(self.flags & AceFlags.ID)

    @property
    def inherit_only(self) -> bool:
        return bool(self.flags & AceFlags.IO)

    def explicit(self) -> Ace:
        """The same ACE without the INHERITED flag (what 'convert inherited to explicit' does)."""
        return replace(self, flags=self.flags & ~AceFlags.ID)


def allow(sid: str, mask: int, flags: AceFlags = AceFlags.NONE) -> Ace:
    return Ace(AceType.ALLOW, sid, mask, flags)


def deny(sid: str, mask: int, flags: AceFlags = AceFlags.NONE) -> Ace:
    return Ace(AceType.DENY, sid, mask, flags)


@dataclass(frozen=True)
class SecurityDescriptor:
    """Owner, primary group, an ordered DACL and the protected (inheritance blocked) flag."""

    owner: str
    dacl: tuple[Ace, ...]
    group: str | None = None
    protected: bool = False

    @property
    def explicit_aces(self) -> tuple[Ace, ...]:
        return tuple(a for a in self.dacl if not a.inherited)

    @property
    def inherited_aces(self) -> tuple[Ace, ...]:
        return tuple(a for a in self.dacl if a.inherited)


def canonical(aces: Iterable[Ace]) -> tuple[Ace, ...]:
    """Canonical order: explicit deny, explicit allow, then inherited ACEs in their given order."""
    items = list(aces)
    explicit = [a for a in items if not a.inherited]
    return (
        tuple(a for a in explicit if a.type is AceType.DENY)
        + tuple(a for a in explicit if a.type is AceType.ALLOW)
        + tuple(a for a in items if a.inherited)
    )


def is_canonical(aces: Iterable[Ace]) -> bool:
    """Whether the DACL is in canonical order: explicit deny, explicit allow, then inherited ACEs.

    "All explicit ACEs are placed in a group before any inherited ACEs. Within the group of explicit
    ACEs, access-denied ACEs are placed before access-allowed ACEs." (Order of ACEs in a DACL,
    https://learn.microsoft.com/windows/win32/secauthz/order-of-aces-in-a-dacl). The access check walks
    a non-canonical DACL in its stored order all the same, so an allow before a deny wins for the
    rights it grants. .NET reports the order as ObjectSecurity.AreAccessRulesCanonical
    (https://learn.microsoft.com/dotnet/api/system.security.accesscontrol.objectsecurity.areaccessrulescanonical).
    """
    rank = {(False, AceType.DENY): 0, (False, AceType.ALLOW): 1}
    last = 0
    for ace in aces:
        current = 2 if ace.inherited else rank[(False, ace.type)]
        if current < last:
            return False
        last = current
    return True


class NonCanonicalAclError(Exception):
    """.NET's InvalidOperationException from CommonAcl.ThrowIfNotCanonical.

    ObjectSecurity.AddAccessRule / RemoveAccessRule(Specific) / SetAccessRule (what Set-Acl scripts use)
    refuse to modify a DACL that is not in canonical order; writing the whole descriptor
    (SetSecurityDescriptorSddlForm + Set-Acl, or SetNamedSecurityInfo) still works
    (CommonAcl.IsCanonical, https://learn.microsoft.com/dotnet/api/system.security.accesscontrol.commonacl.iscanonical).
    """

    MESSAGE = "This access control list is not in canonical form and therefore cannot be modified."

    def __init__(self, target: str = "") -> None:
        self.target = target
        self.message = self.MESSAGE
        super().__init__(self.MESSAGE + (f" ({target})" if target else ""))


def add_access_rule(dacl: Sequence[Ace], ace: Ace) -> tuple[Ace, ...]:
    """ObjectSecurity.AddAccessRule: merge into an explicit ACE with the same trustee/type/flags, else add.

    The result is in canonical order. Merging ORs the masks, as .NET does.
    """
    ace = ace.explicit()
    out: list[Ace] = []
    merged = False
    for existing in dacl:
        if (
            not merged
            and not existing.inherited
            and existing.type is ace.type
            and existing.sid == ace.sid
            and existing.flags == ace.flags
        ):
            out.append(replace(existing, mask=existing.mask | ace.mask))
            merged = True
        else:
            out.append(existing)
    if not merged:
        out.append(ace)
    return canonical(out)


def remove_access_rule_specific(dacl: Sequence[Ace], ace: Ace) -> tuple[Ace, ...]:
    """ObjectSecurity.RemoveAccessRuleSpecific: drop the explicit ACE that matches exactly."""
    target = ace.explicit()
    out = list(dacl)
    for i, existing in enumerate(out):
        if existing == target:
            del out[i]
            break
    return tuple(out)


# --- inheritance -----------------------------------------------------------------------------
def _needs_split(ace: Ace) -> bool:
    generic = GENERIC_ALL | GENERIC_EXECUTE | GENERIC_WRITE | GENERIC_READ
    return bool(ace.mask & generic) or ace.sid in (sids.CREATOR_OWNER, sids.CREATOR_GROUP)


def _effective(ace: Ace, kind: ObjectKind, owner: str, group: str | None) -> Ace:
    sid = ace.sid
    if sid == sids.CREATOR_OWNER:
        sid = owner
    elif sid == sids.CREATOR_GROUP and group is not None:
        sid = group
    return Ace(ace.type, sid, mapping_for(kind).map(ace.mask), AceFlags.ID)


def inherited_from(
    parent_dacl: Sequence[Ace], child_kind: ObjectKind, child_owner: str, child_group: str | None
) -> tuple[Ace, ...]:
    """The ACEs a child inherits from its parent's DACL (Windows' automatic inheritance rules).

    ACEs with generic rights or CREATOR OWNER are split into an effective, mapped ACE and an
    inherit-only template, as Windows does.
    """
    out: list[Ace] = []
    for ace in parent_dacl:
        oi = bool(ace.flags & AceFlags.OI)
        ci = bool(ace.flags & AceFlags.CI)
        np_ = bool(ace.flags & AceFlags.NP)
        if not child_kind.is_container:
            if oi:
                out.append(_effective(ace, child_kind, child_owner, child_group))
            continue
        if ci:
            if np_:
                out.append(_effective(ace, child_kind, child_owner, child_group))
            elif _needs_split(ace):
                out.append(_effective(ace, child_kind, child_owner, child_group))
                keep = ace.flags & (AceFlags.OI | AceFlags.CI)
                out.append(Ace(ace.type, ace.sid, ace.mask, keep | AceFlags.IO | AceFlags.ID))
            else:
                out.append(Ace(ace.type, ace.sid, ace.mask, (ace.flags & (AceFlags.OI | AceFlags.CI)) | AceFlags.ID))
        elif oi and not np_:
            out.append(Ace(ace.type, ace.sid, ace.mask, AceFlags.OI | AceFlags.IO | AceFlags.ID))
    return tuple(out)


def with_inheritance(sd: SecurityDescriptor, parent_dacl: Sequence[Ace] | None, kind: ObjectKind) -> SecurityDescriptor:
    """Recompute ``sd``'s inherited ACEs from the parent (none if protected or no parent)."""
    explicit = sd.explicit_aces
    if sd.protected or parent_dacl is None:
        return replace(sd, dacl=explicit)
    return replace(sd, dacl=explicit + inherited_from(parent_dacl, kind, sd.owner, sd.group))


# --- access check ----------------------------------------------------------------------------
RESTORE_GRANTS = {
    ObjectKind.FILE: WRITE_DAC | WRITE_OWNER | ACCESS_SYSTEM_SECURITY | DELETE | FILE_GENERIC_WRITE,
    ObjectKind.DIRECTORY: WRITE_DAC
    | WRITE_OWNER
    | ACCESS_SYSTEM_SECURITY
    | DELETE
    | FILE_GENERIC_WRITE
    | FILE_ADD_FILE
    | FILE_ADD_SUBDIRECTORY
    | FILE_DELETE_CHILD,
    ObjectKind.REGISTRY_KEY: WRITE_DAC | WRITE_OWNER | ACCESS_SYSTEM_SECURITY | DELETE | KEY_WRITE,
}
BACKUP_GRANTS = {
    ObjectKind.FILE: READ_CONTROL | ACCESS_SYSTEM_SECURITY | FILE_GENERIC_READ | FILE_EXECUTE,
    ObjectKind.DIRECTORY: READ_CONTROL | ACCESS_SYSTEM_SECURITY | FILE_GENERIC_READ | FILE_EXECUTE,
    ObjectKind.REGISTRY_KEY: READ_CONTROL | ACCESS_SYSTEM_SECURITY | KEY_READ,
}


def granted_access(sd: SecurityDescriptor, token: Token, kind: ObjectKind, *, backup_intent: bool = False) -> int:
    """MAXIMUM_ALLOWED: every right the token gets on the object.

    The DACL is walked in order; a deny ACE removes rights not granted yet, an allow ACE grants
    rights not denied yet. Inherit-only ACEs are skipped. Deny ACEs also match deny-only SIDs.
    """
    mapping = mapping_for(kind)
    granted = 0
    denied = 0
    for ace in sd.dacl:
        if ace.inherit_only:
            continue
        mask = mapping.map(ace.mask)
        if ace.type is AceType.DENY:
            if ace.sid in token.sids or ace.sid in token.deny_only:
                denied |= mask & ~granted
        elif ace.sid in token.sids:
            granted |= mask & ~denied
    if sd.owner in token.sids:
        # Owner rights are implicit and cannot be denied (no OWNER RIGHTS ACE is modelled).
        granted |= READ_CONTROL | WRITE_DAC
    if token.has_enabled("SeTakeOwnershipPrivilege"):
        granted |= WRITE_OWNER
    if backup_intent and token.has_enabled("SeRestorePrivilege"):
        granted |= RESTORE_GRANTS[kind]
    if backup_intent and token.has_enabled("SeBackupPrivilege"):
        granted |= BACKUP_GRANTS[kind]
    return granted


def access_check(
    sd: SecurityDescriptor, token: Token, desired: int, kind: ObjectKind, *, backup_intent: bool = False
) -> bool:
    """True when every right in ``desired`` (generic bits mapped) is granted."""
    wanted = mapping_for(kind).map(desired)
    return wanted & ~granted_access(sd, token, kind, backup_intent=backup_intent) == 0


# --- SDDL ------------------------------------------------------------------------------------
SID_ALIASES: dict[str, str] = {
    "SY": sids.LOCAL_SYSTEM,
    "BA": sids.ADMINISTRATORS,
    "BU": sids.USERS,
    "BG": sids.GUESTS,
    "PU": sids.POWER_USERS,
    "BO": sids.BACKUP_OPERATORS,
    "RD": sids.REMOTE_DESKTOP_USERS,
    "RM": sids.REMOTE_MANAGEMENT_USERS,
    "IS": sids.IIS_IUSRS,
    "WD": sids.EVERYONE,
    "AU": sids.AUTHENTICATED_USERS,
    "NS": sids.NETWORK_SERVICE,
    "LS": sids.LOCAL_SERVICE,
    "CO": sids.CREATOR_OWNER,
    "CG": sids.CREATOR_GROUP,
    "IU": sids.INTERACTIVE,
    "SU": sids.SERVICE,
    "NU": sids.NETWORK,
    "AC": sids.ALL_APPLICATION_PACKAGES,
}
_ALIAS_OF_SID = {v: k for k, v in SID_ALIASES.items()}

# Exact-match right aliases, tried in this order when rendering.
RIGHT_ALIASES: dict[str, int] = {
    "GA": GENERIC_ALL,
    "GR": GENERIC_READ,
    "GW": GENERIC_WRITE,
    "GX": GENERIC_EXECUTE,
    "FA": FILE_ALL_ACCESS,
    "FR": FILE_GENERIC_READ,
    "FW": FILE_GENERIC_WRITE,
    "FX": FILE_GENERIC_EXECUTE,
    "KA": KEY_ALL_ACCESS,
    "KR": KEY_READ,
    "KW": KEY_WRITE,
    "KX": KEY_EXECUTE,
}
_ALIAS_OF_RIGHT: dict[int, str] = {}
for _name, _value in RIGHT_ALIASES.items():
    _ALIAS_OF_RIGHT.setdefault(_value, _name)

# Single rights that have letters, in ascending bit order as Windows writes them; SYNCHRONIZE has
# none, so most file masks render as hex.
RIGHT_LETTERS: dict[str, int] = {
    "CC": 0x1,
    "DC": 0x2,
    "LC": 0x4,
    "SW": 0x8,
    "RP": 0x10,
    "WP": 0x20,
    "DT": 0x40,
    "LO": 0x80,
    "CR": 0x100,
    "SD": DELETE,
    "RC": READ_CONTROL,
    "WD": WRITE_DAC,
    "WO": WRITE_OWNER,
    "GA": GENERIC_ALL,
    "GX": GENERIC_EXECUTE,
    "GW": GENERIC_WRITE,
    "GR": GENERIC_READ,
}

FLAG_LETTERS: tuple[tuple[str, AceFlags], ...] = (
    ("OI", AceFlags.OI),
    ("CI", AceFlags.CI),
    ("NP", AceFlags.NP),
    ("IO", AceFlags.IO),
    ("ID", AceFlags.ID),
)


class SddlError(ValueError):
    """A string that is not SDDL this model understands (ConvertStringSecurityDescriptor… fails with 1336)."""


def _sid_to_sddl(sid: str) -> str:
    return _ALIAS_OF_SID.get(sid, sid)


def _sid_from_sddl(text: str) -> str:
    if text in SID_ALIASES:
        return SID_ALIASES[text]
    if sids.is_sid(text):
        return text.upper()
    raise SddlError(f"unknown SID or alias {text!r}")


def _mask_to_sddl(mask: int) -> str:
    if mask in _ALIAS_OF_RIGHT:
        return _ALIAS_OF_RIGHT[mask]
    letters = []
    rest = mask
    for name, bit in RIGHT_LETTERS.items():
        if rest & bit == bit:
            letters.append(name)
            rest &= ~bit
    if rest == 0 and letters:
        return "".join(letters)
    return f"0x{mask:x}"


def _mask_from_sddl(text: str) -> int:
    if text.lower().startswith("0x"):
        return int(text, 16)
    if text.isdigit():
        return int(text)
    if text in RIGHT_ALIASES:
        return RIGHT_ALIASES[text]
    if len(text) % 2:
        raise SddlError(f"bad rights {text!r}")
    mask = 0
    for i in range(0, len(text), 2):
        part = text[i : i + 2]
        if part in RIGHT_ALIASES:
            mask |= RIGHT_ALIASES[part]
        elif part in RIGHT_LETTERS:
            mask |= RIGHT_LETTERS[part]
        else:
            raise SddlError(f"bad right {part!r}")
    return mask


def ace_to_sddl(ace: Ace) -> str:
    flags = "".join(name for name, bit in FLAG_LETTERS if ace.flags & bit)
    return f"({ace.type.value};{flags};{_mask_to_sddl(ace.mask)};;;{_sid_to_sddl(ace.sid)})"


def to_sddl(sd: SecurityDescriptor) -> str:
    """Owner, group and DACL as SDDL, e.g. ``O:BAG:SYD:PAI(A;OICI;FA;;;SY)``.

    Windows also marks the DACL auto-inherited (AI); every descriptor here is, so ``AI`` is always
    written and ``P`` marks a protected DACL.
    """
    out = f"O:{_sid_to_sddl(sd.owner)}"
    if sd.group is not None:
        out += f"G:{_sid_to_sddl(sd.group)}"
    out += "D:" + ("P" if sd.protected else "") + "AI"
    return out + "".join(ace_to_sddl(a) for a in sd.dacl)


_SECTION_RE = re.compile(r"([OGDS]):")


def from_sddl(text: str) -> SecurityDescriptor:
    """Parse what :func:`to_sddl` renders (plus aliases, hex or decimal masks, letter rights)."""
    sections: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        m = _SECTION_RE.match(text, pos)
        if not m:
            raise SddlError(f"unexpected text at {pos}: {text[pos : pos + 20]!r}")
        key = m.group(1)
        start = m.end()
        depth = 0
        end = start
        while end < len(text):
            ch = text[end]
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            elif depth == 0 and _SECTION_RE.match(text, end) and end > start:
                break
            end += 1
        sections[key] = text[start:end]
        pos = end
    if "O" not in sections:
        raise SddlError("no owner")
    owner = _sid_from_sddl(sections["O"])
    group = _sid_from_sddl(sections["G"]) if "G" in sections else None
    dacl_text = sections.get("D", "")
    head, _, body = dacl_text.partition("(")
    body = "(" + body if body else ""
    if not set(re.findall(r"P|AI|AR|NO_ACCESS_CONTROL", head)) and head:
        raise SddlError(f"bad DACL flags {head!r}")
    protected = "P" in re.findall(r"AI|AR|P", head)
    aces: list[Ace] = []
    for raw in re.findall(r"\(([^)]*)\)", body):
        parts = raw.split(";")
        if len(parts) != 6:
            raise SddlError(f"bad ACE {raw!r}")
        kind, flag_text, rights, _guid, _iguid, trustee = parts
        if kind not in ("A", "D"):
            raise SddlError(f"unsupported ACE type {kind!r}")
        flags = AceFlags.NONE
        for i in range(0, len(flag_text), 2):
            letters = flag_text[i : i + 2]
            match = [bit for name, bit in FLAG_LETTERS if name == letters]
            if not match:
                raise SddlError(f"bad ACE flag {letters!r}")
            flags |= match[0]
        aces.append(Ace(AceType(kind), _sid_from_sddl(trustee), _mask_from_sddl(rights), flags))
    return SecurityDescriptor(owner=owner, group=group, dacl=tuple(aces), protected=protected)
