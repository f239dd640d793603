"""Masks and SIDs in words, for pages and reports (the evidence keeps the numbers); names that break
only between their parts."""

from __future__ import annotations

from lockdown.rules.wording import break_points, in_words, is_registry_rule, sid_words
from lockdown.templatetags.lockdown_tags import breakable


def test_well_known_sids_by_name_and_others_by_rid() -> None:
    assert sid_words("S-1-5-32-545") == "Users"
    assert sid_words("S-1-5-18") == "SYSTEM"
    assert sid_words("S-1-5-21-1004336348-1177238915-682003330-1001") == "account with RID 1001"
    assert sid_words("S-1-15-2-1") == "ALL APPLICATION PACKAGES"
    assert sid_words("S-1-5-80-123-456") == "S-1-5-80-123-456"  # a service SID: its last number is no RID


def test_a_sentence_keeps_its_words_and_loses_its_numbers() -> None:
    text = in_words("effective 0x001200A9 for S-1-5-32-545; lacks 0x00000020", registry=False)
    assert text == "effective Read & execute for Users; lacks Traverse folder / execute file"
    assert (
        in_words("IME_SYSTEM has effective ReadKey (0x20019) on the key", registry=True)
        == "IME_SYSTEM has effective Read on the key"
    )
    assert in_words("covering FullControl (0xF003F) with container inherit", registry=True) == (
        "covering Full control with container inherit"
    )
    assert (
        in_words("no explicit Deny ACE for the account's own SID", registry=False)
        == "no explicit Deny ACE for the account's own SID"
    )
    assert in_words(None, registry=False) == ""


def test_a_registry_mask_reads_as_key_rights() -> None:
    # 0x0002 is "Set value" on a key and "Create files / write data" on a file.
    assert in_words("lacks 0x00020019 plus 0x00000002", registry=True) == "lacks Read plus Set value"
    assert in_words("lacks 0x00000002", registry=False) == "lacks Create files / write data"
    assert is_registry_rule("registry_acl.mail_enable")
    assert not is_registry_rule("file_acl.system32.activeds_dll")


def test_names_break_after_their_separators_only() -> None:
    path = r"C:\Program Files (x86)\Mail Enable\Bin64"
    assert break_points(path) == ["C:\\", "Program Files (x86)\\", "Mail Enable\\", "Bin64"]
    assert "".join(break_points(path)) == path
    assert break_points("file_acl.system32.activeds_dll") == ["file_", "acl.", "system32.", "activeds_", "dll"]
    assert break_points("") == []
    assert str(breakable("a\\<b>.c")) == "a\\<wbr>&lt;b&gt;.<wbr>c"
