"""The customer form: maintenance days ticked by name (Monday first), the time zone chosen from a list."""

from __future__ import annotations

import pytest
from django.urls import reverse

from servers.models import Customer

pytestmark = pytest.mark.django_db


def _form(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "Weekend Mail Ltd",
        "notes": "",
        "maintenance_days": ["5", "6"],
        "maintenance_start": "22:00",
        "maintenance_hours": "4",
        "maintenance_timezone": "Europe/Berlin",
        "management_networks": "",
    }
    data.update(overrides)
    return data


def test_days_ticked_by_name_are_stored_monday_first_and_read_back(client, alice) -> None:
    client.force_login(alice)
    response = client.post(reverse("customer_create"), _form())
    assert response.status_code == 302, response.context["form"].errors
    customer = Customer.objects.get(name="Weekend Mail Ltd")
    assert (customer.maintenance_days, customer.maintenance_timezone) == ("5,6", "Europe/Berlin")
    detail = client.get(reverse("customer_detail", kwargs={"customer_id": customer.pk})).content.decode()
    assert "Saturday, Sunday from 22:00 for 4 h (Europe/Berlin)" in detail

    edit = client.get(reverse("customer_edit", kwargs={"customer_id": customer.pk})).content.decode()
    ticked = [
        tag for tag in edit.split("<input")[1:] if 'name="maintenance_days"' in tag and "checked" in tag.split(">")[0]
    ]
    assert [tag.split('value="')[1].split('"')[0] for tag in ticked] == ["5", "6"]
    assert '<option value="Europe/Berlin" selected>' in edit


def test_every_day_is_stored_empty_and_shown_ticked(client, alice) -> None:
    client.force_login(alice)
    client.post(reverse("customer_create"), _form(maintenance_days=[str(day) for day in range(7)]))
    customer = Customer.objects.get(name="Weekend Mail Ltd")
    assert customer.maintenance_days == ""
    edit = client.get(reverse("customer_edit", kwargs={"customer_id": customer.pk})).content.decode()
    assert edit.count("checked") >= 7
    assert (
        "every day from 22:00"
        in client.get(reverse("customer_detail", kwargs={"customer_id": customer.pk})).content.decode()
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [("maintenance_timezone", "Mars/Olympus"), ("maintenance_days", []), ("maintenance_days", ["7"])],
)
def test_an_unknown_zone_or_no_day_is_refused(client, alice, field: str, value: object) -> None:
    client.force_login(alice)
    response = client.post(reverse("customer_create"), _form(**{field: value}))
    assert response.status_code == 200
    assert field in response.context["form"].errors
    assert not Customer.objects.filter(name="Weekend Mail Ltd").exists()
