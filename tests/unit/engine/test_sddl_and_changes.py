"""The engine's pure parts: SDDL as Windows prints it, the DACL it writes, and the inverses."""

from __future__ import annotations

import json

from lockdown.engine import sddl
from lockdown.engine.changes import TRUSTED_INSTALLER, HostNow, acl_inverse, merged_dacl, simple_inverse
from lockdown.engine.observe import Observed, Reads, build_observations
from lockdown.engine.program import Step, StepResult
from lockdown.rules.contract import ChangeRecord
from lockdown.rules.observed import Ace
from lockdown.rules.plan import Plan, PlanItem
from lockdown.rules.vocabulary import (
    AceFlag,
    AceType,
    Condition,
    Judge,
    Risk,
    RuleType,
    TargetKind,
)

IME = "S-1-5-21-1-2-3-1002"
OTHER = "S-1-5-21-1-2-3-1005"


def test_parse_reads_aliases_masks_flags_and_inheritance() -> None:
    d = sddl.parse("O:BAG:SYD:PAI(A;OICI;FA;;;SY)(D;;0x1200a9;;;S-1-5-21-1-2-3-1002)(A;OICIID;FR;;;BU)")
    assert d.owner == "S-1-5-32-544"
    assert d.protected is True
    system, deny, users = d.aces
    assert (system.sid, system.mask, system.type) == ("S-1-5-18", 0x1F01FF, AceType.ALLOW)
    assert set(system.flags) == {AceFlag.OBJECT_INHERIT, AceFlag.CONTAINER_INHERIT}
    assert users.inherited is True
    assert users.mask == 0x120089
    assert d.explicit == (system, deny)


def test_planted_09_deny_aces_are_read_as_deny() -> None:
    deny = sddl.parse("O:SYD:(D;;FW;;;S-1-5-21-1-2-3-1002)").aces[0]
    assert deny.type is AceType.DENY
    assert deny.mask == 0x120116


def test_planted_02_container_inherit_is_written_as_ci_not_oi() -> None:
    ace = Ace(sid=IME, type=AceType.ALLOW, mask=0x1200A9, flags=[AceFlag.CONTAINER_INHERIT])
    assert sddl.ace_text(ace) == f"(A;CI;0x1200a9;;;{IME})"
    both = ace.model_copy(update={"flags": [AceFlag.CONTAINER_INHERIT, AceFlag.OBJECT_INHERIT]})
    assert sddl.ace_text(both) == f"(A;OICI;0x1200a9;;;{IME})"
    assert sddl.parse("O:SYD:" + sddl.ace_text(ace)).aces[0].flags == [AceFlag.CONTAINER_INHERIT]


def test_dacl_text_keeps_protection_and_drops_inherited() -> None:
    d = sddl.parse("O:SYD:AI(A;;FA;;;SY)(A;ID;FR;;;BU)")
    assert sddl.dacl_text([(a, None) for a in d.aces], protected=False) == "D:AI(A;;0x1f01ff;;;S-1-5-18)"
    assert sddl.dacl_text([(a, None) for a in d.aces], protected=True).startswith("D:PAI(")


def _ace(sid: str, mask: int, kind: AceType = AceType.ALLOW, *flags: AceFlag) -> Ace:
    return Ace(sid=sid, type=kind, mask=mask, flags=list(flags))


def test_merge_ors_into_the_same_ace_and_keeps_others_order() -> None:
    existing = [_ace(OTHER, 0x1), _ace(IME, 0x2), _ace("S-1-5-18", 0x1F01FF)]
    merged = merged_dacl(existing, [(_ace(IME, 0x4), None)])
    assert [(a.sid, a.mask) for a, _ in merged] == [(OTHER, 0x1), (IME, 0x6), ("S-1-5-18", 0x1F01FF)]


def test_merge_puts_a_new_deny_before_the_first_allow_and_a_new_allow_last() -> None:
    existing = [_ace("S-1-5-18", 0x1F01FF)]
    merged = merged_dacl(existing, [(_ace(IME, 0x1, AceType.DENY), None), (_ace(OTHER, 0x2), None)])
    assert [(a.type, a.sid) for a, _ in merged] == [
        (AceType.DENY, IME),
        (AceType.ALLOW, "S-1-5-18"),
        (AceType.ALLOW, OTHER),
    ]


def test_merge_keeps_a_non_canonical_dacl_as_it_is() -> None:
    existing = [_ace(OTHER, 0x1), _ace(OTHER, 0x2, AceType.DENY)]  # Allow before Deny: not canonical
    merged = merged_dacl(existing, [(_ace(IME, 0x4), None)])
    assert [(a.type, a.sid) for a, _ in merged] == [
        (AceType.ALLOW, OTHER),
        (AceType.DENY, OTHER),
        (AceType.ALLOW, IME),
    ]


def _acl_change(before: str, after: str) -> ChangeRecord:
    return ChangeRecord(
        rule_id="r1",
        target="C:\\x",
        target_kind=TargetKind.DIRECTORY,
        sequence=0,
        before=before,
        after=after,
        job_id="j",
    )


def test_planted_10_acl_rollback_removes_only_our_ace() -> None:
    before = "O:BAD:AI(A;OICI;FA;;;SY)"
    after = f"O:BAD:AI(A;OICI;FA;;;SY)(A;OICI;0x1200a9;;;{IME})"
    now = f"O:BAD:AI(A;OICI;FA;;;SY)(A;OICI;0x1200a9;;;{IME})(A;;0x1;;;{OTHER})"  # someone added one since
    inverse = acl_inverse(
        _acl_change(before, after),
        {"exists": True, "object": "directory", "sddl": now},
        {"kind": "path", "path": "C:\\x"},
        "u0",
    )
    (step,) = inverse.steps
    written = sddl.parse("O:BA" + step.args["sddl"])
    assert [(a.sid, a.mask) for a in written.aces] == [("S-1-5-18", 0x1F01FF), (OTHER, 0x1)]
    assert step.args["expected"] == now


def test_a_merged_ace_is_shrunk_back_never_deleted() -> None:
    before = f"O:BAD:AI(A;;0x1;;;{IME})"
    after = f"O:BAD:AI(A;;0x7;;;{IME})"
    inverse = acl_inverse(
        _acl_change(before, after),
        {"exists": True, "object": "file", "sddl": after},
        {"kind": "path", "path": "C:\\x"},
        "u0",
    )
    written = sddl.parse("O:BA" + inverse.steps[0].args["sddl"])
    assert [(a.sid, a.mask) for a in written.aces] == [(IME, 0x1)]


def test_acl_rollback_leaves_an_ace_someone_changed_since() -> None:
    before = "O:BAD:AI(A;;FA;;;SY)"
    after = f"O:BAD:AI(A;;FA;;;SY)(A;;0x1200a9;;;{IME})"
    now = f"O:BAD:AI(A;;FA;;;SY)(A;;0x1f01ff;;;{IME})"  # widened by someone else: not ours any more
    inverse = acl_inverse(
        _acl_change(before, after),
        {"exists": True, "object": "file", "sddl": now},
        {"kind": "path", "path": "C:\\x"},
        "u0",
    )
    assert inverse.steps == []


def test_planted_01_rollback_of_a_trustedinstaller_file_takes_ownership() -> None:
    before = f"O:{TRUSTED_INSTALLER}D:PAI(A;;FA;;;{TRUSTED_INSTALLER})"
    after = f"O:{TRUSTED_INSTALLER}D:PAI(D;;0x1200a9;;;{IME})(A;;FA;;;{TRUSTED_INSTALLER})"
    inverse = acl_inverse(
        _acl_change(before, after),
        {"exists": True, "object": "file", "sddl": after},
        {"kind": "path", "path": "C:\\x"},
        "u0",
    )
    assert inverse.steps[0].args["take_ownership"] is True
    mine = f"O:BAD:PAI(D;;0x1200a9;;;{IME})(A;;FA;;;BA)"
    plain = acl_inverse(
        _acl_change("O:BAD:PAI(A;;FA;;;BA)", mine),
        {"exists": True, "object": "file", "sddl": mine},
        {"kind": "path", "path": "C:\\x"},
        "u0",
    )
    assert plain.steps[0].args["take_ownership"] is False


def _service_change(after_name: str = ".\\IME_SYSTEM") -> ChangeRecord:
    return ChangeRecord(
        rule_id="svc",
        target="MEMTAS",
        target_kind=TargetKind.SERVICE,
        sequence=0,
        before=json.dumps({"start_name": "LocalSystem"}),
        after=json.dumps({"start_name": after_name}),
        job_id="j",
    )


def test_service_goes_back_to_its_before_identity_only_if_it_still_runs_as_ours() -> None:
    ours = {"memtas": {"exists": True, "start_name": ".\\IME_SYSTEM", "state": "Running"}}
    inverse = simple_inverse(_service_change(), "u0", HostNow(services=ours))
    assert inverse.steps[0].args == {"name": "MEMTAS", "start_name": "LocalSystem", "password": ""}
    assert inverse.restart == ["MEMTAS"]
    moved = {"memtas": {"exists": True, "start_name": "NT AUTHORITY\\NetworkService", "state": "Running"}}
    assert simple_inverse(_service_change(), "u0", HostNow(services=moved)).steps == []


def test_a_stopped_service_is_not_restarted_by_its_rollback() -> None:
    stopped = {"memtas": {"exists": True, "start_name": ".\\IME_SYSTEM", "state": "Stopped"}}
    assert simple_inverse(_service_change(), "u0", HostNow(services=stopped)).restart == []


def test_user_flags_rollback_undoes_exactly_the_bits_we_changed() -> None:
    change = ChangeRecord(
        rule_id="u",
        target="HOST\\IME_SYSTEM",
        target_kind=TargetKind.USER,
        sequence=0,
        before=json.dumps({"name": "IME_SYSTEM", "sid": IME, "flags": 0x202}),
        after=json.dumps({"name": "IME_SYSTEM", "sid": IME, "flags": 0x10200}),
        job_id="j",
    )
    (step,) = simple_inverse(change, "u0", HostNow()).steps
    assert step.args == {"name": "IME_SYSTEM", "set": 0x2, "clear": 0x10000}


def _acl_item(**fields: object) -> PlanItem:
    data: dict[str, object] = {
        "rule_id": "acl-1",
        "rule_type": RuleType.FILE_ACL,
        "section": "s",
        "description": "d",
        "expected": "e",
        "target": "C:\\ME\\Bin",
        "target_kind": TargetKind.DIRECTORY,
        "condition": Condition.ALWAYS,
        "risk": Risk.LOW,
        "judge": Judge.EXPLICIT_ALLOW_ACE,
        "principal_name": "HOST\\IME_SYSTEM",
        "access_mask": 0x1200A9,
        "ace_type": AceType.ALLOW,
    }
    data.update(fields)
    return PlanItem.model_validate(data)


def test_planted_12_acl_observation_takes_owner_dacl_and_protection_from_the_read() -> None:
    item = _acl_item()
    plan = Plan(profile_slug="p", profile_version="1", computer_name="HOST", items=[item])
    reads = Reads(prefix="r", plan=plan)
    reads._add(("sids",), "sid_lookup", {"names": ["HOST\\IME_SYSTEM"]})
    sd_id = reads.sd({"kind": "path", "path": item.target})
    text = f"O:SYD:PAI(A;OICI;0x1200a9;;;{IME})"
    results = {
        "r1": StepResult(id="r1", op="sid_lookup", status="ok", result={"sids": {"HOST\\IME_SYSTEM": IME}}),
        sd_id: StepResult(
            id=sd_id,
            op="sd_read",
            status="ok",
            result={"exists": True, "object": "directory", "owner": "S-1-5-18", "sddl": text, "protected": True},
        ),
    }
    (obs,) = build_observations(plan, Observed(reads, results))
    assert obs.owner_sid == "S-1-5-18"
    assert obs.protected is True
    assert obs.dacl is not None
    assert obs.dacl[0].sid == IME
    assert obs.principal_sid == IME
    assert Step.model_validate(reads.steps[1].model_dump()).op == "sd_read"


def test_health_rechecks_only_what_answered_before_on_each_address() -> None:
    from lockdown.engine import health
    from lockdown.rules.contract import HealthTargets

    targets = HealthTargets(smtp_port=2525, webmail_url="https://localhost/mewebmail/x/login.aspx")
    baseline = health.Baseline(
        services={
            "MEPOPS": {"name": "MEPOPS", "exists": True, "state": "Stopped"},
            "MESMTPCS": {"name": "MESMTPCS", "exists": True, "state": "Running"},
        },
        probes={
            "smtp": True,
            "smtp.v6": False,
            "pop": False,
            "pop.v6": False,
            "imap": True,
            "imap.v6": True,
            "webmail": True,
        },
    )
    steps = {s.id: s for s in health.check_steps("h.", baseline, targets)}
    assert set(steps) == {"h.settle", "h.services", "h.smtp", "h.imap", "h.imap.v6", "h.webmail"}
    assert all(s.critical for i, s in steps.items() if i != "h.settle")
    assert steps["h.services"].args == {"names": ["MESMTPCS"]}  # a Stopped POP is never a reason
    assert steps["h.smtp"].args["port"] == 2525
    assert steps["h.imap.v6"].args["host"] == "::1"
    assert steps["h.webmail"].args["allow_self_signed"] is False


def test_membership_and_right_inverses_undo_only_what_is_still_ours() -> None:
    membership = ChangeRecord(
        rule_id="m",
        target="HOST\\IME_STORE_GROUP",
        target_kind=TargetKind.MEMBERSHIP,
        sequence=0,
        before=json.dumps({"members": [OTHER]}),
        after=json.dumps({"members": [OTHER, IME]}),
        job_id="j",
    )
    (step,) = simple_inverse(membership, "u0", HostNow(groups={"ime_store_group": [OTHER, IME]})).steps
    assert step.args == {"group": "IME_STORE_GROUP", "sid": IME}  # the other member stays
    assert simple_inverse(membership, "u0", HostNow(groups={"ime_store_group": [OTHER]})).steps == []
    gone = simple_inverse(membership, "u0", HostNow(groups={"ime_store_group": None}))
    assert gone.steps == []
    assert "no longer exists" in gone.note
    right = ChangeRecord(
        rule_id="r",
        target="SeServiceLogonRight",
        target_kind=TargetKind.RIGHT,
        sequence=1,
        before=json.dumps({"right": "SeServiceLogonRight", "holders": [OTHER]}),
        after=json.dumps({"right": "SeServiceLogonRight", "holders": [OTHER, IME]}),
        job_id="j",
    )
    (revoke,) = simple_inverse(right, "u1", HostNow(rights={"seservicelogonright": [OTHER, IME]})).steps
    assert revoke.args == {"sid": IME, "right": "SeServiceLogonRight"}
    assert simple_inverse(right, "u1", HostNow(rights={"seservicelogonright": [OTHER]})).steps == []
