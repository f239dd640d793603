"""The assignment hierarchy's pages: every server's effective profile and where it comes from, the MSP
default, and the tag assignments — each change previewed (which servers move, and their compliance as
their last observation says it would be) before it is applied."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from lockdown import assignment, services
from lockdown.forms import ProfileAssignForm, TagAssignmentForm
from lockdown.models import FleetDefault, TagAssignment
from lockdown.views import _int_or_none, _moved_message
from servers.audit import Actor
from servers.models import Customer, Server
from servers.tenancy import Action, Scope, request_scope, require, scoped_get

PAGE = 100


@require_GET
def assignment_list(request: HttpRequest) -> HttpResponse:
    scope = request_scope(request)
    require(scope, Action.VIEW)
    customers = scope.filter(Customer.objects.all(), "")
    servers = scope.filter(Server.objects.select_related("customer")).order_by("customer__name", "name")
    customer_id = _int_or_none(request.GET.get("customer"))
    if customer_id is not None:
        servers = servers.filter(customer_id=customer_id)
    page = Paginator(servers, PAGE).get_page(request.GET.get("page"))
    rows = list(page.object_list)
    followed = assignment.effective_for(Server.objects.filter(pk__in=[s.pk for s in rows]))
    context: dict[str, Any] = {
        "page": page,
        "rows": [(server, followed[server.pk]) for server in rows],
        "customers": customers,
        "customer_id": customer_id,
        "can_manage": scope.can(Action.MANAGE_PROFILES) and scope.customers_where(Action.MANAGE_PROFILES) is None,
        "is_msp": scope.is_msp,
    }
    if scope.is_msp:  # the hierarchy above a customer is the MSP's; a customer sees what reaches its servers
        fleet_default = FleetDefault.objects.select_related("version__profile").filter(pk=1).first()
        context["fleet_default"] = fleet_default.version if fleet_default else None
        context["tag_assignments"] = (
            TagAssignment.objects.select_related("tag", "customer", "version__profile")
            .prefetch_related("excluded_servers")
            .order_by("customer__name", "precedence", "tag__name")
        )
    return render(request, "lockdown/assignment_list.html", context)


def _preview_or_apply(request: HttpRequest, *, preview: Any, apply: Any, done: str) -> HttpResponse | list[Any]:
    """POST with `apply` saves (and redirects); any other POST previews: the moves to show."""
    if request.POST.get("confirm") == "apply":
        moves = apply()
        messages.success(request, _moved_message(done, moves))
        return redirect("assignment_list")
    return list(preview())


@require_http_methods(["GET", "POST"])
def fleet_default_edit(request: HttpRequest) -> HttpResponse:
    scope = request_scope(request)
    require(scope, Action.MANAGE_PROFILES)
    current = FleetDefault.objects.filter(pk=1).values_list("version_id", flat=True).first()
    form = ProfileAssignForm(
        request.POST or None, initial={"version": current}, empty_label="None: the built-in profile's latest version"
    )
    moves: list[Any] | None = None
    if request.method == "POST" and form.is_valid():
        version = form.cleaned_data["version"]
        outcome = _preview_or_apply(
            request,
            preview=lambda: assignment.preview(assignment.set_msp_default(version.pk if version else None)),
            apply=lambda: services.fleet_default_set(scope=scope, actor=Actor.from_request(request), version=version),
            done="The MSP default",
        )
        if isinstance(outcome, HttpResponse):
            return outcome
        moves = outcome
    status = 400 if request.method == "POST" and not form.is_valid() else 200
    return render(
        request,
        "lockdown/assignment_edit.html",
        {"form": form, "title": "MSP default profile", "moves": moves},
        status=status,
    )


def _assignment(scope: Scope, assignment_id: int) -> TagAssignment:
    """A tag assignment the user may see (a customer's own, to its users; all, to the MSP), else 404."""
    return scoped_get(
        scope,
        TagAssignment.objects.select_related("tag", "customer", "version__profile"),
        pk=assignment_id,
    )


@require_http_methods(["GET", "POST"])
def tag_assignment_edit(request: HttpRequest, assignment_id: int | None = None) -> HttpResponse:
    scope = request_scope(request)
    existing = _assignment(scope, assignment_id) if assignment_id is not None else None
    require(scope, Action.MANAGE_PROFILES, existing.customer if existing else None)
    initial = (
        {
            "tag": existing.tag_id,
            "customer": existing.customer_id,
            "version": existing.version_id,
            "precedence": existing.precedence,
            "excluded": [s.pk for s in existing.excluded_servers.all()],
        }
        if existing
        else {}
    )
    form = TagAssignmentForm(request.POST or None, initial=initial)
    moves: list[Any] | None = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            spec = form.spec()
            try:
                outcome = _preview_or_apply(
                    request,
                    preview=lambda: services.tag_assignment_preview(scope=scope, spec=spec, existing=existing),
                    apply=lambda: services.tag_assignment_save(
                        scope=scope, actor=Actor.from_request(request), spec=spec, existing=existing
                    )[1],
                    done=f"The assignment of tag {spec.tag.name}",
                )
            except services.AssignmentError as error:
                _form_error(form, str(error))
                status = 400
            else:
                if isinstance(outcome, HttpResponse):
                    return outcome
                moves = outcome
        else:
            status = 400
    title = (
        f"Tag {existing.tag.name}" + (f" of {existing.customer.name}" if existing.customer else "")
        if existing
        else "Assign a profile to a tag"
    )
    return render(
        request,
        "lockdown/assignment_edit.html",
        {"form": form, "title": title, "moves": moves, "existing": existing},
        status=status,
    )


def _form_error(form: Any, message: str) -> None:
    """A service's "field 'x': why" on the field it names, else on the form."""
    field, _, why = message.partition("': ")
    name = field.removeprefix("field '")
    if field.startswith("field '") and name in form.fields:
        form.add_error(name, why)
    else:
        form.add_error(None, message)


@require_http_methods(["GET", "POST"])
def tag_assignment_delete(request: HttpRequest, assignment_id: int) -> HttpResponse:
    scope = request_scope(request)
    existing = _assignment(scope, assignment_id)
    require(scope, Action.MANAGE_PROFILES, existing.customer)
    if request.method == "POST":
        moves = services.tag_assignment_delete(scope=scope, actor=Actor.from_request(request), existing=existing)
        messages.success(request, _moved_message(f"The assignment of tag {existing.tag.name} removed", moves))
        return redirect("assignment_list")
    moves = services.tag_assignment_preview(scope=scope, spec=None, existing=existing)
    return render(request, "lockdown/assignment_delete.html", {"existing": existing, "moves": moves})
