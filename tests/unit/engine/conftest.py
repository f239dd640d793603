"""Each engine test starts with an empty SDDL parse cache.

`sddl.parse` is memoised per process; a mutation run forks each mutant from a process that has
already run the tests, so without this a mutant of the parser would be answered from the cache
of the unmutated code and survive unseen (bench/mutation.py).
"""

from __future__ import annotations

import pytest

from lockdown.engine import sddl


@pytest.fixture(autouse=True)
def _fresh_sddl_cache() -> None:
    sddl.parse.cache_clear()
