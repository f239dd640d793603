"""Times in the user's time zone: a per-user setting (no browser detection), default UTC."""

from __future__ import annotations

from collections.abc import Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

SESSION_KEY = "fleet_time_zone"
DEFAULT_TIME_ZONE = "UTC"


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or DEFAULT_TIME_ZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_TIME_ZONE)


class UserTimeZoneMiddleware:
    """Activate the user's time zone for the request.

    The choice is cached in the session (set when it is saved, or read once from
    `UserPreference`), so a page costs no extra query after the first.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        name = DEFAULT_TIME_ZONE
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            cached = request.session.get(SESSION_KEY)
            if cached is None:
                from reports.models import UserPreference

                stored = UserPreference.objects.filter(user_id=user.pk).values_list("time_zone", flat=True).first()
                cached = stored or DEFAULT_TIME_ZONE
                request.session[SESSION_KEY] = cached
            name = str(cached)
        timezone.activate(zone(name))
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
