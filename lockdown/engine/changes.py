"""The exact change per object, and each change's exact inverse.

`ApplyBuilder` turns (plan, observation) into the steps of an apply program, in the order
accounts → group → membership → rights → registry/file/folder ACLs → SQL → services, each
mutating step carrying the ChangeRecord it makes (journalled on the host before the next step)
and an inverse in `on_failure`. `inverse_steps` turns a recorded change plus the object's state
now into the steps that undo only what the change did. Pure Python: tests run all of it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from lockdown.engine import sddl
from lockdown.engine.observe import (
    ACL_TYPES,
    SQL_INSTANCE_DEFAULT,
    UF_ACCOUNTDISABLE,
    UF_DONT_EXPIRE_PASSWD,
    UF_PASSWD_CANT_CHANGE,
    Observed,
    ReadError,
    acl_read_args,
    local_account,
    short_name,
    sql_instance,
)
from lockdown.engine.program import Step, StepResult
from lockdown.rules.contract import ChangeRecord
from lockdown.rules.observed import Ace, ObservedItem
from lockdown.rules.plan import PlanItem
from lockdown.rules.vocabulary import AceType, Judge, PreflightCheck, RuleType, TargetKind

TRUSTED_INSTALLER: Final = "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464"
# Accounts a service can be put back to without a password (Win32_Service.Change with StartPassword "").
BUILTIN_SERVICE_ACCOUNTS: Final = frozenset(
    {
        "localsystem",
        ".\\localsystem",
        "nt authority\\system",
        "nt authority\\localservice",
        "nt authority\\local service",
        "nt authority\\networkservice",
        "nt authority\\network service",
    }
)
PHASES: Final = {
    RuleType.PREFLIGHT: 0,
    RuleType.LOCAL_USER: 1,
    RuleType.LOCAL_GROUP: 2,
    RuleType.GROUP_MEMBER: 3,
    RuleType.USER_RIGHT: 4,
    RuleType.REGISTRY_ACL: 5,
    RuleType.FILE_ACL: 5,
    RuleType.FILE_DENY: 5,
    RuleType.PATH_ACL: 5,
    RuleType.SQL_GRANT: 6,
    RuleType.SERVICE_IDENTITY: 7,
}
SERVICE_PASSWORD_VAR: Final = "SERVICE_PASSWORD"  # noqa: S105 - a variable name
PREVIOUS_PASSWORD_VAR: Final = "PREVIOUS_PASSWORD"  # noqa: S105 - a variable name
ACCOUNT_DESCRIPTION: Final = "MailEnable services (Fleet Lockdown)"
GROUP_DESCRIPTION: Final = "MailEnable store users (Fleet Lockdown)"


def dumps(data: object) -> str:
    """The JSON form of a non-ACL snapshot in a ChangeRecord (sorted, compact)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def var(name: str) -> str:
    return "{{" + name + "}}"


def is_builtin_service_account(name: str | None) -> bool:
    return (name or "localsystem").casefold() in BUILTIN_SERVICE_ACCOUNTS


@dataclass(frozen=True)
class Planned:
    """A change a mutating step will make; the ChangeRecord once its result says `changed`."""

    step_id: str
    rule_id: str
    target: str
    kind: TargetKind
    before: str | None
    after: str | None  # may carry {{VAR}}; ACL changes take the step's `after` instead
    created: bool = False
    written: str | None = None  # ACL changes: the DACL the step writes (may carry {{VAR}})


def _ace_key(ace: Ace) -> tuple[AceType, str, frozenset[str]]:
    return (ace.type, ace.sid, frozenset(f.value for f in ace.flags))


def merged_dacl(explicit: list[Ace], add: list[tuple[Ace, str | None]]) -> list[tuple[Ace, str | None]]:
    """`explicit` with each ACE of `add` merged in (as .NET's AddAccessRule merges: an explicit ACE
    of the same type, SID and flags gets the mask OR-ed in; otherwise a new ACE is inserted where a
    canonical DACL wants it: a Deny before the first explicit Allow, an Allow at the end). The order
    of the ACEs already there is kept (a non-canonical DACL is not reordered)."""
    out: list[tuple[Ace, str | None]] = [(a, None) for a in explicit]
    for ace, sid_var in add:
        key = (ace.type, sid_var or ace.sid, frozenset(f.value for f in ace.flags))
        for i, (have, have_var) in enumerate(out):
            if (have.type, have_var or have.sid, frozenset(f.value for f in have.flags)) == key:
                out[i] = (have.model_copy(update={"mask": have.mask | ace.mask}), have_var)
                break
        else:
            if ace.type is AceType.DENY:
                first_allow = next((i for i, (a, _v) in enumerate(out) if a.type is AceType.ALLOW), len(out))
                out.insert(first_allow, (ace, sid_var))
            else:
                out.append((ace, sid_var))
    return out


@dataclass
class ApplyBuilder:
    """Builds the mutating steps of an apply program from the plan and its observation."""

    computer: str
    observed: Observed
    items: Mapping[tuple[str, str], ObservedItem]
    reset_adopted_password: bool = False
    adopted_password_ok: bool | None = None
    steps: list[Step] = field(default_factory=list)
    undo: list[Step] = field(default_factory=list)  # inverses, oldest first (reversed into on_failure)
    planned: list[Planned] = field(default_factory=list)
    problems: dict[tuple[str, str], str] = field(default_factory=dict)
    sid_vars: dict[str, str] = field(default_factory=dict)  # principal name (casefold) -> VAR
    created_sids: set[str] = field(default_factory=set)
    services_changed: list[str] = field(default_factory=list)
    _n: int = 0

    def _id(self, tag: str) -> str:
        self._n += 1
        return f"c{self._n}.{tag}"

    def _mutate(self, step: Step, planned: Planned | None, inverse: list[Step]) -> None:
        journal = None
        if planned is not None:
            journal = {
                "rule_id": planned.rule_id,
                "target": planned.target,
                "target_kind": planned.kind.value,
                "before": planned.before,
                "after": planned.after,
                "created_object": planned.created,
                "sequence": len(self.planned),
            }
            self.planned.append(planned)
        self.steps.append(step.model_copy(update={"journal": journal}))
        self.undo.extend(s.model_copy(update={"when_done": step.id}) for s in inverse)

    def principal(self, item: PlanItem) -> str | None:
        """The SID to grant to: the observed one, a {{VAR}} of an account this program creates, or None."""
        name = item.principal_name or ""
        if name.casefold() in self.sid_vars:
            return var(self.sid_vars[name.casefold()])
        return item.principal_sid or self.observed.sid_of(name)

    def _missing(self, item: PlanItem) -> None:
        self.problems[item.key] = f"{item.principal_name} does not exist on this host (no SID to grant to)"

    # --- accounts -----------------------------------------------------------------------------
    def local_user(self, item: PlanItem, obs: ObservedItem) -> None:
        name = short_name(item.principal_name or item.target)
        acct = obs.account
        if acct is None or not acct.exists:
            flags = UF_PASSWD_CANT_CHANGE | (UF_DONT_EXPIRE_PASSWD if item.password_never_expires else 0)
            sid_var = f"SID_{len(self.sid_vars) + 1}"
            step = Step(
                id=self._id("user_create"),
                op="user_create",
                bind={sid_var: "sid"},
                args={
                    "name": name,
                    "password": var(SERVICE_PASSWORD_VAR),
                    "flags": flags,
                    "description": ACCOUNT_DESCRIPTION,
                },
            )
            created = dumps({"name": name, "sid": var(sid_var), "flags": flags})
            self._mutate(
                step,
                Planned(step.id, item.rule_id, item.target, TargetKind.USER, None, created, created=True),
                [Step(id=f"u.{step.id}", op="user_delete", args={"name": name, "sid": var(sid_var)})],
            )
            for key in {name.casefold(), (item.principal_name or "").casefold(), f"{self.computer}\\{name}".casefold()}:
                self.sid_vars[key] = sid_var
            return
        before = int(acct.user_flags or 0)
        set_bits = UF_DONT_EXPIRE_PASSWD if item.password_never_expires else 0
        after = (before | set_bits) & ~UF_ACCOUNTDISABLE
        if after == before:
            return
        step = Step(
            id=self._id("user_flags"),
            op="user_set_flags",
            args={"name": name, "set": set_bits & ~before, "clear": UF_ACCOUNTDISABLE & before},
        )
        record = Planned(
            step.id,
            item.rule_id,
            item.target,
            TargetKind.USER,
            dumps({"name": name, "sid": acct.sid, "flags": before}),
            dumps({"name": name, "sid": acct.sid, "flags": after}),
        )
        inverse = Step(
            id=f"u.{step.id}",
            op="user_set_flags",
            args={"name": name, "set": before & ~after, "clear": after & ~before},
        )
        self._mutate(step, record, [inverse])

    def local_group(self, item: PlanItem, obs: ObservedItem) -> None:
        if obs.account is not None and obs.account.exists:
            return
        name = short_name(item.group_name or item.target)
        sid_var = f"SID_{len(self.sid_vars) + 1}"
        step = Step(
            id=self._id("group_create"),
            op="group_create",
            bind={sid_var: "sid"},
            args={"name": name, "description": GROUP_DESCRIPTION},
        )
        after = dumps({"name": name, "sid": var(sid_var)})
        self._mutate(
            step,
            Planned(step.id, item.rule_id, item.target, TargetKind.GROUP, None, after, created=True),
            [Step(id=f"u.{step.id}", op="group_delete", args={"name": name, "sid": var(sid_var)})],
        )
        for key in {name.casefold(), f"{self.computer}\\{name}".casefold(), (item.group_name or "").casefold()}:
            self.sid_vars[key] = sid_var

    def group_member(self, item: PlanItem, obs: ObservedItem) -> None:
        sid = self.principal(item)
        if sid is None:
            return self._missing(item)
        group = short_name(item.group_name or item.target)
        members = list(obs.group_member_sids or [])
        step = Step(id=self._id("member_add"), op="group_member_add", args={"group": group, "sid": sid})
        record = Planned(
            step.id,
            item.rule_id,
            item.target,
            TargetKind.MEMBERSHIP,
            dumps({"members": members}),
            dumps({"members": [*members, sid]}),
        )
        self._mutate(
            step, record, [Step(id=f"u.{step.id}", op="group_member_remove", args={"group": group, "sid": sid})]
        )
        return None

    def user_right(self, item: PlanItem, obs: ObservedItem) -> None:
        sid = self.principal(item)
        if sid is None:
            return self._missing(item)
        right = item.right or item.target
        holders = list(obs.right_holder_sids or [])
        step = Step(id=self._id("lsa_add"), op="lsa_add", args={"sid": sid, "right": right})
        record = Planned(
            step.id,
            item.rule_id,
            item.target,
            TargetKind.RIGHT,
            dumps({"right": right, "holders": holders}),
            dumps({"right": right, "holders": [*holders, sid]}),
        )
        self._mutate(step, record, [Step(id=f"u.{step.id}", op="lsa_remove", args={"sid": sid, "right": right})])
        return None

    # --- ACLs ---------------------------------------------------------------------------------
    def acl_object(self, items: list[PlanItem]) -> None:
        """One DACL write per object for every drifted rule on it (merged ACEs, CAS on the DACL read)."""
        first = items[0]
        args = acl_read_args(first)
        try:
            data = self.observed.sd(args)
        except ReadError:
            return  # the item already reports the read error
        text = data.get("sddl")
        if not data.get("exists") or not isinstance(text, str):
            return
        descriptor = sddl.parse(text)
        add: list[tuple[Ace, str | None]] = []
        for item in items:
            sid = self.principal(item)
            if sid is None:
                self._missing(item)
                continue
            placeholder = sid if sid.startswith("{{") else None
            ace_type = AceType.DENY if item.ace_type is AceType.DENY else AceType.ALLOW
            ace = Ace(
                sid=(placeholder and "S-1-0-0") or sid,
                type=ace_type,
                mask=item.access_mask or 0,
                flags=list(item.ace_flags),
            )
            add.append((ace, placeholder))
        if not add:
            return
        new = merged_dacl(list(descriptor.explicit), add)
        new_text = sddl.dacl_text(new, protected=descriptor.protected)
        obj = str(data.get("object") or "file")
        take = descriptor.owner == TRUSTED_INSTALLER
        step_id = self._id("dacl")
        after_var = f"AFTER_{step_id.split('.')[0].upper()}"
        write = {**args, "object": obj, "sddl": new_text, "expected": text, "take_ownership": take}
        step = Step(id=step_id, op="dacl_write", args=write, bind={after_var: "after"})
        kind = (
            TargetKind.REGISTRY_KEY
            if args["kind"] == "key"
            else (TargetKind.DIRECTORY if obj == "directory" else TargetKind.FILE)
        )
        before_text = sddl.dacl_text([(a, None) for a in descriptor.explicit], protected=descriptor.protected)
        undo = Step(
            id=f"u.{step_id}",
            op="dacl_write",
            args={**args, "object": obj, "sddl": before_text, "expected": var(after_var), "take_ownership": take},
        )
        for n, item in enumerate(items):
            if item.key in self.problems:
                continue
            # One write, one ChangeRecord per rule on the object: the first carries the SDDL pair.
            # `after` until the host's read-back replaces it: the owner as read and the DACL written.
            written = text.split("D:", 1)[0] + new_text
            record = Planned(step_id, item.rule_id, item.target, kind, text, written, written=new_text)
            if n == 0 or not any(p.step_id == step_id for p in self.planned):
                self._mutate(step, record, [undo])
            else:
                self.planned.append(record)

    # --- SQL ----------------------------------------------------------------------------------
    def sql(self, item: PlanItem, obs: ObservedItem) -> None:
        sql = obs.sql
        if sql is None:
            return
        login = item.principal_name or ""
        database = item.sql_database or item.target

        instance = sql_instance(item)

        def call(tag: str, statement: str, params: dict[str, str]) -> Step:
            return Step(
                id=self._id(tag),
                op="sql",
                args={"instance": instance, "statement": statement, "params": params},
            )

        if item.judge is Judge.SQL_LOGIN_AND_USER:
            if not sql.login_exists:
                step = call("sql_login", "create_login", {"login": login})
                record = Planned(
                    step.id,
                    item.rule_id,
                    item.target,
                    TargetKind.SQL_DATABASE,
                    dumps({"login": None}),
                    dumps({"login": login, "login_created": True, "instance": instance}),
                    created=True,
                )
                self._mutate(
                    step, record, [call("u", "drop_login", {"login": login}).model_copy(update={"id": f"u.{step.id}"})]
                )
            if not sql.user_exists:
                step = call("sql_user", "create_user", {"database": database, "user": login, "login": login})
                record = Planned(
                    step.id,
                    item.rule_id,
                    item.target,
                    TargetKind.SQL_DATABASE,
                    dumps({"user": None}),
                    dumps({"user": login, "user_created": True, "instance": instance}),
                    created=True,
                )
                self._mutate(
                    step,
                    record,
                    [
                        call("u", "drop_user", {"database": database, "user": login}).model_copy(
                            update={"id": f"u.{step.id}"}
                        )
                    ],
                )
            return
        have = {p.upper() for p in sql.permissions}
        for permission in sorted(set(item.sql_permissions) - have):
            params = {"database": database, "permission": permission, "user": login}
            step = call("sql_grant", "grant", params)
            record = Planned(
                step.id,
                item.rule_id,
                item.target,
                TargetKind.SQL_DATABASE,
                dumps({"user": login, "permissions": sorted(have)}),
                dumps({"user": login, "permissions": sorted(have | {permission}), "instance": instance}),
            )
            self._mutate(step, record, [call("u", "revoke", params).model_copy(update={"id": f"u.{step.id}"})])

    # --- services -----------------------------------------------------------------------------
    def service(self, item: PlanItem, obs: ObservedItem) -> None:
        svc = obs.service
        if svc is None or not svc.exists:
            return
        sid = self.principal(item)
        if sid is None:
            return self._missing(item)
        if not is_builtin_service_account(svc.start_name):
            self.problems[item.key] = (
                f"{item.target} runs as {svc.start_name}; its password is not known here, so it could not be put "
                "back by a rollback: change it by hand or declare the rule waived"
            )
            return None
        adopted = not sid.startswith("{{") and sid not in self.created_sids
        if adopted and self.adopted_password_ok is False and not self.reset_adopted_password:
            self.problems[item.key] = (
                f"{item.principal_name} exists but the stored service password does not match it (an adopted "
                "account, e.g. made by MEInstaller): choose 'reset the adopted account's password' to move the service"
            )
            return None
        name = item.target
        before = {"start_name": svc.start_name, "state": svc.state, "start_mode": svc.start_mode}
        step = Step(
            id=self._id("svc_change"),
            op="service_change",
            expect={"return_value": 0},
            critical=False,
            args={"name": name, "start_name": item.principal_name, "password": var(SERVICE_PASSWORD_VAR)},
        )
        record = Planned(
            step.id,
            item.rule_id,
            item.target,
            TargetKind.SERVICE,
            dumps(before),
            dumps({**before, "start_name": item.principal_name}),
        )
        inverse = Step(
            id=f"u.{step.id}",
            op="service_change",
            args={"name": name, "start_name": svc.start_name or "LocalSystem", "password": ""},
        )
        self._mutate(step, record, [inverse])
        if svc.state == "Running":
            self.services_changed.append(name)
        return None

    def preflight(self, item: PlanItem, obs: ObservedItem) -> None:
        if item.judge is not Judge.AV_EXCLUSION_COVERS or obs.av_exclusions is None:
            return
        paths = list(obs.av_exclusions)
        step = Step(id=self._id("av_add"), op="defender_add", args={"path": item.target})
        record = Planned(
            step.id,
            item.rule_id,
            item.target,
            TargetKind.AV_EXCLUSION,
            dumps({"paths": paths}),
            dumps({"paths": [*paths, item.target]}),
        )
        self._mutate(step, record, [Step(id=f"u.{step.id}", op="defender_remove", args={"path": item.target})])


def search_items(items: list[PlanItem]) -> list[PlanItem]:
    return [
        i
        for i in items
        if i.preflight_check in (PreflightCheck.WINDOWS_SEARCH_STOPPED, PreflightCheck.INDEXING_SERVICE_STOPPED)
    ]


def build_apply(builder: ApplyBuilder, drifted: list[PlanItem]) -> None:
    """The mutating steps for every drifted item, phase by phase (plan order inside a phase)."""
    ordered = sorted(drifted, key=lambda i: PHASES[i.rule_type])
    acl_groups: dict[tuple[Any, ...], list[PlanItem]] = {}
    for item in ordered:
        obs = builder.items.get(item.key)
        if obs is None or obs.error:
            continue
        kind = item.rule_type
        if kind in ACL_TYPES:
            args = acl_read_args(item)
            acl_groups.setdefault((args["kind"], args["path"].casefold()), []).append(item)
            continue
        if acl_groups and PHASES[kind] > PHASES[RuleType.FILE_ACL]:
            for group in acl_groups.values():
                builder.acl_object(group)
            acl_groups.clear()
        {
            RuleType.PREFLIGHT: builder.preflight,
            RuleType.LOCAL_USER: builder.local_user,
            RuleType.LOCAL_GROUP: builder.local_group,
            RuleType.GROUP_MEMBER: builder.group_member,
            RuleType.USER_RIGHT: builder.user_right,
            RuleType.SQL_GRANT: builder.sql,
            RuleType.SERVICE_IDENTITY: builder.service,
        }[kind](item, obs)
    for group in acl_groups.values():
        builder.acl_object(group)


def substitute(text: str | None, values: Mapping[str, str]) -> str | None:
    if text is None:
        return None
    for name, value in values.items():
        text = text.replace(var(name), value)
    return text


def records_from(
    planned: list[Planned], results: Mapping[str, StepResult], values: Mapping[str, str], job_id: str
) -> list[ChangeRecord]:
    """The ChangeRecords of the steps that ran and changed something, in program order.

    `sequence` is the change's place in the program (as journalled on the host), so a record and
    its journal entry are matched by (job_id, sequence) even when some steps changed nothing.
    """
    out: list[ChangeRecord] = []
    for sequence, change in enumerate(planned):
        step = results.get(change.step_id)
        # Whatever the status (a journal append that failed after the change turns the step into an
        # error), a result that says `changed` is a change made on the host: it is recorded.
        if step is None or step.result is None or not step.result.get("changed"):
            continue
        after = change.after
        if change.kind in (TargetKind.FILE, TargetKind.DIRECTORY, TargetKind.REGISTRY_KEY):
            # The host's read-back after the write; else what was written (as the journal has it).
            after = str((step.result or {}).get("after") or "") or change.after
        out.append(
            ChangeRecord(
                rule_id=change.rule_id,
                target=change.target,
                target_kind=change.kind,
                sequence=sequence,
                before=change.before,
                after=substitute(after, values),
                created_object=change.created,
                job_id=job_id,
            )
        )
    return out


# --- rollback: the inverse of a recorded change, against the object's state now ------------------
@dataclass
class Inverse:
    steps: list[Step]
    restart: list[str] = field(default_factory=list)
    note: str = ""


def _explicit_masks(text: str | None) -> dict[tuple[AceType, str, frozenset[str]], int]:
    out: dict[tuple[AceType, str, frozenset[str]], int] = {}
    if not text:
        return out
    for ace in sddl.parse(text).explicit:
        out[_ace_key(ace)] = out.get(_ace_key(ace), 0) | ace.mask
    return out


def acl_inverse(change: ChangeRecord, current: dict[str, Any], args: dict[str, Any], step_id: str) -> Inverse:
    """Remove the explicit ACEs `after` has and `before` had not, or shrink a merged one back to its
    before-mask — only where the ACE is still exactly as we left it (others' changes stay)."""
    if not current.get("exists"):
        return Inverse([], note=f"{change.target} no longer exists")
    text = str(current.get("sddl") or "")
    now = sddl.parse(text)
    before, after = _explicit_masks(change.before), _explicit_masks(change.after)
    aces = list(now.explicit)
    changed = False
    for key, mask in after.items():
        if before.get(key) == mask:
            continue
        for i, ace in enumerate(aces):
            if _ace_key(ace) == key and ace.mask == mask:
                old = before.get(key)
                if old is None:
                    del aces[i]
                else:
                    aces[i] = ace.model_copy(update={"mask": old})
                changed = True
                break
    if not changed:
        return Inverse([], note="our ACEs are no longer there")
    write = {
        **args,
        "object": str(current.get("object") or "file"),
        "sddl": sddl.dacl_text([(a, None) for a in aces], protected=now.protected),
        "expected": text,
        "take_ownership": now.owner == TRUSTED_INSTALLER,
    }
    # A conflict (someone changed the DACL since it was read) is not an undo: expect_failed.
    return Inverse([Step(id=step_id, op="dacl_write", args=write, expect={"conflict": False})])


def change_read_args(change: ChangeRecord) -> dict[str, Any] | None:
    if change.target_kind is TargetKind.REGISTRY_KEY:
        return {"kind": "key", "path": change.target, "view": 64}
    if change.target_kind in (TargetKind.FILE, TargetKind.DIRECTORY):
        return {"kind": "path", "path": change.target}
    return None


@dataclass(frozen=True)
class HostNow:
    """The state a rollback reads before it computes inverses (keys case-folded)."""

    services: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    groups: Mapping[str, list[str] | None] = field(default_factory=dict)  # None: the group is gone
    rights: Mapping[str, list[str]] = field(default_factory=dict)


def simple_inverse(change: ChangeRecord, step_id: str, now: HostNow) -> Inverse:
    """The inverse of a non-ACL change against the host's state now: only what is still ours is undone
    (a member still in the group, a holder still holding the right); the primitives guard the rest
    (a user or group deleted only while it has the recorded SID)."""
    services_now = now.services
    before = json.loads(change.before) if change.before else {}
    after = json.loads(change.after) if change.after else {}
    kind = change.target_kind
    if kind is TargetKind.USER:
        name = str(after.get("name") or short_name(change.target))
        if change.created_object:
            return Inverse([Step(id=step_id, op="user_delete", args={"name": name, "sid": str(after.get("sid"))})])
        flags_before, flags_after = int(before.get("flags") or 0), int(after.get("flags") or 0)
        return Inverse(
            [
                Step(
                    id=step_id,
                    op="user_set_flags",
                    args={"name": name, "set": flags_before & ~flags_after, "clear": flags_after & ~flags_before},
                )
            ]
        )
    if kind is TargetKind.GROUP:
        name = str(after.get("name") or short_name(change.target))
        if not change.created_object:
            return Inverse([])
        return Inverse([Step(id=step_id, op="group_delete", args={"name": name, "sid": str(after.get("sid"))})])
    if kind is TargetKind.MEMBERSHIP:
        added = sorted(set(after.get("members", [])) - set(before.get("members", [])))
        group = short_name(change.target)
        if group.casefold() in now.groups:
            members = now.groups[group.casefold()]
            if members is None:
                return Inverse([], note=f"the group {group} no longer exists")
            added = [sid for sid in added if sid in members]
        return Inverse(
            [
                Step(id=f"{step_id}.{n}", op="group_member_remove", args={"group": group, "sid": sid})
                for n, sid in enumerate(added)
            ]
        )
    if kind is TargetKind.RIGHT:
        right = str(after.get("right") or change.target)
        added = sorted(set(after.get("holders", [])) - set(before.get("holders", [])))
        if right.casefold() in now.rights:
            added = [sid for sid in added if sid in now.rights[right.casefold()]]
        return Inverse(
            [
                Step(id=f"{step_id}.{n}", op="lsa_remove", args={"sid": sid, "right": right})
                for n, sid in enumerate(added)
            ]
        )
    if kind is TargetKind.AV_EXCLUSION:
        added = sorted(set(after.get("paths", [])) - set(before.get("paths", [])))
        return Inverse([Step(id=f"{step_id}.{n}", op="defender_remove", args={"path": p}) for n, p in enumerate(added)])
    if kind is TargetKind.SQL_DATABASE:
        database = change.target
        instance = str(after.get("instance") or SQL_INSTANCE_DEFAULT)
        params: dict[str, str]
        if "permissions" in after:
            user = str(after.get("user"))
            steps = []
            for n, permission in enumerate(sorted(set(after["permissions"]) - set(before.get("permissions", [])))):
                params = {"database": database, "permission": permission, "user": user}
                steps.append(
                    Step(
                        id=f"{step_id}.{n}",
                        op="sql",
                        args={"instance": instance, "statement": "revoke", "params": params},
                    )
                )
            return Inverse(steps)
        if after.get("user_created"):
            params = {"database": database, "user": str(after.get("user"))}
            return Inverse(
                [
                    Step(
                        id=step_id,
                        op="sql",
                        args={"instance": instance, "statement": "drop_user", "params": params},
                    )
                ]
            )
        if after.get("login_created"):
            params = {"login": str(after.get("login"))}
            return Inverse(
                [
                    Step(
                        id=step_id,
                        op="sql",
                        args={"instance": instance, "statement": "drop_login", "params": params},
                    )
                ]
            )
        return Inverse([])
    if kind is TargetKind.SERVICE:
        svc = services_now.get(change.target.casefold())
        if svc is None or not svc.get("exists"):
            return Inverse([], note=f"{change.target} no longer exists")
        if str(svc.get("start_name") or "").casefold() != str(after.get("start_name") or "").casefold():
            return Inverse([], note=f"{change.target} runs as {svc.get('start_name')} now: left alone")
        old = str(before.get("start_name") or "LocalSystem")
        if not is_builtin_service_account(old):
            return Inverse([], note=f"cannot restore {change.target} to {old}: its password is not known")
        step = Step(
            id=step_id,
            op="service_change",
            args={"name": change.target, "start_name": old, "password": ""},
            expect={"return_value": 0},
        )
        restart = [change.target] if svc.get("state") == "Running" else []
        return Inverse([step], restart=restart)
    return Inverse([])


__all__ = [
    "ApplyBuilder",
    "HostNow",
    "Inverse",
    "Planned",
    "acl_inverse",
    "build_apply",
    "change_read_args",
    "dumps",
    "local_account",
    "records_from",
    "search_items",
    "simple_inverse",
]
