"""Access masks in words, as Windows' Security tab names them (reports print these, not hex)."""

from __future__ import annotations

import pytest

from lockdown.rules import masks


@pytest.mark.parametrize(
    ("mask", "registry", "words"),
    [
        (masks.FILE_READ_EXECUTE, False, "Read & execute"),
        (masks.FILE_DENY_READ_EXECUTE, False, "Read & execute"),  # a Deny without Synchronize
        (masks.FILE_FULL, False, "Full control"),
        (masks.FILE_MODIFY, False, "Modify"),
        (masks.FILE_READ, False, "Read"),
        (masks.FILE_READ_WRITE, False, "Read & write"),
        (masks.KEY_READ, True, "Read"),
        (masks.KEY_FULL, True, "Full control"),
        (masks.GENERIC_ALL, False, "Full control"),  # generic bits are mapped first
        (masks.GENERIC_READ, True, "Read"),
        (0, False, "No access"),
        (masks.SYNCHRONIZE, False, "Synchronize only"),
        (masks.FILE_READ_EXECUTE | 0x2, False, "Read & execute, plus Create files / write data"),
        (0x00000100, False, "Write attributes"),
        (masks.KEY_READ | 0x0002, True, "Read, plus Set value"),
    ],
)
def test_rights_in_words(mask: int, registry: bool, words: str) -> None:
    assert masks.rights_in_words(mask, registry=registry) == words


def test_bits_without_a_name_stay_visible_as_a_number() -> None:
    assert masks.rights_in_words(masks.FILE_READ | 0x01000000, registry=False) == "Read, plus other rights 0x01000000"
