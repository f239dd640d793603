"""A rule that leaves a server's profile closes its history, so the fleet rule view stops counting it."""

from __future__ import annotations

import pytest
from django.db.models import Exists, OuterRef
from django.urls import reverse

from jobs.choices import JobKind
from jobs.models import RuleResult
from jobs.services import job_create
from lockdown.fleet_rules import current_results
from servers.audit import Actor
from servers.models import Server
from servers.tenancy import Scope
from tests.factories import TENANT_RULE_ID, CustomerFactory, ProfileVersionFactory, ServerFactory

pytestmark = pytest.mark.django_db
MSP = Scope(user_id=None, msp_role="admin")


def test_a_rule_removed_from_the_profile_is_no_longer_a_current_failure(
    inline, client, alice, django_capture_on_commit_callbacks
):
    from lockdown.rules.observed import ObservedItem

    server: Server = ServerFactory(customer=CustomerFactory(name="Plain Ltd"), name="mx-plain")  # type: ignore[assignment]
    default = inline.observe
    # Every ACL drifts under the built-in profile.
    inline.observe = lambda item: ObservedItem(rule_id=item.rule_id, target=item.target, exists=True, dacl=[])
    with django_capture_on_commit_callbacks(execute=True):
        job_create(scope=MSP, actor=Actor.system("test"), kind=JobKind.VERIFY, servers=[server])
    drifted = set(current_results(scope=MSP).filter(status="drift").values_list("rule_id", flat=True))
    file_rule = next(r for r in drifted if r.startswith("file_acl."))
    # Now judged by a one-rule profile (a user right): the file rules are not in it any more.
    Server.objects.filter(pk=server.pk).update(profile_version=ProfileVersionFactory(), results_stale_reason="")
    inline.observe = default
    with django_capture_on_commit_callbacks(execute=True):
        job_create(
            scope=MSP, actor=Actor.system("test"), kind=JobKind.VERIFY, servers=[Server.objects.get(pk=server.pk)]
        )
    assert Server.objects.get(pk=server.pk).compliance.outcomes[0]["rule_id"] == TENANT_RULE_ID
    closed = list(current_results(scope=MSP).filter(rule_id=file_rule))
    assert closed
    assert all(r.status == "not_applicable" for r in closed)
    assert "no longer in the server's profile" in closed[0].reason
    newer = RuleResult.objects.filter(server_id=OuterRef("server_id"), rule_id=OuterRef("rule_id"),
                                      target=OuterRef("target"), pk__gt=OuterRef("pk"))  # fmt: skip
    assert not RuleResult.objects.exclude(Exists(newer)).filter(status="drift").exclude(rule_id=TENANT_RULE_ID)
    client.force_login(alice)
    assert f"<code>{file_rule}</code>" not in client.get(reverse("rule_list")).content.decode()
