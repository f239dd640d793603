"""Profile and waiver pages. Thin: scope → selector or form → service → redirect or render."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from lockdown import assignment, clock, selectors, services
from lockdown.choices import WAIVER_STATUS_COLOURS, ExportFormat, WaiverKind, WaiverStatus
from lockdown.exchange import dump_document
from lockdown.forms import ProfileAssignForm, ProfileCloneForm, ProfileEditorForm, ProfileImportForm, WaiverForm
from lockdown.models import ProfileVersion, Waiver
from lockdown.rules.exceptions import EXCEPTION_KEY
from servers.audit import Actor
from servers.models import Customer, Server
from servers.tenancy import Action, request_scope, require, scoped_get
from servers.twofactor import recent_second_factor

SKELETON = """slug: my-profile
name: My profile
version: '1'
notes: []
rules:
- id: user_right.ime_system.service_logon
  type: user_right
  section: User Rights
  description: IME_SYSTEM may log on as a service.
  expected: IME_SYSTEM holds SeServiceLogonRight.
  right: SeServiceLogonRight
  principal: IME_SYSTEM
"""


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


# --- Profiles -------------------------------------------------------------------------------
@require_GET
def profile_list(request: HttpRequest) -> HttpResponse:
    scope = request_scope(request)
    require(scope, Action.VIEW)
    return render(
        request,
        "lockdown/profile_list.html",
        {"profiles": selectors.profile_list(scope=scope), "can_manage": scope.can(Action.MANAGE_PROFILES)},
    )


@require_GET
def profile_detail(request: HttpRequest, profile_id: int) -> HttpResponse:
    scope = request_scope(request)
    profile = selectors.profile_get(scope=scope, profile_id=profile_id)
    require(scope, Action.VIEW)
    versions = ProfileVersion.objects.filter(profile=profile).select_related("created_by").order_by("-number")
    return render(
        request,
        "lockdown/profile_detail.html",
        {"profile": profile, "versions": versions, "can_manage": scope.can(Action.MANAGE_PROFILES)},
    )


@require_GET
def version_detail(request: HttpRequest, profile_id: int, version_number: int) -> HttpResponse:
    scope = request_scope(request)
    profile = selectors.profile_get(scope=scope, profile_id=profile_id)
    require(scope, Action.VIEW)
    version = selectors.version_get(profile=profile, number=version_number)
    sections = selectors.version_sections(version)
    return render(
        request,
        "lockdown/version_detail.html",
        {
            "profile": profile,
            "version": version,
            "sections": sections,
            "high_risk_total": sum(section.high_risk_count for section in sections),
            "deviation_total": sum(section.deviation_count for section in sections),
            "can_manage": scope.can(Action.MANAGE_PROFILES),
        },
    )


@require_GET
def version_export(request: HttpRequest, profile_id: int, version_number: int) -> HttpResponse:
    scope = request_scope(request)
    profile = selectors.profile_get(scope=scope, profile_id=profile_id)
    require(scope, Action.VIEW)
    version = selectors.version_get(profile=profile, number=version_number)
    fmt = ExportFormat.JSON if request.GET.get("format") == ExportFormat.JSON else ExportFormat.YAML
    body = dump_document(selectors.version_document(version), fmt)
    content_type = "application/json" if fmt == ExportFormat.JSON else "application/yaml"
    response = HttpResponse(body, content_type=f"{content_type}; charset=utf-8")
    # The slug is [a-z0-9-] only (validated), so it is safe in the header.
    response["Content-Disposition"] = f'attachment; filename="{profile.slug}-v{version.number}.{fmt}"'
    return response


@require_GET
def profile_diff(request: HttpRequest, profile_id: int) -> HttpResponse:
    scope = request_scope(request)
    profile = selectors.profile_get(scope=scope, profile_id=profile_id)
    require(scope, Action.VIEW)
    versions = list(ProfileVersion.objects.filter(profile=profile).order_by("number"))
    numbers = [version.number for version in versions]
    by_number = {version.number: version for version in versions}
    new_number = _int_or_none(request.GET.get("to"))
    new = by_number.get(new_number) if new_number is not None else versions[-1] if versions else None
    old_number = _int_or_none(request.GET.get("from"))
    old = by_number.get(old_number) if old_number is not None else None
    if old is None and new is not None:
        earlier = [n for n in numbers if n < new.number]
        old = by_number[earlier[-1]] if earlier else new
    diff = selectors.version_diff(old, new) if old is not None and new is not None else None
    return render(
        request,
        "lockdown/version_diff.html",
        {"profile": profile, "old": old, "new": new, "diff": diff, "numbers": numbers},
        status=200 if diff is not None or not versions else 404,
    )


@require_GET
def profile_compare(request: HttpRequest) -> HttpResponse:
    """Two versions of any two visible profiles side by side (e.g. the guide's profile and the current baseline),
    before moving servers from one to the other with a previewed assignment."""
    scope = request_scope(request)
    require(scope, Action.VIEW)
    versions = list(
        ProfileVersion.objects.select_related("profile")
        .filter(profile__in=selectors.visible_profiles(scope=scope))
        .order_by("profile__name", "-number")
    )
    by_id = {version.pk: version for version in versions}
    old, new = (by_id.get(_int_or_none(request.GET.get(name)) or 0) for name in ("from", "to"))
    diff = selectors.version_diff(old, new) if old is not None and new is not None else None
    asked = "from" in request.GET or "to" in request.GET
    return render(
        request,
        "lockdown/profile_compare.html",
        {"versions": versions, "old": old, "new": new, "diff": diff},
        status=404 if asked and diff is None else 200,
    )


@require_http_methods(["GET", "POST"])
def profile_create(request: HttpRequest) -> HttpResponse:
    scope = request_scope(request)
    require(scope, Action.MANAGE_PROFILES)
    form = ProfileEditorForm(request.POST or None, initial={"text": SKELETON})
    status = 200
    if request.method == "POST":
        if form.is_valid() and form.document is not None:
            try:
                version = services.profile_create(
                    scope=scope,
                    actor=Actor.from_request(request),
                    document=form.document,
                    change_note=form.cleaned_data["change_note"],
                )
            except services.ProfileServiceError as exc:
                form.add_error("text", str(exc))
            else:
                messages.success(request, f"Profile {version.profile.name} created.")
                return redirect("version_detail", profile_id=version.profile_id, version_number=version.number)
        status = 400
    return render(request, "lockdown/profile_editor.html", {"form": form, "creating": True}, status=status)


@require_http_methods(["GET", "POST"])
def version_edit(request: HttpRequest, profile_id: int, version_number: int) -> HttpResponse:
    scope = request_scope(request)
    profile = selectors.profile_get(scope=scope, profile_id=profile_id)
    require(scope, Action.MANAGE_PROFILES)
    version = selectors.version_get(profile=profile, number=version_number)
    initial = {"text": dump_document(selectors.version_document(version), ExportFormat.YAML)}
    form = ProfileEditorForm(request.POST or None, initial=initial, profile=profile)
    status = 200
    if request.method == "POST":
        if form.is_valid() and form.document is not None:
            try:
                new = services.profile_version_create(
                    scope=scope,
                    actor=Actor.from_request(request),
                    profile=profile,
                    document=form.document,
                    change_note=form.cleaned_data["change_note"],
                )
            except services.ProfileServiceError as exc:
                form.add_error("text", str(exc))
            else:
                messages.success(request, f"Saved as version {new.number}.")
                return redirect("version_detail", profile_id=profile.pk, version_number=new.number)
        status = 400
    return render(
        request,
        "lockdown/profile_editor.html",
        {"form": form, "creating": False, "profile": profile, "version": version},
        status=status,
    )


@require_http_methods(["GET", "POST"])
def version_clone(request: HttpRequest, profile_id: int, version_number: int) -> HttpResponse:
    scope = request_scope(request)
    profile = selectors.profile_get(scope=scope, profile_id=profile_id)
    require(scope, Action.MANAGE_PROFILES)
    version = selectors.version_get(profile=profile, number=version_number)
    form = ProfileCloneForm(request.POST or None)
    if request.method == "POST":
        if form.is_valid():
            try:
                clone = services.profile_clone(
                    scope=scope, actor=Actor.from_request(request), source=version, **form.cleaned_data
                )
            except services.ProfileServiceError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"Profile {clone.profile.name} created from {version.label}.")
                return redirect("version_detail", profile_id=clone.profile_id, version_number=clone.number)
        return render(request, "lockdown/profile_clone.html", {"form": form, "version": version}, status=400)
    return render(request, "lockdown/profile_clone.html", {"form": form, "version": version})


@require_http_methods(["GET", "POST"])
def profile_import(request: HttpRequest) -> HttpResponse:
    scope = request_scope(request)
    require(scope, Action.MANAGE_PROFILES)
    form = ProfileImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST":
        if form.is_valid() and form.document is not None:
            try:
                outcome = services.profile_import(
                    scope=scope,
                    actor=Actor.from_request(request),
                    document=form.document,
                    source_name=form.cleaned_data["file"].name or "",
                )
            except services.ProfileServiceError as exc:
                form.add_error("file", str(exc))
            else:
                version = outcome.version
                if outcome.created_version:
                    messages.success(request, f"Imported as {version.label}.")
                else:
                    messages.info(request, f"Nothing new: the file is identical to {version.label}.")
                return redirect("version_detail", profile_id=version.profile_id, version_number=version.number)
        return render(request, "lockdown/profile_import.html", {"form": form}, status=400)
    return render(request, "lockdown/profile_import.html", {"form": form})


# --- Assignment -----------------------------------------------------------------------------
def _moved_message(subject: str, moves: list[Any]) -> str:
    one = len(moves) == 1
    moved = f"{len(moves)} server{'' if one else 's'} now follow{'s' if one else ''} another version"
    done = subject if subject.endswith(" removed") else f"{subject} saved"
    return f"{done}; {moved}." if moves else f"{done}; no server changes version."


def _block_field(model: type[Customer] | type[Server]) -> tuple[str, str]:
    field = model._meta.get_field("block_inheritance")
    return str(field.verbose_name), str(field.help_text)


@require_http_methods(["GET", "POST"])
def customer_profile_assign(request: HttpRequest, customer_id: int) -> HttpResponse:
    scope = request_scope(request)
    customer = scoped_get(scope, Customer.objects.all(), customer_field="", pk=customer_id)
    require(scope, Action.MANAGE_PROFILES, customer)
    form = ProfileAssignForm(
        request.POST or None,
        initial={"version": customer.default_profile_version_id, "block_inheritance": customer.block_inheritance},
        empty_label="None: the MSP default (or the built-in profile's latest version)",
        block=_block_field(Customer),
    )
    if request.method == "POST":
        if form.is_valid():
            moves = services.customer_assign_profile(
                scope=scope,
                actor=Actor.from_request(request),
                customer=customer,
                version=form.cleaned_data["version"],
                block_inheritance=form.cleaned_data["block_inheritance"],
            )
            messages.success(request, _moved_message(f"Default profile of {customer.name}", moves))
            return redirect("customer_detail", customer_id=customer.pk)
        status = 400
    else:
        status = 200
    effective = assignment.customer_effective(customer)
    return render(
        request,
        "lockdown/profile_assign.html",
        {"form": form, "subject": customer, "kind": "customer", "effective": effective},
        status=status,
    )


@require_http_methods(["GET", "POST"])
def server_profile_assign(request: HttpRequest, server_id: int) -> HttpResponse:
    scope = request_scope(request)
    server = scoped_get(scope, Server.objects.select_related("customer"), pk=server_id)
    require(scope, Action.MANAGE_PROFILES, server.customer_id)
    form = ProfileAssignForm(
        request.POST or None,
        initial={"version": server.profile_version_id, "block_inheritance": server.block_inheritance},
        empty_label="None: what its tags, its customer or the MSP default give it",
        block=_block_field(Server),
    )
    if request.method == "POST":
        if form.is_valid():
            moves = services.server_assign_profile(
                scope=scope,
                actor=Actor.from_request(request),
                server=server,
                version=form.cleaned_data["version"],
                block_inheritance=form.cleaned_data["block_inheritance"],
            )
            messages.success(request, _moved_message(f"Profile of {server.name}", moves))
            return redirect("server_detail", server_id=server.pk)
        status = 400
    else:
        status = 200
    effective = assignment.effective(server)
    return render(
        request,
        "lockdown/profile_assign.html",
        {"form": form, "subject": server, "kind": "server", "effective": effective},
        status=status,
    )


# --- Waivers --------------------------------------------------------------------------------
@require_GET
def waiver_list(request: HttpRequest) -> HttpResponse:
    scope = request_scope(request)
    require(scope, Action.VIEW)
    now = clock.now()
    waivers = selectors.waiver_list(scope=scope, customer_id=_int_or_none(request.GET.get("customer")))
    kind = request.GET.get("kind", "")
    if kind in WaiverKind.values:
        waivers = waivers.filter(kind=kind)
    page = Paginator(waivers, 50).get_page(request.GET.get("page"))
    rows = [(waiver, waiver.status_at(now)) for waiver in page]
    return render(
        request,
        "lockdown/waiver_list.html",
        {
            "page": page,
            "rows": rows,
            "kind": kind if kind in WaiverKind.values else "",
            "query_without_page": f"kind={kind}" if kind in WaiverKind.values else "",
            "colours": {k.value: v for k, v in WAIVER_STATUS_COLOURS.items()},
        },
    )


@require_GET
def waiver_detail(request: HttpRequest, waiver_id: int) -> HttpResponse:
    scope = request_scope(request)
    waiver = selectors.waiver_get(scope=scope, waiver_id=waiver_id)
    require(scope, Action.VIEW, waiver.owner_customer_id)
    return render(request, "lockdown/waiver_detail.html", _waiver_context(request, waiver))


def _waiver_context(request: HttpRequest, waiver: Waiver) -> dict[str, object]:
    scope = request_scope(request)
    status = waiver.status_at(clock.now())
    may_approve = scope.can(Action.APPROVE_WAIVER, waiver.owner_customer_id)
    # The Approve button is shown only to someone the service would let approve: not the proposer.
    approval_refused = (
        services.approval_refusal(user_id=request.user.pk, waiver=waiver)
        if may_approve and status == WaiverStatus.PENDING
        else None
    )
    return {
        "waiver": waiver,
        "conflicts_text": selectors.exception_conflict_ids(waiver.conflicts) if waiver.is_exception else "",
        "status": status,
        "status_colour": WAIVER_STATUS_COLOURS[status],
        "can_approve": may_approve and not approval_refused,
        "approval_refused": approval_refused,
        "can_revoke": scope.can(Action.PROPOSE_WAIVER, waiver.owner_customer_id),
    }


def _propose(
    request: HttpRequest, *, server: Server | None, customer: Customer, rules: dict[str, tuple[str, str]], label: str
) -> HttpResponse:
    scope = request_scope(request)
    conflicts, exception_possible = selectors.exception_conflicts_for(
        server=server, customer=None if server is not None else customer
    )
    allowed = frozenset(rules) | ({EXCEPTION_KEY} if exception_possible else set())
    # "Waive…" on the fleet rule view links here with ?rule=<id>: prefilled when the rule is in the profile;
    # "Propose an exception" on the server page with ?kind=exception.
    initial: dict[str, str] = {"rule_id": request.GET["rule"]} if request.GET.get("rule", "") in allowed else {}
    if request.GET.get("kind") == WaiverKind.EXCEPTION and exception_possible:
        initial = {"kind": WaiverKind.EXCEPTION, "rule_id": EXCEPTION_KEY}
    form = WaiverForm(request.POST or None, allowed_rule_ids=allowed, version_label=label, rules=rules, initial=initial)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                waiver = services.waiver_propose(
                    scope=scope,
                    actor=Actor.from_request(request),
                    server=server,
                    customer=None if server is not None else customer,
                    allowed_rule_ids=allowed,
                    **form.cleaned_data,
                )
            except services.WaiverError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(
                    request, f"{waiver.get_kind_display()} proposed; it applies once an MSP admin approves it."
                )
                return redirect("waiver_detail", waiver_id=waiver.pk)
        status = 400
    subject = server if server is not None else customer
    return render(
        request,
        "lockdown/waiver_form.html",
        {
            "form": form,
            "subject": subject,
            "kind": "server" if server else "customer",
            "version_label": label,
            "exception_possible": exception_possible,
            "exception_conflicts": selectors.exception_conflict_ids(conflicts),
        },
        status=status,
    )


@require_http_methods(["GET", "POST"])
def customer_waiver_propose(request: HttpRequest, customer_id: int) -> HttpResponse:
    scope = request_scope(request)
    customer = scoped_get(scope, Customer.objects.all(), customer_field="", pk=customer_id)
    require(scope, Action.PROPOSE_WAIVER, customer)
    version = selectors.customer_effective_profile_version(customer)
    label = version.label if version is not None else "no profile"
    return _propose(
        request, server=None, customer=customer, rules=selectors.rule_catalogue_for_customer(customer), label=label
    )


@require_http_methods(["GET", "POST"])
def server_waiver_propose(request: HttpRequest, server_id: int) -> HttpResponse:
    scope = request_scope(request)
    server = scoped_get(scope, Server.objects.select_related("customer"), pk=server_id)
    require(scope, Action.PROPOSE_WAIVER, server.customer_id)
    version = selectors.effective_profile_version(server)
    label = version.label if version is not None else "no profile"
    rules = selectors.rule_catalogue([version])
    return _propose(request, server=server, customer=server.customer, rules=rules, label=label)


@require_http_methods(["GET", "POST"])
@recent_second_factor
def waiver_approve(request: HttpRequest, waiver_id: int) -> HttpResponse:
    scope = request_scope(request)
    waiver = selectors.waiver_get(scope=scope, waiver_id=waiver_id)
    require(scope, Action.APPROVE_WAIVER, waiver.owner_customer_id)
    done = f"{waiver.get_kind_display()} approved."
    return _waiver_transition(request, waiver, services.waiver_approve, "approve", done)


@require_http_methods(["GET", "POST"])
def waiver_revoke(request: HttpRequest, waiver_id: int) -> HttpResponse:
    scope = request_scope(request)
    waiver = selectors.waiver_get(scope=scope, waiver_id=waiver_id)
    require(scope, Action.PROPOSE_WAIVER, waiver.owner_customer_id)
    done = f"{waiver.get_kind_display()} revoked."
    return _waiver_transition(request, waiver, services.waiver_revoke, "revoke", done)


def _waiver_transition(
    request: HttpRequest, waiver: Waiver, service: services.WaiverTransition, verb: str, done: str
) -> HttpResponse:
    context = {**_waiver_context(request, waiver), "verb": verb}
    if request.method == "POST":
        try:
            service(scope=request_scope(request), actor=Actor.from_request(request), waiver=waiver)
        except services.WaiverError as exc:
            return render(request, "lockdown/waiver_confirm.html", {**context, "error": str(exc)}, status=400)
        messages.success(request, done)
        return redirect("waiver_detail", waiver_id=waiver.pk)
    return render(request, "lockdown/waiver_confirm.html", context)
