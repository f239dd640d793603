"""A token's scope is its user's, narrowed: never an action or a customer the user lacks."""

from __future__ import annotations

import itertools

import pytest

from servers.choices import Role
from servers.tenancy import Action, Scope

A, B = 1, 2
BASES = {
    "msp_admin": Scope(user_id=1, msp_role=Role.ADMIN),
    "msp_operator": Scope(user_id=1, msp_role=Role.OPERATOR),
    "msp_viewer": Scope(user_id=1, msp_role=Role.VIEWER),
    "customer_operator": Scope(user_id=1, customer_roles={A: Role.OPERATOR}),
    "customer_viewer": Scope(user_id=1, customer_roles={A: Role.VIEWER}),
    "two_customers": Scope(user_id=1, customer_roles={A: Role.OPERATOR, B: Role.VIEWER}),
}


@pytest.mark.parametrize("base_name", BASES)
@pytest.mark.parametrize(("read_only", "customer_id"), list(itertools.product([False, True], [None, A, B])))
def test_narrowing_never_grants_what_the_user_lacks(base_name: str, read_only: bool, customer_id: int | None) -> None:
    base = BASES[base_name]
    narrowed = base.narrowed(read_only=read_only, customer_id=customer_id)
    for action, customer in itertools.product(Action, [A, B, None]):
        if narrowed.can(action, customer):
            assert base.can(action, customer), f"{base_name} narrowed gained {action} on {customer}"
        if read_only and action != Action.VIEW:
            assert not narrowed.can(action, customer), f"read-only {base_name} may {action}"
        if customer_id is not None and customer not in (None, customer_id):
            assert not narrowed.can(action, customer), f"narrowed to {customer_id}, {base_name} acts on {customer}"
    if customer_id is not None:
        assert not narrowed.sees_everything()
        assert narrowed.customer_ids <= {customer_id}


def test_an_msp_user_narrowed_to_a_customer_keeps_their_level_there() -> None:
    assert BASES["msp_operator"].narrowed(customer_id=A).can(Action.HARDEN, A)
    assert BASES["msp_admin"].narrowed(customer_id=A).can(Action.EDIT_SERVERS, A)
    assert not BASES["msp_admin"].narrowed(customer_id=A).can(Action.MANAGE_CREDENTIALS, A)
    assert BASES["msp_viewer"].narrowed(customer_id=A).can(Action.VIEW, A)
    assert BASES["customer_operator"].narrowed(read_only=True).can(Action.VIEW, A)


def test_the_full_token_keeps_the_users_scope() -> None:
    for base in BASES.values():
        narrowed = base.narrowed()
        assert (narrowed.msp_role, narrowed.customer_roles) == (base.msp_role, base.customer_roles)
