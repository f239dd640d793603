"""Report URLs."""

from django.urls import path

from reports import views

urlpatterns = [
    path("reports/", views.report_list, name="report_list"),
    path("reports/new/", views.report_create_view, name="report_create"),
    path("reports/<int:report_id>/", views.report_detail, name="report_detail"),
    path("reports/<int:report_id>/download/", views.report_download, name="report_download"),
    path("reports/<int:report_id>/evidence/", views.report_evidence, name="report_evidence"),
    path("reports/<int:report_id>/signature/", views.report_signature, name="report_signature"),
    path("reports/verify/", views.report_verify, name="report_verify"),
    path("reports/signing-key/", views.signing_key, name="signing_key"),
    path(
        "customers/<int:customer_id>/report-schedule/", views.customer_report_schedule, name="customer_report_schedule"
    ),
    path("preferences/", views.preferences, name="preferences"),
]
