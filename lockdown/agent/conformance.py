"""The conformance table: for each mode × rule type, the PowerShell function that implements it
in the agent and the winlab function that implements the same contract in Python.

The `.ps1` side is checked by tests/unit/agent (the function exists, is dispatched from the mode
switch and makes the calls its technique needs). The winlab side (`winlab/agent/`) is written by
another engineer; its names are fixed here so both sides are held to one table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from lockdown.rules.vocabulary import AgentMode, PreflightCheck, RuleType

WINLAB_HANDLERS: Final = "winlab.agent.handlers"


@dataclass(frozen=True)
class Conformance:
    """One row: `mode` × `rule_type` (× `preflight_check` for preflight rules)."""

    mode: AgentMode
    rule_type: RuleType | None
    ps1_function: str
    winlab_function: str
    preflight_check: PreflightCheck | None = None

    @property
    def key(self) -> str:
        kind = self.preflight_check.value if self.preflight_check else (self.rule_type.value if self.rule_type else "")
        return f"{self.mode.value}:{kind}" if kind else self.mode.value


# verify and apply share a handler (it observes, and changes only in apply).
_OBSERVE_AND_APPLY: Final = {
    RuleType.REGISTRY_ACL: "Invoke-FleetRegistryAcl",
    RuleType.FILE_ACL: "Invoke-FleetFileAcl",
    RuleType.FILE_DENY: "Invoke-FleetFileDeny",
    RuleType.PATH_ACL: "Invoke-FleetPathAcl",
    RuleType.LOCAL_USER: "Invoke-FleetLocalUser",
    RuleType.LOCAL_GROUP: "Invoke-FleetLocalGroup",
    RuleType.GROUP_MEMBER: "Invoke-FleetGroupMember",
    RuleType.USER_RIGHT: "Invoke-FleetUserRight",
    RuleType.SQL_GRANT: "Invoke-FleetSqlGrant",
    RuleType.SERVICE_IDENTITY: "Invoke-FleetServiceIdentity",
}
_PREFLIGHT: Final = {
    PreflightCheck.AV_EXCLUSION: "Invoke-FleetDefenderExclusion",
    PreflightCheck.WINDOWS_SEARCH_STOPPED: "Invoke-FleetSearchPreflight",
    PreflightCheck.INDEXING_SERVICE_STOPPED: "Invoke-FleetSearchPreflight",
}
# Rollback undoes ChangeRecords (winlab dispatches them per target kind, hence its names).
# Search services are restored inside the apply itself and record nothing to undo.
_ROLLBACK: Final = {
    RuleType.REGISTRY_ACL: ("Undo-FleetAclChange", "acl_rollback"),
    RuleType.FILE_ACL: ("Undo-FleetAclChange", "acl_rollback"),
    RuleType.FILE_DENY: ("Undo-FleetAclChange", "acl_rollback"),
    RuleType.PATH_ACL: ("Undo-FleetAclChange", "acl_rollback"),
    RuleType.LOCAL_USER: ("Undo-FleetAccountChange", "user_rollback"),
    RuleType.LOCAL_GROUP: ("Undo-FleetAccountChange", "group_rollback"),
    RuleType.GROUP_MEMBER: ("Undo-FleetAccountChange", "membership_rollback"),
    RuleType.USER_RIGHT: ("Undo-FleetAccountChange", "right_rollback"),
    RuleType.SQL_GRANT: ("Undo-FleetSqlChange", "sql_rollback"),
    RuleType.SERVICE_IDENTITY: ("Undo-FleetServiceChange", "service_rollback"),
}


def _rows() -> tuple[Conformance, ...]:
    rows = [Conformance(AgentMode.DISCOVER, None, "Invoke-FleetDiscover", "winlab.agent.discover.discover_facts")]
    for mode in (AgentMode.VERIFY, AgentMode.APPLY):
        for rule_type, function in _OBSERVE_AND_APPLY.items():
            rows.append(Conformance(mode, rule_type, function, f"{WINLAB_HANDLERS}.{rule_type.value}_{mode.value}"))
        for check, function in _PREFLIGHT.items():
            winlab = f"{WINLAB_HANDLERS}.preflight_{mode.value}"
            rows.append(Conformance(mode, RuleType.PREFLIGHT, function, winlab, check))
    for rule_type, (function, winlab) in _ROLLBACK.items():
        rows.append(Conformance(AgentMode.ROLLBACK, rule_type, function, f"{WINLAB_HANDLERS}.{winlab}"))
    rows.append(
        Conformance(
            AgentMode.ROLLBACK,
            RuleType.PREFLIGHT,
            "Undo-FleetDefenderExclusion",
            f"{WINLAB_HANDLERS}.av_rollback",
            PreflightCheck.AV_EXCLUSION,
        )
    )
    # Not per rule type: one step over the service account and every service running as it.
    rows.append(
        Conformance(
            AgentMode.ROTATE_PASSWORD, None, "Invoke-FleetPasswordRotation", "winlab.agent.rotation.rotate_password"
        )
    )
    return tuple(rows)


CONFORMANCE: Final[tuple[Conformance, ...]] = _rows()

# Where each mode's handlers are dispatched from in agent.ps1.
DISPATCHERS: Final = {
    AgentMode.DISCOVER: "Invoke-FleetAgent",
    AgentMode.VERIFY: "Invoke-FleetItem",
    AgentMode.APPLY: "Invoke-FleetItem",
    AgentMode.ROLLBACK: "Undo-FleetChange",
    AgentMode.ROTATE_PASSWORD: "Invoke-FleetAgent",
}
# Cross-cutting steps of an apply/rollback (winlab does them in `winlab.agent.runner`).
STEPS: Final = {
    "health_check": "Test-FleetMailHealth",
    "restart_and_heal": "Complete-FleetServiceRestart",
    "restore_search": "Restore-FleetSearchServices",
    "elevation": "Test-FleetElevated",
    "reset_adopted_password": "Reset-FleetAdoptedPassword",
}
# The parts of the health check (called from STEPS["health_check"]); winlab does the same checks
# in `winlab.agent.runner.health_checks` over its model (mta_ok, webmail_ok, webadmin_ok).
HEALTH_STEPS: Final = {
    "web_page": "Test-FleetWebPage",
    "mta_queues": "Test-FleetMtaQueues",
    "effective_access": "Test-FleetEffectiveAccess",
}
WINLAB_HEALTH: Final = "winlab.agent.runner.health_checks"
