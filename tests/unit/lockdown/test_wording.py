"""Masks and SIDs in words, for pages that list many servers at once (the evidence keeps the numbers)."""

from __future__ import annotations

from lockdown.rules import masks
from lockdown.rules.wording import in_words, mask_words, sid_words


def test_the_profiles_masks_have_their_windows_names() -> None:
    assert mask_words(masks.FILE_READ_EXECUTE) == "read & execute"
    assert mask_words(masks.FILE_DENY_READ_EXECUTE) == "read & execute"
    assert mask_words(masks.FILE_FULL) == "full control"
    assert mask_words(masks.KEY_READ) == "read key"
    assert mask_words(0) == "no access"


def test_other_masks_read_as_the_rights_they_hold() -> None:
    assert mask_words(0x00000021) == "read data, execute"
    assert mask_words(masks.GENERIC_READ | 0x20) == "execute, generic read"
    assert mask_words(0x01000000) == "other rights (0x01000000)"


def test_well_known_sids_by_name_and_others_by_rid() -> None:
    assert sid_words("S-1-5-32-545") == "Users"
    assert sid_words("S-1-5-18") == "SYSTEM"
    assert sid_words("S-1-5-21-1004336348-1177238915-682003330-1001") == "account with RID 1001"


def test_a_sentence_keeps_its_words_and_loses_its_numbers() -> None:
    text = in_words("effective 0x001200A9 for S-1-5-32-545; lacks 0x00000020 (ReadKey (0x20019))")
    assert text == "effective read & execute for Users; lacks execute (ReadKey)"
    assert (
        in_words("IME_SYSTEM has effective ReadKey (0x20019) on the key")
        == "IME_SYSTEM has effective ReadKey on the key"
    )
    assert (
        in_words("no explicit Deny ACE for the account's own SID") == "no explicit Deny ACE for the account's own SID"
    )
