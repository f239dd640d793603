"""/api/v1/ and its OpenAPI schema."""

from django.http import HttpRequest, JsonResponse
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import SimpleRouter

from api import assignments, credentials, governance, profiles, reports, token_views, views

router = SimpleRouter(trailing_slash=True)
router.register("customers", views.CustomerViewSet, basename="api-customer")
router.register("servers", views.ServerViewSet, basename="api-server")
router.register("jobs", views.JobViewSet, basename="api-job")
router.register("reports", reports.ReportViewSet, basename="api-report")
router.register("profiles", profiles.ProfileViewSet, basename="api-profile")
router.register("profile-versions", profiles.ProfileVersionViewSet, basename="api-profile-version")
router.register("credentials", credentials.CredentialViewSet, basename="api-credential")
router.register("effective-profiles", assignments.EffectiveProfileViewSet, basename="api-effective-profile")
router.register("tag-assignments", assignments.TagAssignmentViewSet, basename="api-tag-assignment")
router.register("waivers", governance.WaiverViewSet, basename="api-waiver")
router.register("alerts", governance.AlertViewSet, basename="api-alert")
router.register("audit-events", governance.AuditEventViewSet, basename="api-audit-event")


@csrf_exempt  # as DRF's views: a token, never the session, so there is no CSRF surface
def api_not_found(request: HttpRequest, rest: str) -> JsonResponse:
    """Any other /api/v1/ path (`servers/abc/`, a missing slash): a JSON 404 like the API's own, not the pages'
    HTML one (a client parses every /api/v1/ answer as JSON; the schema says so)."""
    hint = "" if request.path.endswith("/") else " (the API's URLs end with a slash)"
    return JsonResponse({"detail": f"Not found.{hint}"}, status=404)


api_patterns = [
    *router.urls,
    # One object, not a collection: GET reads it (not a list), POST set/ changes it.
    path(
        "fleet-default/",
        assignments.FleetDefaultViewSet.as_view({"get": "retrieve"}),
        name="api-fleet-default-detail",
    ),
    path(
        "fleet-default/set/",
        assignments.FleetDefaultViewSet.as_view({"post": "set_default"}),
        name="api-fleet-default-set-default",
    ),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    re_path(r"^(?P<rest>.*)$", api_not_found),  # last: only what nothing above matched
]
for pattern in api_patterns:
    # A token, not the session, authenticates these (api.authentication): the pages' login redirect is not for them.
    pattern.callback.login_required = False  # type: ignore[union-attr]

urlpatterns = [
    path("api/v1/", include(api_patterns)),
    path("account/api-tokens/", token_views.token_list, name="api_token_list"),
    path("account/api-tokens/<int:token_id>/revoke/", token_views.token_revoke_view, name="api_token_revoke"),
]
