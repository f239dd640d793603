"""Template filters for statuses: words and colours from one vocabulary."""

from __future__ import annotations

from django import template

from jobs.choices import RULE_STATUS_COLOURS

register = template.Library()

_LABELS = {
    "compliant": "Compliant",
    "drift": "Drift",
    "not_applicable": "Not applicable",
    "needs_input": "Needs input",
    "error": "Error",
    "waived": "Waived",
}


@register.filter
def status_label(status: str) -> str:
    return _LABELS.get(status, status.replace("_", " ").capitalize())


@register.filter
def status_colour(status: str) -> str:
    return RULE_STATUS_COLOURS.get(status, "grey")
