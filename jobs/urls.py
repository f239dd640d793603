"""Job URLs."""

from django.urls import path

from jobs import alert_views, views

urlpatterns = [
    path("jobs/", views.job_list, name="job_list"),
    path("jobs/new/", views.job_new, name="job_new"),
    path("jobs/<int:job_id>/", views.job_detail, name="job_detail"),
    path("jobs/<int:job_id>/log/", views.job_log, name="job_log"),
    path("jobs/<int:job_id>/cancel/", views.job_cancel_view, name="job_cancel"),
    path("jobs/<int:job_id>/continue/", views.job_continue_view, name="job_continue"),
    path("servers/<int:server_id>/verify/", views.server_verify, name="server_verify"),
    path("servers/<int:server_id>/discover/", views.server_discover, name="server_discover"),
    path("servers/<int:server_id>/selftest/", views.server_selftest, name="server_selftest"),
    path("servers/<int:server_id>/harden/", views.server_harden, name="server_harden"),
    path("servers/<int:server_id>/rollback/", views.server_rollback, name="server_rollback"),
    path("servers/<int:server_id>/changes.csv", views.server_changes_download, name="server_changes_download"),
    path("servers/<int:server_id>/rotate-password/", alert_views.server_rotate_password, name="server_rotate_password"),
    path("customers/<int:customer_id>/schedule/", alert_views.customer_schedule, name="customer_schedule"),
    path("customers/<int:customer_id>/alerts/", alert_views.customer_alert_settings, name="customer_alert_settings"),
    path("alerts/", alert_views.alert_list, name="alert_list"),
    path("alerts/<int:alert_id>/acknowledge/", alert_views.alert_acknowledge_view, name="alert_acknowledge"),
]
