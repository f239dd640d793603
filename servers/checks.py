"""Deploy checks (`manage.py check --deploy`): every stored secret decrypts, and with the first key."""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.db import DatabaseError

from servers.secret_fields import token_reports


@checks.register(checks.Tags.security, deploy=True)
def check_stored_secrets(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E001 for tokens no configured key decrypts; W002 for tokens not under the first key."""
    out: list[checks.CheckMessage] = []
    try:
        reports = list(token_reports())
    except DatabaseError as exc:  # the database cannot be read: say so, it is not a clean bill
        return [checks.Warning(f"stored secrets not checked: {type(exc).__name__}", id="fleet.W003")]
    for report in reports:
        if report.undecryptable:
            out.append(
                checks.Error(
                    f"{report.field.label}: {report.undecryptable} of {report.stored} stored secrets decrypt with "
                    "none of FLEET_ENCRYPTION_KEYS",
                    hint="Put back the key they were encrypted with (after the new one), then run "
                    "`manage.py rotate_encryption_keys`.",
                    id="fleet.E001",
                )
            )
        if report.unrotated:
            out.append(
                checks.Warning(
                    f"{report.field.label}: {report.unrotated} of {report.stored} stored secrets are not encrypted "
                    "with the first key of FLEET_ENCRYPTION_KEYS",
                    hint="Run `manage.py rotate_encryption_keys` before dropping an older key.",
                    id="fleet.W002",
                )
            )
    return out


@checks.register(checks.Tags.security, deploy=True)
def check_management_networks(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W004 when the installation names no management networks (remote.networks: empty means any)."""
    from django.conf import settings

    if settings.FLEET_MANAGEMENT_NETWORKS:
        return []
    return [
        checks.Warning(
            "FLEET_MANAGEMENT_NETWORKS is empty: for customers without networks of their own, the worker "
            "connects (test connection, mail-port checks, runs) to any address an operator types",
            hint="Set FLEET_MANAGEMENT_NETWORKS to the networks your managed servers live in (CIDR, comma-separated).",
            id="fleet.W004",
        )
    ]
