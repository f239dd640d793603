"""Placeholders and target validation.

Profile targets are written with placeholders (`[SYSTEM32]\\cmd.exe`) that `compile_plan`
resolves from host facts. Everything here is about refusing targets that could point the
agent somewhere unintended: relative or UNC paths, wildcards, `..`, control characters.
"""

from __future__ import annotations

import re
from typing import Final

# File-system placeholders. [SYSTEM32] expands to System32 AND, on x64, SysWOW64, because
# MailEnable is 32-bit and the file-system redirector sends it to SysWOW64.
FILE_PLACEHOLDERS: Final[frozenset[str]] = frozenset(
    {
        "[SYSTEM32]",
        "[SYSWOW64]",
        "[WINDOWS]",
        "[MAILENABLE]",  # MailEnable "Program Directory"
        "[BIN]",  # "Application Directory" (and Bin64 where it exists)
        "[CONFIG]",  # "Configuration Directory"
        "[STORE]",  # "Mail Root", the message store
        "[QUEUES]",  # <program>\Queues
        "[LOGGING]",  # <program>\Logging
        "[BADMAIL]",  # <program>\Bad Mail
        "[BACKUP]",  # <program>\Backup
    }
)

# Principal placeholder: IME_STORE_GROUP, or IME_STORE_USERS where an older install made it.
STORE_GROUP: Final = "[STORE_GROUP]"
STORE_GROUP_NAME: Final = "IME_STORE_GROUP"
LEGACY_STORE_GROUP_NAME: Final = "IME_STORE_USERS"

_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_WILDCARD_CHARS: Final = frozenset("*?")
_BAD_PATH_CHARS: Final = frozenset('<>"|/')
_PLACEHOLDER_RE: Final = re.compile(r"^(\[[A-Z0-9_]+\])(\\.*)?$")
_DRIVE_RE: Final = re.compile(r"^[A-Za-z]:\\")
# Service key names may hold "$" (SQL Server's named instances: MSSQL$<name>, SQLAgent$<name>).
_SERVICE_RE: Final = re.compile(r"^[A-Za-z0-9_.$\-]{1,80}$")
REGISTRY_ROOT: Final = "HKLM\\"


def _check_segments(value: str, segments: list[str]) -> None:
    for segment in segments:
        if segment == "":
            raise ValueError(f"empty path segment in {value!r}")
        if segment in {".", ".."}:
            raise ValueError(f"'.' and '..' segments are not allowed in {value!r}")
        if segment != segment.strip():
            raise ValueError(f"path segment {segment!r} has leading or trailing spaces")


def _check_common(value: str) -> None:
    if not value:
        raise ValueError("target is empty")
    if _CONTROL_RE.search(value):
        raise ValueError("control characters are not allowed in a target")
    if any(c in _WILDCARD_CHARS for c in value):
        raise ValueError(f"wildcards are not allowed in a target: {value!r}")
    if len(value) > 1024:
        raise ValueError("target is longer than 1024 characters")


def validate_file_target(value: str) -> str:
    """A profile file/folder target: `[PLACEHOLDER]` or `[PLACEHOLDER]\\rel\\path`, or an
    absolute drive path `X:\\...`. Returns the value unchanged or raises ValueError."""
    _check_common(value)
    if value.startswith("\\\\"):
        raise ValueError(f"UNC paths are not allowed: {value!r}")
    if any(c in _BAD_PATH_CHARS for c in value):
        raise ValueError(f'characters < > " | / are not allowed in a path: {value!r}')
    match = _PLACEHOLDER_RE.fullmatch(value)
    if match:
        if match.group(1) not in FILE_PLACEHOLDERS:
            raise ValueError(f"unknown placeholder {match.group(1)} (known: {', '.join(sorted(FILE_PLACEHOLDERS))})")
        rest = match.group(2)
        if rest:
            _check_segments(value, rest[1:].split("\\"))
        return value
    if _DRIVE_RE.match(value):
        if ":" in value[2:]:
            raise ValueError(f"':' is only allowed after the drive letter: {value!r}")
        _check_segments(value, value[3:].split("\\") if len(value) > 3 else [])
        return value
    raise ValueError(f"relative paths are not allowed (start with a placeholder or X:\\): {value!r}")


def validate_registry_target(value: str) -> str:
    """A registry key under HKLM, written `HKLM\\SOFTWARE\\...`."""
    _check_common(value)
    if not value.startswith(REGISTRY_ROOT):
        raise ValueError(f"registry targets must start with HKLM\\: {value!r}")
    _check_segments(value, value[len(REGISTRY_ROOT) :].split("\\"))
    return value


def validate_service_name(value: str) -> str:
    """A Windows service short name such as MEMTAS."""
    if not _SERVICE_RE.fullmatch(value):
        raise ValueError(f"not a service short name: {value!r}")
    return value


def join_path(base: str, *parts: str) -> str:
    """Join Windows path parts with single backslashes."""
    result = base.rstrip("\\")
    for part in parts:
        result = f"{result}\\{part.strip(chr(92))}"
    return result


IIS_CONFIG_RELATIVE: Final = r"System32\inetsrv\config\applicationHost.config"


def iis_config_path(system_root: str) -> str:
    r"""IIS's server configuration file under %SystemRoot% (e.g. C:\Windows\System32\inetsrv\config\...).

    Read by a 64-bit process (the agent refuses to run in a 32-bit one), so System32 is not redirected."""
    return join_path(system_root, IIS_CONFIG_RELATIVE)
