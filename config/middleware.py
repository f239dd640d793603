"""Cross-cutting HTTP middleware."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse


class ContentSecurityPolicyMiddleware:
    """Send a strict Content-Security-Policy on every response.

    Templates contain no inline script or style, so the policy allows only our own origin;
    the browser tests fail on any violation, which keeps it that way.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", settings.FLEET_CSP)
        response.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        return response


class ReadableErrorPageMiddleware:
    """With DEBUG on (the demo, development), show our own 403/404 pages, not Django's debug pages.

    Django's technical 404 page lists every URL pattern of the installation and its 403 page
    the CSRF internals; a demo is shown to customers. With DEBUG off, Django already renders
    templates/404.html and 403.html; this makes every mode look the same. Our own pages carry
    `<meta name="generator" content="fleet-lockdown">` and are left as they are.
    """

    OWN_PAGE = b'<meta name="generator" content="fleet-lockdown">'

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not settings.DEBUG or response.status_code not in (403, 404) or response.streaming:
            return response
        if "text/html" not in response.get("Content-Type", "") or self.OWN_PAGE in response.content:
            return response
        from django.core.exceptions import PermissionDenied
        from django.http import Http404
        from django.views import defaults

        if response.status_code == 404:
            return defaults.page_not_found(request, Http404())
        return defaults.permission_denied(request, PermissionDenied())
