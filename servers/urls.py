"""Inventory URLs."""

from django.urls import path

from servers import audit_views, users_views, views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("servers/", views.server_list, name="server_list"),
    path("servers/new/", views.server_create, name="server_create"),
    path("servers/import/", views.server_import, name="server_import"),
    path("servers/import/template.csv", views.server_import_template, name="server_import_template"),
    path("servers/onboarding/Enable-FleetLockdownWinRM.ps1", views.onboarding_script, name="onboarding_script"),
    path("servers/import/<int:import_id>/", views.server_import_detail, name="server_import_detail"),
    path("servers/<int:server_id>/", views.server_detail, name="server_detail"),
    path("servers/<int:server_id>/edit/", views.server_edit, name="server_edit"),
    path("servers/<int:server_id>/delete/", views.server_delete, name="server_delete"),
    path("customers/", views.customer_list, name="customer_list"),
    path("customers/new/", views.customer_create, name="customer_create"),
    path("customers/<int:customer_id>/", views.customer_detail, name="customer_detail"),
    path("customers/<int:customer_id>/edit/", views.customer_edit, name="customer_edit"),
    path("credentials/", views.credential_list, name="credential_list"),
    path("credentials/new/", views.credential_create, name="credential_create"),
    path("credentials/<int:credential_id>/edit/", views.credential_edit, name="credential_edit"),
    path("credentials/<int:credential_id>/delete/", views.credential_delete, name="credential_delete"),
    path("audit/", audit_views.audit_list, name="audit_list"),
    path("audit/export.csv", audit_views.audit_export, name="audit_export"),
    path("users/", users_views.user_list, name="user_list"),
    path("users/new/", users_views.user_create, name="user_create"),
    path("users/<int:user_id>/", users_views.user_detail, name="user_detail"),
    path("users/<int:user_id>/memberships/new/", users_views.user_membership_add, name="user_membership_add"),
    path(
        "users/<int:user_id>/memberships/<int:membership_id>/remove/",
        users_views.user_membership_remove,
        name="user_membership_remove",
    ),
    path("users/<int:user_id>/deactivate/", users_views.user_deactivate, name="user_deactivate"),
    path("users/<int:user_id>/reactivate/", users_views.user_reactivate, name="user_reactivate"),
    path("users/<int:user_id>/password/reset/", users_views.user_password_reset, name="user_password_reset"),
    path("users/<int:user_id>/2fa/reset/", users_views.user_2fa_reset, name="user_2fa_reset"),
]
