"""Fixtures for the lockdown profile and waiver tests: a small valid profile document, a frozen clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from lockdown import clock

T0 = datetime(2030, 1, 15, 12, 0, tzinfo=UTC)


def small_document(slug: str = "acme-hardened", name: str = "Acme hardened", **rule_overrides: Any) -> dict[str, Any]:
    """A valid two-rule profile as plain data (a file rule and a user right)."""
    file_rule: dict[str, Any] = {
        "id": "file_acl.system32.activeds_dll",
        "type": "file_acl",
        "section": "File System Permissions (Access Granted)",
        "description": "IME_SYSTEM can read ACTIVEDS.DLL.",
        "expected": "IME_SYSTEM has effective Read on the file.",
        "target": "[SYSTEM32]\\ACTIVEDS.DLL",
        "principal": "IME_SYSTEM",
        "access": "READ",
        **rule_overrides,
    }
    right_rule: dict[str, Any] = {
        "id": "user_right.se_tcb_privilege",
        "type": "user_right",
        "section": "Windows Rights Assignment",
        "description": "IME_SYSTEM holds SeTcbPrivilege.",
        "expected": "IME_SYSTEM holds SeTcbPrivilege.",
        "condition": "integrated_auth",
        "risk": "high",
        "risk_note": "SYSTEM-equivalent.",
        "deviation": "Only where integrated_auth=yes.",
        "right": "SeTcbPrivilege",
        "principal": "IME_SYSTEM",
    }
    return {"slug": slug, "name": name, "version": "1", "notes": ["One note."], "rules": [file_rule, right_rule]}


def as_yaml(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False)


@pytest.fixture
def frozen_clock() -> Iterator[datetime]:
    """The waiver clock frozen at T0; tests move it with `clock.set_now`."""
    with clock.frozen(T0):
        yield T0
