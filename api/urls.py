"""/api/v1/ and its OpenAPI schema."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import SimpleRouter

from api import token_views, views

router = SimpleRouter(trailing_slash=True)
router.register("customers", views.CustomerViewSet, basename="api-customer")
router.register("servers", views.ServerViewSet, basename="api-server")
router.register("jobs", views.JobViewSet, basename="api-job")

api_patterns = [*router.urls, path("schema/", SpectacularAPIView.as_view(), name="api-schema")]
for pattern in api_patterns:
    # A token, not the session, authenticates these (api.authentication): the pages' login redirect is not for them.
    pattern.callback.login_required = False  # type: ignore[union-attr]

urlpatterns = [
    path("api/v1/", include(api_patterns)),
    path("account/api-tokens/", token_views.token_list, name="api_token_list"),
    path("account/api-tokens/<int:token_id>/revoke/", token_views.token_revoke_view, name="api_token_revoke"),
]
