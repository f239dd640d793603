"""Access arithmetic over an observed DACL: effective access and explicit-ACE lookups.

All comparisons use SIDs and numeric masks with generic bits mapped first. ACEs marked
inherit-only do not apply to the object itself and are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lockdown.rules import masks
from lockdown.rules.observed import Ace
from lockdown.rules.principals import IMPLICIT_GROUP_SIDS
from lockdown.rules.vocabulary import AceFlag, AceType


@dataclass(frozen=True)
class EffectiveAccess:
    """What a principal ends up with on one object: allowed bits, denied bits, and the result."""

    allowed: int
    denied: int

    @property
    def mask(self) -> int:
        """Allowed bits no deny removes."""
        return self.allowed & ~self.denied


def normalised(ace: Ace, *, registry: bool) -> Ace:
    """The ACE with generic rights mapped to specific file or registry rights."""
    mapped = masks.map_generic(ace.mask, registry=registry)
    return ace if mapped == ace.mask else ace.model_copy(update={"mask": mapped})


def applies_to_object(ace: Ace) -> bool:
    """Inherit-only ACEs exist only to be inherited by children."""
    return AceFlag.INHERIT_ONLY not in ace.flags


def token_sids(principal_sid: str, group_sids: Iterable[str]) -> frozenset[str]:
    """The SIDs access is checked against: the account, the groups every local logon carries
    (Everyone, Authenticated Users, Users) and the groups the agent observed it in."""
    return frozenset({principal_sid, *IMPLICIT_GROUP_SIDS, *group_sids})


def effective_access(dacl: Sequence[Ace], sids: frozenset[str], *, registry: bool) -> EffectiveAccess:
    """Effective access of a token holding `sids`.

    Deny ACEs are taken first, then allows accumulate; any matching deny wins regardless of
    its position. For canonical DACLs (what Windows tools write) this is exactly the
    AccessCheck result; for a non-canonical one it is the conservative reading.
    """
    allowed = denied = 0
    for ace in dacl:
        if ace.sid not in sids or not applies_to_object(ace):
            continue
        mask = masks.map_generic(ace.mask, registry=registry)
        if ace.type is AceType.DENY:
            denied |= mask
        else:
            allowed |= mask
    return EffectiveAccess(allowed=allowed, denied=denied)


def explicit_aces(dacl: Sequence[Ace], sid: str, ace_type: AceType, *, registry: bool) -> list[Ace]:
    """Non-inherited ACEs of `ace_type` for exactly `sid` that apply to the object, normalised."""
    return [
        normalised(ace, registry=registry)
        for ace in dacl
        if ace.sid == sid and ace.type is ace_type and not ace.inherited and applies_to_object(ace)
    ]


def inherited_aces(dacl: Sequence[Ace], sid: str, ace_type: AceType, *, registry: bool) -> list[Ace]:
    """Inherited ACEs of `ace_type` for exactly `sid`, normalised (to explain a drift)."""
    return [
        normalised(ace, registry=registry) for ace in dacl if ace.sid == sid and ace.type is ace_type and ace.inherited
    ]
