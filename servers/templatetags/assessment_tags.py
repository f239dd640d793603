"""`{% assessment server as a %}`: whether a server's figure counts, and if not, why and what to do."""

from __future__ import annotations

from typing import Any

from django import template

from servers.assessment import Assessment, assessment_of
from servers.models import Server

register = template.Library()


@register.simple_tag(takes_context=True)
def assessment(context: dict[str, Any], server: Server) -> Assessment:
    scope = context.get("scope")
    return assessment_of(server, msp=bool(scope is not None and scope.is_msp))
