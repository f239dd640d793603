"""stderr of powershell.exe for a redirected caller: CLIXML. Only `<S S="Error">` records matter;
progress records ("Preparing modules for first use.") appear even on success and are dropped."""

from __future__ import annotations

import re
from xml.etree.ElementTree import ParseError  # exception type only; parsing is defusedxml

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

CLIXML_HEADER = "#< CLIXML"
_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")
_MAX_ERRORS = 20


def _unescape(text: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)


def parse_clixml_errors(stderr: bytes) -> list[str]:
    """The error lines in `stderr`: CLIXML error records, or the plain text if it is not CLIXML."""
    text = stderr.decode("utf-8", errors="replace")
    if CLIXML_HEADER not in text:
        plain = text.strip()
        return [plain] if plain else []
    errors: list[str] = []
    for block in text.split(CLIXML_HEADER)[1:]:
        start, end = block.find("<Objs"), block.rfind("</Objs>")
        if start < 0 or end < 0:
            continue
        try:
            root = ElementTree.fromstring(block[start : end + len("</Objs>")])
        except (ParseError, DefusedXmlException):
            errors.append("unreadable CLIXML on stderr")
            continue
        for node in root.iter():
            if node.tag.rsplit("}", 1)[-1] == "S" and node.get("S") == "Error" and node.text:
                errors.append(_unescape(node.text).strip())
    return [e for e in errors if e][:_MAX_ERRORS]
