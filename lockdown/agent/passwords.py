"""The IME_SYSTEM service-account password: long, random, every character class, and free of
characters that break the places it travels through.

Pure and side-effect free (`secrets` only). DANGER: the returned string is a secret; callers
encrypt it at rest and never log it.
"""

from __future__ import annotations

import secrets
import string
from typing import Final

MIN_LENGTH: Final = 24
UPPER: Final = string.ascii_uppercase
LOWER: Final = string.ascii_lowercase
DIGITS: Final = string.digits
# No `"` (cmd.exe/sc.exe quoting, ADSI), no `'` or backtick (PowerShell quoting), no `%` and
# `^` (cmd.exe expansion/escape), no `\` and `:` (NTLM user files, DOMAIN\user parsing),
# no `&|<>` (cmd.exe operators), no space.
SYMBOLS: Final = "!#$*+,-./;=?@[]_{}~()"
CLASSES: Final = (UPPER, LOWER, DIGITS, SYMBOLS)
ALPHABET: Final = "".join(CLASSES)


def generate_service_password(min_length: int = MIN_LENGTH, complexity: bool = True) -> str:
    """A random password of max(`min_length`, 24) characters.

    `min_length` and `complexity` come from the host's policy (secedit MinimumPasswordLength,
    PasswordComplexity); the result always has all four character classes anyway, so it also
    satisfies complexity when the policy is off. Windows complexity additionally forbids the
    account name in the password, which a random 24+ character string contains only by a
    negligible chance; it is checked for IME_SYSTEM all the same.
    """
    length = max(min_length, MIN_LENGTH)
    del complexity  # every password is complex; the parameter documents the policy input
    while True:
        chars = [secrets.choice(cls) for cls in CLASSES]
        chars += [secrets.choice(ALPHABET) for _ in range(length - len(chars))]
        # Fisher-Yates with the CSPRNG, so the guaranteed class characters sit anywhere.
        for i in range(len(chars) - 1, 0, -1):
            j = secrets.randbelow(i + 1)
            chars[i], chars[j] = chars[j], chars[i]
        password = "".join(chars)
        if "ime_system" not in password.lower():
            return password
