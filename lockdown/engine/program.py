"""The wire contract of agent v2: a *program* of primitive steps, and the executor's result.

Python (the engine) decides everything; the host's executor runs the steps in order and knows
nothing of rules, plans or compliance. This module is the single definition of that contract:
the PowerShell executor (`lockdown/agent/executor.ps1`) and winlab's emulation
(`winlab/agent/`) both implement exactly these semantics, and tests validate every program the
engine builds and every result a host returns against these models.

Executor semantics (the same on the host and in winlab):

1. `vars` starts as a copy of `Program.secrets` (service passwords; never echoed back).
2. For each step, in order:
   0. a step with `when_ok: [ids]` runs only if every listed (earlier) step ran with status `ok`;
      otherwise it is reported with status `skipped` (e.g. delete a journal only if every undo of
      its job succeeded);
   a. every *string* in `args` (at any depth) has each `{{NAME}}` (NAME = `[A-Z][A-Z0-9_]*`)
      replaced by `vars[NAME]`; an unknown NAME makes the step `error` with code `unbound_var`
      (the primitive is not called);
   b. the primitive named `op` is called with the substituted args; it returns exactly one
      dictionary (the step's `result`), or throws (status `error`, `error` = code + message);
   c. on success, for each `bind` entry VAR -> PATH, `vars[VAR] = lookup(result, PATH)` as PowerShell's
      `[string]` makes it (numbers in decimal, booleans True/False); a missing or null value leaves VAR
      unbound (PATH as in d.);
   d. on success, each `expect` entry PATH -> VALUE must hold: `lookup(result, PATH) == VALUE`
      (PATH is dot-separated; a numeric part indexes a list); each `expect_match` entry
      PATH -> REGEX must hold: the text of `lookup(result, PATH)` ("" for a missing or null value,
      True/False, decimal numbers, strings as they are; never used on lists or objects) matches
      REGEX (.NET `-cmatch` / Python `re.search`, case-sensitive). A miss makes the status
      `expect_failed`;
   e. when the step has a `journal` object and its status is `ok` and `result.changed` is
      true, the executor appends `{"step": id, "record": journal, "vars": {every variable bound so
      far, secrets excluded}}` to the host journal of this job
      (`%ProgramData%\\FleetLockdown\\journal\\<job_id>.jsonl`, a line per entry) *before* running the next step; when
      that append fails, the step's status becomes `error` (its result kept), so a critical step aborts;
   f. when the status is not `ok` and the step is `critical`, the program aborts: no further
      step runs, `aborted_at` is this step's id.
3. If the program aborted, every step of `on_failure` runs in order, with the same substitution,
   but never aborts (each reports its own status). A step with `when_done: "<id>"` runs only if
   step `<id>` ran with status `ok` and its result's `changed` is not false; otherwise it is
   reported with status `skipped`.
4. The result lists every step that was attempted, in order (steps after an abort are absent),
   then the on_failure steps. Results are untrusted input: the engine re-validates them here.

Program-level refusals (`ProgramResult.error`, no step runs): `unsupported_powershell`
(the bootstrap, on PowerShell < 5.1), `constrained_language`, `not_64bit_process`,
`not_elevated`, `version_mismatch`, `bad_program`.

Primitive semantics (args -> result; every write returns `changed`):

- host_info {} -> computer_name (upper case), system_root, os_caption, os_build (int), arch
  ("x64"/"x86", of the OS), domain_role (int, Win32_ComputerSystem.DomainRole 0-5),
  powershell_version ("5.1.17763.1"), process_64bit (bool), language_mode ("FullLanguage", ...),
  elevated (bool), user_name ("HOST\\user"), password_policy ({"min_length": int,
  "complexity": bool} or null).
- registry_read {path: "HKLM\\SOFTWARE\\...", view: 32|64, names: [..] or null = all}
  -> exists, values: {name: str|int|list[str]} (absent names are left out).
- sd_read {kind: "path"|"key", path, view (keys)} -> exists, object ("file"|"directory"|"key",
  null when absent), owner (SID), sddl (`GetSecurityDescriptorSddlForm(Owner, Access)` text, the
  full DACL with inherited ACEs; well-known SIDs and rights may be SDDL aliases), protected.
- dacl_write {kind, path, view, object, sddl: "D:" + flags + explicit ACEs, expected: sddl text
  as sd_read returned it, take_ownership} -> changed, conflict (true: the current DACL's explicit
  ACEs or protection differ from `expected`'s, both put in the host's own form — parsed, inherited
  ACEs dropped, `GetSddlForm(Access)` — so a write on a parent, which changes its children's
  inherited ACEs, is no conflict; nothing written), current (the sddl read when conflict, else null), after (the
  sddl as sd_read reads it after the write, null when nothing was written), failures
  ([{"path": str, "code": int}]: children the inheritance could not reach). The DACL is written
  with the object's own security class (DirectorySecurity for a directory, FileSecurity for a
  file, RegistrySecurity for a key); inherited ACEs are recomputed by Windows from the parent.
  With take_ownership: (1) the owner becomes BUILTIN\\Administrators (SeTakeOwnershipPrivilege
  enabled for that call only); (2) the DACL is written AND the previous owner put back in ONE
  call (Owner + Access sections, SeRestorePrivilege enabled for it), so inherited CREATOR OWNER
  ACEs are computed for the restored owner, not for Administrators; (3) if (2) fails, `finally`
  puts the previous owner back alone. No privilege is enabled for a plain DACL write.
- sid_lookup {names: [..]} -> sids: {name: SID or null}.
- user_get {name} -> exists, sid, flags (ADS UserFlags), groups (SIDs of the local groups it is in).
- group_get {name} -> exists, sid, members (SIDs).
- lsa_enum {right} -> sids (LsaEnumerateAccountsWithUserRight; none -> []).
- service_get {names: [..] or null = all} -> services: [{name, exists, display_name, start_name,
  start_name_sid (SID the StartName resolves to, or null), state ("Running", "Stopped", ...),
  start_mode ("Auto", "Manual", "Disabled"), path_name}]; a missing name gives exists=false.
- defender_get {} -> installed, paths (ExclusionPath).
- sql {instance (".", ".\\SQLEXPRESS"), statement (one of SQL_STATEMENTS), params {name: str}}
  -> rows (list of lists), changed (statements that write: true when executed). SQL errors throw
  with code "sql_<number>".
- tcp_probe {host, port, send (text or null), timeout_ms} -> connected, banner (first line),
  reply (first line after `send`), error (text or null). Never throws for a closed port.
- http_probe {url, allow_self_signed, timeout_ms} -> status (int or null), location, title
  (the <title> text), error. TLS 1.2 or newer; redirects not followed; a certificate error
  is an error unless allow_self_signed.
- logon_check {user, password} -> ok, code (LogonUser, LOGON32_LOGON_NETWORK; code = Win32 error).
- file_read {path, max_bytes (1..4 MiB)} -> exists (a file, not a folder), size (bytes on disk), data (base64 of
  the first max_bytes bytes, null when absent), truncated (size > the bytes read). Opened read-only, sharing
  read and write with other processes; no decoding, no interpretation.
- journal_read {job_id} -> exists, trusted (folder and file not junctions, owned by SYSTEM,
  Administrators or the caller), entries (the appended records), problem (text or null).
- lsa_add / lsa_remove {sid, right}; user_create {name, password, flags, description} -> sid,
  flags; user_set_flags {name, set, clear} -> before, after; user_set_password {name, password};
  user_delete {name, sid} and group_delete {name, sid} (only when the account still has `sid`);
  group_create {name, description} -> sid; group_member_add / group_member_remove {group, sid};
  service_change {name, start_name, password} -> return_value (Win32_Service.Change's; changed
  = return_value 0); service_control {name, action: "stop"|"start", timeout_ms} -> state after,
  code (Win32 exit code of a failed start/stop, 0 otherwise; never throws for 1058/1069);
  defender_add / defender_remove {path}; journal_delete {job_id}; sleep {seconds}.

Errors thrown by a primitive become the step's `error`: code "win32_<decimal>" when the Win32
error is known (5 = access denied, 1332 = no mapping), "sql_<number>", otherwise "exception".
"""

from __future__ import annotations

import json
import re
from typing import Any, Final, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from lockdown.rules.base import LockdownModel

PROGRAM_VERSION: Final = 1
VAR_PATTERN: Final = re.compile(r"\{\{([A-Z][A-Z0-9_]*)\}\}")
STEP_ID_PATTERN: Final = r"^[a-z0-9][a-z0-9_.\-]{0,79}$"
MAX_STEPS: Final = 20_000

# The primitives, by name: what each takes and returns. Arguments and results are plain JSON.
# (args keys; result keys). Optional args are marked with "?". The PowerShell implements each
# as `Invoke-FleetOp<CamelName>` in lockdown/agent/primitives.ps1; winlab in winlab/agent/primitives.py.
PRIMITIVES: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    # --- reads --------------------------------------------------------------------------------
    # host_info: facts about the host and this process; never fails on a missing feature.
    "host_info": (
        (),
        (
            "computer_name",
            "system_root",
            "os_caption",
            "os_build",
            "arch",
            "domain_role",
            "powershell_version",
            "process_64bit",
            "language_mode",
            "elevated",
            "user_name",
            "password_policy",
        ),
    ),
    # registry_read: values of one key through an explicit view (32 or 64).
    "registry_read": (("path", "view", "names"), ("exists", "values")),
    # sd_read: owner + DACL of a file, directory or registry key (sections Owner and Access only).
    # kind: "path" (file system; the host tells file from directory) or "key" (needs view).
    "sd_read": (("kind", "path", "view?"), ("exists", "object", "owner", "sddl", "protected")),
    # dacl_write: replace the DACL (explicit ACEs + protection, as SDDL "D:..." ) only if the
    # current one (as sd_read reads it) is still `expected`; take_ownership: make Administrators
    # the owner for the write and restore the previous owner in finally (TrustedInstaller files).
    "dacl_write": (
        ("kind", "path", "view?", "object", "sddl", "expected", "take_ownership"),
        ("changed", "conflict", "current", "after", "failures"),
    ),
    # sid_lookup: names -> SIDs (NTAccount.Translate); a name that does not resolve maps to null.
    "sid_lookup": (("names",), ("sids",)),
    "user_get": (("name",), ("exists", "sid", "flags", "groups")),
    "group_get": (("name",), ("exists", "sid", "members")),
    "lsa_enum": (("right",), ("sids",)),
    # service_get: names=null lists every service.
    "service_get": (("names",), ("services",)),
    "defender_get": ((), ("installed", "paths")),
    # sql: one statement of the fixed table (`SQL_STATEMENTS`), parameters passed as SqlParameter.
    "sql": (("instance", "statement", "params"), ("rows", "changed")),
    "tcp_probe": (("host", "port", "send", "timeout_ms"), ("connected", "banner", "reply", "error")),
    "http_probe": (("url", "allow_self_signed", "timeout_ms"), ("status", "location", "title", "error")),
    "logon_check": (("user", "password"), ("ok", "code")),
    "journal_read": (("job_id",), ("exists", "trusted", "entries", "problem")),
    # file_read: the first max_bytes bytes of one file, base64; the engine parses them (IIS applicationHost.config).
    "file_read": (("path", "max_bytes"), ("exists", "size", "data", "truncated")),
    # --- writes (each returns "changed") ------------------------------------------------------
    "lsa_add": (("sid", "right"), ("changed",)),
    "lsa_remove": (("sid", "right"), ("changed",)),
    "user_create": (("name", "password", "flags", "description"), ("changed", "sid", "flags")),
    # user_set_flags: flags = (flags | set) & ~clear, written only when different.
    "user_set_flags": (("name", "set", "clear"), ("changed", "before", "after")),
    "user_set_password": (("name", "password"), ("changed",)),
    # user_delete / group_delete: only when the account still has `sid`.
    "user_delete": (("name", "sid"), ("changed",)),
    "group_create": (("name", "description"), ("changed", "sid")),
    "group_delete": (("name", "sid"), ("changed",)),
    "group_member_add": (("group", "sid"), ("changed",)),
    "group_member_remove": (("group", "sid"), ("changed",)),
    # service_change: Win32_Service.Change(StartName, StartPassword) only (no other parameter).
    "service_change": (("name", "start_name", "password"), ("changed", "return_value")),
    # service_control: stop | start (never Restart-Service: it starts stopped services).
    "service_control": (("name", "action", "timeout_ms"), ("changed", "state", "code")),
    "defender_add": (("path",), ("changed",)),
    "defender_remove": (("path",), ("changed",)),
    "journal_delete": (("job_id",), ("changed",)),
    "sleep": (("seconds",), ("changed",)),
}

# The fixed SQL statement table (the host holds the same text; parameters by name, names quoted
# with QUOTENAME inside the statement, never spliced by the caller).
SQL_STATEMENTS: Final = (
    "whoami",  # IS_SRVROLEMEMBER('sysadmin'), SUSER_SNAME()
    "login_exists",  # @login -> [[login name]] when a login with that Windows account's SID exists
    "user_exists",  # @database, @login -> [[user name]] of the database user whose SID is the login's (by SUSER_SID)
    "permissions",  # @database, @login -> explicit DATABASE-scope permissions of the user mapped to the login's SID
    "create_login",  # @login (FROM WINDOWS)
    "drop_login",  # @login
    "create_user",  # @database, @user, @login
    "drop_user",  # @database, @user
    "grant",  # @database, @permission, @user
    "revoke",  # @database, @permission, @user
)

StepStatus = Literal["ok", "error", "expect_failed", "skipped"]


class Step(LockdownModel):
    """One primitive call (see the module docstring for what the executor does with each field)."""

    id: str = Field(pattern=STEP_ID_PATTERN)
    op: str
    args: dict[str, Any] = Field(default_factory=dict)
    bind: dict[str, str] = Field(default_factory=dict)
    expect: dict[str, Any] = Field(default_factory=dict)
    expect_match: dict[str, str] = Field(default_factory=dict)
    critical: bool = False
    journal: dict[str, Any] | None = None
    when_done: str | None = Field(default=None, pattern=STEP_ID_PATTERN)
    when_ok: list[str] = Field(default_factory=list, max_length=MAX_STEPS)

    @field_validator("op")
    @classmethod
    def _known_op(cls, value: str) -> str:
        if value not in PRIMITIVES:
            raise ValueError(f"unknown primitive {value!r}")
        return value

    @field_validator("bind")
    @classmethod
    def _var_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
                raise ValueError(f"bad variable name {name!r}")
        return value

    @model_validator(mode="after")
    def _args_known(self) -> Step:
        names, _ = PRIMITIVES[self.op]
        allowed = {n.rstrip("?") for n in names}
        required = {n for n in names if not n.endswith("?")}
        unknown = set(self.args) - allowed
        missing = required - set(self.args)
        if unknown or missing:
            raise ValueError(f"{self.op}: unknown args {sorted(unknown)}, missing args {sorted(missing)}")
        return self


class Program(LockdownModel):
    """What the executor receives on stdin (line 2 of the payload)."""

    agent_version: str
    program_version: int = PROGRAM_VERSION
    job_id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]{1,100}$")
    mode: str = Field(max_length=40, description="For the log and the PowerShell 2.0 answer only")
    secrets: dict[str, SecretStr] = Field(default_factory=dict, json_schema_extra={"writeOnly": True})
    steps: list[Step] = Field(max_length=MAX_STEPS)
    on_failure: list[Step] = Field(default_factory=list, max_length=MAX_STEPS)

    @model_validator(mode="after")
    def _ids_unique(self) -> Program:
        ids = [s.id for s in self.steps] + [s.id for s in self.on_failure]
        if len(ids) != len(set(ids)):
            raise ValueError("step ids must be unique")
        earlier: set[str] = set()
        for step in self.steps:
            if not set(step.when_ok) <= earlier:
                raise ValueError(f"step {step.id}: when_ok names a step that does not come before it")
            earlier.add(step.id)
        known = {s.id for s in self.steps}
        for step in self.on_failure:
            if step.when_done is not None and step.when_done not in known:
                raise ValueError(f"on_failure step {step.id} refers to unknown step {step.when_done}")
        return self

    def secret_values(self) -> list[str]:
        """DANGER: the secrets in clear (for redaction and for the stdin payload only)."""
        return [v.get_secret_value() for v in self.secrets.values() if v.get_secret_value()]

    def to_stdin_json(self) -> str:
        """The program as the executor receives it, WITH the secrets in clear.

        DANGER: the only place the secrets leave `SecretStr`. Send the result straight to the WinRM
        stdin stream (or winlab's executor); never log it, store it or put it in an error message.
        """
        data = self.model_dump(mode="json")
        data["secrets"] = {name: value.get_secret_value() for name, value in self.secrets.items()}
        return json.dumps(data, sort_keys=True, separators=(",", ":"))


class StepError(LockdownModel):
    code: str = Field(max_length=100)
    message: str = Field(max_length=4096)


class StepResult(LockdownModel):
    id: str = Field(pattern=STEP_ID_PATTERN)
    op: str = Field(max_length=40)
    status: StepStatus
    result: dict[str, Any] | None = None
    error: StepError | None = None


class ProgramError(LockdownModel):
    code: str = Field(max_length=100)
    message: str = Field(max_length=4096)


class ProgramResult(LockdownModel):
    """What the executor prints (one JSON document between the result markers)."""

    agent_version: str | None = Field(default=None, max_length=40)
    job_id: str | None = Field(default=None, max_length=100)
    mode: str | None = Field(default=None, max_length=40)
    program_version: int | None = None
    error: ProgramError | None = None
    steps: list[StepResult] = Field(default_factory=list, max_length=MAX_STEPS)
    aborted_at: str | None = None
    on_failure: list[StepResult] = Field(default_factory=list, max_length=MAX_STEPS)
    vars: dict[str, str] = Field(default_factory=dict, description="Bound variables, secrets excluded")

    def by_id(self) -> dict[str, StepResult]:
        return {s.id: s for s in [*self.steps, *self.on_failure]}


def lookup(data: Any, path: str) -> Any:
    """The value at a dot-separated path (numeric parts index lists); None when absent."""
    value = data
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value
