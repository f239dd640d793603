"""Shared fixtures: users named by role in the tenancy story.

Alice is the MSP admin, Oscar an MSP operator, Vic an MSP viewer; Carol operates and Cora
views customer A's servers only; Bob belongs to customer B. Charlie has no membership and
must see nothing.
"""

from __future__ import annotations

import os

import pytest

from servers.choices import Role


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("REQUIRE_SERVICES") == "1":
        url = os.environ.get("DATABASE_URL", "")
        if not url.startswith(("postgres://", "postgresql://")):
            raise pytest.UsageError("REQUIRE_SERVICES=1 but DATABASE_URL is not PostgreSQL")
        if not os.environ.get("CELERY_BROKER_URL", "").startswith("redis://"):
            raise pytest.UsageError("REQUIRE_SERVICES=1 but CELERY_BROKER_URL is not Redis")


# Factories import the models, so they are imported inside fixtures: the pure unit tests
# (`pytest -p no:django tests/unit`) must be able to load this file without Django.
@pytest.fixture
def tenant_a(db: None):
    from tests.factories import build_tenant

    return build_tenant("A")


@pytest.fixture
def tenant_b(db: None):
    from tests.factories import build_tenant

    return build_tenant("B")


ROLE_USERS = {
    "msp_admin": ("alice", None, Role.ADMIN),
    "msp_operator": ("oscar", None, Role.OPERATOR),
    "msp_viewer": ("vic", None, Role.VIEWER),
    "customer_operator": ("carol", "A", Role.OPERATOR),
    "customer_viewer": ("cora", "A", Role.VIEWER),
}


@pytest.fixture
def make_role_user(tenant_a):
    from tests.factories import MembershipFactory, UserFactory

    def make(role: str):
        username, customer_label, msp_role = ROLE_USERS[role]
        user = UserFactory(username=username)
        MembershipFactory(user=user, customer=tenant_a.customer if customer_label else None, role=msp_role)
        return user

    return make


@pytest.fixture
def alice(make_role_user):
    return make_role_user("msp_admin")


@pytest.fixture
def carol(make_role_user):
    return make_role_user("customer_operator")


@pytest.fixture
def cora(make_role_user):
    return make_role_user("customer_viewer")


@pytest.fixture(autouse=True)
def _fast_password_hashing(request: pytest.FixtureRequest) -> None:
    # PBKDF2's million iterations cost ~0.3 s per user; tests create hundreds of users.
    # Without pytest-django (`-p no:django`, as the mutation run uses) there are no users.
    if not request.config.pluginmanager.hasplugin("django"):
        return
    request.getfixturevalue("settings").PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
