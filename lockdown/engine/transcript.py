"""Transcripts of the agent's primitives: what `manage.py agent_record` writes and the contract test replays.

A transcript is a JSON document (format below, `FORMAT`/`FORMAT_VERSION`) holding the *programs* the
recorder sent to one host and the host's *results*, step by step (primitive, arguments, result),
with every host-specific value replaced by a placeholder, so a transcript recorded on one host can be
replayed against another (winlab) and compared exactly. tests/transcripts/README.md documents it
for people; this module is its definition.

```
{"format": "fleet-lockdown-transcript", "format_version": 1,
 "agent_version": "2.0.0", "program_version": 1,
 "recorded_from": "winlab" | "windows",          # what answered (told by the recorder, see README)
 "host": {normalised host_info of the recorded host},
 "replay": {"winlab_spec": {HostSpec fields}},   # the winlab host the replay builds (editable)
 "placeholders": {placeholder: meaning},
 "invocations": [{"program": Program (secrets: {NAME: "<SECRET>"}), "result": ProgramResult}]}
```

Normalisation (`Normaliser`, applied to each program then its result, in order, with one state for
the whole transcript, so the numbering is the same wherever the host behaves the same):
- `<COMPUTER>`: the computer name (case-insensitive, as a whole word), `<USER>`: the WinRM account's
  name, `<SCRATCH>`: the random part of the recorder's scratch names;
- machine and domain SIDs: `S-1-5-21-a-b-c` becomes `S-1-5-21-<M1>` (numbered by first appearance) and
  a RID of 1000 or more `<R1>`, ...; well-known SIDs, RIDs below 1000 and service SIDs (derived from
  the service name) are kept;
- ISO-8601 times: `<TIME>`;
- error messages are dropped (`"message": null`): the codes (`win32_5`, `sql_15025`, ...) are
  compared, the texts of Windows' exceptions and winlab's differ by design;
- secrets (the scratch user's passwords) never appear: programs name them, `<SECRET>`.
"""

from __future__ import annotations

import re
import secrets as random_secrets
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from lockdown.agent import AGENT_VERSION
from lockdown.engine import health
from lockdown.engine.observe import read_steps
from lockdown.engine.program import PROGRAM_VERSION, Program, ProgramResult, Step
from lockdown.rules.contract import HealthTargets
from lockdown.rules.facts import Facts
from lockdown.rules.plan import Plan

FORMAT: Final = "fleet-lockdown-transcript"
FORMAT_VERSION: Final = 1
SECRET: Final = "<SECRET>"  # noqa: S105 - the placeholder written instead of a secret
PLACEHOLDERS: Final = {
    "<COMPUTER>": "the host's computer name",
    "<USER>": "the WinRM account's user name",
    "<SCRATCH>": "the random part of the recorder's scratch object names",
    "S-1-5-21-<Mn>": "the n-th machine or domain SID seen (S-1-5-21-a-b-c)",
    "<Rn>": "the n-th relative identifier >= 1000 seen under such a SID",
    "<TIME>": "an ISO-8601 time",
    "<SECRET>": "a secret of the program (generated anew by the replay)",
}
_SID: Final = re.compile(r"S-1-5-21-(\d+-\d+-\d+)(?:-(\d+))?", re.IGNORECASE)
_NORMAL_SID: Final = re.compile(r"S-1-5-21-<M(\d+)>(?:-<R(\d+)>)?")
_TIME: Final = re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})?\b")
_TOKEN: Final = re.compile(r"<(COMPUTER|USER|SCRATCH)>")
FIRST_RID: Final = 1000


def _word(value: str) -> re.Pattern[str]:
    return re.compile(r"(?<![A-Za-z0-9_])" + re.escape(value) + r"(?![A-Za-z0-9_])", re.IGNORECASE)


@dataclass
class Normaliser:
    """Host-specific values -> placeholders (see the module docstring); `restore` goes back.

    One instance per transcript (recording) or per replay: SIDs are numbered in the order they are
    first seen, so both sides give the same numbers exactly when the hosts behave the same.
    """

    computer: str
    user: str
    scratch: str
    machines: dict[str, int] = field(default_factory=dict)
    rids: dict[str, int] = field(default_factory=dict)

    def _sid(self, match: re.Match[str]) -> str:
        machine = self.machines.setdefault(match.group(1), len(self.machines) + 1)
        text = f"S-1-5-21-<M{machine}>"
        rid = match.group(2)
        if rid is None:
            return text
        if int(rid) < FIRST_RID:
            return f"{text}-{rid}"
        return f"{text}-<R{self.rids.setdefault(rid, len(self.rids) + 1)}>"

    def text(self, value: str) -> str:
        value = _SID.sub(self._sid, value)
        value = _TIME.sub("<TIME>", value)
        if self.scratch:
            value = value.replace(self.scratch, "<SCRATCH>")
        for raw, placeholder in ((self.computer, "<COMPUTER>"), (self.user, "<USER>")):
            if raw:
                value = _word(raw).sub(placeholder, value)
        return value

    def value(self, data: Any) -> Any:
        """Every string (dictionary keys too) normalised, at any depth."""
        if isinstance(data, str):
            return self.text(data)
        if isinstance(data, list):
            return [self.value(item) for item in data]
        if isinstance(data, dict):
            return {self.text(str(key)): self.value(item) for key, item in data.items()}
        return data

    def restore_text(self, value: str) -> str:
        """A placeholder text as this host spells it; KeyError for a SID placeholder not seen yet."""
        machines = {n: raw for raw, n in self.machines.items()}
        rids = {n: raw for raw, n in self.rids.items()}

        def sid(match: re.Match[str]) -> str:
            text = f"S-1-5-21-{machines[int(match.group(1))]}"
            return text if match.group(2) is None else f"{text}-{rids[int(match.group(2))]}"

        value = _NORMAL_SID.sub(sid, value)
        tokens = {"COMPUTER": self.computer, "USER": self.user, "SCRATCH": self.scratch}
        return _TOKEN.sub(lambda m: tokens[m.group(1)], value)

    def restore(self, data: Any) -> Any:
        if isinstance(data, str):
            return self.restore_text(data)
        if isinstance(data, list):
            return [self.restore(item) for item in data]
        if isinstance(data, dict):
            return {self.restore_text(str(key)): self.restore(item) for key, item in data.items()}
        return data


def scratch_token() -> str:
    """Eight random lower-case letters: no hex digit run or SID can be mistaken for it."""
    return "".join(random_secrets.choice(string.ascii_lowercase) for _ in range(8))


def scratch_password() -> str:
    """A password every modelled and real policy accepts (upper, lower, digit, symbol, 24+ characters)."""
    return "Fr-" + random_secrets.token_urlsafe(18) + "-9a"


# --- what the recorder sends ------------------------------------------------------------------------
@dataclass(frozen=True)
class Scratch:
    """The names of the recorder's scratch objects (all contain `token`)."""

    token: str

    @property
    def user(self) -> str:
        return f"flt_{self.token}_u"

    @property
    def group(self) -> str:
        return f"flt_{self.token}_g"

    @property
    def job_id(self) -> str:
        """The scratch program's job id: its journal file is the scratch file."""
        return f"flt-{self.token}"

    @property
    def service(self) -> str:
        return f"flt_{self.token}_svc"

    @property
    def exclusion(self) -> str:
        return f"C:\\ProgramData\\flt_{self.token}"

    @property
    def journal_file(self) -> str:
        return f"C:\\ProgramData\\FleetLockdown\\journal\\{self.job_id}.jsonl"


SECRET_VARS: Final = ("SCRATCH_PASSWORD", "SCRATCH_PASSWORD_2")
SCRATCH_USER_FLAGS: Final = 0x10000  # ADS_UF_DONT_EXPIRE_PASSWD
ACCOUNTDISABLE: Final = 0x2
RIGHT: Final = "SeServiceLogonRight"


def _program(job_id: str, mode: str, steps: list[Step], secrets: dict[str, str] | None = None) -> Program:
    from pydantic import SecretStr

    return Program(
        agent_version=AGENT_VERSION,
        job_id=job_id,
        mode=mode,
        steps=steps,
        secrets={name: SecretStr(value) for name, value in (secrets or {}).items()},
    )


def discover_program(scratch: Scratch) -> Program:
    """Invocation 1: the facts the plan is compiled from (the driver's discover steps)."""
    from lockdown.engine.driver import discover_steps

    return _program(f"rec-{scratch.token}", "record", discover_steps("IME_SYSTEM"))


# Registry values read in both views: (key, names or None = every value).
REGISTRY_VALUES: Final = (
    ("HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion", ["ProductName", "CurrentBuildNumber"]),
    ("HKLM\\SOFTWARE\\Mail Enable\\Mail Enable", None),
)


def read_program(scratch: Scratch, plan: Plan, targets: HealthTargets) -> Program:
    """Invocation 2: every read primitive over the profile's objects (the verify's reads) and the host."""
    reads = read_steps(plan, "r", services=health.MAILENABLE_SERVICES)
    # The profile's keys in the other registry view too (WOW6432Node), and registry values in both views.
    seen = {(s.args.get("path", "").casefold(), s.args.get("view")) for s in reads.steps if s.op == "sd_read"}
    other_view = [
        Step(id=f"v{n}", op="sd_read", args={**s.args, "view": 32 if s.args.get("view") == 64 else 64})
        for n, s in enumerate(s for s in reads.steps if s.op == "sd_read" and s.args.get("kind") == "key")
        if (s.args["path"].casefold(), 32 if s.args.get("view") == 64 else 64) not in seen
    ]
    values = [
        Step(id=f"x.reg{view}.{n}", op="registry_read", args={"path": path, "view": view, "names": names})
        for n, (path, names) in enumerate(REGISTRY_VALUES)
        for view in (64, 32)
    ]
    steps = [
        Step(id="host", op="host_info"),
        *reads.steps,
        *other_view,
        *values,
        Step(id="x.services", op="service_get", args={"names": list(health.MAILENABLE_SERVICES)}),
        Step(id="x.defender", op="defender_get"),
        *health.probe_steps("x.", targets),
        Step(
            id="x.http",
            op="http_probe",
            args={"url": "http://localhost/", "allow_self_signed": False, "timeout_ms": health.PROBE_TIMEOUT_MS},
        ),
        Step(id="x.journal", op="journal_read", args={"job_id": scratch.job_id}),
    ]
    return _program(f"rec-{scratch.token}", "record", steps)


def _sql_steps(computer: str, scratch: Scratch, instance: str) -> list[Step]:
    login = f"{computer}\\{scratch.user}"

    def sql(step_id: str, statement: str, params: dict[str, str]) -> Step:
        return Step(id=step_id, op="sql", args={"instance": instance, "statement": statement, "params": params})

    return [
        sql("q.whoami", "whoami", {}),
        sql("q.login0", "login_exists", {"login": login}),
        sql("q.create", "create_login", {"login": login}),
        sql("q.login1", "login_exists", {"login": login}),
        sql("q.drop", "drop_login", {"login": login}),
        sql("q.login2", "login_exists", {"login": login}),
    ]


def scratch_program(scratch: Scratch, computer: str, sql_instance: str | None, passwords: tuple[str, str]) -> Program:
    """Invocation 3: every write primitive, on scratch objects only, each removed again at the end.

    No step is critical, so the clean-up steps at the end always run. What has no create primitive
    (registry keys, folders, services) is not written at all: see tests/transcripts/README.md.
    """
    user, group = scratch.user, scratch.group
    qualified = f"{computer}\\{user}"
    file_args = {"kind": "path", "path": scratch.journal_file}
    steps = [
        # The journal record makes the executor create the scratch file (the job's journal).
        Step(
            id="w.group",
            op="group_create",
            args={"name": group, "description": "Fleet Lockdown agent_record scratch group"},
            bind={"SG": "sid"},
            journal={"scratch": "group"},
        ),
        Step(
            id="w.user",
            op="user_create",
            args={
                "name": user,
                "password": "{{SCRATCH_PASSWORD}}",
                "flags": SCRATCH_USER_FLAGS,
                "description": "Fleet Lockdown agent_record scratch user",
            },
            bind={"SU": "sid"},
        ),
        Step(id="w.user_get", op="user_get", args={"name": user}),
        Step(id="w.lookup", op="sid_lookup", args={"names": [qualified, group]}),
        Step(id="w.add", op="group_member_add", args={"group": group, "sid": "{{SU}}"}),
        Step(id="w.add2", op="group_member_add", args={"group": group, "sid": "{{SU}}"}),
        Step(id="w.group_get", op="group_get", args={"name": group}),
        Step(id="w.logon", op="logon_check", args={"user": qualified, "password": "{{SCRATCH_PASSWORD}}"}),
        Step(id="w.password", op="user_set_password", args={"name": user, "password": "{{SCRATCH_PASSWORD_2}}"}),
        Step(id="w.logon_old", op="logon_check", args={"user": qualified, "password": "{{SCRATCH_PASSWORD}}"}),
        Step(id="w.logon_new", op="logon_check", args={"user": qualified, "password": "{{SCRATCH_PASSWORD_2}}"}),
        Step(id="w.disable", op="user_set_flags", args={"name": user, "set": ACCOUNTDISABLE, "clear": 0}),
        Step(id="w.disable2", op="user_set_flags", args={"name": user, "set": ACCOUNTDISABLE, "clear": 0}),
        Step(id="w.logon_disabled", op="logon_check", args={"user": qualified, "password": "{{SCRATCH_PASSWORD_2}}"}),
        Step(id="w.enable", op="user_set_flags", args={"name": user, "set": 0, "clear": ACCOUNTDISABLE}),
        Step(id="w.lsa_add", op="lsa_add", args={"sid": "{{SU}}", "right": RIGHT}),
        Step(id="w.lsa_add2", op="lsa_add", args={"sid": "{{SU}}", "right": RIGHT}),
        Step(id="w.lsa_enum", op="lsa_enum", args={"right": RIGHT}),
        Step(id="w.lsa_remove", op="lsa_remove", args={"sid": "{{SU}}", "right": RIGHT}),
        Step(id="w.lsa_remove2", op="lsa_remove", args={"sid": "{{SU}}", "right": RIGHT}),
        Step(id="w.journal", op="journal_read", args={"job_id": scratch.job_id}),
        Step(id="w.file", op="sd_read", args=file_args, bind={"FILE_SDDL": "sddl"}),
        Step(
            id="w.dacl_conflict",
            op="dacl_write",
            args={
                **file_args,
                "object": "file",
                "sddl": "D:P(A;;FA;;;SY)",
                "expected": "O:BAD:P(A;;FA;;;WD)",
                "take_ownership": False,
            },
        ),
        Step(
            id="w.dacl",
            op="dacl_write",
            args={
                **file_args,
                "object": "file",
                "sddl": "D:(A;;FR;;;{{SG}})",
                "expected": "{{FILE_SDDL}}",
                "take_ownership": False,
            },
            bind={"FILE_AFTER": "after"},
        ),
        Step(
            id="w.dacl_owner",
            op="dacl_write",
            args={
                **file_args,
                "object": "file",
                "sddl": "D:AI",
                "expected": "{{FILE_AFTER}}",
                "take_ownership": True,
            },
        ),
        Step(id="w.file_after", op="sd_read", args=file_args),
        Step(id="w.defender_add", op="defender_add", args={"path": scratch.exclusion}),
        Step(id="w.defender_get", op="defender_get"),
        Step(id="w.defender_remove", op="defender_remove", args={"path": scratch.exclusion}),
        Step(id="w.svc_get", op="service_get", args={"names": [scratch.service]}),
        Step(
            id="w.svc_stop",
            op="service_control",
            args={"name": scratch.service, "action": "stop", "timeout_ms": 1000},
        ),
        Step(
            id="w.svc_change",
            op="service_change",
            args={"name": scratch.service, "start_name": qualified, "password": "{{SCRATCH_PASSWORD_2}}"},
        ),
        Step(id="w.sleep", op="sleep", args={"seconds": 0}),
    ]
    if sql_instance is not None:
        steps += _sql_steps(computer, scratch, sql_instance)
    steps += [
        # Clean-up: every scratch object goes, whatever failed above.
        Step(id="c.member", op="group_member_remove", args={"group": group, "sid": "{{SU}}"}),
        Step(id="c.member2", op="group_member_remove", args={"group": group, "sid": "{{SU}}"}),
        Step(id="c.user", op="user_delete", args={"name": user, "sid": "{{SU}}"}),
        Step(id="c.group", op="group_delete", args={"name": group, "sid": "{{SG}}"}),
        Step(id="c.journal", op="journal_delete", args={"job_id": scratch.job_id}),
    ]
    first, second = passwords
    return _program(scratch.job_id, "record", steps, {"SCRATCH_PASSWORD": first, "SCRATCH_PASSWORD_2": second})


def check_program(scratch: Scratch) -> Program:
    """Invocation 4: the scratch objects are gone."""
    steps = [
        Step(id="k.user", op="user_get", args={"name": scratch.user}),
        Step(id="k.group", op="group_get", args={"name": scratch.group}),
        Step(id="k.journal", op="journal_read", args={"job_id": scratch.job_id}),
        Step(id="k.file", op="sd_read", args={"kind": "path", "path": scratch.journal_file}),
        Step(id="k.lsa", op="lsa_enum", args={"right": RIGHT}),
    ]
    return _program(f"rec-{scratch.token}", "record", steps)


def sql_instance_of(facts: Facts) -> str | None:
    """The SQL Server instance the host runs (MSSQLSERVER -> ".", MSSQL$NAME -> ".\\NAME"), or None."""
    for name in facts.services:
        if name.upper() == "MSSQLSERVER":
            return "."
        if name.upper().startswith("MSSQL$"):
            return ".\\" + name[6:]
    return None


OS_BY_BUILD: Final = {7601: "2008r2", 14393: "2016", 17763: "2019", 20348: "2022"}


def winlab_spec(facts: Facts) -> dict[str, Any]:
    """The winlab HostSpec fields a replay builds from the recorded host's facts (edit by hand where they miss)."""
    spec: dict[str, Any] = {"os": OS_BY_BUILD.get(facts.os_build, "2019")}
    if facts.mailenable_edition:
        spec["edition"] = facts.mailenable_edition
    if facts.mailenable_version:
        spec["version"] = facts.mailenable_version
    if facts.program_dir and "plesk" in facts.program_dir.lower():
        spec["install_path"] = "plesk"
    if spec["os"] == "2008r2" and facts.powershell_version.startswith("5."):
        spec["wmf51"] = True
    if sql_instance_of(facts) is not None:
        spec["sql"] = True
        instance = sql_instance_of(facts)
        if instance and instance != ".":
            spec["sql_instance"] = instance[2:]
    if facts.windows_search_present:
        spec["wsearch"] = True
    if facts.indexing_service_present:
        spec["indexing_service"] = True
    if facts.domain_role.value not in ("standalone_workstation", "standalone_server"):
        spec["domain_member"] = True
    if facts.store_group_sid and facts.store_group_name:
        spec["hardened_by_meinstaller"] = facts.store_group_name
    return spec


# --- the document -----------------------------------------------------------------------------------
def program_document(program: Program) -> dict[str, Any]:
    """A program as the transcript stores it: secrets named, never their values."""
    data = program.model_dump(mode="json")
    data["secrets"] = dict.fromkeys(program.secrets, SECRET)
    return data


def result_document(result: ProgramResult) -> dict[str, Any]:
    """A result as the transcript compares it: error messages dropped (codes kept)."""
    data = result.model_dump(mode="json")
    if data.get("error"):
        data["error"]["message"] = None
    for key in ("steps", "on_failure"):
        for step in data.get(key) or []:
            if step.get("error"):
                step["error"]["message"] = None
    return data


def transcript_document(
    *,
    recorded_from: str,
    normaliser: Normaliser,
    invocations: list[tuple[Program, ProgramResult]],
    spec: dict[str, Any],
    mail_ports: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Normalise each program then its result, in order, into the transcript document."""
    entries = []
    host: dict[str, Any] = {}
    for program, result in invocations:
        normal_program = normaliser.value(program_document(program))
        normal_result = normaliser.value(result_document(result))
        entries.append({"program": normal_program, "result": normal_result})
        for step in normal_result.get("steps") or []:
            if step.get("op") == "host_info" and step.get("status") == "ok" and not host:
                host = step.get("result") or {}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "agent_version": AGENT_VERSION,
        "program_version": PROGRAM_VERSION,
        "recorded_from": recorded_from,
        "host": host,
        "replay": {"winlab_spec": spec, "mail_ports": dict(mail_ports or {})},
        "placeholders": dict(PLACEHOLDERS),
        "invocations": entries,
    }


class TranscriptError(ValueError):
    """Not a transcript this version can replay."""


def check_document(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise TranscriptError(f"not a {FORMAT} document")
    if data.get("format_version") != FORMAT_VERSION:
        raise TranscriptError(f"format_version {data.get('format_version')!r}, this is {FORMAT_VERSION}")
    if not isinstance(data.get("invocations"), list):
        raise TranscriptError("no invocations")
    return data


def differences(recorded: Any, replayed: Any, path: str = "") -> Iterator[str]:
    """Every place where two JSON values differ (bool is not int), as `path: recorded ... replayed ...`."""
    if isinstance(recorded, dict) and isinstance(replayed, dict):
        for key in sorted(set(recorded) | set(replayed)):
            where = f"{path}.{key}" if path else str(key)
            if key not in recorded:
                yield f"{where}: not recorded, replayed {replayed[key]!r}"
            elif key not in replayed:
                yield f"{where}: recorded {recorded[key]!r}, absent in the replay"
            else:
                yield from differences(recorded[key], replayed[key], where)
        return
    if isinstance(recorded, list) and isinstance(replayed, list):
        if len(recorded) != len(replayed):
            yield f"{path}: recorded {len(recorded)} items, replayed {len(replayed)}"
        for n, (a, b) in enumerate(zip(recorded, replayed, strict=False)):
            yield from differences(a, b, f"{path}.{n}")
        return
    if type(recorded) is not type(replayed) or recorded != replayed:
        yield f"{path}: recorded {recorded!r}, replayed {replayed!r}"


# --- recording ----------------------------------------------------------------------------------------
class RecordRefused(Exception):
    """The host refused a recorder's program as a whole (not elevated, PowerShell 2.0, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


def record(
    invoke: Callable[[Program], ProgramResult],
    *,
    recorded_from: str,
    targets: HealthTargets,
    token: str | None = None,
) -> dict[str, Any]:
    """Record one host through `invoke` (one call = one WinRM invocation; always 4) into a transcript.

    1 discover (the facts), 2 every read primitive over the built-in profile's objects for those facts
    and the host's mail ports and pages, 3 every write primitive on scratch objects, removed again at
    its end, 4 a check that they are gone. The programs are the engine's `Program`s, sent like every
    job's; nothing here touches an object the recorder did not create, except by reading it.
    """
    from lockdown.engine.driver import facts_from
    from lockdown.rules import compile_plan, load_builtin_profile
    from lockdown.rules.vocabulary import Tristate

    scratch = Scratch(token or scratch_token())
    invocations: list[tuple[Program, ProgramResult]] = []

    def send(program: Program) -> ProgramResult:
        result = invoke(program)
        if result.error is not None:
            raise RecordRefused(result.error.code, result.error.message)
        invocations.append((program, result))
        return result

    first = send(discover_program(scratch))
    facts = facts_from(first.by_id())
    host = (first.by_id()["host"].result or {}) if "host" in first.by_id() else {}
    computer = str(host.get("computer_name") or facts.computer_name)
    user = str(host.get("user_name") or "").rsplit("\\", 1)[-1]
    instance = sql_instance_of(facts)
    declared = facts.model_copy(
        update={
            "sql_integrated": Tristate.YES if instance is not None else Tristate.NO,
            "integrated_auth": Tristate.NO,
        }
    )
    plan = compile_plan(load_builtin_profile(), declared)
    send(read_program(scratch, plan, targets))
    send(scratch_program(scratch, computer, instance, (scratch_password(), scratch_password())))
    send(check_program(scratch))
    normaliser = Normaliser(computer=computer, user=user, scratch=scratch.token)
    return transcript_document(
        recorded_from=recorded_from,
        normaliser=normaliser,
        invocations=invocations,
        spec=winlab_spec(facts),
        mail_ports={
            str(port or default): protocol
            for port, default, protocol in (
                (targets.smtp_port, 25, "smtp"),
                (targets.pop_port, 110, "pop"),
                (targets.imap_port, 143, "imap"),
            )
        },
    )


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Normaliser",
    "RecordRefused",
    "Scratch",
    "TranscriptError",
    "check_document",
    "check_program",
    "differences",
    "discover_program",
    "read_program",
    "record",
    "scratch_password",
    "scratch_program",
    "scratch_token",
    "transcript_document",
    "winlab_spec",
]
