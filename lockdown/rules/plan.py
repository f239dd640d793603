"""The plan: every rule resolved against one host's facts, as pure JSON-serialisable data.

One `PlanItem` per (rule id, resolved target). The agent receives the plan and acts only on
items whose `status` is empty; items already `not_applicable` or `needs_input` travel too,
so reports show every rule.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from lockdown.rules.advisories import Advisory
from lockdown.rules.base import LockdownModel
from lockdown.rules.vocabulary import (
    VERIFY_ONLY_TYPES,
    AccessName,
    AceFlag,
    AceType,
    Condition,
    Judge,
    PreflightCheck,
    Risk,
    RuleStatus,
    RuleType,
    SmtpCheck,
    TargetKind,
    ValueCheck,
)

PLAN_STATUSES = frozenset({RuleStatus.NOT_APPLICABLE, RuleStatus.NEEDS_INPUT})


class PlanItem(LockdownModel):
    """One rule on one resolved target, with everything the agent needs and nothing to resolve.

    Principals travel by qualified name (`HOST\\IME_SYSTEM`) and, where known, by expected SID;
    masks are numeric; `ace_flags` are the inheritance/propagation flags the ACE is written
    with (empty = this object only). `status` is set only when the plan already decides the
    outcome (`not_applicable` or `needs_input`, with `reason`).
    """

    rule_id: str
    rule_type: RuleType
    section: str
    description: str
    expected: str
    target: str = Field(description="Resolved path, key, account, right, database or service name")
    target_kind: TargetKind
    condition: Condition
    risk: Risk
    risk_note: str | None = None
    judge: Judge
    principal_name: str | None = Field(default=None, description=r"Qualified name, e.g. HOST\IME_SYSTEM")
    principal_sid: str | None = Field(default=None, description="Expected SID, when already known")
    access_name: AccessName | None = None
    access_mask: int | None = Field(default=None, ge=0, le=0xFFFFFFFF)
    ace_type: AceType | None = None
    ace_flags: list[AceFlag] = Field(default_factory=list)
    right: str | None = None
    group_name: str | None = None
    group_sid: str | None = None
    service_display_name: str | None = None
    sql_database: str | None = None
    sql_instance: str | None = Field(
        default=None, max_length=140, description=r'SqlClient Data Source of the instance: "." or ".\NAME"'
    )
    sql_permissions: list[str] = Field(default_factory=list)
    preflight_check: PreflightCheck | None = None
    password_never_expires: bool | None = None
    # registry_value
    value_name: str | None = None
    value_check: ValueCheck | None = None
    value_equals: int | str | None = None
    value_minimum: int | None = None
    value_maximum: int | None = None
    value_when_absent: int | str | None = None
    # registry_acl_only: who may hold an Allow ACE (qualified names; SIDs where the plan knows them)
    allowed_names: list[str] = Field(default_factory=list)
    allowed_sids: list[str] = Field(default_factory=list)
    # smtp_probe
    smtp_check: SmtpCheck | None = None
    min_days_valid: int | None = None
    # iis_ip_restriction: the IIS application and the networks that alone may reach it (the customer's)
    iis_application: str | None = None
    allowed_networks: list[str] = Field(default_factory=list, max_length=200)
    # mailenable_version: the advisories of the imported file that could concern this host's edition
    advisories: list[Advisory] = Field(default_factory=list, max_length=500)
    remedy: str | None = Field(default=None, description="Verify-only rules: how to fix a failing host by hand")
    status: RuleStatus | None = None
    reason: str | None = Field(
        default=None, description="Why the item has its status; for a right_not_held item, why no exception covers it"
    )

    @model_validator(mode="after")
    def _plan_status_has_reason(self) -> PlanItem:
        if self.status is not None:
            if self.status not in PLAN_STATUSES:
                raise ValueError("a plan item's status can only be not_applicable or needs_input")
            if not self.reason:
                raise ValueError("a plan item with a status needs a reason")
        return self

    @property
    def key(self) -> tuple[str, str]:
        """(rule id, resolved target): the identity of a plan item, an observation and an outcome."""
        return (self.rule_id, self.target)

    @property
    def verify_only(self) -> bool:
        """Judged, never changed by harden: a verify-only rule type, or a right no exception covers."""
        return self.rule_type in VERIFY_ONLY_TYPES or self.judge is Judge.RIGHT_NOT_HELD


class Plan(LockdownModel):
    """Every rule of a profile version resolved for one host, in a deterministic order."""

    profile_slug: str
    profile_version: str
    computer_name: str
    items: list[PlanItem] = Field(max_length=5000)

    @model_validator(mode="after")
    def _keys_unique(self) -> Plan:
        keys = [item.key for item in self.items]
        if len(set(keys)) != len(keys):
            raise ValueError("plan items must be unique per (rule id, target)")
        return self
