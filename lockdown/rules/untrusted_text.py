"""Guards for documents people upload (profiles, advisory files) before and while they are parsed.

PyYAML's `safe_load` still expands anchors and aliases (a few nested aliases make a small file
huge) and its parser is quadratic in the depth of `[ {` nesting (100 kB of "[" takes minutes).
Real documents nest a handful of levels and never need an alias, so both are refused.
"""

from __future__ import annotations

from typing import Final

import yaml

MAX_FLOW_DEPTH: Final = 64


def refuse_yaml_aliases(text: str, *, what: str) -> None:
    """Raise ValueError if the YAML `text` uses an alias (`what` names the documents, plural)."""
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            raise ValueError(f"YAML aliases are not allowed in {what}")


def refuse_deep_nesting(text: str, *, what: str) -> None:
    """Raise ValueError if `[ {` nest deeper than MAX_FLOW_DEPTH (`what` names the document).

    Brackets inside strings count too, which only makes this stricter."""
    depth = 0
    for char in text:
        if char in "[{":
            depth += 1
            if depth > MAX_FLOW_DEPTH:
                raise ValueError(f"{what} is nested more than {MAX_FLOW_DEPTH} levels deep")
        elif char in "]}" and depth:
            depth -= 1
