"""SDDL as Windows prints it: what the engine accepts, what it refuses, and what it writes back.

A misread SDDL means a wrong compliance verdict or a wrong DACL written on a customer's host, so
each alias, right and flag the parser knows is checked against Microsoft's tables, and each
malformed input must be refused (the item then reports an error) rather than guessed at.
"""

from __future__ import annotations

import pytest

from lockdown.engine import sddl
from lockdown.rules.observed import Ace
from lockdown.rules.vocabulary import AceFlag, AceType

IME = "S-1-5-21-1-2-3-1002"


@pytest.mark.parametrize(
    ("alias", "sid"),
    [("WD", "S-1-1-0"), ("SY", "S-1-5-18"), ("BA", "S-1-5-32-544"), ("BU", "S-1-5-32-545"), ("AU", "S-1-5-11"),
     ("CO", "S-1-3-0"), ("NS", "S-1-5-20"), ("LS", "S-1-5-19"), ("IU", "S-1-5-4"), ("SI", "S-1-16-16384")],
)  # fmt: skip
def test_sid_aliases_are_the_well_known_sids(alias: str, sid: str) -> None:
    assert sddl.parse(f"O:{alias}D:(A;;FA;;;{alias})").aces[0].sid == sid
    assert sddl.parse(f"O:{alias}D:").owner == sid


def test_literal_sids_are_accepted_in_any_case_and_normalised_to_upper() -> None:
    d = sddl.parse("O:s-1-5-21-1-2-3-1002D:(A;;FA;;;s-1-5-21-1-2-3-1002)")
    assert d.owner == IME
    assert d.aces[0].sid == IME


@pytest.mark.parametrize("bad", ["XX", "S-1-", "S-1-5-", "S-2-5-18", "bob", "S-1-5-18x", "xS-1-5-18"])
def test_an_unknown_trustee_is_refused(bad: str) -> None:
    with pytest.raises(sddl.SddlError, match="SID"):
        sddl.parse(f"O:SYD:(A;;FA;;;{bad})")


@pytest.mark.parametrize(
    ("rights", "mask"),
    [("FA", 0x1F01FF), ("FR", 0x120089), ("FW", 0x120116), ("FX", 0x1200A0), ("KA", 0xF003F), ("KR", 0x20019),
     ("KW", 0x20006), ("KX", 0x20019), ("GA", 0x10000000), ("GR", 0x80000000), ("GW", 0x40000000),
     ("GX", 0x20000000), ("RC", 0x20000), ("SD", 0x10000), ("WD", 0x40000), ("WO", 0x80000), ("CC", 0x1),
     ("DC", 0x2), ("LC", 0x4), ("SW", 0x8), ("RP", 0x10), ("WP", 0x20), ("DT", 0x40), ("LO", 0x80), ("CR", 0x100),
     ("GRGX", 0xA0000000), ("RCSDWDWO", 0xF0000), ("0x1200a9", 0x1200A9), ("0X1F01FF", 0x1F01FF),
     ("1179817", 1179817)],
)  # fmt: skip
def test_rights_aliases_hex_and_decimal_masks(rights: str, mask: int) -> None:
    assert sddl.parse(f"O:SYD:(A;;{rights};;;SY)").aces[0].mask == mask


@pytest.mark.parametrize("bad", ["F", "FAX", "ZZ", "FAZZ", "0xZZ"])
def test_bad_rights_are_refused(bad: str) -> None:
    with pytest.raises((sddl.SddlError, ValueError)):
        sddl.parse(f"O:SYD:(A;;{bad};;;SY)")


def test_bad_rights_messages_name_the_part() -> None:
    with pytest.raises(sddl.SddlError, match="bad rights 'FAX'"):
        sddl.parse("O:SYD:(A;;FAX;;;SY)")
    with pytest.raises(sddl.SddlError, match="bad right 'ZZ'"):
        sddl.parse("O:SYD:(A;;FAZZ;;;SY)")


@pytest.mark.parametrize(
    ("flags", "expected", "inherited"),
    [("", [], False), ("CI", [AceFlag.CONTAINER_INHERIT], False), ("OI", [AceFlag.OBJECT_INHERIT], False),
     ("NP", [AceFlag.NO_PROPAGATE], False), ("IO", [AceFlag.INHERIT_ONLY], False),
     ("OICIIO", [AceFlag.OBJECT_INHERIT, AceFlag.CONTAINER_INHERIT, AceFlag.INHERIT_ONLY], False),
     ("ID", [], True), ("CIID", [AceFlag.CONTAINER_INHERIT], True)],
)  # fmt: skip
def test_ace_flags(flags: str, expected: list[AceFlag], inherited: bool) -> None:
    ace = sddl.parse(f"O:SYD:(A;{flags};FA;;;SY)").aces[0]
    assert ace.flags == expected
    assert ace.inherited is inherited


@pytest.mark.parametrize("ace", ["(A;XX;FA;;;SY)", "(A;C;FA;;;SY)", "(AU;;FA;;;SY)", "(OA;;FA;;;SY)", "(A;;FA;;SY)",
                                 "(A;;FA;;;SY;)", "(;;FA;;;SY)"])  # fmt: skip
def test_unsupported_aces_are_refused(ace: str) -> None:
    with pytest.raises(sddl.SddlError):
        sddl.parse("O:SYD:" + ace)


def test_deny_and_allow_types() -> None:
    allow, deny = sddl.parse("O:SYD:(A;;FA;;;SY)(D;;FW;;;BU)").aces
    assert allow.type is AceType.ALLOW
    assert deny.type is AceType.DENY


def test_sections_other_than_owner_and_dacl_are_ignored_in_any_order() -> None:
    text = "O:BAG:SYD:PAI(A;;FA;;;SY)S:(AU;SA;FA;;;WD)"
    d = sddl.parse(text)
    assert d.owner == "S-1-5-32-544"
    assert [a.sid for a in d.aces] == ["S-1-5-18"]
    d2 = sddl.parse("D:AI(A;;FR;;;BU)O:SY")
    assert d2.owner == "S-1-5-18"
    assert [a.sid for a in d2.aces] == ["S-1-5-32-545"]
    assert d2.protected is False


def test_surrounding_whitespace_is_ignored() -> None:
    assert sddl.parse("  O:SYD:(A;;FA;;;SY)\r\n").owner == "S-1-5-18"


def test_no_owner_and_no_dacl() -> None:
    d = sddl.parse("D:(A;;FA;;;SY)")
    assert d.owner is None
    d2 = sddl.parse("O:SY")
    assert d2.aces == ()
    assert d2.protected is False
    assert d2.dacl_flags == ""


def test_text_with_no_section_is_refused() -> None:
    for text in ("", "(A;;FA;;;SY)", "garbage"):
        with pytest.raises(sddl.SddlError, match="no section"):
            sddl.parse(text)


@pytest.mark.parametrize(
    ("head", "protected"),
    [("", False), ("P", True), ("AI", False), ("PAI", True), ("AR", False), ("PAR", True), ("PARAI", True),
     ("AIAR", False)],
)  # fmt: skip
def test_dacl_flags_protection(head: str, protected: bool) -> None:
    d = sddl.parse(f"O:SYD:{head}(A;;FA;;;SY)")
    assert d.protected is protected
    assert d.dacl_flags == head


@pytest.mark.parametrize("head", ["X", "PX", "A", "NO_ACCESS_CONTROL"])
def test_bad_dacl_flags_are_refused(head: str) -> None:
    with pytest.raises(sddl.SddlError, match="DACL flags"):
        sddl.parse(f"O:SYD:{head}(A;;FA;;;SY)")


def test_an_owner_section_colon_inside_an_ace_is_not_a_section() -> None:
    # "D:" and "S:" inside the ACE list (in a trustee or a GUID field) must not start a section
    d = sddl.parse("O:SYD:(A;;FA;;;SY)(A;;FR;;;BU)")
    assert len(d.aces) == 2


def test_explicit_keeps_order_and_drops_inherited() -> None:
    d = sddl.parse("O:SYD:(A;ID;FR;;;BU)(A;;FA;;;SY)(D;;FW;;;WD)(A;ID;FA;;;BA)")
    assert [a.sid for a in d.explicit] == ["S-1-5-18", "S-1-1-0"]


def test_ace_text_writes_flags_in_windows_order_and_the_inherited_bit_last() -> None:
    every = [AceFlag.INHERIT_ONLY, AceFlag.NO_PROPAGATE, AceFlag.CONTAINER_INHERIT, AceFlag.OBJECT_INHERIT]
    ace = Ace(sid=IME, type=AceType.DENY, mask=0x120116, inherited=True, flags=every)
    assert sddl.ace_text(ace) == f"(D;OICINPIOID;0x120116;;;{IME})"
    assert sddl.ace_text(ace.model_copy(update={"inherited": False, "flags": []})) == f"(D;;0x120116;;;{IME})"


def test_ace_text_sid_override_and_round_trip() -> None:
    ace = Ace(sid=IME, type=AceType.ALLOW, mask=0x1F01FF, flags=[AceFlag.OBJECT_INHERIT])
    assert sddl.ace_text(ace, "{{IME_SID}}") == "(A;OI;0x1f01ff;;;{{IME_SID}})"
    assert sddl.parse("O:SYD:" + sddl.ace_text(ace)).aces[0] == ace


def test_dacl_text_writes_explicit_aces_in_order_with_overrides() -> None:
    a = Ace(sid="S-1-5-18", type=AceType.ALLOW, mask=0x1F01FF)
    b = Ace(sid=IME, type=AceType.DENY, mask=0x120116)
    inherited = Ace(sid="S-1-5-32-545", type=AceType.ALLOW, mask=0x120089, inherited=True)
    text = sddl.dacl_text([(b, "{{X}}"), (inherited, None), (a, None)], protected=False)
    assert text == "D:AI(D;;0x120116;;;{{X}})(A;;0x1f01ff;;;S-1-5-18)"
    assert sddl.dacl_text([], protected=True) == "D:PAI"
    assert sddl.dacl_text([], protected=False) == "D:AI"
