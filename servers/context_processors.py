"""Template context: the request's tenancy scope, for showing only the allowed buttons."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest

from servers.tenancy import Action, request_scope


def tenancy(request: HttpRequest) -> dict[str, Any]:
    scope = request_scope(request)
    return {
        "scope": scope,
        "perms_ui": {action.value: scope.can(action) for action in Action},
    }


def environment(request: HttpRequest) -> dict[str, Any]:
    """Outside production every page says so, loudly (audit: "the demo says loudly it is a demo")."""
    return {"fleet_not_production": not settings.PRODUCTION, "fleet_debug": settings.DEBUG}
