"""The built-in profiles, shipped as data in `lockdown/profiles/`.

- `mailenable-hardened`: every row of MailEnable's hardening guide (2005), as typed rules.
- `mailenable-current-baseline`: the guide's rules plus the checks an MSP needs today (issue 14: the version
  against the advisories, abuse detection, password encryption and its key's ACL, SChannel, the SMTP probes).
  Its file holds only what it adds; the guide's rules, notes and controls catalogue are taken from the guide's
  file when it is loaded, so the two cannot drift apart.
"""

from __future__ import annotations

from importlib import resources
from typing import Any, Final

import yaml

from lockdown.rules.profile import MAX_PROFILE_BYTES, Profile, ProfileError, load_profile_text, profile_from_data

BUILTIN_PACKAGE: Final = "lockdown.profiles"
BUILTIN_FILE: Final = "mailenable-hardened.yaml"
BASELINE_FILE: Final = "mailenable-current-baseline.yaml"
DEFAULT_BUILTIN_SLUG: Final = "mailenable-hardened"
BASELINE_SLUG: Final = "mailenable-current-baseline"
BASELINE_KEYS: Final = frozenset({"slug", "name", "version", "notes", "controls", "rules", "extends"})


def _text(name: str) -> str:
    return resources.files(BUILTIN_PACKAGE).joinpath(name).read_text(encoding="utf-8")


def builtin_profile_text() -> str:
    """The YAML text of the guide's built-in profile, as shipped."""
    return _text(BUILTIN_FILE)


def load_builtin_profile() -> Profile:
    """Load and validate `mailenable-hardened`, MailEnable's hardening guide as rules."""
    return load_profile_text(builtin_profile_text())


def compose_extension(base: dict[str, Any], extension: dict[str, Any]) -> dict[str, Any]:
    """The profile data of `extension` on top of `base`: base's rules then the extension's, notes likewise,
    one controls catalogue (an extension may not redefine a key of the base). `extends` must name base's slug."""
    unknown = sorted(str(k) for k in extension if k not in BASELINE_KEYS)
    if unknown:
        raise ProfileError(f"profile extension: unknown top-level field(s) {unknown}")
    if extension.get("extends") != base.get("slug"):
        raise ProfileError(f"profile extension: extends {extension.get('extends')!r}, not {base.get('slug')!r}")
    base_controls, own_controls = base.get("controls") or {}, extension.get("controls") or {}
    clash = sorted(set(base_controls) & set(own_controls))
    if clash:
        raise ProfileError(f"profile extension: control keys already in {base['slug']}: {clash}")
    return {
        "slug": extension.get("slug"),
        "name": extension.get("name"),
        "version": extension.get("version"),
        "notes": [*(extension.get("notes") or []), *(base.get("notes") or [])],
        "controls": {**base_controls, **own_controls},
        "rules": [*(base.get("rules") or []), *(extension.get("rules") or [])],
    }


def load_baseline_profile() -> Profile:
    """Load and validate `mailenable-current-baseline`: the guide's profile plus the current checks."""
    guide, extension = (yaml.safe_load(_text(name)) for name in (BUILTIN_FILE, BASELINE_FILE))
    composed = compose_extension(guide, extension)
    profile = profile_from_data(composed)
    if len(yaml.safe_dump(composed).encode("utf-8")) > MAX_PROFILE_BYTES:
        raise ProfileError(f"the composed baseline is larger than {MAX_PROFILE_BYTES} bytes: it could not be imported")
    return profile


def load_builtin_profiles() -> tuple[Profile, ...]:
    """Every built-in profile, the guide's first."""
    return (load_builtin_profile(), load_baseline_profile())
