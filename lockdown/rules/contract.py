"""What the jobs layer asks of a host (`AgentRequest`) and what it gets back (`AgentResult`).

Since agent v2 these never travel to the host: the engine (`lockdown.engine.driver`) turns a
request into programs of primitive steps (`lockdown.engine.program`, the wire contract), sends
each as one WinRM invocation, and builds the `AgentResult` from what the host observed. The
JSON Schemas of the wire contract (Program, ProgramResult) are generated here
(`generate_schemas`); the checked-in copies live in `lockdown/agent/schema/` and a test fails
when they drift. Regenerate with `python -m lockdown.rules.regenerate_schemas`.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import Field, SecretStr, model_validator

from lockdown.rules.base import LockdownModel
from lockdown.rules.facts import Facts
from lockdown.rules.observed import MAX_SDDL, ObservedItem
from lockdown.rules.plan import Plan
from lockdown.rules.vocabulary import AgentMode, RuleAction, TargetKind

AGENT_VERSION_PATTERN: Final = r"^\d+\.\d+\.\d+$"
SCHEMA_FILES: Final = {"program": "program.schema.json", "result": "program-result.schema.json"}


class ChangeRecord(LockdownModel):
    """One change the agent made (or, in a rollback request, must undo), oldest first.

    `before` / `after` are the object's state in a kind-specific text form: SDDL for files
    and keys, JSON for rights, memberships, accounts, services and exclusions. Rollback undoes
    only what `after` added relative to `before`, so changes made by others are left alone.
    """

    rule_id: str = Field(max_length=200)
    target: str = Field(max_length=4096)
    target_kind: TargetKind
    sequence: int = Field(ge=0)
    before: str | None = Field(default=None, max_length=MAX_SDDL)
    after: str | None = Field(default=None, max_length=MAX_SDDL)
    created_object: bool = Field(default=False, description="The change created the object (e.g. the account)")
    job_id: str | None = Field(
        default=None,
        max_length=100,
        description="The job_id of the invocation that made the change (apply results, the host journal, "
        "rollback requests); with `sequence` it identifies the change across runs",
    )


class AgentError(LockdownModel):
    """A failure of the whole invocation (e.g. `requires_wmf51`, `not_admin`)."""

    code: str = Field(max_length=100)
    message: str = Field(max_length=4096)


SERVICE_ACCOUNT_PATTERN: Final = r"^[A-Za-z0-9_.\-]{1,20}$"
# A job id whose journal the agent reads: it becomes a file name on the host, so no path characters.
RECOVER_JOB_ID_PATTERN: Final = r"^[A-Za-z0-9_.\-]{1,100}$"
RecoverJobId = Annotated[str, Field(pattern=RECOVER_JOB_ID_PATTERN)]


class RotationReport(LockdownModel):
    """What a password change did (mode rotate_password, or apply with reset_adopted_password).

    `services` are the services that run as the account and were given the new password;
    `password_set` says the account's password was changed in this invocation; `restored` says
    the previous password was put back (account and services) after a failed health check.
    """

    account: str = Field(max_length=256)
    account_sid: str | None = Field(default=None, max_length=200)
    services: list[str] = Field(default_factory=list, max_length=200)
    password_set: bool = False
    restored: bool = False


HTTP_URL_PATTERN: Final = r"^https?://[^\s/?#]+[^\s]*$"


class HealthTargets(LockdownModel):
    """Where the post-change health check looks (the Server's configured ports and URLs).

    Every field is optional: a missing port falls back to the protocol's default (25/110/143),
    a missing URL means that login page is "not checked" (reported as such, never as ok).
    """

    smtp_port: int | None = Field(default=None, ge=1, le=65535)
    pop_port: int | None = Field(default=None, ge=1, le=65535)
    imap_port: int | None = Field(default=None, ge=1, le=65535)
    webmail_url: str | None = Field(default=None, max_length=2048, pattern=HTTP_URL_PATTERN)
    admin_url: str | None = Field(default=None, max_length=2048, pattern=HTTP_URL_PATTERN)
    allow_self_signed: bool = Field(
        default=False, description="The server's record says its login pages use a self-signed certificate"
    )


class HealthStatus(StrEnum):
    OK = "ok"
    FAILED = "failed"
    NOT_CHECKED = "not_checked"


HEALTH_CHECKS: Final = ("services", "smtp", "pop", "imap", "mta", "webmail", "webadmin")


class HealthCheckResult(LockdownModel):
    """One check of the post-change health check, as both the .ps1 and winlab report it."""

    check: str = Field(pattern=r"^(services|smtp|pop|imap|mta|webmail|webadmin)$")
    status: HealthStatus
    detail: str = Field(default="", max_length=1024)


class AgentRequest(LockdownModel):
    """What the agent receives on stdin.

    `service_password` (apply, rotate_password) is the generated IME_SYSTEM password: secret,
    never logged, redacted from events and errors. `previous_service_password` (rotate_password
    only) is the password the host has now: the agent checks it before changing anything and
    puts it back when the new one fails. `reset_adopted_password` (apply only) is the operator's
    choice to reset the password of an account that already existed (MEInstaller's hardening);
    that reset cannot be rolled back. `rollback` lists the changes to undo, oldest first, each
    with the `job_id` of the run that made it and that run's own `sequence` (the agent undoes the
    list in reverse order). `recover_job_ids` (rollback only) are the job ids of runs whose result
    never reached the database: the agent reads their entries from its journal on the host
    (`%ProgramData%\\FleetLockdown\\journal\\<job_id>.jsonl`, written before each change returns),
    drops those already in `rollback` (same job_id and sequence), undoes them before the listed
    changes (a lost run is taken as newer than every recorded change) and reports them in the
    result's `recovered`. `health` tells the health check which ports and login pages to test
    (optional; see `HealthTargets`).
    """

    agent_version: str = Field(pattern=AGENT_VERSION_PATTERN)
    mode: AgentMode
    job_id: str = Field(min_length=1, max_length=100)
    plan: Plan | None = None
    service_password: SecretStr | None = Field(default=None, json_schema_extra={"writeOnly": True})
    previous_service_password: SecretStr | None = Field(default=None, json_schema_extra={"writeOnly": True})
    service_account: str = Field(default="IME_SYSTEM", pattern=SERVICE_ACCOUNT_PATTERN)
    reset_adopted_password: bool = False
    rollback: list[ChangeRecord] = Field(default_factory=list, max_length=100_000)
    recover_job_ids: list[RecoverJobId] = Field(default_factory=list, max_length=1000)
    health: HealthTargets | None = None

    @model_validator(mode="after")
    def _mode_fits_payload(self) -> AgentRequest:
        if self.mode in {AgentMode.VERIFY, AgentMode.APPLY} and self.plan is None:
            raise ValueError(f"mode {self.mode} needs a plan")
        password_modes = {AgentMode.APPLY, AgentMode.ROTATE_PASSWORD}
        if self.service_password is not None and self.mode not in password_modes:
            raise ValueError("service_password is only sent with mode apply or rotate_password")
        if self.mode is AgentMode.ROTATE_PASSWORD:
            if self.service_password is None or self.previous_service_password is None:
                raise ValueError("mode rotate_password needs service_password and previous_service_password")
            if self.service_password.get_secret_value() == self.previous_service_password.get_secret_value():
                raise ValueError("the new service password must differ from the previous one")
        elif self.previous_service_password is not None:
            raise ValueError("previous_service_password is only sent with mode rotate_password")
        if self.reset_adopted_password and self.mode is not AgentMode.APPLY:
            raise ValueError("reset_adopted_password is only sent with mode apply")
        if self.rollback and self.mode is not AgentMode.ROLLBACK:
            raise ValueError("a rollback change list is only sent with mode rollback")
        if self.recover_job_ids and self.mode is not AgentMode.ROLLBACK:
            raise ValueError("recover_job_ids are only sent with mode rollback")
        return self


class AgentResult(LockdownModel):
    """What the agent prints (one JSON document).

    `facts` comes with discover, and with verify and apply, which read them again in their own programs
    (None when one of those reads failed); `items` carries one observation per plan item (with
    before/after SDDL in apply mode); `changes` lists what was changed, in order, for
    the ChangeRecords rollback uses; `rotation` reports a password change (rotate_password,
    or an adopted account's reset in apply). `recovered` (rollback) lists the journal entries of
    the request's `recover_job_ids` that the agent added to the changes to undo. `health` lists
    the checks of the last health check the invocation ran (after a restart), each ok / failed /
    not_checked. `error` is set when the invocation as a whole failed.
    """

    agent_version: str = Field(pattern=AGENT_VERSION_PATTERN)
    mode: AgentMode
    job_id: str = Field(min_length=1, max_length=100)
    facts: Facts | None = None
    items: list[ObservedItem] = Field(default_factory=list, max_length=10_000)
    changes: list[ChangeRecord] = Field(default_factory=list, max_length=100_000)
    recovered: list[ChangeRecord] = Field(default_factory=list, max_length=100_000)
    action: RuleAction = RuleAction.NONE
    rotation: RotationReport | None = None
    health: list[HealthCheckResult] = Field(default_factory=list, max_length=20)
    error: AgentError | None = None


def generate_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schemas of the wire contract, keyed "program" and "result"."""
    from lockdown.engine.program import Program, ProgramResult

    return {
        "program": Program.model_json_schema(mode="validation"),
        "result": ProgramResult.model_json_schema(mode="validation"),
    }


def schema_text(schema: dict[str, Any]) -> str:
    """The canonical file form of a schema (sorted keys, two-space indent, final newline)."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_schemas(directory: Path) -> None:
    """Write program.schema.json and program-result.schema.json into `directory`."""
    for name, schema in generate_schemas().items():
        (directory / SCHEMA_FILES[name]).write_text(schema_text(schema), encoding="utf-8")
