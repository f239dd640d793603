"""Login, logout, TOTP enrolment and verification, and the health endpoint."""

from __future__ import annotations

import base64

from django import forms
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.models import AbstractUser
from django.contrib.auth.views import LoginView
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_otp import login as otp_login
from django_otp.plugins.otp_totp.models import TOTPDevice

from servers.audit import Actor, audit_record
from servers.twofactor import mark_second_factor


@method_decorator(login_not_required, name="dispatch")
class FleetLoginView(LoginView):
    """Django's login view; django-axes throttles failures by username and address."""

    template_name = "registration/login.html"
    redirect_authenticated_user = True


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    return redirect("login")


@login_not_required
@require_GET
@never_cache
def health(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers: the database answers. Reveals nothing else."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return JsonResponse({"status": "ok"})
    except Exception:
        return JsonResponse({"status": "database unavailable"}, status=503)


class TokenForm(forms.Form):
    token = forms.RegexField(
        regex=r"^\d{6}$",
        max_length=6,
        label="6-digit code",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
        error_messages={"invalid": "Enter the 6 digits your authenticator app shows."},
    )


@require_http_methods(["GET", "POST"])
@never_cache
@sensitive_post_parameters("token")
def two_factor_setup(request: HttpRequest) -> HttpResponse:
    """Enrol a TOTP device: show the secret (and a QR code as SVG), confirm with one code."""
    import segno

    if TOTPDevice.objects.filter(user_id=request.user.pk, confirmed=True).exists():
        return redirect("two_factor_verify")
    device, _ = TOTPDevice.objects.get_or_create(user_id=request.user.pk, confirmed=False, defaults={"name": "default"})
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if device.verify_token(form.cleaned_data["token"]):
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            otp_login(request, device)
            mark_second_factor(request)
            audit_record(
                actor=Actor.from_request(request), action="user.2fa_enrolled", obj=None, object_repr=str(request.user)
            )
            messages.success(request, "Two-factor authentication is on.")
            return redirect("dashboard")
        form.add_error("token", "That code is not valid for this device. Check the clock of your phone.")
    qr_svg = segno.make(device.config_url, error="m").svg_data_uri(scale=4)
    return render(
        request,
        "registration/two_factor_setup.html",
        {"form": form, "qr_svg": qr_svg, "secret": base64.b32encode(device.bin_key).decode("ascii")},
    )


@require_http_methods(["GET", "POST"])
@never_cache
@sensitive_post_parameters("token")
def two_factor_verify(request: HttpRequest) -> HttpResponse:
    device = TOTPDevice.objects.filter(user_id=request.user.pk, confirmed=True).first()
    if device is None:
        return redirect("two_factor_setup")
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if device.verify_token(form.cleaned_data["token"]):
            otp_login(request, device)
            mark_second_factor(request)
            target = request.GET.get("next", "")
            if not url_has_allowed_host_and_scheme(
                target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
            ):
                target = "dashboard"
            return redirect(target)
        form.add_error("token", "That code is not valid.")
    return render(request, "registration/two_factor_verify.html", {"form": form})


@require_http_methods(["GET", "POST"])
@never_cache
@sensitive_post_parameters("old_password", "new_password1", "new_password2")
def password_change(request: HttpRequest) -> HttpResponse:
    """Self-service: the current password, then a new one (Django's validators); forced after an
    admin generated the password."""
    from django.contrib.auth import update_session_auth_hash
    from django.contrib.auth.forms import PasswordChangeForm

    from servers.models import AccountSecurity
    from servers.users_services import password_change as change

    user = request.user
    assert isinstance(user, AbstractUser)  # LoginRequiredMiddleware: never anonymous here
    forced = AccountSecurity.objects.filter(user_id=user.pk, must_change_password=True).exists()
    form = PasswordChangeForm(user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        change(actor=Actor.from_request(request), user=form.user, new_password=form.cleaned_data["new_password1"])
        update_session_auth_hash(request, form.user)
        messages.success(request, "Your password was changed.")
        return redirect("dashboard")
    return render(request, "registration/password_change.html", {"form": form, "forced": forced})
