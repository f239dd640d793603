"""The generated IME_SYSTEM password."""

from __future__ import annotations

import pytest

from lockdown.agent.passwords import CLASSES, generate_service_password


@pytest.mark.parametrize("min_length", [0, 8, 24, 40])
def test_password_is_long_and_has_every_class(min_length: int) -> None:
    for _ in range(200):
        password = generate_service_password(min_length, True)
        assert len(password) == max(24, min_length)
        assert all(any(c in cls for c in password) for cls in CLASSES)


def test_password_avoids_characters_that_break_cmd_adsi_or_powershell() -> None:
    seen = "".join(generate_service_password(24, True) for _ in range(500))
    assert not set(seen) & set("\"'`%^\\:&|<> ")


def test_passwords_do_not_repeat() -> None:
    assert len({generate_service_password(24, True) for _ in range(1000)}) == 1000
