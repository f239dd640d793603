"""Template helpers: the effective profile of a server, and names that break only between their parts."""

from __future__ import annotations

from django import template
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe

from lockdown.models import ProfileVersion
from lockdown.rules.wording import break_points
from lockdown.selectors import effective_profile_version
from servers.models import Server

register = template.Library()


@register.simple_tag
def effective_profile(server: Server) -> ProfileVersion | None:
    """The profile version `server` is judged by (its pin, its customer's default, or the built-in's latest)."""
    return effective_profile_version(server)


@register.filter
def breakable(value: object) -> SafeString:
    """A path or rule id, escaped, with a line-break opportunity (`<wbr>`) after each separator: a long
    name wraps between folders or words, never mid-word (the CSS does not break inside words)."""
    return mark_safe("<wbr>".join(conditional_escape(part) for part in break_points(str(value))))  # noqa: S308 (each part is escaped)
