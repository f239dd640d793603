"""Issue 12: a host that could not be read is *not assessed* (with its cause), never "failing";
results are *stale* after a rollback, a failed harden or a profile change, until the next verify."""

from __future__ import annotations

import pytest
from django.urls import reverse

from jobs.choices import HostRunState, JobKind
from jobs.models import ChangeRecord, HostRun
from jobs.services import job_create
from lockdown import clock
from lockdown.services import customer_assign_profile, server_assign_profile
from remote.errors import AuthenticationFailed, Unreachable, UnsupportedPowerShell
from servers.assessment import assessment_of
from servers.audit import Actor
from servers.choices import ServerStatus, StaleReason
from servers.models import Server
from servers.tenancy import Scope
from tests.factories import ProfileVersionFactory

pytestmark = pytest.mark.django_db
MSP = Scope(user_id=None, msp_role="admin")
ACTOR = Actor.system("test")


def _run(kind, server, capture):
    with capture(execute=True):
        job = job_create(scope=MSP, actor=ACTOR, kind=kind, servers=[server])
    return HostRun.objects.get(job=job)


def _verified(inline, server, capture) -> Server:
    _run(JobKind.VERIFY, server, capture)
    server = Server.objects.get(pk=server.pk)
    assert server.compliance_pct is not None
    assert assessment_of(server, msp=True).assessed
    return server


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        (UnsupportedPowerShell("requires WMF 5.1 (found PowerShell 2.0)", host="x"), "requires WMF 5.1"),
        (AuthenticationFailed("rejected", host="x"), "the credential was rejected"),
    ],
    ids=["powershell-2", "bad-credential"],
)
def test_a_host_that_cannot_be_read_is_not_assessed_with_its_cause_never_failing(
    inline, tenant_a, django_capture_on_commit_callbacks, error, cause
):
    _verified(inline, tenant_a.server, django_capture_on_commit_callbacks)
    inline.fail_with = error
    run = _run(JobKind.VERIFY, tenant_a.server, django_capture_on_commit_callbacks)
    assert run.state == HostRunState.FAILED
    server = Server.objects.get(pk=tenant_a.server.pk)
    assert server.status == ServerStatus.NOT_ASSESSED
    assert server.not_assessed_kind == error.kind
    found = assessment_of(server, msp=True)
    assert found.not_assessed
    assert cause in found.cause
    assert found.remedy


def test_an_unreachable_host_keeps_its_status_and_is_not_assessed(inline, tenant_a, django_capture_on_commit_callbacks):
    _verified(inline, tenant_a.server, django_capture_on_commit_callbacks)
    inline.fail_with = Unreachable("down", host="x")
    _run(JobKind.VERIFY, tenant_a.server, django_capture_on_commit_callbacks)
    server = Server.objects.get(pk=tenant_a.server.pk)
    assert server.status == ServerStatus.UNREACHABLE
    assert assessment_of(server, msp=True).cause == "the host did not answer"


def test_a_customer_user_reads_one_sentence_for_a_connection_failure(
    inline, tenant_a, django_capture_on_commit_callbacks
):
    inline.fail_with = AuthenticationFailed("rejected", host="x")
    _run(JobKind.VERIFY, tenant_a.server, django_capture_on_commit_callbacks)
    server = Server.objects.get(pk=tenant_a.server.pk)
    assert assessment_of(server, msp=False).cause == "could not connect to the host"


def test_a_server_without_credential_is_not_assessed(inline, tenant_a, django_capture_on_commit_callbacks):
    Server.objects.filter(pk=tenant_a.server.pk).update(credential=None)
    _run(JobKind.VERIFY, Server.objects.get(pk=tenant_a.server.pk), django_capture_on_commit_callbacks)
    server = Server.objects.get(pk=tenant_a.server.pk)
    assert server.status == ServerStatus.NOT_ASSESSED
    assert assessment_of(server, msp=True).cause == "no WinRM credential is bound"


def test_the_next_successful_verify_makes_it_assessed_again(inline, tenant_a, django_capture_on_commit_callbacks):
    inline.fail_with = UnsupportedPowerShell("requires WMF 5.1", host="x")
    _run(JobKind.VERIFY, tenant_a.server, django_capture_on_commit_callbacks)
    inline.fail_with = None
    server = _verified(inline, tenant_a.server, django_capture_on_commit_callbacks)
    assert server.not_assessed_kind == ""
    assert server.status != ServerStatus.NOT_ASSESSED


def _recorded_change(server) -> None:
    """A change of ours on the host (as a harden would have recorded it), so a rollback has work."""
    run = HostRun.objects.filter(server=server).latest("pk")
    ChangeRecord.objects.create(
        server=server,
        host_run=run,
        seq=1,
        rule_id="file_acl.system32.cmd_exe",
        target=r"C:\Windows\System32\cmd.exe",
        target_kind="file",
        before="D:P(A;;FA;;;SY)",
        after="D:P(A;;FA;;;SY)(A;;0x1200a9;;;BU)",
        created_at=clock.now(),
    )


def test_rollback_with_nothing_to_undo_leaves_the_results_fresh(inline, tenant_a, django_capture_on_commit_callbacks):
    _verified(inline, tenant_a.server, django_capture_on_commit_callbacks)
    _run(JobKind.ROLLBACK, tenant_a.server, django_capture_on_commit_callbacks)
    assert Server.objects.get(pk=tenant_a.server.pk).results_stale_reason == ""


def test_rollback_makes_the_results_stale_until_the_next_verify(inline, tenant_a, django_capture_on_commit_callbacks):
    _verified(inline, tenant_a.server, django_capture_on_commit_callbacks)
    _recorded_change(tenant_a.server)
    _run(JobKind.ROLLBACK, tenant_a.server, django_capture_on_commit_callbacks)
    server = Server.objects.get(pk=tenant_a.server.pk)
    assert server.results_stale_reason == StaleReason.ROLLBACK
    assert assessment_of(server, msp=True).stale
    server = _verified(inline, server, django_capture_on_commit_callbacks)
    assert server.results_stale_reason == ""


def test_a_harden_that_fails_during_the_apply_makes_the_results_stale(
    inline, tenant_a, django_capture_on_commit_callbacks
):
    _verified(inline, tenant_a.server, django_capture_on_commit_callbacks)
    answer = inline.__class__.__call__

    def apply_fails(conn, request):
        if request.mode == "apply":
            raise Unreachable("connection dropped during the apply", host="x")
        return answer(inline, conn, request)

    from jobs import runner

    runner.set_agent_call(apply_fails)
    run = _run(JobKind.HARDEN, tenant_a.server, django_capture_on_commit_callbacks)
    assert run.state == HostRunState.FAILED
    server = Server.objects.get(pk=tenant_a.server.pk)
    assert server.results_stale_reason == StaleReason.HARDEN_FAILED
    assert not assessment_of(server, msp=True).assessed


def test_a_harden_that_cannot_connect_leaves_the_results_as_they_were(
    inline, tenant_a, django_capture_on_commit_callbacks
):
    _verified(inline, tenant_a.server, django_capture_on_commit_callbacks)
    inline.fail_with = AuthenticationFailed("rejected", host="x")
    _run(JobKind.HARDEN, tenant_a.server, django_capture_on_commit_callbacks)
    server = Server.objects.get(pk=tenant_a.server.pk)
    assert server.results_stale_reason == ""  # nothing ran on the host; it is not assessed instead
    assert server.status == ServerStatus.NOT_ASSESSED


def test_a_successful_harden_leaves_fresh_results(inline, tenant_a, django_capture_on_commit_callbacks):
    _verified(inline, tenant_a.server, django_capture_on_commit_callbacks)
    run = _run(JobKind.HARDEN, tenant_a.server, django_capture_on_commit_callbacks)
    server = Server.objects.get(pk=tenant_a.server.pk)
    assert server.results_stale_reason == "", run.error_message


def test_a_profile_change_makes_the_results_stale(inline, tenant_a, django_capture_on_commit_callbacks):
    _verified(inline, tenant_a.server, django_capture_on_commit_callbacks)
    server_assign_profile(scope=MSP, actor=ACTOR, server=tenant_a.server, version=ProfileVersionFactory())
    server = Server.objects.get(pk=tenant_a.server.pk)
    assert server.results_stale_reason == StaleReason.PROFILE_CHANGED


def test_a_customer_default_change_makes_its_unpinned_servers_stale(
    inline, tenant_a, tenant_b, django_capture_on_commit_callbacks
):
    _verified(inline, tenant_a.server, django_capture_on_commit_callbacks)
    _verified(inline, tenant_b.server, django_capture_on_commit_callbacks)
    customer_assign_profile(scope=MSP, actor=ACTOR, customer=tenant_a.customer, version=ProfileVersionFactory())
    assert Server.objects.get(pk=tenant_a.server.pk).results_stale_reason == StaleReason.PROFILE_CHANGED
    assert Server.objects.get(pk=tenant_b.server.pk).results_stale_reason == ""


def test_the_server_page_says_stale_after_a_rollback_and_not_assessed_with_the_cause(
    client, alice, inline, tenant_a, django_capture_on_commit_callbacks
):
    _verified(inline, tenant_a.server, django_capture_on_commit_callbacks)
    _recorded_change(tenant_a.server)
    _run(JobKind.ROLLBACK, tenant_a.server, django_capture_on_commit_callbacks)
    client.force_login(alice)
    page = client.get(reverse("server_detail", args=[tenant_a.server.pk])).content.decode()
    assert "Stale" in page
    assert "a rollback changed the host" in page
    assert "compliant at <time" not in page  # the old figure is not stated as the host's state
    inline.fail_with = UnsupportedPowerShell("requires WMF 5.1", host="x")
    _run(JobKind.VERIFY, tenant_a.server, django_capture_on_commit_callbacks)
    page = client.get(reverse("server_detail", args=[tenant_a.server.pk])).content.decode()
    assert "Not assessed" in page
    assert "requires WMF 5.1" in page
    assert "Install Windows Management Framework 5.1 on the host" in page
