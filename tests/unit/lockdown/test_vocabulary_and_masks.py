"""The status/action vocabulary matches DESIGN.md; masks are numeric and judged by coverage."""

from __future__ import annotations

import pytest

from lockdown.rules import masks
from lockdown.rules.vocabulary import AccessName, RuleAction, RuleStatus


def test_statuses_are_exactly_the_design_vocabulary():
    assert [s.value for s in RuleStatus] == ["compliant", "drift", "not_applicable", "needs_input", "error", "waived"]


def test_actions_are_exactly_the_design_vocabulary():
    assert [a.value for a in RuleAction] == ["none", "changed", "failed", "rolled_back"]


@pytest.mark.parametrize(
    ("access", "mask"),
    [
        (AccessName.READ, 0x120089),
        (AccessName.READ_WRITE, 0x12019F),
        (AccessName.READ_EXECUTE, 0x1200A9),
        (AccessName.FULL, 0x1F01FF),
    ],
)
def test_file_allow_masks_match_filesystemrights(access, mask):
    assert masks.file_allow_mask(access) == mask


def test_deny_mask_is_read_and_execute_without_synchronize():
    assert masks.file_deny_mask(AccessName.READ_EXECUTE) == 0x0200A9


def test_registry_masks_match_registryrights():
    assert masks.registry_allow_mask(AccessName.READ) == 0x20019
    assert masks.registry_allow_mask(AccessName.FULL) == 0xF003F


def test_coverage_accepts_extra_bits_but_not_missing_ones():
    assert masks.covers(0x1F01FF, 0x120089)
    assert not masks.covers(0x120088, 0x120089)


@pytest.mark.parametrize(
    ("generic", "registry", "specific"),
    [
        (masks.GENERIC_READ, False, 0x120089),
        (masks.GENERIC_ALL, False, 0x1F01FF),
        (masks.GENERIC_READ | masks.GENERIC_EXECUTE, False, 0x1200A9),
        (masks.GENERIC_READ, True, 0x20019),
        (masks.GENERIC_ALL, True, 0xF003F),
    ],
)
def test_generic_bits_map_to_specific_rights(generic, registry, specific):
    assert masks.map_generic(generic, registry=registry) == specific


def test_generic_mapping_keeps_specific_bits_and_drops_generic_ones():
    assert masks.map_generic(masks.GENERIC_WRITE | 0x20, registry=False) == 0x120116 | 0x20
