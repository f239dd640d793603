"""Export and import as YAML and JSON, by page and by command: round trips keep the content hash."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command

from lockdown import selectors
from lockdown.models import Profile, ProfileVersion
from servers.models import AuditEvent
from tests.integration.lockdown.conftest import as_yaml, small_document

pytestmark = pytest.mark.django_db


def _export(*args: str) -> str:
    out = io.StringIO()
    call_command("export_profile", *args, stdout=out)
    return out.getvalue()


def _import(path: Path) -> str:
    out = io.StringIO()
    call_command("import_profile", str(path), stdout=out)
    return out.getvalue()


def test_export_profile_command_prints_the_builtin_as_json() -> None:
    data = json.loads(_export("mailenable-hardened", "--format", "json"))
    builtin = selectors.latest_builtin_version()
    assert builtin is not None
    assert data["slug"] == "mailenable-hardened"
    assert data["version"] == "1"
    assert [rule["id"] for rule in data["rules"]] == [rule["id"] for rule in builtin.rules]


def test_export_profile_command_yaml_and_version_option() -> None:
    data = yaml.safe_load(_export("mailenable-hardened", "--format", "yaml", "--version", "1"))
    assert data["name"] == "MailEnable hardened server"
    with pytest.raises(CommandError, match="no version 7"):
        _export("mailenable-hardened", "--version", "7")
    with pytest.raises(CommandError, match="no profile"):
        _export("no-such-profile")


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_round_trip_through_a_file_keeps_the_content_hash(tmp_path: Path, fmt: str) -> None:
    builtin = selectors.latest_builtin_version()
    assert builtin is not None
    text = _export("mailenable-hardened", "--format", fmt)
    # Same content under a new slug: a new profile whose version has the very same hash.
    text = text.replace("mailenable-hardened", "acme-copy", 1)
    path = tmp_path / f"copy.{fmt}"
    path.write_text(text, encoding="utf-8")
    assert "Created profile acme-copy with version 1" in _import(path)
    copy = ProfileVersion.objects.get(profile__slug="acme-copy")
    assert copy.content_hash == builtin.content_hash
    assert copy.rules == builtin.rules
    # Importing the same file again creates nothing.
    assert "Nothing new" in _import(path)
    assert ProfileVersion.objects.filter(profile__slug="acme-copy").count() == 1
    assert AuditEvent.objects.filter(action="profile.import", actor_name="import_profile").count() == 2


def test_import_of_a_changed_file_makes_a_new_version(tmp_path: Path) -> None:
    path = tmp_path / "acme.yaml"
    path.write_text(as_yaml(small_document()), encoding="utf-8")
    _import(path)
    path.write_text(as_yaml(small_document(access="FULL")), encoding="utf-8")
    assert "Created acme-hardened version 2" in _import(path)
    assert list(Profile.objects.get(slug="acme-hardened").versions.values_list("number", flat=True)) == [2, 1]


def test_import_cannot_replace_the_builtin(tmp_path: Path) -> None:
    path = tmp_path / "me.yaml"
    path.write_text(as_yaml(small_document(slug="mailenable-hardened")), encoding="utf-8")
    with pytest.raises(CommandError, match="built-in"):
        _import(path)
    assert ProfileVersion.objects.filter(profile__slug="mailenable-hardened").count() == 1


def test_import_command_reports_the_rule_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(small_document(target="relative\\cmd.exe")), encoding="utf-8")
    with pytest.raises(CommandError, match=r"rule 'file_acl.system32.activeds_dll', field 'target': relative paths"):
        _import(path)
    assert not Profile.objects.filter(slug="acme-hardened").exists()


def test_import_command_refuses_a_file_over_the_upload_cap(tmp_path: Path, settings) -> None:
    settings.FLEET_MAX_UPLOAD_BYTES = 1000
    path = tmp_path / "big.yaml"
    path.write_text(as_yaml(small_document()) + "#" * 2000, encoding="utf-8")
    with pytest.raises(CommandError, match="larger than the limit"):
        _import(path)
    assert not Profile.objects.filter(slug="acme-hardened").exists()


def test_export_page_downloads_the_document(client, cora) -> None:
    builtin = selectors.latest_builtin_version()
    assert builtin is not None
    client.force_login(cora)
    response = client.get(f"/profiles/{builtin.profile_id}/v/1/export/?format=json")
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="mailenable-hardened-v1.json"'
    assert json.loads(response.content)["slug"] == "mailenable-hardened"
    response = client.get(f"/profiles/{builtin.profile_id}/v/1/export/")
    assert yaml.safe_load(response.content)["slug"] == "mailenable-hardened"
