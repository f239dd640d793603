"""Where one SDDL section ends and the next begins, and what is refused around the edges.

Complements test_engine_sddl.py: a section letter followed by ':' starts a section only outside
the parentheses of an ACE, and a text that ends in a section letter is no section header.
"""

from __future__ import annotations

import pytest

from lockdown.engine import sddl

IME = "S-1-5-21-1-2-3-1002"


def test_a_dacl_of_aces_only_followed_by_the_owner() -> None:
    d = sddl.parse("D:(A;;FR;;;BU)(D;;FW;;;WD)O:SY")
    assert d.owner == "S-1-5-18"
    assert [a.sid for a in d.aces] == ["S-1-5-32-545", "S-1-1-0"]
    assert d.dacl_flags == ""


def test_a_section_letter_and_colon_inside_an_ace_is_not_a_section() -> None:
    d = sddl.parse("O:SYD:(A;;FA;O:x;D:y;SY)(A;;FR;G:z;S:w;BU)")
    assert d.owner == "S-1-5-18"
    assert [(a.sid, a.mask) for a in d.aces] == [("S-1-5-18", 0x1F01FF), ("S-1-5-32-545", 0x120089)]


def test_sections_after_a_dacl_with_many_aces_are_still_found() -> None:
    d = sddl.parse("G:SYD:P(A;;FA;;;SY)(A;;FA;;;BA)(A;;FR;;;BU)O:BA")
    assert d.owner == "S-1-5-32-544"
    assert len(d.aces) == 3
    assert d.protected is True


@pytest.mark.parametrize("text", ["O:BAD", "O:SYG", "O:S-1-5-18S"])
def test_a_text_ending_in_a_section_letter_is_not_a_section_header(text: str) -> None:
    with pytest.raises(sddl.SddlError, match="SID"):
        sddl.parse(text)


def test_an_empty_owner_or_an_empty_ace_is_refused() -> None:
    with pytest.raises(sddl.SddlError, match="SID"):
        sddl.parse("O:D:(A;;FA;;;SY)")
    with pytest.raises(sddl.SddlError, match="unsupported ACE"):
        sddl.parse("O:SYD:()")


def test_the_owner_is_the_text_up_to_the_next_section() -> None:
    assert sddl.parse(f"O:{IME}G:BAD:AI").owner == IME
    assert sddl.parse("O:SY").owner == "S-1-5-18"


def test_decimal_and_hex_masks_are_read_in_their_base() -> None:
    assert sddl.parse("O:SYD:(A;;0x10;;;SY)").aces[0].mask == 16
    assert sddl.parse("O:SYD:(A;;10;;;SY)").aces[0].mask == 10
    assert sddl.parse("O:SYD:(A;;0xFFFFFFFF;;;SY)").aces[0].mask == 0xFFFFFFFF


def test_rights_are_read_two_letters_at_a_time() -> None:
    assert sddl.parse("O:SYD:(A;;CCDCLCSWRPWPDTLOCR;;;SY)").aces[0].mask == 0x1FF
    with pytest.raises(sddl.SddlError, match="bad right 'CD'"):
        sddl.parse("O:SYD:(A;;CCDCDC;;;SY)".replace("DCDC", "CDCD"))


def test_flags_are_read_two_letters_at_a_time() -> None:
    with pytest.raises(sddl.SddlError, match="bad ACE flag 'IC'"):
        sddl.parse("O:SYD:(A;OICIC;FA;;;SY)".replace("OICIC", "OIICI"))
    with pytest.raises(sddl.SddlError, match="bad ACE flag 'I'"):
        sddl.parse("O:SYD:(A;OII;FA;;;SY)")


def test_a_whitespace_only_text_is_refused() -> None:
    with pytest.raises(sddl.SddlError, match=r"^no section in the SDDL$"):
        sddl.parse(" \r\n ")


def test_ace_text_without_override_uses_the_ace_sid() -> None:
    ace = sddl.parse(f"O:SYD:(A;;FA;;;{IME})").aces[0]
    assert sddl.ace_text(ace, None) == f"(A;;0x1f01ff;;;{IME})"
    assert sddl.ace_text(ace, "") == f"(A;;0x1f01ff;;;{IME})"


def test_nested_parentheses_in_an_ignored_section_do_not_hide_the_sections_after_it() -> None:
    # a conditional ACE (SACL resource attributes) nests parentheses
    d = sddl.parse('S:(XU;;FX;;;WD;(@User.Title == "PM"))O:BAD:PAI(A;;FA;;;SY)')
    assert d.owner == "S-1-5-32-544"
    assert [a.sid for a in d.aces] == ["S-1-5-18"]
    assert d.protected is True


@pytest.mark.parametrize("text", ["O:SYX:1", "O:SYX:D:AI", "O:SYA:x"])
def test_a_letter_that_names_no_section_is_part_of_the_text_before_it(text: str) -> None:
    with pytest.raises(sddl.SddlError):
        sddl.parse(text)
