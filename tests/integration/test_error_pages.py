"""403 and 404 are our own readable pages in every mode: never Django's debug pages (which list every URL)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db


@pytest.fixture(params=[True, False], ids=["debug", "production-like"])
def debug(request, settings) -> bool:
    settings.DEBUG = request.param
    return request.param


def test_an_unknown_address_is_a_readable_404(client, alice, debug) -> None:
    client.force_login(alice)
    response = client.get("/no/such/page/")
    page = response.content.decode()
    assert response.status_code == 404
    assert "<h1>Not found</h1>" in page
    assert "/no/such/page/" in page
    assert "URLconf" not in page
    assert "server_list" not in page
    assert "Back to the dashboard" in page


def test_another_customers_server_is_the_same_404_as_a_missing_one(client, carol, tenant_b, debug) -> None:
    client.force_login(carol)
    theirs = client.get(reverse("server_detail", kwargs={"server_id": tenant_b.server.pk}))
    missing = client.get(reverse("server_detail", kwargs={"server_id": 987654}))
    assert theirs.status_code == missing.status_code == 404
    assert "<h1>Not found</h1>" in theirs.content.decode()
    assert tenant_b.server.name not in theirs.content.decode()


def test_a_forbidden_action_is_a_readable_403(client, cora, debug) -> None:
    client.force_login(cora)
    response = client.get(reverse("server_create"))
    page = response.content.decode()
    assert response.status_code == 403
    assert "<h1>Not allowed</h1>" in page
    assert "your role does not allow: edit_servers" in page


def test_a_stale_form_token_explains_itself(alice, debug) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post(reverse("customer_create"), {"name": "x"})
    page = response.content.decode()
    assert response.status_code == 403
    assert "security token is missing or out of date" in page
    assert "CSRF_COOKIE" not in page
    assert "Help" not in page
