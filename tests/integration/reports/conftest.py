"""A small verified fleet for the reports tests: servers with outcomes, history, a job and waivers."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest

from jobs.choices import HostRunState, JobKind, JobState
from jobs.models import HostRun, HostRunEvent, Job, RuleResult, ServerCompliance
from lockdown import clock
from servers.choices import ServerStatus
from servers.models import Server
from tests.factories import ServerFactory, WaiverFactory

_BATCH = itertools.count()
STATUSES = ["compliant"] * 8 + ["drift", "waived"]


def outcome(index: int, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "rule_id": f"file_acl.rule_{index:03d}",
        "target": f"C:\\Program Files (x86)\\Mail Enable\\Bin\\file{index}.exe",
        "section": f"Section {index % 3}",
        "status": status,
        "underlying_status": "drift" if status == "waived" else None,
        "action": "none",
        "expected_text": "IME_SYSTEM may read and execute.",
        "expected": {},
        "observed_text": "IME_SYSTEM has no access." if status != "compliant" else "IME_SYSTEM may read and execute.",
        "observed": {},
        "reason": "",
        "risk": "low",
        "risk_note": None,
        "waiver_justification": "Vendor needs it." if status == "waived" else None,
        **extra,
    }


def verified_fleet(customer, count: int, outcomes_per_server: int = 10) -> list[Server]:
    """`count` verified servers of `customer`, one fleet verify job over them, history rows."""
    now = clock.now()
    job = Job.objects.create(kind=JobKind.VERIFY, state=JobState.SUCCEEDED, description="Verify fleet", started_at=now)
    servers = []
    batch = next(_BATCH)
    for n in range(count):
        status = [ServerStatus.COMPLIANT, ServerStatus.DRIFTED, ServerStatus.FAILING][n % 3]
        server: Server = ServerFactory(  # type: ignore[assignment]
            customer=customer, name=f"{customer.name[:8].lower().replace(' ', '-')}-mx{batch}{n:03d}"
        )
        outcomes = [outcome(i, STATUSES[(i + n) % len(STATUSES)]) for i in range(outcomes_per_server)]
        Server.objects.filter(pk=server.pk).update(
            status=status,
            compliance_pct=100.0 - 5 * (n % 7),
            last_verified_at=now,
            facts={"os_caption": "Microsoft Windows Server 2022", "powershell_version": "5.1"},
        )
        run = HostRun.objects.create(
            job=job,
            server=server,
            server_name=server.name,
            customer=customer,
            customer_name=customer.name,
            state=HostRunState.SUCCEEDED,
            compliance_pct=90.0,
        )
        HostRunEvent.objects.create(host_run=run, seq=0, at=now, message=f"Connecting to {server.name}")
        ServerCompliance.objects.create(
            server=server, host_run=run, verified_at=now, profile_label="builtin v1", outcomes=outcomes
        )
        RuleResult.objects.bulk_create(
            RuleResult(
                server=server,
                host_run=run,
                rule_id=o["rule_id"],
                target=o["target"],
                section=o["section"],
                status=o["status"],
                observed_text=o["observed_text"],
                created_at=now - timedelta(days=1),
            )
            for o in outcomes
        )
        if n % 2 == 0:
            waiver = WaiverFactory(server=server, rule_id="file_acl.rule_001", expires_at=now + timedelta(days=5))
            type(waiver).objects.filter(pk=waiver.pk).update(approved_at=now)
        servers.append(server)
    return servers


@pytest.fixture
def fleet_of():
    return verified_fleet


@pytest.fixture
def inline_reports():
    """Reports asked for in a request are built inline once the request commits (as a worker would);
    `run(callable)` runs it and the commit callbacks, like servers' import_csv."""
    from django.test import TestCase

    from reports import services

    services.set_enqueue(services.report_build)

    def run(action):
        with TestCase.captureOnCommitCallbacks(execute=True):
            return action()

    yield run
    services.set_enqueue(None)
