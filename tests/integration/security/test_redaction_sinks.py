"""Unredacted host errors (security-audit-2026-12, medium): whatever a host answers is untrusted, and an
answer that quotes a password must not put it in the database or on a page.

A scripted host echoes the two passwords a harden carries — the WinRM credential's and the generated
IME_SYSTEM password (plus, for rotation, the previous one) — in every text it returns: the error,
observations and change records. Nothing stored for the run, and no page a customer's viewer can open,
may then contain either.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.urls import reverse

from jobs import runner, services
from jobs.choices import JobKind
from jobs.models import ChangeRecord, HostRun, HostRunEvent, RuleResult, ServerCompliance, ServiceAccountSecret
from jobs.services import job_create
from lockdown.agent import AGENT_VERSION
from lockdown.rules.contract import AgentError, AgentRequest, AgentResult
from lockdown.rules.contract import ChangeRecord as ContractChange
from lockdown.rules.observed import ObservedItem
from servers import crypto
from servers.audit import Actor
from servers.crypto import decrypt_secret
from servers.tenancy import Scope
from tests.unit.lockdown.factories import facts_2022

pytestmark = pytest.mark.django_db
MSP = Scope(user_id=None, msp_role="admin")


class EchoingHost:
    """Answers every request with texts that quote each password the request carried."""

    def __init__(self) -> None:
        self.echoed: list[str] = []
        self.requests: list[AgentRequest] = []

    def __call__(self, conn, request: AgentRequest, *, on_program=None) -> AgentResult:
        self.requests.append(request)
        secrets = [conn.password]
        for field in ("service_password", "previous_service_password"):
            value = getattr(request, field)
            if value is not None:
                secrets.append(value.get_secret_value())
        self.echoed += secrets
        quote = " / ".join(secrets)
        base = {"agent_version": AGENT_VERSION, "mode": request.mode, "job_id": request.job_id}
        if request.mode == "discover":
            return AgentResult(**base, facts=facts_2022())
        items = [
            ObservedItem(rule_id=item.rule_id, target=item.target, exists=True, error=f"access denied for {quote}")
            for item in (request.plan.items if request.plan else [])[:5]
        ]
        changes = [
            ContractChange(
                rule_id=items[0].rule_id, target=items[0].target, target_kind="file", sequence=1,
                before=f"O:BAD:(A;;FA;;;{quote})", after="O:BAD:", job_id=request.job_id,
            )
        ] if request.mode == "apply" and items else []  # fmt: skip
        error = AgentError(code="health_failed", message=f"logon failed with password {quote}")
        return AgentResult(**base, items=items, changes=changes, error=error if request.mode == "apply" else None)


@pytest.fixture
def echoing() -> Iterator[EchoingHost]:
    host = EchoingHost()
    runner.set_agent_call(host)
    services.set_enqueue(runner.run_host)
    yield host
    runner.set_agent_call(None)
    services.set_enqueue(None)


def _stored_texts(server) -> list[str]:
    runs = HostRun.objects.filter(server=server)
    texts = [r.error_message for r in runs]
    texts += list(HostRunEvent.objects.filter(host_run__in=runs).values_list("message", flat=True))
    for row in RuleResult.objects.filter(server=server):
        texts += [row.observed_text, row.expected_text, row.reason]
    for change in ChangeRecord.objects.filter(server=server):
        texts += [change.before, change.after, change.target]
    texts += [str(c.outcomes) for c in ServerCompliance.objects.filter(server=server)]
    return texts


def test_a_host_quoting_the_passwords_of_a_harden_stores_and_shows_neither(
    echoing, tenant_a, cora, client, django_capture_on_commit_callbacks
):
    server = tenant_a.server
    crypto._known.clear()  # nothing learnt from earlier tests: the run itself must know its secrets
    with django_capture_on_commit_callbacks(execute=True):
        job_create(scope=MSP, actor=Actor.system("t"), kind=JobKind.HARDEN, servers=[server])
    service_password = decrypt_secret(ServiceAccountSecret.objects.get(server=server).password_encrypted)
    secrets = {tenant_a.credential.reveal_secret(), service_password}
    assert secrets <= set(echoing.echoed)  # the host did quote both
    texts = _stored_texts(server)
    assert any("[REDACTED]" in t for t in texts)
    assert not [t for t in texts if any(s in t for s in secrets)]
    client.force_login(cora)
    run = HostRun.objects.filter(server=server).latest("pk")
    for url in (reverse("server_detail", args=[server.pk]), reverse("job_detail", args=[run.job_id])):
        page = client.get(url).content.decode()
        assert not [s for s in secrets if s in page], url


def test_the_previous_password_of_a_rotation_is_redacted_too(echoing, tenant_a, django_capture_on_commit_callbacks):
    server = tenant_a.server
    with django_capture_on_commit_callbacks(execute=True):
        job_create(scope=MSP, actor=Actor.system("t"), kind=JobKind.HARDEN, servers=[server])
    ServiceAccountSecret.objects.filter(server=server).update(set_at="2026-12-01T00:00:00Z")
    crypto._known.clear()
    with django_capture_on_commit_callbacks(execute=True):
        job_create(scope=MSP, actor=Actor.system("t"), kind=JobKind.ROTATE_PASSWORD, servers=[server])
    rotation = echoing.requests[-1]
    assert rotation.mode == "rotate_password"
    previous = rotation.previous_service_password.get_secret_value()
    assert previous in echoing.echoed  # the host quoted the previous password (and the new one)
    texts = _stored_texts(server)
    assert not [t for t in texts if any(s in t for s in set(echoing.echoed))]


def test_every_run_end_message_is_redacted_whatever_raised_it(tenant_a):
    # _end is the one writer of HostRun.error_message: a message built from anything (a runner check, a
    # remote error, a refusal) passes through redaction there
    from jobs.choices import HostRunState
    from jobs.models import Job

    job = Job.objects.create(kind=JobKind.VERIFY, requested_by_name="t")
    run = HostRun.objects.create(
        job=job, server=tenant_a.server, server_name="x", customer_name="x", state=HostRunState.RUNNING
    )
    secret = tenant_a.credential.reveal_secret()  # decrypting registers it for redaction
    runner._end(run, HostRunState.FAILED, "x", f"the host said: {secret}")
    run.refresh_from_db()
    assert secret not in run.error_message
    assert "[REDACTED]" in run.error_message
