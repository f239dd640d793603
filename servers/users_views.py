"""Users and memberships pages (MSP admins only). Thin: scope → form → service → page.

A generated password is rendered straight into the response to the POST that made it
(never_cache), so it is never stored anywhere (no session, no message, no log).
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from servers import users_services as services
from servers.audit import Actor
from servers.models import Membership
from servers.tenancy import Action, request_scope, require, scoped_get
from servers.twofactor import recent_second_factor
from servers.users_forms import MembershipForm, UserCreateForm


@require_GET
def user_list(request: HttpRequest) -> HttpResponse:
    scope = request_scope(request)
    require(scope, Action.MANAGE_USERS)
    return render(request, "servers/user_list.html", {"users": services.user_list(scope)})


@require_http_methods(["GET", "POST"])
@never_cache
@sensitive_variables("password")
@recent_second_factor
def user_create(request: HttpRequest) -> HttpResponse:
    scope = request_scope(request)
    require(scope, Action.MANAGE_USERS)
    form = UserCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            user, password = services.user_create(
                scope=scope,
                actor=Actor.from_request(request),
                username=data["username"],
                email=data["email"],
                first_name=data["first_name"],
                last_name=data["last_name"],
                customer=data["customer"],
                role=data["role"],
            )
        except services.UserChangeRefused as refused:
            form.add_error(None, str(refused))
        else:
            return render(
                request, "servers/user_password.html", {"target": user, "password": password, "created": True}
            )
    return render(request, "servers/user_form.html", {"form": form})


@require_GET
def user_detail(request: HttpRequest, user_id: int) -> HttpResponse:
    scope = request_scope(request)
    target = services.get_visible_user(scope, user_id)
    require(scope, Action.MANAGE_USERS)
    memberships = Membership.objects.filter(user=target).select_related("customer").order_by("customer__name")
    return render(
        request,
        "servers/user_detail.html",
        {
            "target": target,
            "memberships": [(m, services.describe_membership(m)) for m in memberships],
            "has_2fa": services.has_confirmed_2fa(target),
            "is_self": target.pk == request.user.pk,
            "form": MembershipForm(user=target),
        },
    )


@require_http_methods(["GET", "POST"])
@recent_second_factor
def user_membership_add(request: HttpRequest, user_id: int) -> HttpResponse:
    scope = request_scope(request)
    target = services.get_visible_user(scope, user_id)
    require(scope, Action.MANAGE_USERS)
    form = MembershipForm(request.POST or None, user=target)
    if request.method == "POST" and form.is_valid():
        try:
            membership = services.membership_add(
                scope=scope,
                actor=Actor.from_request(request),
                user=target,
                customer=form.cleaned_data["customer"],
                role=form.cleaned_data["role"],
            )
        except services.UserChangeRefused as refused:
            form.add_error(None, str(refused))
        else:
            messages.success(request, f"{target.get_username()} is now {services.describe_membership(membership)}.")
            return redirect("user_detail", user_id=target.pk)
    return render(request, "servers/user_membership_form.html", {"target": target, "form": form})


@require_POST
@recent_second_factor
def user_membership_remove(request: HttpRequest, user_id: int, membership_id: int) -> HttpResponse:
    scope = request_scope(request)
    target = services.get_visible_user(scope, user_id)
    require(scope, Action.MANAGE_USERS)
    membership = scoped_get(scope, Membership.objects.filter(user=target).select_related("user"), pk=membership_id)
    words = services.describe_membership(membership)
    try:
        services.membership_remove(scope=scope, actor=Actor.from_request(request), membership=membership)
    except services.UserChangeRefused as refused:
        messages.error(request, str(refused))
    else:
        messages.success(request, f"{target.get_username()} is no longer {words}.")
    return redirect("user_detail", user_id=target.pk)


def _set_active(request: HttpRequest, user_id: int, *, active: bool) -> HttpResponse:
    scope = request_scope(request)
    target = services.get_visible_user(scope, user_id)
    require(scope, Action.MANAGE_USERS)
    try:
        services.user_set_active(scope=scope, actor=Actor.from_request(request), user=target, active=active)
    except services.UserChangeRefused as refused:
        messages.error(request, str(refused))
    else:
        state = "reactivated" if active else "deactivated: they can no longer log in"
        messages.success(request, f"{target.get_username()} {state}.")
    return redirect("user_detail", user_id=target.pk)


@require_POST
@recent_second_factor
def user_deactivate(request: HttpRequest, user_id: int) -> HttpResponse:
    return _set_active(request, user_id, active=False)


@require_POST
@recent_second_factor
def user_reactivate(request: HttpRequest, user_id: int) -> HttpResponse:
    return _set_active(request, user_id, active=True)


@require_POST
@never_cache
@sensitive_variables("password")
@recent_second_factor
def user_password_reset(request: HttpRequest, user_id: int) -> HttpResponse:
    scope = request_scope(request)
    target = services.get_visible_user(scope, user_id)
    require(scope, Action.MANAGE_USERS)
    try:
        password = services.user_reset_password(scope=scope, actor=Actor.from_request(request), user=target)
    except services.UserChangeRefused as refused:
        messages.error(request, str(refused))
        return redirect("user_detail", user_id=target.pk)
    return render(request, "servers/user_password.html", {"target": target, "password": password, "created": False})


@require_POST
@recent_second_factor
def user_2fa_reset(request: HttpRequest, user_id: int) -> HttpResponse:
    scope = request_scope(request)
    target = services.get_visible_user(scope, user_id)
    require(scope, Action.MANAGE_USERS)
    try:
        deleted = services.user_reset_2fa(scope=scope, actor=Actor.from_request(request), user=target)
    except services.UserChangeRefused as refused:
        messages.error(request, str(refused))
    else:
        messages.success(
            request, f"{target.get_username()}: {deleted} two-factor device(s) removed; they enrol again at next login."
        )
    return redirect("user_detail", user_id=target.pk)
