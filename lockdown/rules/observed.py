"""What the agent reports, per plan item. Untrusted: size-capped, validated, and never taken
at its word about compliance (see `evaluate`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, JsonValue

from lockdown.rules.base import LockdownModel
from lockdown.rules.principals import is_valid_sid
from lockdown.rules.vocabulary import AceFlag, AceType, RuleAction

MAX_SDDL = 64 * 1024
MAX_TEXT = 4096


def _sid(value: str) -> str:
    if not is_valid_sid(value):
        raise ValueError(f"malformed SID: {value!r}")
    return value


Sid = Annotated[str, Field(max_length=200), AfterValidator(_sid)]
SidList = Annotated[list[Sid], Field(max_length=10_000)]
ShortText = Annotated[str, Field(max_length=MAX_TEXT)]


class Ace(LockdownModel):
    """One DACL entry as read from the host; `mask` is the raw number, generic bits included."""

    sid: Sid
    type: AceType
    mask: int = Field(ge=0, le=0xFFFFFFFF)
    inherited: bool = False
    flags: list[AceFlag] = Field(default_factory=list, max_length=4)


class AccountObservation(LockdownModel):
    """A local user or group as found on the host."""

    exists: bool
    sid: Sid | None = None
    enabled: bool | None = None
    user_flags: int | None = Field(default=None, ge=0, le=0xFFFFFFFF, description="ADS UserFlags")


class ServiceObservation(LockdownModel):
    """A service's logon identity and state."""

    exists: bool
    start_name: ShortText | None = None
    start_name_sid: Sid | None = None
    state: ShortText | None = None
    start_mode: ShortText | None = None


class SqlObservation(LockdownModel):
    """SQL Server principals and explicit database permissions for the plan's principal."""

    login_exists: bool = False
    user_exists: bool = False
    permissions: list[ShortText] = Field(default_factory=list, max_length=100)


class SearchObservation(LockdownModel):
    """Windows Search / Indexing Service around an apply: its state before the job, during the
    ACL changes (only known in apply mode) and after restoring it."""

    present: bool
    state_before: ShortText | None = None
    state_during_job: ShortText | None = None
    state_after: ShortText | None = None


class ObservedItem(LockdownModel):
    """The agent's report for one plan item, keyed by (rule_id, target).

    Only the raw state counts. `compliant` and `action` are what the agent *claims*; they are
    kept for the log and never used to judge the status.
    """

    rule_id: ShortText
    target: ShortText
    exists: bool | None = Field(default=None, description="Whether the file, folder or key exists")
    error: ShortText | None = None
    needs_input: ShortText | None = Field(
        default=None, description="What the operator must provide before this can be judged (e.g. a SQL role)"
    )
    owner_sid: Sid | None = None
    dacl: list[Ace] | None = Field(default=None, max_length=2000)
    protected: bool | None = None
    principal_sid: Sid | None = Field(default=None, description="SID the plan's principal resolved to")
    principal_group_sids: SidList = Field(default_factory=list, description="Groups the principal belongs to")
    effective_mask: int | None = Field(default=None, ge=0, le=0xFFFFFFFF, description="Agent-computed; informational")
    account: AccountObservation | None = None
    group_member_sids: SidList | None = None
    right_holder_sids: SidList | None = None
    service: ServiceObservation | None = None
    sql: SqlObservation | None = None
    av_exclusions: list[ShortText] | None = Field(default=None, max_length=1000)
    search: SearchObservation | None = None
    values: dict[ShortText, int | ShortText | list[ShortText]] | None = Field(
        default=None, max_length=500, description="registry_value: the key's values as read (absent ones left out)"
    )
    probe: dict[ShortText, JsonValue] | None = Field(
        default=None, max_length=50, description="smtp_probe: the worker's probe of the SMTP port (remote.mailprobe)"
    )
    allowed_sids: SidList = Field(
        default_factory=list, description="registry_acl_only: the SIDs the rule's allowed names resolved to"
    )
    web_access: dict[ShortText, JsonValue] | None = Field(
        default=None,
        max_length=10,
        description="iis_ip_restriction: who IIS lets reach the application (lockdown.engine.iisconfig)",
    )
    mailenable_edition: ShortText | None = None
    mailenable_version: ShortText | None = None
    sddl_before: str | None = Field(default=None, max_length=MAX_SDDL)
    sddl_after: str | None = Field(default=None, max_length=MAX_SDDL)
    action: RuleAction = RuleAction.NONE
    compliant: bool | None = Field(default=None, description="The agent's own verdict; ignored")

    @property
    def key(self) -> tuple[str, str]:
        """(rule id, target), matching `PlanItem.key`."""
        return (self.rule_id, self.target)
