"""Security identifiers: well-known SIDs, machine SIDs, service SIDs (derived as Windows does)."""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass
from enum import IntEnum

EVERYONE = "S-1-1-0"
LOCAL = "S-1-2-0"
CREATOR_OWNER = "S-1-3-0"
CREATOR_GROUP = "S-1-3-1"
NETWORK = "S-1-5-2"
BATCH = "S-1-5-3"
INTERACTIVE = "S-1-5-4"
SERVICE = "S-1-5-6"
AUTHENTICATED_USERS = "S-1-5-11"
LOCAL_SYSTEM = "S-1-5-18"
LOCAL_SERVICE = "S-1-5-19"
NETWORK_SERVICE = "S-1-5-20"
ADMINISTRATORS = "S-1-5-32-544"
USERS = "S-1-5-32-545"
GUESTS = "S-1-5-32-546"
POWER_USERS = "S-1-5-32-547"
BACKUP_OPERATORS = "S-1-5-32-551"
REMOTE_DESKTOP_USERS = "S-1-5-32-555"
PERFORMANCE_LOG_USERS = "S-1-5-32-559"
IIS_IUSRS = "S-1-5-32-568"
REMOTE_MANAGEMENT_USERS = "S-1-5-32-580"
ALL_SERVICES = "S-1-5-80-0"
ALL_APPLICATION_PACKAGES = "S-1-15-2-1"
ALL_RESTRICTED_APPLICATION_PACKAGES = "S-1-15-2-2"


class SidType(IntEnum):
    """SID_NAME_USE, as LookupAccountName returns it."""

    USER = 1
    GROUP = 2
    DOMAIN = 3
    ALIAS = 4
    WELL_KNOWN_GROUP = 5


@dataclass(frozen=True)
class AccountName:
    """One (domain, name, type) answer of LookupAccountSid / LookupAccountName."""

    sid: str
    domain: str
    name: str
    sid_type: SidType

    @property
    def qualified(self) -> str:
        return f"{self.domain}\\{self.name}" if self.domain else self.name


def service_sid(service_name: str) -> str:
    """NT SERVICE\\<name>: S-1-5-80- + the SHA-1 of the upper-cased UTF-16LE name as five uint32."""
    digest = hashlib.sha1(service_name.upper().encode("utf-16-le"), usedforsecurity=False).digest()
    return "S-1-5-80-" + "-".join(str(part) for part in struct.unpack("<5I", digest))


TRUSTED_INSTALLER = service_sid("TrustedInstaller")
assert TRUSTED_INSTALLER == "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464"

# Well-known SIDs that are not local accounts: sid -> (domain, name, type).
WELL_KNOWN: dict[str, tuple[str, str, SidType]] = {
    EVERYONE: ("", "Everyone", SidType.WELL_KNOWN_GROUP),
    LOCAL: ("", "LOCAL", SidType.WELL_KNOWN_GROUP),
    CREATOR_OWNER: ("", "CREATOR OWNER", SidType.WELL_KNOWN_GROUP),
    CREATOR_GROUP: ("", "CREATOR GROUP", SidType.WELL_KNOWN_GROUP),
    NETWORK: ("NT AUTHORITY", "NETWORK", SidType.WELL_KNOWN_GROUP),
    BATCH: ("NT AUTHORITY", "BATCH", SidType.WELL_KNOWN_GROUP),
    INTERACTIVE: ("NT AUTHORITY", "INTERACTIVE", SidType.WELL_KNOWN_GROUP),
    SERVICE: ("NT AUTHORITY", "SERVICE", SidType.WELL_KNOWN_GROUP),
    AUTHENTICATED_USERS: ("NT AUTHORITY", "Authenticated Users", SidType.WELL_KNOWN_GROUP),
    LOCAL_SYSTEM: ("NT AUTHORITY", "SYSTEM", SidType.WELL_KNOWN_GROUP),
    LOCAL_SERVICE: ("NT AUTHORITY", "LOCAL SERVICE", SidType.WELL_KNOWN_GROUP),
    NETWORK_SERVICE: ("NT AUTHORITY", "NETWORK SERVICE", SidType.WELL_KNOWN_GROUP),
    ALL_SERVICES: ("NT SERVICE", "ALL SERVICES", SidType.WELL_KNOWN_GROUP),
    TRUSTED_INSTALLER: ("NT SERVICE", "TrustedInstaller", SidType.WELL_KNOWN_GROUP),
    ALL_APPLICATION_PACKAGES: ("APPLICATION PACKAGE AUTHORITY", "ALL APPLICATION PACKAGES", SidType.WELL_KNOWN_GROUP),
    ALL_RESTRICTED_APPLICATION_PACKAGES: (
        "APPLICATION PACKAGE AUTHORITY",
        "ALL RESTRICTED APPLICATION PACKAGES",
        SidType.WELL_KNOWN_GROUP,
    ),
}

_SID_RE = re.compile(r"^S-1-\d+(-\d+)*$")


def is_sid(text: str) -> bool:
    """True for a string SID such as S-1-5-21-1-2-3-1000."""
    return bool(_SID_RE.match(text.upper()))


def machine_sid(seed: str) -> str:
    """A machine (account domain) SID, S-1-5-21-a-b-c, derived deterministically from ``seed``."""
    digest = hashlib.sha256(f"winlab-machine-sid:{seed}".encode()).digest()
    a, b, c = struct.unpack("<3I", digest[:12])
    return f"S-1-5-21-{a}-{b}-{c}"


def rid_of(sid: str) -> int:
    """The last sub-authority of a SID (its RID for account SIDs)."""
    return int(sid.rsplit("-", 1)[1])


def domain_of(sid: str) -> str:
    """The SID without its RID."""
    return sid.rsplit("-", 1)[0]
