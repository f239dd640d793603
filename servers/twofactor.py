"""TOTP two-factor for MSP admins and operators (django-otp), enforced when FLEET_REQUIRE_2FA."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django_otp.plugins.otp_totp.models import TOTPDevice

from servers.choices import Role
from servers.tenancy import request_scope

# Pages a user who still owes a second factor may open.
_EXEMPT_URL_NAMES = frozenset({"two_factor_setup", "two_factor_verify", "logout", "login", "health"})


def needs_second_factor(request: HttpRequest) -> bool:
    """MSP admins, MSP operators and superusers must present a TOTP code when enforced."""
    user = request.user
    if not user.is_authenticated:
        return False
    scope = request_scope(request)
    return bool(getattr(user, "is_superuser", False)) or scope.msp_role in {Role.ADMIN, Role.OPERATOR}


class TwoFactorEnforcementMiddleware:
    """Send a privileged user without a verified TOTP device to set-up or verification."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if settings.FLEET_REQUIRE_2FA and needs_second_factor(request):
            match = getattr(request, "resolver_match", None)
            verified = bool(getattr(request.user, "is_verified", lambda: False)())
            if not verified:
                from django.urls import resolve

                name = (match or resolve(request.path_info)).url_name if request.path_info else None
                if name not in _EXEMPT_URL_NAMES and not request.path_info.startswith("/static/"):
                    has_device = TOTPDevice.objects.filter(user_id=request.user.pk, confirmed=True).exists()
                    return redirect("two_factor_verify" if has_device else "two_factor_setup")
        return self.get_response(request)
