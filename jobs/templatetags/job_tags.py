"""Template filters for statuses: words and colours from one vocabulary."""

from __future__ import annotations

import json
from typing import Any

from django import template

from jobs.choices import CONNECT_ERROR_KINDS, CONNECT_FAILED, RULE_STATUS_COLOURS

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


@register.filter
def job_title(job: Any) -> str:
    """The job's description, unless it spans customers the reader does not see (jobs.selectors.job_list's
    `host_others`): then only its kind and the reader's own host count, never the fleet's size."""
    others = getattr(job, "host_others", 0) or 0
    if not others:
        return str(job.description or job.get_kind_display())
    mine = int(getattr(job, "host_total", 0) or 0)
    return f"{job.get_kind_display()} across the MSP's fleet: {mine} of your server{'' if mine == 1 else 's'}"


# What a customer's users read when a fleet job stopped: the real reason counts every host of the wave.
SCOPED_STOP_REASON = "The job stopped: too many hosts of a wave failed, so the remaining hosts were not started."


def job_stop_reason(job: Any, *, msp: bool) -> str:
    """The job's stop reason as the reader may read it (the pages' status panel and the API)."""
    return str(job.stop_reason) if msp or not job.stop_reason else SCOPED_STOP_REASON


@register.simple_tag
def run_error(run: Any, msp: bool, stop_reason: str) -> str:
    """Why a host run failed, as the reader may read it: a customer's users read one sentence for a failed
    connection (the product is no port scanner for them) and the scoped stop reason for a stopped wave."""
    kind = str(run.error_kind or "")
    if not kind:
        return ""
    if not msp and kind in CONNECT_ERROR_KINDS:
        return CONNECT_FAILED
    if not msp and kind == "stopped":
        return stop_reason
    return f"{kind}: {run.error_message}"


@register.filter
def json_text(value: Any) -> str:
    """Structured evidence as compact JSON (keys sorted), for the raw values beside the words."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
