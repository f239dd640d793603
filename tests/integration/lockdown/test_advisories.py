"""The advisories in force: the shipped file on migrate, imports (service, page, command), and the page's counts."""

from __future__ import annotations

import io
from datetime import date
from typing import Any

import pytest
import yaml
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from lockdown import advisory_store
from lockdown.advisory_store import (
    advisories_import,
    builtin_advisories_sync,
    current_advisories,
    current_advisory_document,
    document_hash,
)
from lockdown.models import AdvisoryDocument
from lockdown.rules.advisories import AdvisoryError, builtin_advisory_text, load_builtin_advisories
from lockdown.services import SYSTEM_SCOPE
from servers.audit import Actor
from servers.models import AuditEvent
from servers.tenancy import scope_for_user
from tests.factories import ServerFactory

pytestmark = pytest.mark.django_db

ACTOR = Actor.system("test")


def shipped_data() -> dict[str, Any]:
    return yaml.safe_load(builtin_advisory_text())


def as_text(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False)


def newer_file(*, updated: str = "2027-01-10", drop: str | None = None, fix_premium: str | None = None) -> str:
    """The shipped file, dated later, optionally without one advisory or with CVE-2026-44400's fix published."""
    data = shipped_data()
    data["updated"] = updated
    if drop:
        data["advisories"] = [a for a in data["advisories"] if a["id"] != drop]
    if fix_premium:
        for a in data["advisories"]:
            if a["id"] == "cve-2026-44400":
                a["affected"] = [{"fixed": fix_premium}]
    data["advisories"].append(
        {
            "id": "test-2027-0001",
            "title": "A later advisory",
            "summary": "Found in 2027.",
            "cves": ["CVE-2027-0001"],
            "severity": "low",
            "editions": ["Standard"],
            "affected": [{"fixed": "10.60"}],
            "sources": ["https://example.org/2027-0001"],
        }
    )
    return as_text(data)


# --- The shipped file -------------------------------------------------------------------------
def test_migrate_loaded_the_shipped_file_as_the_set_in_force():
    row = current_advisory_document()
    assert row is not None
    assert row.builtin
    assert row.content_hash == document_hash(load_builtin_advisories())
    assert current_advisories() == load_builtin_advisories().advisories


def test_sync_again_changes_nothing():
    before = AdvisoryDocument.objects.count(), AuditEvent.objects.count()
    assert builtin_advisories_sync() is None
    assert (AdvisoryDocument.objects.count(), AuditEvent.objects.count()) == before


def test_a_newer_msp_import_is_never_replaced_by_an_older_shipped_file():
    advisories_import(scope=SYSTEM_SCOPE, actor=ACTOR, text=newer_file(updated="2027-01-10"), source_name="msp.yaml")
    assert builtin_advisories_sync() is None
    assert current_advisory_document().source_name == "msp.yaml"
    assert "test-2027-0001" in {a.id for a in current_advisories()}


def test_an_msp_import_of_the_same_date_is_not_replaced_by_the_shipped_file(monkeypatch):
    same_day = newer_file(updated=str(load_builtin_advisories().updated))
    advisories_import(scope=SYSTEM_SCOPE, actor=ACTOR, text=same_day, source_name="msp.yaml")
    assert builtin_advisories_sync() is None
    assert current_advisory_document().source_name == "msp.yaml"


def test_a_later_shipped_file_replaces_an_older_msp_import(monkeypatch):
    advisories_import(scope=SYSTEM_SCOPE, actor=ACTOR, text=newer_file(updated="2027-01-10"), source_name="msp.yaml")
    release = load_builtin_advisories().model_copy(update={"updated": date(2027, 6, 1)})
    monkeypatch.setattr(advisory_store, "load_builtin_advisories", lambda: release)
    outcome = builtin_advisories_sync()
    assert outcome is not None
    assert outcome.created
    assert current_advisory_document().builtin
    assert outcome.diff.removed == ("test-2027-0001",)


def test_a_corrected_shipped_file_of_the_same_date_replaces_the_builtin_set(monkeypatch):
    shipped = load_builtin_advisories()
    first = shipped.advisories[0]
    corrected = shipped.model_copy(update={"advisories": (first.model_copy(update={"title": "Corrected"}),
                                                          *shipped.advisories[1:])})  # fmt: skip
    monkeypatch.setattr(advisory_store, "load_builtin_advisories", lambda: corrected)
    outcome = builtin_advisories_sync()
    assert outcome is not None
    assert outcome.diff.changed == (first.id,)


# --- The import service -----------------------------------------------------------------------
def test_import_makes_the_file_the_set_in_force_and_audits_the_ids_that_changed():
    outcome = advisories_import(
        scope=SYSTEM_SCOPE, actor=ACTOR, text=newer_file(drop="cve-2012-0389"), source_name="msp.yaml"
    )
    assert outcome.created
    assert (outcome.diff.added, outcome.diff.removed, outcome.diff.changed) == (
        ("test-2027-0001",),
        ("cve-2012-0389",),
        (),
    )
    assert current_advisory_document().pk == outcome.document.pk
    event = AuditEvent.objects.filter(action="advisories.import").latest("id")
    assert event.object_id == str(outcome.document.pk)
    assert event.changes["added"] == [None, ["test-2027-0001"]]
    assert event.changes["removed"] == [None, ["cve-2012-0389"]]
    assert event.changes["source"] == [None, "msp.yaml"]


def test_importing_the_set_in_force_again_is_a_no_op_but_audited():
    text = newer_file()
    first = advisories_import(scope=SYSTEM_SCOPE, actor=ACTOR, text=text, source_name="a.yaml")
    rows = AdvisoryDocument.objects.count()
    events = AuditEvent.objects.filter(action="advisories.import").count()
    # The same content in another key order and as JSON is the same document.
    import json

    again = advisories_import(
        scope=SYSTEM_SCOPE, actor=ACTOR, text=json.dumps(yaml.safe_load(text), default=str), source_name="b.json"
    )
    assert not again.created
    assert again.document.pk == first.document.pk
    assert again.diff.empty
    assert AdvisoryDocument.objects.count() == rows
    assert AuditEvent.objects.filter(action="advisories.import").count() == events + 1
    assert AuditEvent.objects.filter(action="advisories.import").latest("id").changes["created"] == [None, False]


def test_reimporting_an_older_set_makes_it_current_again():
    shipped_text = builtin_advisory_text()
    advisories_import(scope=SYSTEM_SCOPE, actor=ACTOR, text=newer_file(), source_name="new.yaml")
    back = advisories_import(scope=SYSTEM_SCOPE, actor=ACTOR, text=shipped_text, source_name="old.yaml")
    assert back.created
    assert current_advisories() == load_builtin_advisories().advisories


def test_a_file_that_does_not_validate_saves_nothing():
    data = shipped_data()
    data["advisories"][0]["cves"] = ["CVE-1"]
    rows = AdvisoryDocument.objects.count()
    with pytest.raises(AdvisoryError, match="advisory 'cve-2026-44400', field 'cves'"):
        advisories_import(scope=SYSTEM_SCOPE, actor=ACTOR, text=as_text(data), source_name="bad.yaml")
    assert AdvisoryDocument.objects.count() == rows


@pytest.mark.parametrize("role", ["msp_operator", "msp_viewer", "customer_operator", "customer_viewer"])
def test_only_msp_admins_may_import(make_role_user, role):
    scope = scope_for_user(make_role_user(role))
    with pytest.raises(PermissionDenied):
        advisories_import(scope=scope, actor=ACTOR, text=newer_file(), source_name="x.yaml")
    assert current_advisory_document().builtin


def test_an_msp_admin_may_import(alice):
    outcome = advisories_import(scope=scope_for_user(alice), actor=Actor(user=alice), text=newer_file())
    assert outcome.document.imported_by == alice


def test_the_verdict_changes_with_the_imported_file_without_a_release():
    def premium_ids() -> list[str]:
        from lockdown.rules.advisories import advisories_affecting

        return [a.id for a in advisories_affecting("10.56", "Premium", current_advisories()).affected]

    assert premium_ids() == []
    advisories_import(scope=SYSTEM_SCOPE, actor=ACTOR, text=newer_file(fix_premium="10.57"))
    assert premium_ids() == ["cve-2026-44400"]


def test_current_advisories_is_one_query(django_assert_num_queries):
    with django_assert_num_queries(1):
        current_advisories()


# --- The page ---------------------------------------------------------------------------------
def facts(version: str | None, edition: str | None) -> dict[str, Any]:
    return {k: v for k, v in {"mailenable_version": version, "mailenable_edition": edition}.items() if v is not None}


def affected_count(body: str, advisory_id: str) -> str:
    row = body.split(f'id="advisory-{advisory_id}"')[1].split("</tr>")[0]
    return row.split('data-affected="')[1].split('"')[0]


@pytest.fixture
def fleet(tenant_a, tenant_b):
    """A: 10.41 Standard (the tenant server), 10.50 Enterprise, 9.84 Professional, one never discovered.
    B: three 10.41 Standard servers and a 10.23 Enterprise one."""
    tenant_a.server.facts = facts("10.41", "Standard")
    tenant_a.server.save(update_fields=["facts"])
    ServerFactory(customer=tenant_a.customer, facts=facts("10.50", "Enterprise"))
    ServerFactory(customer=tenant_a.customer, facts=facts("9.84", "Professional"))
    ServerFactory(customer=tenant_a.customer, facts={})
    tenant_b.server.facts = facts("10.41", "Standard")
    tenant_b.server.save(update_fields=["facts"])
    for _ in range(2):
        ServerFactory(customer=tenant_b.customer, facts=facts("10.41", "Standard"))
    ServerFactory(customer=tenant_b.customer, facts=facts("10.23", "Enterprise"))
    return tenant_a, tenant_b


def test_page_counts_a_customer_users_own_servers_only(client, cora, fleet):
    client.force_login(cora)
    body = client.get(reverse("advisory_list")).content.decode()
    assert affected_count(body, "cve-2022-42135") == "2"  # A's 10.41 Standard and 9.84 Professional
    assert affected_count(body, "cve-2026-44400") == "1"  # A's 10.50 Enterprise, possibly Premium
    assert "(1 only if Enterprise Premium)" in body
    assert affected_count(body, "cve-2019-12923") == "0"  # only B has a 10.23
    assert affected_count(body, "cve-2025-44148") == "1"
    assert "4 servers you can see, 1 of them not judged" in body
    assert 'action="' + reverse("advisory_import") not in body  # no import form for customer users


def test_page_counts_the_whole_fleet_for_msp_users(client, alice, fleet):
    client.force_login(alice)
    body = client.get(reverse("advisory_list")).content.decode()
    assert affected_count(body, "cve-2022-42135") == "6"  # A: 2; B: three 10.41 and the 10.23
    assert affected_count(body, "cve-2019-12923") == "1"
    assert affected_count(body, "cve-2026-44400") == "2"
    assert "https://www.cve.org/CVERecord?id=CVE-2022-42136" in body
    assert "up to and including 9.84" in body
    assert 'action="' + reverse("advisory_import") in body


def test_page_queries_do_not_grow_with_the_fleet(client, alice, tenant_a, django_assert_num_queries):
    client.force_login(alice)
    client.get(reverse("advisory_list"))  # warm the session and user caches
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("advisory_list"))
    baseline = len(few.captured_queries)
    # session, user, account security, memberships; then the page's own two: the file in force, the servers' facts
    assert baseline == 6
    for n in range(15):
        ServerFactory(customer=tenant_a.customer, facts=facts(f"10.{n}", "Standard"))
    with django_assert_num_queries(baseline):
        body = client.get(reverse("advisory_list")).content.decode()
    assert affected_count(body, "cve-2022-42135") == "15"


def test_page_escapes_what_the_file_says(client, alice):
    data = shipped_data()
    data["updated"] = "2027-02-01"
    data["advisories"][0]["title"] = "<script>alert(1)</script>"
    advisories_import(scope=SYSTEM_SCOPE, actor=ACTOR, text=as_text(data), source_name="<b>x</b>.yaml")
    client.force_login(alice)
    body = client.get(reverse("advisory_list")).content.decode()
    assert "<script>alert(1)" not in body
    assert "&lt;script&gt;" in body
    assert "<b>x</b>" not in body


def upload(text: str, name: str = "advisories.yaml") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode(), content_type="application/x-yaml")


def test_import_form_shows_the_diff_of_ids(client, alice):
    client.force_login(alice)
    response = client.post(reverse("advisory_import"), {"file": upload(newer_file(drop="cve-2012-0389"))}, follow=True)
    body = response.content.decode()
    assert "added test-2027-0001; removed cve-2012-0389; changed none." in body
    assert current_advisory_document().imported_by == alice
    again = client.post(reverse("advisory_import"), {"file": upload(newer_file(drop="cve-2012-0389"))}, follow=True)
    assert "Nothing new" in again.content.decode()


def test_import_form_reports_a_bad_file_and_saves_nothing(client, alice):
    client.force_login(alice)
    rows = AdvisoryDocument.objects.count()
    response = client.post(reverse("advisory_import"), {"file": upload("schema_version: 2\n")})
    assert response.status_code == 400
    assert "Nothing was imported" in response.content.decode()
    assert AdvisoryDocument.objects.count() == rows


@pytest.mark.parametrize("role", ["msp_operator", "customer_operator"])
def test_import_form_is_refused_to_non_admins(client, make_role_user, role):
    client.force_login(make_role_user(role))
    response = client.post(reverse("advisory_import"), {"file": upload(newer_file())})
    assert response.status_code == 403
    assert current_advisory_document().builtin


# --- The command ------------------------------------------------------------------------------
def test_command_imports_and_prints_the_ids_that_changed(tmp_path):
    path = tmp_path / "advisories.yaml"
    path.write_text(newer_file(drop="cve-2012-0389"), encoding="utf-8")
    out = io.StringIO()
    call_command("import_advisories", str(path), stdout=out)
    assert out.getvalue().splitlines() == [
        "Imported advisories.yaml (updated 2027-01-10).",
        "Added: test-2027-0001",
        "Removed: cve-2012-0389",
        "Changed: none",
    ]
    assert current_advisory_document().source_name == "advisories.yaml"
    again = io.StringIO()
    call_command("import_advisories", str(path), stdout=again)
    assert again.getvalue().startswith("Nothing new")


def test_command_refuses_a_bad_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(as_text({**shipped_data(), "schema_version": 2}), encoding="utf-8")
    with pytest.raises(CommandError, match="schema_version"):
        call_command("import_advisories", str(path))
    with pytest.raises(CommandError, match="cannot read"):
        call_command("import_advisories", str(tmp_path / "missing.yaml"))
