"""Inventory URLs."""

from django.urls import path

from servers import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("servers/", views.server_list, name="server_list"),
    path("servers/new/", views.server_create, name="server_create"),
    path("servers/import/", views.server_import, name="server_import"),
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
    path("audit/", views.audit_list, name="audit_list"),
]
