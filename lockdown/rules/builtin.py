"""The built-in profile, shipped as data in `lockdown/profiles/`."""

from __future__ import annotations

from importlib import resources
from typing import Final

from lockdown.rules.profile import Profile, load_profile_text

BUILTIN_PACKAGE: Final = "lockdown.profiles"
BUILTIN_FILE: Final = "mailenable-hardened.yaml"


def builtin_profile_text() -> str:
    """The YAML text of the built-in profile, as shipped."""
    return resources.files(BUILTIN_PACKAGE).joinpath(BUILTIN_FILE).read_text(encoding="utf-8")


def load_builtin_profile() -> Profile:
    """Load and validate `mailenable-hardened`, MailEnable's hardening guide as rules."""
    return load_profile_text(builtin_profile_text())
