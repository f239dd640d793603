"""Tenancy in one place: what a user may see (scoping) and do (the permission table).

Every view and selector gets its querysets through `Scope.filter` / `scoped_get`, so a user
of customer A can never learn that customer B's objects exist: they are 404, never 403.
The table mirrors DESIGN.md "Who may do what".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from django.core.exceptions import ObjectDoesNotExist
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest

from servers.choices import Role

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

    from servers.models import Customer

M = TypeVar("M", bound=Model)


class Action(enum.StrEnum):
    VIEW = "view"  # servers, results, jobs, reports
    EDIT_SERVERS = "edit_servers"  # add/edit servers, run verify and discover
    HARDEN = "harden"  # harden, rollback, rotate password
    MANAGE_CREDENTIALS = "manage_credentials"  # create, replace; never read
    MANAGE_PROFILES = "manage_profiles"  # MSP-wide library, assign to customers
    PROPOSE_WAIVER = "propose_waiver"
    APPROVE_WAIVER = "approve_waiver"
    MANAGE_USERS = "manage_users"
    VIEW_AUDIT = "view_audit"
    MANAGE_CUSTOMERS = "manage_customers"
    SELFTEST = "selftest"  # the agent self-test of a server (MSP admins only)


# (MSP-wide role) -> actions allowed on every customer.
MSP_PERMISSIONS: dict[str, frozenset[Action]] = {
    Role.ADMIN: frozenset(Action),
    Role.OPERATOR: frozenset({Action.VIEW, Action.EDIT_SERVERS, Action.HARDEN, Action.PROPOSE_WAIVER}),
    Role.VIEWER: frozenset({Action.VIEW}),
}
# (customer-scoped role) -> actions allowed on that customer only.
CUSTOMER_PERMISSIONS: dict[str, frozenset[Action]] = {
    Role.OPERATOR: frozenset({Action.VIEW, Action.EDIT_SERVERS, Action.HARDEN, Action.PROPOSE_WAIVER}),
    Role.VIEWER: frozenset({Action.VIEW}),
}


@dataclass(frozen=True)
class Scope:
    """The resolved memberships of one user for one request."""

    user_id: int | None
    msp_role: str | None = None
    customer_roles: dict[int, str] = field(default_factory=dict)
    is_superuser: bool = False

    @property
    def is_msp(self) -> bool:
        return self.msp_role is not None

    @property
    def customer_ids(self) -> frozenset[int]:
        return frozenset(self.customer_roles)

    def sees_everything(self) -> bool:
        return self.is_msp

    def can(self, action: Action, customer: Customer | int | None = None) -> bool:
        """May this user do `action`, on `customer` if given, or on at least one customer."""
        if self.msp_role is not None:
            return action in MSP_PERMISSIONS[self.msp_role]
        if customer is None:
            return any(action in CUSTOMER_PERMISSIONS.get(role, frozenset()) for role in self.customer_roles.values())
        customer_id = customer if isinstance(customer, int) else customer.pk
        role = self.customer_roles.get(customer_id)
        return role is not None and action in CUSTOMER_PERMISSIONS.get(role, frozenset())

    def customers_where(self, action: Action) -> frozenset[int] | None:
        """Customer ids on which `action` is allowed; None means every customer."""
        if self.msp_role is not None:
            return None if action in MSP_PERMISSIONS[self.msp_role] else frozenset()
        return frozenset(
            cid for cid, role in self.customer_roles.items() if action in CUSTOMER_PERMISSIONS.get(role, frozenset())
        )

    def narrowed(self, *, read_only: bool = False, customer_id: int | None = None) -> Scope:
        """This scope with no more rights: read-only (every role a viewer) and/or one customer only.

        An API token's scope (api.tokens.token_scope). An MSP user narrowed to one customer holds
        that customer's operator role at most (MSP-only actions — credentials, users, profiles,
        the audit trail — need the whole MSP scope); a customer user keeps only that membership.
        """
        msp_role, roles = self.msp_role, dict(self.customer_roles)
        if customer_id is not None:
            if msp_role is not None:
                roles = {customer_id: Role.VIEWER if msp_role == Role.VIEWER else Role.OPERATOR}
            else:
                roles = {customer_id: roles[customer_id]} if customer_id in roles else {}
            msp_role = None
        if read_only:
            msp_role = Role.VIEWER if msp_role is not None else None
            roles = dict.fromkeys(roles, Role.VIEWER)
        return Scope(user_id=self.user_id, msp_role=msp_role, customer_roles=roles, is_superuser=False)

    def filter(self, queryset: QuerySet[M], customer_field: str = "customer") -> QuerySet[M]:
        """Restrict a queryset to the customers this user may see."""
        if self.is_msp:
            return queryset
        if not self.customer_roles:
            return queryset.none()
        lookup = "pk__in" if customer_field == "" else f"{customer_field}__in"
        return queryset.filter(**{lookup: sorted(self.customer_roles)})


ANONYMOUS_SCOPE = Scope(user_id=None)


def scope_for_user(user: AbstractBaseUser | AnonymousUser) -> Scope:
    from servers.models import Membership

    if not user.is_authenticated or not user.is_active:
        return ANONYMOUS_SCOPE
    msp_role: str | None = None
    customer_roles: dict[int, str] = {}
    for customer_id, role in Membership.objects.filter(user_id=user.pk).values_list("customer_id", "role"):
        if customer_id is None:
            msp_role = role
        else:
            customer_roles[customer_id] = role
    return Scope(
        user_id=user.pk,
        msp_role=msp_role,
        customer_roles=customer_roles,
        is_superuser=bool(getattr(user, "is_superuser", False)),
    )


def request_scope(request: HttpRequest) -> Scope:
    """The scope of the request's user, computed once per request."""
    cached: Scope | None = getattr(request, "_fleet_scope", None)
    if cached is None:
        cached = scope_for_user(request.user)
        request._fleet_scope = cached  # type: ignore[attr-defined]
    return cached


def scoped_get(scope: Scope, queryset: QuerySet[M], customer_field: str = "customer", **lookup: Any) -> M:
    """Fetch one object the user may see, or 404 (never 403: other tenants do not exist)."""
    try:
        return scope.filter(queryset, customer_field).get(**lookup)
    except (ObjectDoesNotExist, ValueError, TypeError):
        raise Http404("not found") from None


def require(scope: Scope, action: Action, customer: Customer | int | None = None) -> None:
    """Raise PermissionDenied (403) for a visible object the user may not act on."""
    from django.core.exceptions import PermissionDenied

    if not scope.can(action, customer):
        raise PermissionDenied(f"your role does not allow: {action.value}")
