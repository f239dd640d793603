"""Rules: one typed row of the hardening guide each, as a pydantic discriminated union.

A rule is written with placeholders and principal *names*; `compile_plan` turns it into
plan items with resolved paths, SIDs and numeric masks.
"""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from lockdown.rules import masks
from lockdown.rules.base import LockdownModel
from lockdown.rules.controls import ControlRef
from lockdown.rules.principals import KNOWN_RIGHTS, is_valid_account_name, is_valid_sid
from lockdown.rules.targets import (
    STORE_GROUP,
    validate_file_target,
    validate_registry_target,
    validate_service_name,
)
from lockdown.rules.vocabulary import (
    AccessName,
    Condition,
    Edition,
    Judge,
    PreflightCheck,
    RegistryScope,
    Risk,
    SmtpCheck,
    SqlGrantKind,
    ValueCheck,
)

_RULE_ID_RE: Final = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9][a-z0-9_]*){1,5}$")
_SQL_NAME_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
SQL_PERMISSIONS: Final[frozenset[str]] = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "EXECUTE"})

Text = Annotated[str, Field(min_length=1, max_length=2000)]


def _check_principal(value: str) -> str:
    if value.upper().startswith("S-1-") and not is_valid_sid(value):
        raise ValueError(f"malformed SID: {value!r}")
    if value == STORE_GROUP or is_valid_account_name(value) or is_valid_sid(value):
        return value
    raise ValueError(f"not an account name, SID or {STORE_GROUP}: {value!r}")


Principal = Annotated[str, AfterValidator(_check_principal)]
FileTarget = Annotated[str, AfterValidator(validate_file_target)]
RegistryTarget = Annotated[str, AfterValidator(validate_registry_target)]
ServiceName = Annotated[str, AfterValidator(validate_service_name)]


class RuleBase(LockdownModel):
    """Fields every rule carries.

    `seed_row` quotes the guide's table row verbatim ("target | account | access") so the
    seed-coverage test can trace every row; rules the guide does not list (our additions)
    leave it empty and say why in `deviation`.
    """

    id: str = Field(min_length=3, max_length=120, description="Stable id, e.g. file_acl.system32.ws2_32_dll")
    section: Text = Field(description="The guide's heading this rule comes from")
    description: Text
    expected: Text = Field(description="The expected state, in words")
    condition: Condition = Condition.ALWAYS
    risk: Risk = Risk.LOW
    risk_note: str | None = Field(default=None, max_length=2000)
    seed_row: str | None = Field(default=None, max_length=500)
    deviation: str | None = Field(default=None, max_length=2000, description="How and why we differ from the guide")
    controls: tuple[ControlRef, ...] = Field(
        default=(), max_length=20, description="The auditors' controls it serves or conflicts with"
    )
    editions: tuple[Edition, ...] = Field(
        default=(),
        max_length=4,
        description="The MailEnable editions that have the feature the rule checks; empty = every edition",
    )

    @field_validator("id")
    @classmethod
    def _id_shape(cls, value: str) -> str:
        if not _RULE_ID_RE.fullmatch(value):
            raise ValueError(f"rule ids are dotted lower-case words such as file_acl.system32.cmd_exe, got {value!r}")
        return value

    @model_validator(mode="after")
    def _risky_rules_explain_themselves(self) -> RuleBase:
        if self.risk is not Risk.LOW and not self.risk_note:
            raise ValueError("risk_note is required when risk is medium or high")
        return self


class RegistryAclRule(RuleBase):
    """Grant a principal READ or FULL on an HKLM key.

    `scope=key_only` writes an ACE without inheritance flags: the broad hives (Classes,
    Microsoft, SYSTEM) must never receive an inheritable ACE, which Windows would push into
    every existing subkey. The MailEnable key is read through the 32-bit view.
    """

    type: Literal["registry_acl"] = "registry_acl"
    target: RegistryTarget
    principal: Principal
    access: AccessName
    scope: RegistryScope
    judge: Literal[Judge.EFFECTIVE_ACCESS, Judge.EXPLICIT_ALLOW_ACE]
    wow64_32bit_view: bool = Field(default=False, description="Resolve through WOW6432Node on x64")

    @field_validator("access")
    @classmethod
    def _registry_access(cls, value: AccessName) -> AccessName:
        if not masks.allowed_registry_access(value):
            raise ValueError(f"registry access must be READ or FULL, got {value}")
        return value


class FileAclRule(RuleBase):
    """Allow a principal access to a file or folder; met by EFFECTIVE access (group grants
    count), so a file Users can already read is left alone."""

    type: Literal["file_acl"] = "file_acl"
    target: FileTarget
    principal: Principal
    access: AccessName
    folder: bool = Field(default=False, description="The target is a folder; a grant is written with CI|OI")
    judge: Literal[Judge.EFFECTIVE_ACCESS] = Judge.EFFECTIVE_ACCESS

    @field_validator("access")
    @classmethod
    def _file_access(cls, value: AccessName) -> AccessName:
        if not masks.allowed_file_access(value):
            raise ValueError(f"unknown file access {value}")
        return value


class FileDenyRule(RuleBase):
    """Deny a principal access to a program; needs an explicit Deny ACE for the account's
    own SID (a deny on a group would hit other accounts too)."""

    type: Literal["file_deny"] = "file_deny"
    target: FileTarget
    principal: Principal
    access: AccessName = AccessName.READ_EXECUTE
    judge: Literal[Judge.EXPLICIT_DENY_ACE] = Judge.EXPLICIT_DENY_ACE

    @field_validator("access")
    @classmethod
    def _deny_access(cls, value: AccessName) -> AccessName:
        if not masks.allowed_file_deny(value):
            raise ValueError(f"a deny must be READ_EXECUTE or FULL, got {value}")
        return value


class LocalUserRule(RuleBase):
    """A local user account exists and is enabled."""

    type: Literal["local_user"] = "local_user"
    name: str
    password_never_expires: bool = True
    judge: Literal[Judge.ACCOUNT_ENABLED] = Judge.ACCOUNT_ENABLED

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not is_valid_account_name(value):
            raise ValueError(f"not a local account name: {value!r}")
        return value


class LocalGroupRule(RuleBase):
    """A local group exists (the store group may be adopted under its legacy name)."""

    type: Literal["local_group"] = "local_group"
    name: Principal
    judge: Literal[Judge.GROUP_EXISTS] = Judge.GROUP_EXISTS


class GroupMemberRule(RuleBase):
    """A principal is a member of a local group (compared by SID)."""

    type: Literal["group_member"] = "group_member"
    group: Principal
    member: Principal
    judge: Literal[Judge.GROUP_HAS_MEMBER] = Judge.GROUP_HAS_MEMBER


class UserRightRule(RuleBase):
    """A principal holds a logon right or privilege by direct LSA assignment."""

    type: Literal["user_right"] = "user_right"
    right: str
    principal: Principal
    judge: Literal[Judge.RIGHT_HELD] = Judge.RIGHT_HELD

    @field_validator("right")
    @classmethod
    def _known_right(cls, value: str) -> str:
        if value not in KNOWN_RIGHTS:
            raise ValueError(f"unknown right name {value!r}")
        return value


class SqlGrantRule(RuleBase):
    """SQL Server (integrated mode): a login+user for the principal, or database permissions."""

    type: Literal["sql_grant"] = "sql_grant"
    kind: SqlGrantKind
    principal: Principal
    database: str
    permissions: list[str] = Field(default_factory=list, max_length=10)
    judge: Literal[Judge.SQL_LOGIN_AND_USER, Judge.SQL_PERMISSIONS]

    @field_validator("database")
    @classmethod
    def _database(cls, value: str) -> str:
        if not _SQL_NAME_RE.fullmatch(value):
            raise ValueError(f"not a plain database name: {value!r}")
        return value

    @field_validator("permissions")
    @classmethod
    def _permissions(cls, value: list[str]) -> list[str]:
        unknown = [p for p in value if p not in SQL_PERMISSIONS]
        if unknown:
            raise ValueError(f"unknown SQL permission(s) {unknown} (known: {sorted(SQL_PERMISSIONS)})")
        return value

    @model_validator(mode="after")
    def _kind_matches(self) -> SqlGrantRule:
        if self.kind is SqlGrantKind.PERMISSIONS and (not self.permissions or self.judge is not Judge.SQL_PERMISSIONS):
            raise ValueError("a permissions grant lists permissions and is judged by sql_permissions")
        if self.kind is SqlGrantKind.LOGIN and (self.permissions or self.judge is not Judge.SQL_LOGIN_AND_USER):
            raise ValueError("a login grant has no permissions and is judged by sql_login_and_user")
        return self


class ServiceIdentityRule(RuleBase):
    """A service runs as the principal (StartName compared by SID)."""

    type: Literal["service_identity"] = "service_identity"
    service: ServiceName
    display_name: Text
    account: Principal
    judge: Literal[Judge.SERVICE_RUNS_AS] = Judge.SERVICE_RUNS_AS


class PathAclRule(RuleBase):
    """MailEnable folder access: an explicit, non-inherited Allow ACE with CI|OI, so what the
    services create later inherits it. An inherited grant is not enough: it vanishes when
    the parent changes."""

    type: Literal["path_acl"] = "path_acl"
    target: FileTarget
    principal: Principal
    access: AccessName
    judge: Literal[Judge.EXPLICIT_ALLOW_ACE] = Judge.EXPLICIT_ALLOW_ACE

    @field_validator("access")
    @classmethod
    def _file_access(cls, value: AccessName) -> AccessName:
        if not masks.allowed_file_access(value):
            raise ValueError(f"unknown folder access {value}")
        return value


class PreflightRule(RuleBase):
    """Advice the guide gives before hardening, as a check around the apply."""

    type: Literal["preflight"] = "preflight"
    check: PreflightCheck
    target: str = Field(description="A folder placeholder (av_exclusion) or a service short name")
    judge: Literal[Judge.AV_EXCLUSION_COVERS, Judge.SERVICE_STOPPED_DURING_JOB]

    @model_validator(mode="after")
    def _target_fits_check(self) -> PreflightRule:
        if self.check is PreflightCheck.AV_EXCLUSION:
            validate_file_target(self.target)
            if self.judge is not Judge.AV_EXCLUSION_COVERS:
                raise ValueError("an av_exclusion check is judged by av_exclusion_covers")
        else:
            validate_service_name(self.target)
            if self.judge is not Judge.SERVICE_STOPPED_DURING_JOB:
                raise ValueError("a service check is judged by service_stopped_during_job")
        return self


class VerifyOnlyRule(RuleBase):
    """A check harden judges but never changes (`VERIFY_ONLY_TYPES`): `remedy` says how to fix it by hand."""

    remedy: Text = Field(description="How an operator fixes a failing host, with the source")


class RegistryValueRule(VerifyOnlyRule):
    """A value of an HKLM key, read through the named view and judged against `check`.

    `when_absent` is what Windows or MailEnable uses when the value is not set (a documented default, with
    its source in `deviation` or `remedy`); None means an absent value does not meet the rule.
    """

    type: Literal["registry_value"] = "registry_value"
    target: RegistryTarget
    wow64_32bit_view: bool = Field(default=False, description="Resolve through WOW6432Node on x64")
    value_name: str | None = Field(default=None, min_length=1, max_length=255)
    check: ValueCheck
    equals: int | str | None = None
    minimum: int | None = None
    maximum: int | None = None
    when_absent: int | str | None = None
    judge: Literal[Judge.REGISTRY_VALUE_MATCHES] = Judge.REGISTRY_VALUE_MATCHES

    @model_validator(mode="after")
    def _check_has_its_operands(self) -> RegistryValueRule:
        if self.check is ValueCheck.KEY_HAS_VALUES:
            if self.value_name is not None or self.equals is not None or self.minimum is not None:
                raise ValueError("key_has_values names no value and no operand")
            return self
        if self.value_name is None:
            raise ValueError(f"a {self.check} check names the value it reads (value_name)")
        if self.check is ValueCheck.EQUALS and (self.equals is None or self.minimum is not None or self.maximum):
            raise ValueError("an equals check has `equals` and no minimum/maximum")
        if self.check is ValueCheck.RANGE:
            if self.equals is not None or (self.minimum is None and self.maximum is None):
                raise ValueError("a range check has a minimum and/or a maximum and no `equals`")
            if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
                raise ValueError("the minimum is above the maximum")
        return self


class RegistryAclOnlyRule(VerifyOnlyRule):
    """Nobody but `allowed` holds any Allow ACE (explicit or inherited) on an HKLM key: e.g. the key that holds
    MailEnable's password-encryption key must not be readable by Users."""

    type: Literal["registry_acl_only"] = "registry_acl_only"
    target: RegistryTarget
    wow64_32bit_view: bool = Field(default=False, description="Resolve through WOW6432Node on x64")
    allowed: tuple[Principal, ...] = Field(min_length=1, max_length=20)
    judge: Literal[Judge.ONLY_ALLOWED_PRINCIPALS] = Judge.ONLY_ALLOWED_PRINCIPALS


class SmtpProbeRule(VerifyOnlyRule):
    """What the worker sees on the server's SMTP port (Server.smtp_port): an open relay, AUTH offered before
    STARTTLS, the certificate presented after STARTTLS. Observed by `remote.mailprobe`, not by the agent."""

    type: Literal["smtp_probe"] = "smtp_probe"
    check: SmtpCheck
    min_days_valid: int = Field(default=30, ge=0, le=365, description="certificate_valid: days it must still last")
    judge: Literal[Judge.SMTP_PROBE] = Judge.SMTP_PROBE


class MailEnableVersionRule(VerifyOnlyRule):
    """The installed MailEnable version is affected by no advisory of the imported advisory file for its edition
    (`lockdown.rules.advisories`); the advisories travel in the plan, so an import changes the next verdict."""

    type: Literal["mailenable_version"] = "mailenable_version"
    judge: Literal[Judge.NO_ADVISORY_AFFECTS] = Judge.NO_ADVISORY_AFFECTS


class IisIpRestrictionRule(VerifyOnlyRule):
    """Only the customer's management networks (and the host itself) may reach an IIS application, by IIS's
    IP and Domain Restrictions as applicationHost.config sets them (`lockdown.engine.iisconfig`). Needs the
    customer's management networks; without them the rule needs input."""

    type: Literal["iis_ip_restriction"] = "iis_ip_restriction"
    application: str = Field(pattern=r"^/[A-Za-z0-9_.\-]{1,100}$", description='The application path, e.g. "/meadmin"')
    judge: Literal[Judge.ONLY_MANAGEMENT_NETWORKS] = Judge.ONLY_MANAGEMENT_NETWORKS


Rule = Annotated[
    RegistryAclRule
    | FileAclRule
    | FileDenyRule
    | LocalUserRule
    | LocalGroupRule
    | GroupMemberRule
    | UserRightRule
    | SqlGrantRule
    | ServiceIdentityRule
    | PathAclRule
    | PreflightRule
    | RegistryValueRule
    | RegistryAclOnlyRule
    | SmtpProbeRule
    | MailEnableVersionRule
    | IisIpRestrictionRule,
    Field(discriminator="type"),
]
"""Any rule; the `type` field picks the model."""
