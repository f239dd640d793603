"""Django admin: superusers only, and never a secret field."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from servers.models import AuditEvent, Credential, Customer, Membership, Server, Tag


def _superuser_only(request: HttpRequest) -> bool:
    return bool(request.user.is_active and getattr(request.user, "is_superuser", False))


# Staff who are not superusers get nothing from /admin/.
admin.site.has_permission = _superuser_only  # type: ignore[method-assign]
superuser_admin_site = admin.site


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin[Customer]):
    list_display = ("name", "created_at")
    search_fields = ("name",)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin[Membership]):
    list_display = ("user", "customer", "role")
    list_filter = ("role",)


@admin.register(Credential)
class CredentialAdmin(admin.ModelAdmin[Credential]):
    """Secrets are set through the credential pages; the admin shows only the metadata."""

    list_display = ("name", "customer", "username", "auth")
    fields = ("customer", "name", "username", "auth")
    exclude = ("secret_encrypted",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Server)
class ServerAdmin(admin.ModelAdmin[Server]):
    list_display = ("name", "customer", "address", "status")
    list_filter = ("status", "customer")
    search_fields = ("name", "address")


admin.site.register(Tag)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin[AuditEvent]):
    list_display = ("at", "actor_name", "action", "object_repr", "customer_name")
    list_filter = ("action",)

    def has_change_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
