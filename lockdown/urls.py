"""Profile library, assignments, waivers, controls and advisories."""

from django.urls import path

from lockdown import advisory_views, assignment_views, control_views, rule_views, views

urlpatterns = [
    path("profiles/", views.profile_list, name="profile_list"),
    path("profiles/new/", views.profile_create, name="profile_create"),
    path("profiles/import/", views.profile_import, name="profile_import"),
    path("profiles/compare/", views.profile_compare, name="profile_compare"),
    path("profiles/<int:profile_id>/", views.profile_detail, name="profile_detail"),
    path("profiles/<int:profile_id>/diff/", views.profile_diff, name="profile_diff"),
    path("profiles/<int:profile_id>/v/<int:version_number>/", views.version_detail, name="version_detail"),
    path("profiles/<int:profile_id>/v/<int:version_number>/edit/", views.version_edit, name="version_edit"),
    path("profiles/<int:profile_id>/v/<int:version_number>/clone/", views.version_clone, name="version_clone"),
    path("profiles/<int:profile_id>/v/<int:version_number>/export/", views.version_export, name="version_export"),
    path("assignments/", assignment_views.assignment_list, name="assignment_list"),
    path("assignments/default/", assignment_views.fleet_default_edit, name="fleet_default_edit"),
    path("assignments/tags/new/", assignment_views.tag_assignment_edit, name="tag_assignment_create"),
    path("assignments/tags/<int:assignment_id>/", assignment_views.tag_assignment_edit, name="tag_assignment_edit"),
    path(
        "assignments/tags/<int:assignment_id>/delete/",
        assignment_views.tag_assignment_delete,
        name="tag_assignment_delete",
    ),
    path("customers/<int:customer_id>/profile/", views.customer_profile_assign, name="customer_profile_assign"),
    path("servers/<int:server_id>/profile/", views.server_profile_assign, name="server_profile_assign"),
    path("waivers/", views.waiver_list, name="waiver_list"),
    path("waivers/<int:waiver_id>/", views.waiver_detail, name="waiver_detail"),
    path("waivers/<int:waiver_id>/approve/", views.waiver_approve, name="waiver_approve"),
    path("waivers/<int:waiver_id>/revoke/", views.waiver_revoke, name="waiver_revoke"),
    path("customers/<int:customer_id>/waivers/new/", views.customer_waiver_propose, name="customer_waiver_propose"),
    path("servers/<int:server_id>/waivers/new/", views.server_waiver_propose, name="server_waiver_propose"),
    path("controls/", control_views.control_list, name="control_list"),
    path("advisories/", advisory_views.advisory_list, name="advisory_list"),
    path("advisories/import/", advisory_views.advisory_import, name="advisory_import"),
    path("rules/", rule_views.rule_list, name="rule_list"),
    path("rules/<str:rule_id>/", rule_views.rule_detail, name="rule_detail"),
]
