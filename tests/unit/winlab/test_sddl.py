import pytest

from winlab.windows import security as sec
from winlab.windows import sids
from winlab.windows.security import AceFlags as F


def test_renders_owner_dacl_aliases_and_hex_masks():
    sd = sec.SecurityDescriptor(
        owner=sids.ADMINISTRATORS,
        group=sids.LOCAL_SYSTEM,
        dacl=(
            sec.allow(sids.LOCAL_SYSTEM, sec.FILE_ALL_ACCESS, F.OI | F.CI),
            sec.allow(sids.USERS, sec.FILE_READ_EXECUTE, F.OI | F.CI | F.ID),
            sec.deny("S-1-5-21-1-2-3-1001", sec.FILE_READ_EXECUTE),
        ),
        protected=True,
    )
    assert sec.to_sddl(sd) == (
        "O:BAG:SYD:PAI(A;OICI;FA;;;SY)(A;OICIID;0x1200a9;;;BU)(D;;0x1200a9;;;S-1-5-21-1-2-3-1001)"
    )


def test_generic_and_letter_rights_render_in_windows_order():
    ace = sec.allow(sids.USERS, sec.GENERIC_READ | sec.GENERIC_EXECUTE, F.OI | F.CI | F.IO)
    assert sec.ace_to_sddl(ace) == "(A;OICIIO;GXGR;;;BU)"
    assert sec.ace_to_sddl(sec.allow(sids.USERS, sec.KEY_READ, F.CI)) == "(A;CI;KR;;;BU)"


def test_parse_of_rendered_sddl_gives_back_the_same_descriptor(host):
    for path in (
        "C:\\Windows\\System32\\cmd.exe",
        "C:\\Program Files (x86)\\Mail Enable\\Queues",
        "C:\\Program Files (x86)\\Mail Enable",
    ):
        sd = host.fs.get_sd(path)
        assert sec.from_sddl(sec.to_sddl(sd)) == sd
    sd = host.registry.get_sd("HKLM\\SOFTWARE\\Mail Enable\\Mail Enable", view=32)
    assert sec.from_sddl(sec.to_sddl(sd)) == sd


def test_parse_accepts_letters_decimal_and_unprotected_dacl():
    sd = sec.from_sddl("O:SYD:AI(A;;RCWD;;;BA)(A;CI;131097;;;BU)")
    assert sd.owner == sids.LOCAL_SYSTEM
    assert sd.group is None
    assert not sd.protected
    assert sd.dacl[0].mask == sec.READ_CONTROL | sec.WRITE_DAC
    assert sd.dacl[1].mask == sec.KEY_READ


def test_parse_rejects_garbage():
    with pytest.raises(sec.SddlError):
        sec.from_sddl("O:BAD:(X;;FA;;;SY)")
