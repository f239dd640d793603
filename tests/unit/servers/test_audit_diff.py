"""The audit log's changes as "field: old → new" rows, never a Python repr, never a page-wide PEM."""

from __future__ import annotations

import base64
import hashlib

from servers.audit_diff import FIRST_LINE, LONG, ChangeRow, Shown, change_rows, pem_summary, shown

DER = bytes(range(256)) * 3
PEM = (
    "-----BEGIN CERTIFICATE-----\n"
    + "\n".join(base64.b64encode(DER).decode()[i : i + 64] for i in range(0, 1024, 64))
    + "\n-----END CERTIFICATE-----\n"
)


def test_a_pair_reads_old_arrow_new_with_none_as_a_dash() -> None:
    [row] = change_rows({"address": [None, "127.77.0.20"]})
    assert row == ChangeRow("address", new=Shown("127.77.0.20"), old=Shown("—"))
    assert row.text == "address: — → 127.77.0.20"
    assert "None" not in row.text
    assert "[" not in row.text


def test_an_empty_string_is_said_not_left_blank() -> None:
    [row] = change_rows({"admin_url": [None, ""]})
    assert row.text == "admin_url: — → (empty)"


def test_booleans_lists_and_dicts_read_as_words() -> None:
    rows = {r.field: r for r in change_rows({
        "enabled": [False, True],
        "tags": [[], ["dmz", "edge"]],
        "ports": [{"smtp": 25, "imap": None}, {"smtp": 587, "imap": 143}],
    })}  # fmt: skip
    assert rows["enabled"].text == "enabled: no → yes"
    assert rows["tags"].text == "tags: none → dmz, edge"
    assert rows["ports"].text == "ports: smtp: 25; imap: — → smtp: 587; imap: 143"


def test_a_recorded_value_is_not_mistaken_for_a_pair() -> None:
    rows = {r.field: r for r in change_rows({"rows": 12, "period": ["2026-11-01", "2026-12-01"], "job": 7})}
    assert rows["rows"].text == "rows: 12"
    assert rows["rows"].old is None
    assert rows["period"].text == "period: 2026-11-01, 2026-12-01"
    assert rows["job"].text == "job: 7"


def test_a_pem_is_shortened_to_its_kind_and_fingerprint_with_the_whole_text_kept() -> None:
    [row] = change_rows({"tls_pinned_certificate": [None, PEM]})
    assert row.old == Shown("—")
    fingerprint = hashlib.sha256(DER).hexdigest().upper()[:16]
    assert row.new.text == "certificate, SHA-256 " + ":".join(fingerprint[i : i + 2] for i in range(0, 16, 2)) + "…"
    assert row.new.full == PEM
    assert row.new.shortened
    assert "MIIB" not in row.new.text
    assert len(row.new.text) < LONG


def test_two_pem_blocks_say_how_many_and_a_broken_one_still_gets_a_fingerprint() -> None:
    summary = pem_summary(PEM + PEM)
    assert summary is not None
    assert summary.endswith("(+1 more)")
    broken = pem_summary("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----")
    assert broken is not None
    assert broken.startswith("certificate, SHA-256 ")
    assert pem_summary("just text") is None


def test_long_or_multi_line_values_show_their_first_line_and_keep_the_rest() -> None:
    long = "x" * (LONG + 1)
    value = shown(long)
    assert value.text == "x" * FIRST_LINE + " …"
    assert value.full == long
    lines = shown("first line\nsecond line")
    assert lines.text == "first line …"
    assert lines.full == "first line\nsecond line"
    assert not shown("y" * LONG).shortened


def test_hidden_fields_show_only_the_marker_whatever_was_stored() -> None:
    [row] = change_rows({"secret": ["old-pass", "new-pass"]}, hidden=frozenset({"secret"}))
    assert row.text == "secret: [secret changed]"


def test_a_non_mapping_changes_value_is_still_readable() -> None:
    [row] = change_rows(["a", None])  # type: ignore[arg-type]
    assert row.text == "changes: a, —"
