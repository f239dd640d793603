"""CLIXML stderr: error records kept, progress dropped."""

from __future__ import annotations

from remote.clixml import parse_clixml_errors

PROGRESS_AND_ERROR = (
    b"#< CLIXML\r\n"
    b'<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
    b'<Obj S="progress" RefId="0"><TN RefId="0"><T>System.Management.Automation.PSCustomObject</T></TN>'
    b'<MS><I64 N="SourceId">1</I64><PR N="Record"><AV>Preparing modules for first use.</AV></PR></MS></Obj>'
    b'<S S="Error">Access is denied._x000D__x000A_</S><S S="Error">second line</S></Objs>'
)


def test_only_error_records_are_kept_and_unescaped() -> None:
    assert parse_clixml_errors(PROGRESS_AND_ERROR) == ["Access is denied.", "second line"]


def test_progress_only_means_no_errors() -> None:
    assert parse_clixml_errors(PROGRESS_AND_ERROR.split(b"<S S=")[0] + b"</Objs>") == []


def test_plain_text_stderr_is_kept() -> None:
    assert parse_clixml_errors(b"'foo' is not recognized\r\n") == ["'foo' is not recognized"]


def test_hostile_xml_is_not_expanded() -> None:
    bomb = b'#< CLIXML\r\n<!DOCTYPE x [<!ENTITY a "aaaa">]><Objs><S S="Error">&a;</S></Objs>'
    assert parse_clixml_errors(bomb) == ["unreadable CLIXML on stderr"]
