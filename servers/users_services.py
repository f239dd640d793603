"""Users and memberships, managed by MSP admins (Action.MANAGE_USERS).

Each write checks permission, writes, and audits in one transaction. Generated passwords
are returned to the caller once (to be shown once) and are never stored in clear, logged
or audited. Superusers are shown but never changed here: the Django admin is for them.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Prefetch, QuerySet
from django.http import Http404
from django.views.decorators.debug import sensitive_variables
from django_otp.plugins.otp_totp.models import TOTPDevice

from servers.audit import Actor, audit_record, diff, snapshot
from servers.choices import Role
from servers.models import Customer, Membership
from servers.tenancy import Action, Scope, require

USER_AUDIT_FIELDS = ("username", "email", "first_name", "last_name", "is_active")
# No look-alike characters (0/O, 1/l/I): the password is read off a screen and typed.
PASSWORD_ALPHABET = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # noqa: S105  (an alphabet)
PASSWORD_GROUPS = 5
PASSWORD_GROUP_LENGTH = 4  # 20 random characters: about 115 bits


class UserChangeRefused(Exception):
    """A change the rules do not allow; the message is shown to the admin as is."""


def generate_password() -> str:
    """A random initial password from `secrets`, e.g. ``k7Qx-9mPz-…`` (shown once, never stored)."""
    groups = (
        "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_GROUP_LENGTH)) for _ in range(PASSWORD_GROUPS)
    )
    return "-".join(groups)


def describe_membership(membership: Membership) -> str:
    if membership.customer_id is None:
        return f"MSP-wide {membership.role}"
    customer = membership.customer
    return f"{membership.role} of {customer.name if customer else membership.customer_id}"


# --- Reads ----------------------------------------------------------------------------------
def visible_users(scope: Scope) -> QuerySet[Any]:
    """Users this scope may know exist: everyone for MSP users, else members of their customers."""
    users = get_user_model().objects.all()
    if scope.is_msp:
        return users
    if not scope.customer_roles:
        return users.none()
    return users.filter(memberships__customer__in=sorted(scope.customer_roles)).distinct()


def get_visible_user(scope: Scope, user_id: int) -> Any:
    """One user the scope may see, or 404 (another tenant's users do not exist)."""
    user = visible_users(scope).filter(pk=user_id).first()
    if user is None:
        raise Http404("not found")
    return user


def user_list(scope: Scope) -> QuerySet[Any]:
    """Users with their memberships and whether they have a confirmed TOTP device."""
    users: QuerySet[Any] = (
        visible_users(scope)
        .annotate(has_2fa=Exists(TOTPDevice.objects.filter(user_id=OuterRef("pk"), confirmed=True)))
        .prefetch_related(
            Prefetch("memberships", queryset=Membership.objects.select_related("customer").order_by("customer__name"))
        )
        .order_by("username")
    )
    return users


def has_confirmed_2fa(user: Any) -> bool:
    return bool(TOTPDevice.objects.filter(user_id=user.pk, confirmed=True).exists())


# --- Rules ----------------------------------------------------------------------------------
def membership_problem(user: Any | None, customer: Customer | None, role: str) -> str | None:
    """Why this membership may not be added (None: it may). The forms and services both ask."""
    if role not in Role.values:
        return "Choose a role."
    if customer is not None and role == Role.ADMIN:
        return "A customer-scoped membership can be operator or viewer, never admin."
    if user is None or user.pk is None:
        return None
    existing = list(Membership.objects.filter(user=user).select_related("customer"))
    msp = next((m for m in existing if m.customer_id is None), None)
    if customer is None:
        if msp is not None:
            return f"{user.get_username()} already has an MSP-wide membership ({msp.role}); remove it first."
        if existing:
            return (
                f"{user.get_username()} has customer memberships; remove them first "
                "(an MSP-wide membership covers every customer)."
            )
        return None
    if msp is not None:
        return f"{user.get_username()} is MSP-wide {msp.role}, which already covers every customer."
    if any(m.customer_id == customer.pk for m in existing):
        return f"{user.get_username()} already has a membership for {customer.name}."
    return None


def _refuse_superuser(user: Any) -> None:
    if user.is_superuser:
        raise UserChangeRefused(f"{user.get_username()} is a superuser: change it in the Django admin.")


def _add_membership(user: Any, customer: Customer | None, role: str) -> Membership:
    problem = membership_problem(user, customer, role)
    if problem:
        raise UserChangeRefused(problem)
    try:
        with transaction.atomic():
            return Membership.objects.create(user=user, customer=customer, role=role)
    except IntegrityError:
        # A concurrent change got there first; the constraints hold either way.
        raise UserChangeRefused(
            f"{user.get_username()} cannot have that membership (it conflicts with another)."
        ) from None


# --- Writes ---------------------------------------------------------------------------------
@sensitive_variables("password")
@transaction.atomic
def user_create(
    *,
    scope: Scope,
    actor: Actor,
    username: str,
    email: str,
    first_name: str,
    last_name: str,
    customer: Customer | None,
    role: str,
) -> tuple[Any, str]:
    """Create an active user with one membership; returns the user and its initial password."""
    require(scope, Action.MANAGE_USERS)
    problem = membership_problem(None, customer, role)
    if problem:
        raise UserChangeRefused(problem)
    User = get_user_model()
    if User.objects.filter(username__iexact=username).exists():
        raise UserChangeRefused(f"A user named {username} already exists.")
    password = generate_password()
    try:
        with transaction.atomic():
            user = User.objects.create_user(
                username=username, email=email, password=password, first_name=first_name, last_name=last_name
            )
    except IntegrityError:
        raise UserChangeRefused(f"A user named {username} already exists.") from None
    membership = _add_membership(user, customer, role)
    changes: dict[str, Any] = diff({}, snapshot(user, USER_AUDIT_FIELDS))
    changes["membership"] = [None, describe_membership(membership)]
    changes["password"] = "generated"  # noqa: S105  (audit_record redacts it to a marker)
    audit_record(actor=actor, action="user.create", obj=user, customer=customer, changes=changes)
    _must_change_password(user)
    return user, password


@transaction.atomic
def membership_add(*, scope: Scope, actor: Actor, user: Any, customer: Customer | None, role: str) -> Membership:
    require(scope, Action.MANAGE_USERS)
    _refuse_superuser(user)
    membership = _add_membership(user, customer, role)
    audit_record(
        actor=actor,
        action="membership.create",
        obj=membership,
        object_repr=f"{user.get_username()} · {describe_membership(membership)}",
        changes={"user": [None, user.get_username()], "membership": [None, describe_membership(membership)]},
    )
    return membership


@transaction.atomic
def membership_remove(*, scope: Scope, actor: Actor, membership: Membership) -> None:
    require(scope, Action.MANAGE_USERS)
    user = membership.user
    _refuse_superuser(user)
    if user.pk == scope.user_id and membership.customer_id is None and membership.role == Role.ADMIN:
        raise UserChangeRefused("You cannot remove your own MSP admin membership; ask another MSP admin.")
    audit_record(
        actor=actor,
        action="membership.delete",
        obj=membership,
        object_repr=f"{user.get_username()} · {describe_membership(membership)}",
        changes={"user": [user.get_username(), None], "membership": [describe_membership(membership), None]},
    )
    membership.delete()


@transaction.atomic
def user_set_active(*, scope: Scope, actor: Actor, user: AbstractUser, active: bool) -> None:
    require(scope, Action.MANAGE_USERS)
    _refuse_superuser(user)
    if user.pk == scope.user_id and not active:
        raise UserChangeRefused("You cannot deactivate yourself; ask another MSP admin.")
    before = snapshot(user, USER_AUDIT_FIELDS)
    user.is_active = active
    user.save(update_fields=["is_active"])
    audit_record(
        actor=actor,
        action="user.reactivate" if active else "user.deactivate",
        obj=user,
        changes=diff(before, snapshot(user, USER_AUDIT_FIELDS)),
    )


@sensitive_variables("password")
@transaction.atomic
def user_reset_password(*, scope: Scope, actor: Actor, user: AbstractUser) -> str:
    """Set a new random password (existing sessions end) and return it, to be shown once."""
    require(scope, Action.MANAGE_USERS)
    _refuse_superuser(user)
    password = generate_password()
    user.set_password(password)
    user.save(update_fields=["password"])
    audit_record(actor=actor, action="user.password_reset", obj=user, changes={"password": "reset"})
    _must_change_password(user)
    return password


def _must_change_password(user: AbstractUser) -> None:
    """Whoever read a generated password (the admin who made it) must not keep knowing it."""
    from servers.models import AccountSecurity

    AccountSecurity.objects.update_or_create(user_id=user.pk, defaults={"must_change_password": True})


@transaction.atomic
def password_change(*, actor: Actor, user: AbstractUser, new_password: str) -> None:
    """The user's own new password (validated by the form); the forced change is then done."""
    from django.utils import timezone

    from servers.models import AccountSecurity

    user.set_password(new_password)
    user.save(update_fields=["password"])
    AccountSecurity.objects.update_or_create(
        user_id=user.pk, defaults={"must_change_password": False, "password_changed_at": timezone.now()}
    )
    audit_record(actor=actor, action="user.password_change", obj=user, changes={"password": "changed"})


@transaction.atomic
def user_reset_2fa(*, scope: Scope, actor: Actor, user: AbstractUser) -> int:
    """Delete the user's TOTP devices so they enrol again at their next login."""
    require(scope, Action.MANAGE_USERS)
    _refuse_superuser(user)
    deleted, _ = TOTPDevice.objects.filter(user_id=user.pk).delete()
    audit_record(actor=actor, action="user.2fa_reset", obj=user, changes={"totp_devices": [deleted, 0]})
    return int(deleted)
