"""Root URLconf."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from servers import auth_views
from servers.admin import superuser_admin_site  # noqa: F401  (registers the models)

urlpatterns = [
    path("healthz", auth_views.health, name="health"),
    path("accounts/login/", auth_views.FleetLoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.logout_view, name="logout"),
    path("accounts/password/", auth_views.password_change, name="password_change"),
    path("accounts/2fa/", auth_views.two_factor_setup, name="two_factor_setup"),
    path("accounts/2fa/verify/", auth_views.two_factor_verify, name="two_factor_verify"),
    path("admin/", admin.site.urls),
    path("", include("api.urls")),
    path("", include("lockdown.urls")),
    path("", include("jobs.urls")),
    path("", include("reports.urls")),
    path("", include("servers.urls")),
]
