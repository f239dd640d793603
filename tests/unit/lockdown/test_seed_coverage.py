"""Every row of every table of the hardening guide (the seed) is a rule of the built-in profile.

The project carries the guide's tables as data (tests/data/guide_tables.json: each row's cells —
paths, principals, access — as the guide prints them, not its prose), so these tests pass in a clone
of the repository alone. Where shared/ sits beside the repository (CI), the guide there is parsed
on its own and must give exactly those rows; a row dropped from the profile (or a profile row that
quotes the guide wrongly) fails below either way.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lockdown.rules.builtin import load_builtin_profile
from lockdown.rules.rule import (
    FileAclRule,
    FileDenyRule,
    GroupMemberRule,
    LocalGroupRule,
    LocalUserRule,
    PathAclRule,
    RegistryAclRule,
    ServiceIdentityRule,
    SqlGrantRule,
    UserRightRule,
)
from lockdown.rules.vocabulary import AccessName, SqlGrantKind

GUIDE_TABLES = Path(__file__).resolve().parents[2] / "data" / "guide_tables.json"
SHARED_SEED = Path(__file__).resolve().parents[3].parent / "shared" / "seed" / "mailenable-lockdown.txt"

# (heading, table header cells, pattern of a row's first cell, expected row count)
TABLES = [
    ("Registry Permissions", ("Path", "Account", "Access"), r"HKLM::.*", 4),
    ("File System Permissions (Access Granted)", ("Path", "Account", "Access"), r"\[(SYSTEM32|WINDOWS)\]\\.*", 43),
    ("File System Permissions (Access Denied)", ("Path", "Account", "Access"), r"\[SYSTEM32\]\\.*", 32),
    ("Windows Accounts created", ("Type", "Object Name", "Access"), r"USER|GROUP|MEMBERSHIP", 3),
    ("Windows Rights Assignment", ("Right", "Object Name", "Access"), r"Se[A-Za-z]+", 7),
    ("Database Changes", ("Type", "Object Name", "Access"), r"USER|ACCESS", 2),
    ("Service Identity Changes", ("Type", "Access"), r"MailEnable .*", 4),
    ("Access changes to MailEnable File System Paths", ("Type", "Object Name", "Access"), r"MailEnable.*", 7),
]
STORE_GROUP_IN_GUIDE = "IME_STORE_GROUP"


def _principal(name: str) -> str:
    return "[STORE_GROUP]" if name == STORE_GROUP_IN_GUIDE else name


def parse_seed(text: str) -> dict[str, list[tuple[str, ...]]]:
    """Rows per section heading, read from the guide's one-cell-per-line tables."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    starts = {}
    for heading, *_ in TABLES:
        positions = [i for i, line in enumerate(lines) if line == heading]
        assert len(positions) == 1, f"heading {heading!r} found {len(positions)} times in the seed"
        starts[heading] = positions[0]
    ordered = [*sorted(starts.values()), len(lines)]
    rows: dict[str, list[tuple[str, ...]]] = {}
    for heading, header, first_cell, _count in TABLES:
        start = starts[heading]
        section = lines[start : ordered[ordered.index(start) + 1]]
        found: list[tuple[str, ...]] = []
        width = len(header)
        for i in range(len(section) - width + 1):
            if tuple(section[i : i + width]) != header:
                continue
            j = i + width
            while j + width <= len(section) and re.fullmatch(first_cell, section[j]):
                found.append(tuple(section[j : j + width]))
                j += width
        rows[heading] = found
    return rows


@pytest.fixture(scope="module")
def seed_rows():
    return carried_rows()


def carried_rows() -> dict[str, list[tuple[str, ...]]]:
    tables = json.loads(GUIDE_TABLES.read_text(encoding="utf-8"))["tables"]
    return {heading: [tuple(row) for row in table["rows"]] for heading, table in tables.items()}


def test_the_carried_tables_are_the_shared_guides() -> None:
    if not SHARED_SEED.is_file():
        pytest.skip("shared/ is not beside the repository: the carried tables (tests/data) are checked alone")
    assert parse_seed(SHARED_SEED.read_text(encoding="utf-8")) == carried_rows(), (
        "tests/data/guide_tables.json differs from the tables of shared/seed/mailenable-lockdown.txt"
    )


def test_the_carried_tables_have_each_tables_header() -> None:
    tables = json.loads(GUIDE_TABLES.read_text(encoding="utf-8"))["tables"]
    assert {heading: tuple(table["header"]) for heading, table in tables.items()} == {t[0]: t[1] for t in TABLES}


@pytest.fixture(scope="module")
def profile():
    return load_builtin_profile()


@pytest.mark.parametrize(("heading", "count"), [(t[0], t[3]) for t in TABLES])
def test_seed_table_has_the_expected_number_of_rows(seed_rows, heading, count):
    assert len(seed_rows[heading]) == count


def test_seed_has_102_rows_in_all(seed_rows):
    assert sum(len(rows) for rows in seed_rows.values()) == 102


def _matching_rules(profile, heading, row):
    return [r for r in profile.rules if r.section == heading and r.seed_row == " | ".join(row)]


def test_every_seed_row_is_quoted_by_a_rule_of_its_section(seed_rows, profile):
    missing = [(h, row) for h, rows in seed_rows.items() for row in rows if not _matching_rules(profile, h, row)]
    assert missing == []


def test_no_rule_quotes_a_row_the_seed_does_not_have(seed_rows, profile):
    quoted = {(h, " | ".join(row)) for h, rows in seed_rows.items() for row in rows}
    invented = [r.id for r in profile.rules if r.seed_row is not None and (r.section, r.seed_row) not in quoted]
    assert invented == []


def _check_row(rule, heading: str, row: tuple[str, ...]) -> None:
    if heading == "Registry Permissions":
        path, account, acc = row
        assert isinstance(rule, RegistryAclRule)
        assert rule.target == "HKLM\\" + re.sub(r"\\\.+$", "", path.removeprefix("HKLM::"))
        assert (rule.principal, rule.access) == (account, {"READ": AccessName.READ, "FULL": AccessName.FULL}[acc])
    elif heading == "File System Permissions (Access Granted)":
        path, account, acc = row
        assert isinstance(rule, FileAclRule)
        assert rule.target.lower() == path.lower()
        wanted = {"READ": AccessName.READ, "READ/WRITE": AccessName.READ_WRITE}[acc]
        assert (rule.principal, rule.access) == (account, wanted)
    elif heading == "File System Permissions (Access Denied)":
        path, account, acc = row
        assert isinstance(rule, FileDenyRule)
        assert acc == "DENIED"
        assert (rule.target.lower(), rule.principal) == (path.lower(), account)
    elif heading == "Windows Accounts created":
        kind, name, acc = row
        if kind == "USER":
            assert isinstance(rule, LocalUserRule)
            assert (rule.name, acc) == (name, "CREATED")
        elif kind == "GROUP":
            assert isinstance(rule, LocalGroupRule)
            assert (rule.name, acc) == (_principal(name), "CREATED")
        else:
            assert isinstance(rule, GroupMemberRule)
            member = re.fullmatch(r"ADDED\[(\w+)\]", acc)
            assert member is not None
            assert (rule.group, rule.member) == (_principal(name), member.group(1))
    elif heading == "Windows Rights Assignment":
        right, account, acc = row
        assert isinstance(rule, UserRightRule)
        assert (rule.right, rule.principal, acc) == (right, account, "GRANTED")
    elif heading == "Database Changes":
        kind, account, acc = row
        assert isinstance(rule, SqlGrantRule)
        assert rule.principal == account
        if kind == "USER":
            assert rule.kind is SqlGrantKind.LOGIN
        else:
            grant = re.fullmatch(r"([A-Z,]+) to (\w+) DB", acc)
            assert grant is not None
            assert rule.kind is SqlGrantKind.PERMISSIONS
            assert (sorted(rule.permissions), rule.database) == (sorted(grant.group(1).split(",")), grant.group(2))
    elif heading == "Service Identity Changes":
        display, account = row
        assert isinstance(rule, ServiceIdentityRule)
        assert (rule.display_name, rule.account) == (display, account)
    else:
        folder, account, acc = row
        assert isinstance(rule, PathAclRule)
        placeholder = {
            "MailEnable Store": "[STORE]",
            "MailEnable\\QUEUES": "[QUEUES]",
            "MailEnable\\LOGGING": "[LOGGING]",
            "MailEnable\\CONFIG": "[CONFIG]",
            "MailEnable\\Bad Mail": "[BADMAIL]",
            "MailEnable\\Backup": "[BACKUP]",
            "MailEnable\\Bin": "[BIN]",
        }[folder]
        wanted = {"FULL CONTROL": AccessName.FULL, "FULL": AccessName.FULL, "READ+EXECUTE": AccessName.READ_EXECUTE}[
            acc
        ]
        assert (rule.target, rule.principal, rule.access) == (placeholder, _principal(account), wanted)


def test_each_rows_target_principal_and_access_match_its_rule(seed_rows, profile):
    for heading, rows in seed_rows.items():
        for row in rows:
            rules = _matching_rules(profile, heading, row)
            assert len(rules) == 1, (heading, row, [r.id for r in rules])
            _check_row(rules[0], heading, row)
