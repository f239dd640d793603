"""Template helpers for pages outside the lockdown app (the server page shows its effective profile)."""

from __future__ import annotations

from django import template

from lockdown.models import ProfileVersion
from lockdown.selectors import effective_profile_version
from servers.models import Server

register = template.Library()


@register.simple_tag
def effective_profile(server: Server) -> ProfileVersion | None:
    """The profile version `server` is judged by (its pin, its customer's default, or the built-in's latest)."""
    return effective_profile_version(server)
