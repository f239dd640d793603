"""Template helpers: the effective profile of a server, and names that break only between their parts."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe

from lockdown.assignment import Effective, effective
from lockdown.rules.wording import break_points
from servers.models import Server

register = template.Library()


@register.simple_tag
def effective_profile(server: Server) -> Effective:
    """The profile version `server` is judged by and where it comes from (lockdown.assignment)."""
    return effective(server)


@register.filter
def breakable(value: object) -> SafeString:
    """A path or rule id, escaped, with a line-break opportunity (`<wbr>`) after each separator: a long
    name wraps between folders or words, never mid-word (the CSS does not break inside words)."""
    return mark_safe("<wbr>".join(conditional_escape(part) for part in break_points(str(value))))  # noqa: S308 (each part is escaped)


@register.filter
def control_short(ref: Any) -> str:
    """A control reference (stored dict or ControlRef) as an auditor cites it: "CIS 2.2.4", "NIST AC-6(1)"."""
    data = ref.model_dump(mode="json") if hasattr(ref, "model_dump") else dict(ref)
    short = CONTROL_SHORT.get(str(data.get("framework")), str(data.get("framework")))
    return f"{short} {data.get('id', '')}"


CONTROL_SHORT = {
    "cis": "CIS",
    "stig": "STIG",
    "nist_800_53": "NIST",
    "iso_27001": "ISO 27001",
    "cis_controls": "CIS Controls",
}
