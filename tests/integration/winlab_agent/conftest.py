"""Emulated Windows hosts running the agent, reached over REAL WinRM with `remote.transport.run_agent`.

Every test module starts its own `Lab` (hosts are changed by the tests); hosts are picked by
role, not by index, so the mix below can grow. Time is a `ManualClock` and `time_scale=0`: the
modelled cost of a run does not delay its output unless a test asks for it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import pytest

from lockdown.agent import AGENT_VERSION
from lockdown.rules import (
    AgentRequest,
    AgentResult,
    ChangeRecord,
    Facts,
    Plan,
    RuleOutcome,
    RuleStatus,
    compile_plan,
    evaluate,
    load_builtin_profile,
)
from lockdown.rules.exceptions import ExceptionState
from lockdown.rules.vocabulary import AgentMode, Tristate
from remote import HostConnection, Scheme, TlsVerify
from remote.connection import AuthMethod
from remote.transport import run_agent
from winlab.lab import Lab
from winlab.windows.clock import ManualClock
from winlab.windows.factory import HostSpec
from winlab.windows.mailenable import Edition

SERVICE_PASSWORD: Final = "Ime-System-Pw-42!"  # the generated IME_SYSTEM password the jobs layer would send
NOT_JUDGED: Final = frozenset({RuleStatus.NOT_APPLICABLE, RuleStatus.NEEDS_INPUT, RuleStatus.WAIVED})
# to_state_dict() carries configuration only: no counters, no clock, no mail data. Rollback must
# therefore restore it exactly; this list stays empty on purpose (add a prefix only with a reason).
STATE_DIFF_IGNORED: Final[tuple[str, ...]] = ()

SPECS: Final = {
    "ps2": HostSpec(name="R2PS2", os="2008r2", edition=Edition.STANDARD, version="2.53", indexing_service=True),
    "r2": HostSpec(name="R2WMF", os="2008r2", edition=Edition.PROFESSIONAL, version="9.83", wmf51=True,
                   indexing_service=True),
    "sql": HostSpec(name="S16SQL", os="2016", edition=Edition.ENTERPRISE, version="10.43", sql=True,
                    admin_account="local"),
    "plesk": HostSpec(name="S22PLESK", os="2022", edition=Edition.STANDARD, version="10.43", install_path="plesk",
                      wsearch=True),
    "adopted": HostSpec(name="S19ME", os="2019", edition=Edition.PROFESSIONAL, version="10.43",
                        hardened_by_meinstaller="IME_STORE_USERS"),
    "spare": HostSpec(name="S22SPARE", os="2022", edition=Edition.ENTERPRISE, version="10.43"),
}  # fmt: skip


def start_lab(tmp: Path, specs: Sequence[HostSpec]) -> Lab:
    lab = Lab(list(specs), lab_dir=tmp, clock=ManualClock(), time_scale=0.0, mail_ports={})
    lab.start()
    return lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    running = start_lab(tmp_path_factory.mktemp("winlab-agent"), list(SPECS.values()))
    try:
        yield running
    finally:
        running.stop()


def name_of(role: str) -> str:
    return SPECS[role].name


def connection(
    lab: Lab,
    name: str,
    *,
    username: str | None = None,
    password: str | None = None,
    scheme: Scheme = Scheme.HTTP,
    retries: int = 1,
) -> HostConnection:
    entry = next(e for e in lab.inventory()["hosts"] if e["name"] == name)
    https = scheme is Scheme.HTTPS
    return HostConnection(
        address=entry["address"],
        username=username or entry["username"],
        password=password if password is not None else entry["password"],
        scheme=scheme,
        port=entry["winrm"]["https_port" if https else "http_port"],
        auth=AuthMethod.NTLM,
        tls_verify=TlsVerify.CA_BUNDLE if https else TlsVerify.OFF,
        ca_bundle_pem=Path(entry["ca_path"]).read_text(encoding="ascii") if https else None,
        retry_attempts=retries,
        run_timeout_s=120.0,
    )


def request(
    mode: AgentMode, plan: Plan | None = None, rollback: Sequence[ChangeRecord] = (), job: str = "job-1"
) -> AgentRequest:
    return AgentRequest(
        agent_version=AGENT_VERSION,
        mode=mode,
        job_id=job,
        plan=plan,
        service_password=SERVICE_PASSWORD if mode is AgentMode.APPLY else None,
        rollback=list(rollback),
    )


def run(lab: Lab, name: str, mode: AgentMode, plan: Plan | None = None, **kw: object) -> AgentResult:
    rollback = kw.pop("rollback", ())
    return run_agent(connection(lab, name, **kw), request(mode, plan, rollback))


def discover(lab: Lab, name: str) -> Facts:
    result = run(lab, name, AgentMode.DISCOVER)
    assert result.error is None
    assert result.facts is not None
    return result.facts


def plan_for(facts: Facts, *, sql: bool, integrated: bool = False) -> Plan:
    declared = facts.model_copy(
        update={
            "sql_integrated": Tristate.YES if sql else Tristate.NO,
            "integrated_auth": Tristate.YES if integrated else Tristate.NO,
            # the rights apply only under an approved exception (lockdown.rules.exceptions)
            "integrated_auth_exception": ExceptionState.ACTIVE if integrated else ExceptionState.NONE,
        }
    )
    return compile_plan(load_builtin_profile(), declared)


def outcomes(plan: Plan, result: AgentResult) -> list[RuleOutcome]:
    return evaluate(plan, result.items, [], datetime.now(UTC))


def judged_not_compliant(results: list[RuleOutcome]) -> list[tuple[str, str, str, str]]:
    return [
        (o.rule_id, o.target, o.status.value, o.reason)
        for o in results
        if o.status not in NOT_JUDGED and o.status is not RuleStatus.COMPLIANT
    ]
