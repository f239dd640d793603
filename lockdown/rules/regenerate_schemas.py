"""Rewrite the checked-in agent schemas: `python -m lockdown.rules.regenerate_schemas [DIR]`.

Kept out of `contract.py` so running it does not re-import the module it executes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from lockdown.rules.contract import write_schemas

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "agent" / "schema"

if __name__ == "__main__":
    write_schemas(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR)
