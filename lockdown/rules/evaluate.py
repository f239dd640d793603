"""`evaluate(plan, observed, waivers, now)`: judge every plan item from observed state.

Statuses are recomputed here from SIDs, masks and flags. What the agent claims (its
`compliant` verdict, its `action`, an `effective_mask` it computed) is never used to judge:
an observation that says "compliant" but lacks the ACE is drift.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import JsonValue

from lockdown.rules import access, checks, masks
from lockdown.rules.observed import Ace, ObservedItem
from lockdown.rules.outcome import RuleOutcome, SectionCounts, Summary, Waiver
from lockdown.rules.plan import Plan, PlanItem
from lockdown.rules.vocabulary import AceType, Judge, RuleAction, RuleStatus, TargetKind

ADS_UF_DONT_EXPIRE_PASSWD = 0x10000
_MAX_ERROR_TEXT = 500


@dataclass
class Verdict:
    """A judgement before it becomes a `RuleOutcome`."""

    status: RuleStatus
    reason: str
    observed_text: str
    observed: dict[str, JsonValue] = field(default_factory=dict)


def _ace_json(ace: Ace) -> dict[str, JsonValue]:
    return {
        "sid": ace.sid,
        "type": ace.type.value,
        "mask": masks.format_mask(ace.mask),
        "inherited": ace.inherited,
        "flags": [f.value for f in ace.flags],
    }


def _principal_sid(item: PlanItem, obs: ObservedItem) -> str | None:
    # The SID discovery recorded in the facts wins; otherwise the SID the agent resolved the
    # name to now (that is observed state, not a claim about compliance).
    return item.principal_sid or obs.principal_sid


def _missing_principal(item: PlanItem) -> Verdict:
    return Verdict(
        RuleStatus.DRIFT,
        f"{item.principal_name} does not exist on the host (no SID to grant to)",
        "principal not found",
        {"principal_sid": None},
    )


def _judge_acl(item: PlanItem, obs: ObservedItem) -> Verdict:
    if obs.exists is False:
        return Verdict(RuleStatus.NOT_APPLICABLE, "absent on this host", "does not exist", {"exists": False})
    if obs.dacl is None:
        return Verdict(RuleStatus.ERROR, "the observation has no DACL", "no DACL reported", {"exists": obs.exists})
    sid = _principal_sid(item, obs)
    if sid is None:
        return _missing_principal(item)
    registry = item.target_kind is TargetKind.REGISTRY_KEY
    want = item.access_mask or 0
    token = access.token_sids(sid, obs.principal_group_sids)
    effective = access.effective_access(obs.dacl, token, registry=registry)
    observed: dict[str, JsonValue] = {
        "exists": True,
        "principal_sid": sid,
        "effective_mask": masks.format_mask(effective.mask),
        "denied_mask": masks.format_mask(effective.denied),
        "aces_for_principal": [_ace_json(a) for a in obs.dacl if a.sid in token],
        "protected": obs.protected,
    }
    text = f"effective {masks.format_mask(effective.mask)}"
    if item.judge is Judge.EFFECTIVE_ACCESS:
        if masks.covers(effective.mask, want):
            return Verdict(RuleStatus.COMPLIANT, "effective access covers the requirement", text, observed)
        missing = want & ~effective.mask
        return Verdict(RuleStatus.DRIFT, f"effective access lacks {masks.format_mask(missing)}", text, observed)
    if item.judge is Judge.EXPLICIT_DENY_ACE:
        denies = access.explicit_aces(obs.dacl, sid, AceType.DENY, registry=registry)
        if any(masks.covers(a.mask, want) for a in denies):
            return Verdict(RuleStatus.COMPLIANT, "an explicit Deny ACE for the account covers the mask", text, observed)
        if denies:
            return Verdict(RuleStatus.DRIFT, "the account's explicit Deny ACE does not cover the mask", text, observed)
        return Verdict(RuleStatus.DRIFT, "no explicit Deny ACE for the account's own SID", text, observed)
    return _judge_explicit_allow(item, obs.dacl, sid, effective, text, observed)


def _judge_explicit_allow(
    item: PlanItem,
    dacl: Sequence[Ace],
    sid: str,
    effective: access.EffectiveAccess,
    text: str,
    observed: dict[str, JsonValue],
) -> Verdict:
    registry = item.target_kind is TargetKind.REGISTRY_KEY
    want = item.access_mask or 0
    if effective.denied & want:
        reason = f"a Deny ACE removes {masks.format_mask(effective.denied & want)}"
        return Verdict(RuleStatus.DRIFT, reason, text, observed)
    allows = [
        a for a in access.explicit_aces(dacl, sid, AceType.ALLOW, registry=registry) if masks.covers(a.mask, want)
    ]
    needed = set(item.ace_flags)
    if any(needed <= set(a.flags) for a in allows):
        return Verdict(
            RuleStatus.COMPLIANT, "an explicit Allow ACE covers the mask with the inheritance flags", text, observed
        )
    if allows:
        flags = ", ".join(sorted(f.value for f in needed))
        return Verdict(RuleStatus.DRIFT, f"the explicit Allow ACE lacks the flags {flags}", text, observed)
    inherited = access.inherited_aces(dacl, sid, AceType.ALLOW, registry=registry)
    if any(masks.covers(a.mask, want) for a in inherited):
        reason = "only an inherited ACE grants the access; an explicit, non-inherited ACE is required"
        return Verdict(RuleStatus.DRIFT, reason, text, observed)
    return Verdict(RuleStatus.DRIFT, "no explicit Allow ACE for the SID covering the mask", text, observed)


def _judge_account(item: PlanItem, obs: ObservedItem) -> Verdict:
    acct = obs.account
    if acct is None:
        return Verdict(RuleStatus.ERROR, "the observation has no account data", "no account data")
    observed: dict[str, JsonValue] = {"exists": acct.exists, "sid": acct.sid, "enabled": acct.enabled}
    expected_sid = item.group_sid if item.judge is Judge.GROUP_EXISTS else item.principal_sid
    if not acct.exists:
        return Verdict(RuleStatus.DRIFT, "the account does not exist", "missing", observed)
    if expected_sid is not None and acct.sid != expected_sid:
        # Same name, new SID: the account was deleted and recreated, so every ACE naming the
        # old SID is now orphaned.
        return Verdict(
            RuleStatus.DRIFT, f"the account's SID {acct.sid} differs from {expected_sid}", "SID changed", observed
        )
    if item.judge is Judge.ACCOUNT_ENABLED:
        if acct.enabled is not True:
            return Verdict(
                RuleStatus.DRIFT, "the account is disabled (or its state was not reported)", "disabled", observed
            )
        if item.password_never_expires and acct.user_flags is not None:
            observed["user_flags"] = acct.user_flags
            if not acct.user_flags & ADS_UF_DONT_EXPIRE_PASSWD:
                reason = "the password is set to expire, which would stop the services"
                return Verdict(RuleStatus.DRIFT, reason, "password expires", observed)
    return Verdict(RuleStatus.COMPLIANT, "the account exists", "exists", observed)


def _judge_sid_in(item: PlanItem, obs: ObservedItem) -> Verdict:
    holders = obs.group_member_sids if item.judge is Judge.GROUP_HAS_MEMBER else obs.right_holder_sids
    what = "group members" if item.judge is Judge.GROUP_HAS_MEMBER else "right holders"
    if holders is None:
        return Verdict(RuleStatus.ERROR, f"the observation has no {what}", f"no {what}")
    sid = _principal_sid(item, obs)
    if sid is None:
        return _missing_principal(item)
    observed: dict[str, JsonValue] = {what.replace(" ", "_"): list(holders), "principal_sid": sid}
    if sid in holders:
        return Verdict(RuleStatus.COMPLIANT, f"the SID is among the {what}", f"{len(holders)} {what}", observed)
    return Verdict(RuleStatus.DRIFT, f"the SID is not among the {what}", f"{len(holders)} {what}", observed)


def _judge_right_not_held(item: PlanItem, obs: ObservedItem) -> Verdict:
    """An integrated-authentication right no exception covers (`Judge.RIGHT_NOT_HELD`): held is drift."""
    uncovered = item.reason or "no approved exception covers this right"
    holders = obs.right_holder_sids
    if holders is None:
        return Verdict(RuleStatus.ERROR, "the observation has no right holders", "no right holders")
    sid = _principal_sid(item, obs)
    observed: dict[str, JsonValue] = {"right_holders": list(holders), "principal_sid": sid}
    if sid is not None and sid in holders:
        who = item.principal_name or sid
        reason = (
            f"{who} still holds {item.right or item.target}, which no exception covers now; harden does not remove "
            f"it. {uncovered[0].upper()}{uncovered[1:]}"
        )
        return Verdict(RuleStatus.DRIFT, reason, "held without an exception", observed)
    return Verdict(RuleStatus.NEEDS_INPUT, uncovered, "not held", observed)


def _judge_sql(item: PlanItem, obs: ObservedItem) -> Verdict:
    sql = obs.sql
    if sql is None:
        return Verdict(RuleStatus.ERROR, "the observation has no SQL data", "no SQL data")
    have = sorted({p.strip().upper() for p in sql.permissions})
    observed: dict[str, JsonValue] = {
        "login_exists": sql.login_exists,
        "user_exists": sql.user_exists,
        "permissions": list(have),
    }
    if item.judge is Judge.SQL_LOGIN_AND_USER:
        if sql.login_exists and sql.user_exists:
            return Verdict(RuleStatus.COMPLIANT, "login and database user exist", "login and user", observed)
        return Verdict(RuleStatus.DRIFT, "the login or the database user is missing", "missing", observed)
    missing = sorted(set(item.sql_permissions) - set(have))
    if missing:
        return Verdict(
            RuleStatus.DRIFT, f"missing permissions {', '.join(missing)}", ", ".join(have) or "none", observed
        )
    return Verdict(RuleStatus.COMPLIANT, "all permissions granted", ", ".join(have), observed)


def _judge_service(item: PlanItem, obs: ObservedItem) -> Verdict:
    svc = obs.service
    if svc is None:
        return Verdict(RuleStatus.ERROR, "the observation has no service data", "no service data")
    observed: dict[str, JsonValue] = {
        "exists": svc.exists,
        "start_name": svc.start_name,
        "start_name_sid": svc.start_name_sid,
        "state": svc.state,
        "start_mode": svc.start_mode,
    }
    if not svc.exists:
        return Verdict(RuleStatus.NOT_APPLICABLE, "absent on this host", "service absent", observed)
    if svc.start_name_sid is None:
        return Verdict(RuleStatus.ERROR, "the service's StartName was not resolved to a SID", "no SID", observed)
    sid = _principal_sid(item, obs)
    if sid is None:
        return _missing_principal(item)
    text = f"runs as {svc.start_name or svc.start_name_sid}"
    if svc.start_name_sid == sid:
        return Verdict(RuleStatus.COMPLIANT, "the service runs as the account", text, observed)
    return Verdict(RuleStatus.DRIFT, f"the service runs as {svc.start_name_sid}, not {sid}", text, observed)


def _norm_path(path: str) -> str:
    return path.rstrip("\\").casefold()


def _judge_av(item: PlanItem, obs: ObservedItem) -> Verdict:
    if obs.av_exclusions is None:
        return Verdict(RuleStatus.ERROR, "the observation has no antivirus exclusions", "no exclusion list")
    target = _norm_path(item.target)
    covering = [e for e in obs.av_exclusions if target == _norm_path(e) or target.startswith(_norm_path(e) + "\\")]
    observed: dict[str, JsonValue] = {"exclusions": list(obs.av_exclusions)}
    if covering:
        return Verdict(RuleStatus.COMPLIANT, f"excluded by {covering[0]}", f"excluded by {covering[0]}", observed)
    return Verdict(RuleStatus.DRIFT, "no exclusion covers the store", f"{len(obs.av_exclusions)} exclusions", observed)


def _judge_search(item: PlanItem, obs: ObservedItem) -> Verdict:
    search = obs.search
    if search is None:
        return Verdict(RuleStatus.ERROR, "the observation has no search-service data", "no data")
    observed: dict[str, JsonValue] = search.model_dump(mode="json")
    if not search.present:
        return Verdict(RuleStatus.NOT_APPLICABLE, "absent on this host", "not installed", observed)
    if search.state_during_job is None:
        return Verdict(
            RuleStatus.NOT_APPLICABLE, "only judged during an apply", f"state {search.state_before}", observed
        )
    if search.state_during_job.casefold() != "stopped":
        return Verdict(
            RuleStatus.DRIFT, f"it was {search.state_during_job} during the job", "running during job", observed
        )
    if search.state_after is not None and search.state_before is not None and search.state_after != search.state_before:
        reason = f"not restored: {search.state_before} before, {search.state_after} after"
        return Verdict(RuleStatus.DRIFT, reason, "not restored", observed)
    return Verdict(RuleStatus.COMPLIANT, "stopped during the job and restored after", "stopped during job", observed)


def _verdict(judgement: checks.Judgement) -> Verdict:
    return Verdict(*judgement)


_JUDGES: dict[Judge, Callable[[PlanItem, ObservedItem], Verdict]] = {
    Judge.REGISTRY_VALUE_MATCHES: lambda item, obs: _verdict(checks.judge_registry_value(item, obs)),
    Judge.ONLY_ALLOWED_PRINCIPALS: lambda item, obs: _verdict(checks.judge_acl_only(item, obs)),
    Judge.NO_ADVISORY_AFFECTS: lambda item, obs: _verdict(checks.judge_version(item, obs)),
    Judge.ONLY_MANAGEMENT_NETWORKS: lambda item, obs: _verdict(checks.judge_web_access(item, obs)),
    Judge.EFFECTIVE_ACCESS: _judge_acl,
    Judge.EXPLICIT_ALLOW_ACE: _judge_acl,
    Judge.EXPLICIT_DENY_ACE: _judge_acl,
    Judge.ACCOUNT_ENABLED: _judge_account,
    Judge.GROUP_EXISTS: _judge_account,
    Judge.GROUP_HAS_MEMBER: _judge_sid_in,
    Judge.RIGHT_HELD: _judge_sid_in,
    Judge.RIGHT_NOT_HELD: _judge_right_not_held,
    Judge.SQL_LOGIN_AND_USER: _judge_sql,
    Judge.SQL_PERMISSIONS: _judge_sql,
    Judge.SERVICE_RUNS_AS: _judge_service,
    Judge.AV_EXCLUSION_COVERS: _judge_av,
    Judge.SERVICE_STOPPED_DURING_JOB: _judge_search,
}


def _expected(item: PlanItem) -> dict[str, JsonValue]:
    data: dict[str, JsonValue] = {
        "judge": item.judge.value,
        "principal": item.principal_name,
        "sid": item.principal_sid,
    }
    if item.access_mask is not None:
        data["mask"] = masks.format_mask(item.access_mask)
        data["ace_type"] = item.ace_type.value if item.ace_type else None
        data["flags"] = [f.value for f in item.ace_flags]
    if item.right:
        data["right"] = item.right
    if item.sql_permissions:
        data["permissions"] = list(item.sql_permissions)
    if item.value_check is not None:
        data.update(
            {
                "value": item.value_name,
                "check": item.value_check.value,
                "equals": item.value_equals,
                "minimum": item.value_minimum,
                "maximum": item.value_maximum,
                "when_absent": item.value_when_absent,
            }
        )
    if item.allowed_names or item.allowed_sids:
        data["allowed"] = [*item.allowed_names, *item.allowed_sids]
    if item.smtp_check is not None:
        data["smtp_check"] = item.smtp_check.value
        data["min_days_valid"] = item.min_days_valid
    if item.iis_application:
        data["application"] = item.iis_application
        data["networks"] = list(item.allowed_networks)
    if item.remedy:
        data["remedy"] = item.remedy
    elif item.judge is Judge.RIGHT_NOT_HELD:
        data["remedy"] = (
            "No exception covers this right: roll the server back (it undoes this tool's grants), remove the right "
            "on the host (Local Security Policy > User Rights Assignment), or have a new exception approved"
        )
    return data


def _judge(
    item: PlanItem, observations: dict[tuple[str, str], list[ObservedItem]], now: datetime
) -> tuple[Verdict, RuleAction]:
    if item.status is not None:
        return Verdict(item.status, item.reason or "", "not observed"), RuleAction.NONE
    found = observations.get(item.key, [])
    if not found:
        return Verdict(RuleStatus.ERROR, "no observation", "nothing reported"), RuleAction.NONE
    if len(found) > 1:
        return Verdict(RuleStatus.ERROR, "more than one observation for this item", "duplicates"), RuleAction.NONE
    obs = found[0]
    if obs.needs_input:
        text = obs.needs_input[:_MAX_ERROR_TEXT]
        return Verdict(RuleStatus.NEEDS_INPUT, text, "needs input", {"needs_input": text}), obs.action
    if obs.error:
        text = obs.error[:_MAX_ERROR_TEXT]
        return Verdict(RuleStatus.ERROR, f"agent error: {text}", text, {"error": text}), obs.action
    if item.judge is Judge.SMTP_PROBE:
        return _verdict(checks.judge_smtp(item, obs, now)), obs.action
    return _JUDGES[item.judge](item, obs), obs.action


def evaluate(
    plan: Plan,
    observed: Sequence[ObservedItem],
    waivers: Sequence[Waiver],
    now: datetime,
) -> list[RuleOutcome]:
    """One `RuleOutcome` per plan item, in plan order.

    A planned item without an observation is `error` ("no observation"); an observation with
    error text is `error`; a file, key or service that does not exist is `not_applicable`.
    A waiver for the rule id in force at `now` (timezone-aware) turns any status but
    `not_applicable` into `waived`, keeping the judged one in `underlying_status`.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    observations: dict[tuple[str, str], list[ObservedItem]] = {}
    for obs in observed:
        observations.setdefault(obs.key, []).append(obs)
    in_force: dict[str, Waiver] = {}
    for waiver in waivers:
        if waiver.applies_at(now):
            in_force.setdefault(waiver.rule_id, waiver)

    outcomes: list[RuleOutcome] = []
    for item in plan.items:
        verdict, action = _judge(item, observations, now)
        status, underlying, justification = verdict.status, None, None
        applicable = in_force.get(item.rule_id)
        if applicable is not None and status is not RuleStatus.NOT_APPLICABLE:
            status, underlying, justification = RuleStatus.WAIVED, verdict.status, applicable.justification
        outcomes.append(
            RuleOutcome(
                rule_id=item.rule_id,
                target=item.target,
                section=item.section,
                status=status,
                underlying_status=underlying,
                action=action,
                expected_text=item.expected,
                expected=_expected(item),
                observed_text=verdict.observed_text,
                observed=verdict.observed,
                reason=verdict.reason,
                risk=item.risk,
                risk_note=item.risk_note,
                waiver_justification=justification,
            )
        )
    return outcomes


_COUNTED = (RuleStatus.COMPLIANT, RuleStatus.DRIFT, RuleStatus.ERROR)


def summarize(outcomes: Sequence[RuleOutcome]) -> Summary:
    """Counts per status and per section, and the compliance percentage.

    compliant % = compliant / (compliant + drift + error) * 100, rounded to one decimal;
    not_applicable, needs_input and waived outcomes are excluded from numerator and
    denominator. None when no outcome counts.
    """
    counts = dict.fromkeys(RuleStatus, 0)
    sections: dict[str, dict[RuleStatus, int]] = {}
    for outcome in outcomes:
        counts[outcome.status] += 1
        per_section = sections.setdefault(outcome.section, dict.fromkeys(RuleStatus, 0))
        per_section[outcome.status] += 1
    denominator = sum(counts[s] for s in _COUNTED)
    percent = round(100 * counts[RuleStatus.COMPLIANT] / denominator, 1) if denominator else None
    return Summary(
        total=len(outcomes),
        compliant_percent=percent,
        counts=counts,
        sections=[SectionCounts(section=name, counts=c) for name, c in sections.items()],
    )
