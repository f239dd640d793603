"""The observations of the checks the worker makes itself over the network (`WORKER_PROBE_TYPES`).

The worker runs one SMTP probe per host and job (`remote.mailprobe.probe_smtp`) when the plan has an actionable
`smtp_probe` item; this turns its evidence into one `ObservedItem` per such item, for `evaluate` to judge. Pure:
the probe itself is I/O and lives in `remote/`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pydantic import JsonValue, ValidationError

from lockdown.rules.observed import ObservedItem
from lockdown.rules.plan import Plan, PlanItem
from lockdown.rules.vocabulary import RuleType

MAX_EVIDENCE_KEYS: Final = 50


def smtp_items(plan: Plan) -> list[PlanItem]:
    """The plan's actionable `smtp_probe` items: a probe is needed only when this is not empty."""
    return [item for item in plan.items if item.status is None and item.rule_type is RuleType.SMTP_PROBE]


def smtp_observations(plan: Plan, evidence: Mapping[str, Any]) -> list[ObservedItem]:
    """One observation per actionable `smtp_probe` item, all carrying the same probe evidence.

    Evidence that does not validate (a probe bug, or a host reply that slipped past its caps) becomes every
    item's error rather than a verdict."""
    items = smtp_items(plan)
    probe: dict[str, JsonValue] = dict(list(evidence.items())[:MAX_EVIDENCE_KEYS])
    observed = []
    for item in items:
        try:
            observed.append(ObservedItem(rule_id=item.rule_id, target=item.target, probe=probe))
        except ValidationError as exc:
            text = str(exc).splitlines()[0]
            observed.append(ObservedItem(rule_id=item.rule_id, target=item.target, error=text[:4096]))
    return observed


def describe(evidence: Mapping[str, Any]) -> str:
    """One log line of what the SMTP probe saw (the job log; no verdict: `evaluate` judges)."""
    if not evidence.get("connected"):
        return f"not reached ({str(evidence.get('error') or 'no answer')[:200]})"
    parts = []
    mail, reply = evidence.get("mail_reply"), evidence.get("relay_reply")
    if isinstance(reply, dict):
        parts.append(f"RCPT TO an outside domain answered {reply.get('code')}")
    elif isinstance(mail, dict):
        parts.append(f"MAIL FROM answered {mail.get('code')}")
    auth = evidence.get("auth_before_tls")
    parts.append(f"AUTH before STARTTLS: {' '.join(map(str, auth))}" if auth else "no AUTH before STARTTLS")
    if not evidence.get("starttls_offered"):
        parts.append("no STARTTLS")
    elif not evidence.get("tls_established"):
        parts.append(f"STARTTLS failed ({str(evidence.get('tls_error') or '')[:120]})")
    else:
        cert = evidence.get("certificate")
        until = cert.get("not_after") if isinstance(cert, dict) else None
        parts.append(f"{evidence.get('tls_version') or 'TLS'}, certificate valid until {until}")
    return "; ".join(parts)
