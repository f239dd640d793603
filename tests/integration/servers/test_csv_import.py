"""CSV import: all rows valid or nothing imported, with row-numbered errors; the file is checked in the
request, its rows by a background import whose page shows progress and the errors."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from servers.models import AuditEvent, Server, ServerImport
from tests.factories import import_csv

pytestmark = pytest.mark.django_db

HEADER = "name,customer,address,winrm_scheme,winrm_port,credential,tags\n"


def _upload(client, text: str | bytes, name: str = "servers.csv"):
    return import_csv(client, text, name)


def test_valid_file_imports_every_row(client, alice, tenant_a):
    client.force_login(alice)
    body = HEADER + (
        f"mx-1,{tenant_a.customer.name},mx1.example.net,https,5986,{tenant_a.credential.name},plesk\n"
        f"mx-2,{tenant_a.customer.name},10.0.0.2,http,5985,,\n"
    )
    response = _upload(client, body)
    assert response.status_code == 200
    assert "Imported 2 servers" in response.content.decode()
    assert set(Server.objects.filter(name__in=["mx-1", "mx-2", "mx-3"]).values_list("name", flat=True)) == {
        "mx-1",
        "mx-2",
    }
    assert Server.objects.get(name="mx-1").credential == tenant_a.credential
    assert AuditEvent.objects.filter(action="server.import").count() == 1


def test_one_bad_row_rejects_the_whole_file_with_row_numbers(client, alice, tenant_a):
    client.force_login(alice)
    body = HEADER + (
        f"mx-1,{tenant_a.customer.name},mx1.example.net,https,5986,,\n"
        f"mx-2,{tenant_a.customer.name},not a host!,https,99999,,\n"
        f"mx-3,Nobody Ltd,mx3.example.net,https,5986,,\n"
    )
    response = _upload(client, body)
    page = response.content.decode()
    assert "Nothing was imported: " in page
    assert "Row 3: address" in page
    assert "Row 3: winrm_port" in page
    assert "Row 4: customer" in page
    assert not Server.objects.filter(name__in=["mx-1", "mx-2", "mx-3"]).exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("name,address\nx,y\n", "missing columns: customer"),
        ("name,customer,address,colour\n", "unknown columns: colour"),
        ("name,customer,address\n", "no rows"),
        (b"name,customer,address\n=cmd|' /C calc'!A0,A,b.example\n", "may not start with"),
        ("name,customer,address\nmx,Tenant A Ltd,a.example,extra\n", "wrong number of cells"),
        ("name,customer,address\nm\xe9x,Tenant A Ltd,a.example\n".encode("latin-1"), "not UTF-8"),
    ],
)
def test_malformed_files_get_clear_errors(client, alice, tenant_a, content, message):
    client.force_login(alice)
    response = _upload(client, content)
    assert message in response.content.decode()
    assert Server.objects.count() == 1  # only tenant_a's own server


def test_duplicate_rows_in_one_file_are_refused(client, alice, tenant_a):
    client.force_login(alice)
    body = "name,customer,address\n" + f"dup,{tenant_a.customer.name},a.example\n" * 2
    response = _upload(client, body)
    assert "the same server appears on row 2" in response.content.decode()


def test_a_fifty_megabyte_upload_is_refused_without_reading_it_all(client, alice, tenant_a, settings):
    client.force_login(alice)
    big = b"name,customer,address\n" + b"x" * (50 * 1024 * 1024)
    response = _upload(client, big)
    assert response.status_code == 400
    assert "limit" in response.content.decode()


def test_customer_operator_cannot_import_into_another_customer(client, carol, tenant_a, tenant_b):
    client.force_login(carol)
    response = _upload(client, f"name,customer,address\nmx-z,{tenant_b.customer.name},z.example\n")
    assert "Row 2: customer" in response.content.decode()
    assert not Server.objects.filter(name="mx-z").exists()


def test_the_file_is_checked_in_the_request_and_its_rows_in_the_background(client, alice, tenant_a):
    client.force_login(alice)
    # A header problem is answered at once, and nothing is queued.
    refused = client.post(reverse("server_import"), {"file": SimpleUploadedFile("s.csv", b"name\nx\n")})
    assert refused.status_code == 400
    assert not ServerImport.objects.exists()
    # A good header is queued; the import's page shows it waiting until a worker takes it.
    body = "name,customer,address\n" + "".join(f"bulk-{i},{tenant_a.customer.name},10.9.0.{i}\n" for i in range(1, 6))
    queued = client.post(reverse("server_import"), {"file": SimpleUploadedFile("bulk.csv", body.encode())})
    record = ServerImport.objects.get()
    assert queued["Location"] == reverse("server_import_detail", args=[record.pk])
    page = client.get(queued["Location"]).content.decode()
    assert "Queued" in page
    assert 'http-equiv="refresh"' in page
    assert not Server.objects.filter(name__startswith="bulk-").exists()
    # The worker: progress reported, every server created, the CSV text dropped.
    from servers import csv_import

    seen = []
    real = csv_import.import_servers_text

    def spy(**kwargs):
        progress = kwargs["progress"]

        def record_progress(done, total):
            seen.append((done, total))
            progress(done, total)

        return real(**{**kwargs, "progress": record_progress})

    csv_import.import_servers_text = spy
    try:
        assert csv_import.server_import_run(record.pk) == "succeeded"
    finally:
        csv_import.import_servers_text = real
    assert seen[0] == (0, 5)
    assert seen[-1] == (5, 5)
    record.refresh_from_db()
    assert (record.state, record.total_rows, record.processed_rows, record.created_count) == ("succeeded", 5, 5, 5)
    assert record.content == ""
    assert Server.objects.filter(name__startswith="bulk-").count() == 5
    done = client.get(queued["Location"]).content.decode()
    assert "Imported 5 servers" in done
    assert 'http-equiv="refresh"' not in done
    # A redelivered task does nothing more.
    assert csv_import.server_import_run(record.pk) == "done already"
    assert Server.objects.filter(name__startswith="bulk-").count() == 5


def test_an_import_page_is_its_uploaders_only(client, alice, make_role_user, tenant_a):
    client.force_login(alice)
    page = _upload(client, f"name,customer,address\nmine,{tenant_a.customer.name},10.9.1.1\n")
    record = ServerImport.objects.get()
    assert page.status_code == 200
    other = make_role_user("customer_operator")
    client.force_login(other)
    assert client.get(reverse("server_import_detail", args=[record.pk])).status_code == 404


def test_a_right_revoked_before_the_worker_runs_imports_nothing(client, carol, tenant_a):
    from servers import csv_import
    from servers.models import Membership

    client.force_login(carol)
    client.post(
        reverse("server_import"),
        {
            "file": SimpleUploadedFile(
                "s.csv", f"name,customer,address\nlate,{tenant_a.customer.name},10.9.2.1\n".encode()
            )
        },
    )
    record = ServerImport.objects.get()
    Membership.objects.filter(user=carol).update(role="viewer")
    assert csv_import.server_import_run(record.pk) == "failed"
    assert not Server.objects.filter(name="late").exists()
