"""The NTLM account files pyspnego's acceptor reads (it only reads the file named by $NTLM_USER_FILE).

DANGER — credential handling: the files hold NT hashes (smbpasswd form, so no plaintext password sits on
disk, though an NT hash is password-equivalent for NTLM); they are written 0600 in the lab folder.

Why one file per host and not one shared file: two hosts may have the same account name with different
passwords (`.\\Administrator` everywhere, rotated per host); one file can hold only one hash per
(domain, user) form. The server therefore points $NTLM_USER_FILE at the host's own file right before it
creates a context and before each `step()`; all of that runs synchronously on the fleet's one event-loop
thread, so no two hosts' steps interleave. The variable already exists when it is replaced, so glibc
swaps one pointer and never reallocates `environ` under a concurrent `getenv`.
"""

from __future__ import annotations

import base64
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from spnego._ntlm_raw.crypto import ntowfv1  # pinned pyspnego 0.12.4: MD4 is missing from OpenSSL 3

_NO_LM = "0" * 32


def nt_hash_hex(password: str) -> str:
    return base64.b16encode(ntowfv1(password)).decode("ascii")


def write_user_file(path: Path, computer_name: str, accounts: Mapping[str, str]) -> None:
    """Write (atomically) the accounts of one host in each form a client may send.

    `user`, `.\\user` and `COMPUTER\\user` each need their own line: pyspnego matches the domain part as sent.
    """
    lines: list[str] = []
    for user, password in accounts.items():
        digest = nt_hash_hex(password)
        for form in (user, f".\\{user}", f"{computer_name}\\{user}"):
            lines.append(f"{form}:1000:{_NO_LM}:{digest}:[U]:LCT-00000000")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ntlm-", text=True)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def use_user_file(path: Path) -> None:
    """Point pyspnego at one host's accounts (see the module docstring for why this is safe here)."""
    value = str(path)
    if os.environ.get("NTLM_USER_FILE") != value:
        os.environ["NTLM_USER_FILE"] = value
