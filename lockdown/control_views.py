"""The Controls page: compliance rolled up by framework and control, as auditors read it."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from lockdown.control_rollup import ControlStatus, controls_rollup
from lockdown.rules.controls import Framework
from servers.models import Customer, Server
from servers.tenancy import Action, request_scope, require


@require_GET
def control_list(request: HttpRequest) -> HttpResponse:
    scope = request_scope(request)
    require(scope, Action.VIEW)
    customers = scope.filter(Customer.objects.order_by("name"), "")
    servers = scope.filter(Server.objects.all())
    wanted_customer = request.GET.get("customer", "")
    customer = None
    if wanted_customer.isdigit() and len(wanted_customer) <= 10:
        customer = customers.filter(pk=int(wanted_customer)).first()  # another customer's id: none, so all yours
    if customer is not None:
        servers = servers.filter(customer=customer)
    wanted = request.GET.get("framework", "")
    rollup = controls_rollup(servers)
    frameworks = [f for f in rollup.frameworks if not wanted or f.framework.value == wanted]
    return render(
        request,
        "lockdown/controls.html",
        {
            "rollup": rollup,
            "frameworks": frameworks,
            "framework_choices": [(f.value, f.label) for f in Framework],
            "framework": wanted,
            "customers": customers,
            "customer": customer,
            "statuses": list(ControlStatus),
        },
    )
