"""MailEnable advisories: version ranges, edition mapping, unreadable facts, and the file's validation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lockdown.rules.advisories import (
    MAX_ADVISORY_BYTES,
    Advisory,
    AdvisoryError,
    advisories_affecting,
    advisory_diff,
    advisory_file_from_data,
    load_advisory_document,
    load_builtin_advisories,
    minimum_fixed_version,
    parse_version,
)

ALL_EDITIONS = ["Standard", "Professional", "Enterprise", "Premium"]


def advisory(id: str = "adv-one", *, editions: list[str] | None = None, affected: list[dict[str, str]], **extra: Any):
    data = {
        "id": id,
        "title": "An advisory",
        "summary": "What it is.",
        "cves": ["CVE-2022-42135"],
        "severity": "high",
        "editions": editions or ALL_EDITIONS,
        "affected": affected,
        "sources": ["https://example.org/advisory"],
        **extra,
    }
    return Advisory.model_validate(data)


def ids(version: str | None, edition: str | None, advisories: list[Advisory]) -> list[str]:
    return [a.id for a in advisories_affecting(version, edition, advisories).affected]


SHIPPED = load_builtin_advisories().advisories


# --- parse_version ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [("10.42", (10, 42)), ("1.5018", (1, 5018)), ("9.84", (9, 84)), (" 10.0 ", (10, 0)), ("10", (10,))],
)
def test_parse_version_reads_integer_parts(text, expected):
    assert parse_version(text) == expected


@pytest.mark.parametrize("junk", ["", "v10.42", "10.42-", "10..42", "ten", "10.42.1.2.3", "-1.0", "10,42", "1e3"])
def test_parse_version_refuses_junk(junk):
    with pytest.raises(ValueError, match="not a MailEnable version"):
        parse_version(junk)


def test_versions_compare_as_integers_not_as_text():
    # "10.5" < "10.42" as integers (5 < 42); as text or as decimals it would be the other way round.
    only = [advisory(affected=[{"introduced": "10.0", "fixed": "10.42"}])]
    assert ids("10.5", "Standard", only) == ["adv-one"]
    assert ids("10.100", "Standard", only) == []


# --- ranges -----------------------------------------------------------------------------------
def test_fixed_range_is_half_open():
    only = [advisory(affected=[{"introduced": "10.0", "fixed": "10.42"}])]
    assert ids("10.41", "Standard", only) == ["adv-one"]
    assert ids("10.0", "Standard", only) == ["adv-one"]
    assert ids("10", "Standard", only) == ["adv-one"]  # 10 is 10.0
    assert ids("10.42", "Standard", only) == []
    assert ids("9.99", "Standard", only) == []  # below introduced


def test_last_affected_range_includes_its_last_build():
    only = [advisory(affected=[{"introduced": "9.0", "last_affected": "9.84"}])]
    assert ids("9.84", "Standard", only) == ["adv-one"]
    assert ids("9.0", "Standard", only) == ["adv-one"]
    assert ids("9.85", "Standard", only) == []
    assert ids("8.99", "Standard", only) == []


def test_range_without_introduced_covers_every_earlier_version():
    only = [advisory(affected=[{"fixed": "8.60"}])]
    assert ids("1.5018", "Standard", only) == ["adv-one"]
    assert ids("8.59", "Standard", only) == ["adv-one"]
    assert ids("8.60", "Standard", only) == []


def test_several_major_lines_of_cve_2022_42135():
    assert ids("10.41", "Standard", SHIPPED) == ["cve-2022-42135"]
    assert ids("10.42", "Standard", SHIPPED) == []
    assert "cve-2022-42135" in ids("9.84", "Standard", SHIPPED)
    assert "cve-2022-42135" not in ids("9.85", "Standard", SHIPPED)  # the 9.x fix is not published
    assert "cve-2022-42135" in ids("8.64", "Standard", SHIPPED)
    assert "cve-2022-42135" not in ids("8.65", "Standard", SHIPPED)


def test_before_v10_fails_every_9x_build_but_not_10_0():
    assert "cve-2025-44148" in ids("9.99", "Professional", SHIPPED)
    assert "cve-2025-44148" not in ids("10.0", "Professional", SHIPPED)


def test_before_8_60():
    assert "cve-2015-9278" in ids("8.59", "Standard", SHIPPED)
    assert "cve-2015-9278" not in ids("8.60", "Standard", SHIPPED)


def test_premium_10_23_only_as_the_source_says():
    assert ids("10.23", "Enterprise Premium", SHIPPED) == ["cve-2026-44400", "cve-2022-42135", "cve-2019-12923"]
    assert "cve-2019-12923" not in ids("10.22", "Premium", SHIPPED)
    assert "cve-2019-12923" not in ids("10.24", "Premium", SHIPPED)


def test_premium_up_to_10_55_with_unknown_fix():
    assert ids("10.55", "Premium", SHIPPED) == ["cve-2026-44400"]
    assert ids("10.56", "Premium", SHIPPED) == []


def test_cve_2012_0389_lines_and_editions():
    assert "cve-2012-0389" in ids("4.26", "Professional", SHIPPED)
    assert "cve-2012-0389" in ids("1.5018", "Professional", SHIPPED)
    assert "cve-2012-0389" in ids("5.52", "Enterprise", SHIPPED)
    assert "cve-2012-0389" not in ids("5.53", "Enterprise", SHIPPED)
    assert "cve-2012-0389" in ids("6.02", "Professional", SHIPPED)
    assert "cve-2012-0389" not in ids("6.03", "Professional", SHIPPED)
    assert "cve-2012-0389" not in ids("4.27", "Professional", SHIPPED)  # between the lines
    assert "cve-2012-0389" not in ids("5.52", "Standard", SHIPPED)  # Standard is not named


# --- editions ---------------------------------------------------------------------------------
def test_an_enterprise_host_is_possibly_premium_and_the_verdict_says_so():
    premium = advisory("premium-only", editions=["Premium"], affected=[{"last_affected": "10.55"}])
    both = advisory("ent-and-premium", editions=["Enterprise", "Premium"], affected=[{"last_affected": "10.55"}])
    verdict = advisories_affecting("10.50", "Enterprise", [premium, both])
    assert [a.id for a in verdict.affected] == ["premium-only", "ent-and-premium"]
    assert verdict.premium_assumed == ("premium-only",)


def test_premium_only_advisories_do_not_reach_standard_or_professional_hosts():
    premium = advisory("premium-only", editions=["Premium"], affected=[{"last_affected": "10.55"}])
    for edition in ("Standard", "Professional"):
        verdict = advisories_affecting("10.50", edition, [premium])
        assert verdict.affected == ()
        assert verdict.premium_assumed == ()


def test_a_declared_premium_host_is_affected_without_assumption():
    premium = advisory("premium-only", editions=["Premium"], affected=[{"last_affected": "10.55"}])
    verdict = advisories_affecting("10.50", "enterprise  premium", [premium])
    assert [a.id for a in verdict.affected] == ["premium-only"]
    assert verdict.premium_assumed == ()


def test_an_enterprise_only_advisory_does_not_reach_a_professional_host():
    ent = advisory("ent", editions=["Enterprise"], affected=[{"fixed": "10.42"}])
    assert ids("10.0", "Professional", [ent]) == []
    assert ids("10.0", "Enterprise", [ent]) == ["ent"]


@pytest.mark.parametrize("edition", [None, "", "Gold"])
def test_unknown_edition_is_reported_and_only_all_edition_advisories_count(edition):
    everyone = advisory("everyone", affected=[{"fixed": "10.42"}])
    pro = advisory("pro", editions=["Professional"], affected=[{"fixed": "10.42"}])
    verdict = advisories_affecting("10.0", edition, [everyone, pro])
    assert [a.id for a in verdict.affected] == ["everyone"]
    assert verdict.unknown is not None
    assert "edition" in verdict.unknown


@pytest.mark.parametrize("version", [None, "", "  ", "10.42 beta", "<script>"])
def test_unreadable_version_gives_no_verdict_and_a_reason(version):
    verdict = advisories_affecting(version, "Standard", SHIPPED)
    assert verdict.affected == ()
    assert verdict.unknown is not None
    assert "version" in verdict.unknown


def test_known_version_and_edition_leave_unknown_empty():
    assert advisories_affecting("10.41", "Standard", SHIPPED).unknown is None


def test_verdict_lists_the_cves_of_what_affects():
    assert advisories_affecting("10.41", "Standard", SHIPPED).cves == ("CVE-2022-42135", "CVE-2022-42136")


# --- minimum fixed ----------------------------------------------------------------------------
def test_minimum_fixed_per_edition_of_the_shipped_file():
    assert advisories_affecting("9.84", "Standard", SHIPPED).minimum_fixed == "10.42"
    assert advisories_affecting("5.0", "Professional", SHIPPED).minimum_fixed == "10.42"
    # Premium's newest range ends at 10.55 with no published fix; an Enterprise host may be Premium.
    assert advisories_affecting("10.55", "Premium", SHIPPED).minimum_fixed is None
    assert advisories_affecting("10.55", "Enterprise", SHIPPED).minimum_fixed is None


def test_minimum_fixed_takes_the_highest_bound_and_a_later_fix_beats_an_earlier_last_affected():
    a = advisory("adv-a", affected=[{"introduced": "9.0", "last_affected": "9.84"}, {"fixed": "8.60"}])
    b = advisory("adv-b", affected=[{"introduced": "10.0", "fixed": "10.42"}])
    assert minimum_fixed_version([a, b]) == "10.42"
    assert minimum_fixed_version([a]) is None
    assert minimum_fixed_version([]) is None


def test_minimum_fixed_on_a_tie_the_still_affected_build_wins():
    a = advisory("adv-a", affected=[{"fixed": "10.55"}])
    b = advisory("adv-b", affected=[{"last_affected": "10.55"}])
    assert minimum_fixed_version([a, b]) is None
    assert minimum_fixed_version([b, a]) is None


# --- the file ---------------------------------------------------------------------------------
def document(**overrides: Any) -> dict[str, Any]:
    base = {
        "id": "adv-one",
        "title": "An advisory",
        "summary": "What it is.",
        "cves": ["CVE-2022-42135"],
        "severity": "high",
        "editions": ["Standard"],
        "affected": [{"fixed": "10.42"}],
        "sources": ["https://example.org/advisory"],
    }
    return {"schema_version": 1, "updated": "2026-12-01", "advisories": [{**base, **overrides}]}


def test_a_json_document_loads():
    loaded = load_advisory_document(json.dumps(document()))
    assert loaded.advisories[0].id == "adv-one"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"cves": ["CVE-22-1"]}, "field 'cves': not a CVE id"),
        ({"cves": []}, "field 'cves'"),
        ({"cves": ["CVE-2022-42135", "CVE-2022-42135"]}, "listed twice"),
        ({"sources": ["http://example.org/advisory"]}, "field 'sources': a source is an https:// URL"),
        ({"sources": ["https://example.org/a b"]}, "https:// URL"),
        ({"sources": []}, "field 'sources'"),
        ({"severity": "urgent"}, "field 'severity'"),
        ({"editions": ["Gold"]}, "field 'editions.0'"),
        ({"affected": [{"fixed": "10.42", "last_affected": "10.41"}]}, "exactly one of"),
        ({"affected": [{"introduced": "10.0"}]}, "exactly one of"),
        ({"affected": [{"introduced": "10.42", "fixed": "10.42"}]}, "not below"),
        ({"affected": [{"introduced": "10.5", "last_affected": "10.4"}]}, "above"),
        ({"affected": [{"fixed": 10.4}]}, "quoted text"),
        ({"affected": [{"fixed": "10.42x"}]}, "not a MailEnable version"),
        ({"id": "Bad Id"}, "field 'id'"),
        ({"colour": "red"}, "field 'colour'"),
    ],
)
def test_bad_advisories_are_refused_naming_the_advisory_and_field(overrides, message):
    with pytest.raises(AdvisoryError, match=message) as caught:
        advisory_file_from_data(document(**overrides))
    assert str(caught.value).startswith(("advisory 'adv-one'", "advisory 'Bad Id'"))


def test_duplicate_ids_are_refused():
    data = document()
    data["advisories"] = data["advisories"] * 2
    with pytest.raises(AdvisoryError, match="advisory 'adv-one', field 'id': duplicate advisory id"):
        advisory_file_from_data(data)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema_version": 2}, "schema_version"),
        ({"updated": "yesterday"}, "updated"),
        ({"advisories": []}, "advisories"),
    ],
)
def test_bad_file_fields_are_refused(change, message):
    with pytest.raises(AdvisoryError, match=message):
        advisory_file_from_data({**document(), **change})


def test_oversize_file_is_refused_before_parsing():
    text = "# " + "x" * MAX_ADVISORY_BYTES + "\n" + json.dumps(document())
    with pytest.raises(AdvisoryError, match="larger than"):
        load_advisory_document(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: &x [1]\nb: *x\n", "aliases"),
        ("[" * 100 + "]" * 100, "nested more than"),
        ("{not json", "not valid JSON"),
        ("a: [unclosed", "not valid YAML"),
        ("- a list\n", "a mapping"),
        ("ok: 1\x00", "NUL"),
    ],
)
def test_unsafe_or_malformed_text_is_refused(text, message):
    with pytest.raises(AdvisoryError, match=message):
        load_advisory_document(text)


def test_the_shipped_file_covers_the_referenced_cves_with_sources_and_notes():
    cves = {cve for a in SHIPPED for cve in a.cves}
    assert {
        "CVE-2026-44400",
        "CVE-2025-44148",
        "CVE-2022-42135",
        "CVE-2022-42136",
        "CVE-2019-12923",
        "CVE-2019-12924",
        "CVE-2019-12925",
        "CVE-2019-12926",
        "CVE-2019-12927",
        "CVE-2015-9278",
        "CVE-2015-9279",
        "CVE-2012-0389",
    } <= cves
    for a in SHIPPED:
        if any(r.last_affected for r in a.affected):
            assert a.note, f"{a.id}: a range without a published fix needs a note saying so"


def test_diff_names_added_removed_and_changed_ids():
    one = advisory("one", affected=[{"fixed": "10.42"}])
    two = advisory("two", affected=[{"fixed": "10.42"}])
    one_changed = advisory("one", affected=[{"fixed": "10.43"}])
    three = advisory("three", affected=[{"fixed": "10.42"}])
    diff = advisory_diff([one, two], [one_changed, three])
    assert (diff.added, diff.removed, diff.changed) == (("three",), ("two",), ("one",))
    assert advisory_diff([one], [one]).empty
