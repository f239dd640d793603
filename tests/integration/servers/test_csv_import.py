"""CSV import: all rows valid or nothing imported, with row-numbered errors."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from servers.models import AuditEvent, Server

pytestmark = pytest.mark.django_db

HEADER = "name,customer,address,winrm_scheme,winrm_port,credential,tags\n"


def _upload(client, text: str | bytes, name: str = "servers.csv"):
    content = text.encode("utf-8") if isinstance(text, str) else text
    return client.post(reverse("server_import"), {"file": SimpleUploadedFile(name, content, "text/csv")})


def test_valid_file_imports_every_row(client, alice, tenant_a):
    client.force_login(alice)
    body = HEADER + (
        f"mx-1,{tenant_a.customer.name},mx1.example.net,https,5986,{tenant_a.credential.name},plesk\n"
        f"mx-2,{tenant_a.customer.name},10.0.0.2,http,5985,,\n"
    )
    response = _upload(client, body)
    assert response.status_code == 302
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
    assert response.status_code == 400
    page = response.content.decode()
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
    assert response.status_code == 400
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
    assert response.status_code == 400
    assert "Row 2: customer" in response.content.decode()
    assert not Server.objects.filter(name="mx-z").exists()
