"""Fixtures for the emulated-Windows unit tests."""

from __future__ import annotations

import pytest

from tests.unit.winlab.builders import make_host
from winlab.windows.host import WindowsHost


@pytest.fixture
def host() -> WindowsHost:
    """A Server 2019 host with MailEnable Enterprise 10.43, not hardened, built-in Administrator over WinRM."""
    return make_host()
