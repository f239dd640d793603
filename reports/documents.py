"""Rendering a report's data as PDF (fpdf2, pure Python), CSV and evidence JSON.

Everything a host returned (observed text, targets, reasons) is untrusted: it is stripped of
control and bidi characters and length-capped before it reaches a PDF or a CSV, and CSV cells
that a spreadsheet would run as a formula (`= + - @`, tab, CR) are neutralised with a quote.
fpdf2 escapes PDF string syntax itself; we never use its markup modes.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable
from datetime import datetime, tzinfo
from typing import Any

from django.utils import timezone
from fpdf import FPDF
from fpdf.enums import XPos, YPos

from lockdown.rules.controls import ControlRef
from lockdown.rules.wording import in_words, is_registry_rule
from reports.charts import trend_description
from reports.selectors import ReportData, ReportServer
from servers.assessment import Coverage

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
TEXT_LIMIT = 400
EVIDENCE_FORMAT = "fleet-lockdown-evidence/1"


def clean_text(value: object, limit: int = TEXT_LIMIT) -> str:
    """One line of plain text: no control or bidi-override characters, at most `limit` characters."""
    text = "" if value is None else str(value)
    text = _UNSAFE.sub(" ", text[: limit * 4]).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def pdf_text(value: object, limit: int = TEXT_LIMIT) -> str:
    """Text for the PDF's core fonts (Latin-1): anything else becomes '?'."""
    return clean_text(value, limit).encode("latin-1", "replace").decode("latin-1")


def csv_cell(value: object, limit: int = 2000) -> str:
    raw = "" if value is None else str(value)
    text = clean_text(raw, limit)
    if raw.startswith(FORMULA_START) or text.startswith(FORMULA_START):
        return "'" + text
    return text


def _when(value: datetime | None, tz: tzinfo) -> str:
    return timezone.localtime(value, tz).strftime("%Y-%m-%d %H:%M %Z") if value else "-"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} %"


def _average(coverage: Coverage) -> str:
    return "not measured" if coverage.average_pct is None else _pct(coverage.average_pct)


# --- CSV ------------------------------------------------------------------------------------
CSV_COLUMNS = [
    "customer", "server", "address", "server_status", "compliance_pct", "assessment", "verified_at", "profile_version",
    "section", "rule_id", "target", "status", "underlying_status", "risk", "expected", "observed", "reason",
    "waiver_justification",
]  # fmt: skip


def render_csv(data: ReportData) -> bytes:
    """One header row, then one row per server × rule × target (a server without outcomes: one row).

    Spreadsheet-clean: no comment or summary lines, every row has every column; the report's figures
    (coverage, changes, waivers) are in the PDF and the evidence JSON, its signature only in the .sig
    file. UTF-8, CRLF line ends."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    tz = data.tz
    writer.writerow(CSV_COLUMNS)
    for item in data.servers:
        server = item.server
        common = [
            csv_cell(server.customer.name),
            csv_cell(server.name),
            csv_cell(server.address),
            csv_cell(server.get_status_display()),
            "" if item.figure is None else f"{item.figure:.1f}",
            csv_cell(item.assessment_text),
            _when(item.verified_at, tz) if item.verified_at else "",
            csv_cell(item.profile_label),
        ]
        if not item.outcomes:
            writer.writerow([*common, "", "", "", "no outcome"] + [""] * (len(CSV_COLUMNS) - len(common) - 4))
        for o in item.outcomes:
            writer.writerow(
                [
                    *common,
                    csv_cell(o.get("section")),
                    csv_cell(o.get("rule_id")),
                    csv_cell(o.get("target")),
                    csv_cell(o.get("status")),
                    csv_cell(o.get("underlying_status") or ""),
                    csv_cell(o.get("risk")),
                    csv_cell(o.get("expected_text")),
                    csv_cell(o.get("observed_text")),
                    csv_cell(o.get("reason")),
                    csv_cell(o.get("waiver_justification") or ""),
                ]
            )
    return out.getvalue().encode("utf-8")


def _header_lines(data: ReportData) -> list[str]:
    tz = data.tz
    return [
        f"Fleet Lockdown compliance report: {data.scope_label}",
        f"Period: {_when(data.period_start, tz)} to {_when(data.period_end, tz)} (times in {data.tz_name})",
        f"Generated {_when(data.generated_at, tz)} by {data.generated_by}",
        f"Profile versions: {', '.join(data.profile_versions) or 'none (no server verified)'}",
        f"Servers: {len(data.servers)}; average compliance {data.coverage.text}; "
        + "; ".join(f"{label.lower()} {n}" for label, n in data.status_counts),
        f"Changes made on the hosts during the period: {data.changes_made} "
        f"({data.changes_rolled_back} rolled back since)",
        f"Rule outcomes that changed during the period (a first verify counts every outcome): {data.change_count}",
        f"Signed with the installation's Ed25519 key {data.key_id}: check it on the Verify a report page",
    ]


# --- Evidence JSON --------------------------------------------------------------------------
def render_evidence(data: ReportData) -> bytes:
    """Everything the report states, as data: outcomes with their structured expected/observed."""
    doc: dict[str, Any] = {
        "format": EVIDENCE_FORMAT,
        "scope": data.scope_label,
        "period_start": data.period_start.isoformat(),
        "period_end": data.period_end.isoformat(),
        "generated_at": data.generated_at.isoformat(),
        "generated_by": data.generated_by,
        "profile_versions": data.profile_versions,
        "summary": {
            "coverage": data.coverage.text,
            "servers": len(data.servers),
            "assessed": data.coverage.assessed,
            "not_assessed": data.coverage.not_assessed,
            "stale": data.coverage.stale,
            "average_pct": data.average_pct,
            "status_counts": dict(data.status_counts),
            "changes_made": data.changes_made,
            "changes_rolled_back": data.changes_rolled_back,
            "outcome_changes": data.change_count,
            "top_failing_rules": [
                {"rule_id": r, "title": t, "failing_servers": n} for r, t, n in data.top_failing_rules()
            ],
            "open_waivers": len(data.open_waivers),
            "open_exceptions": len(data.open_exceptions),
        },
        "controls": [
            {
                **row.ref.model_dump(
                    mode="json", include={"framework", "id", "title", "benchmark", "version", "source"}
                ),
                "status": row.status.value,
                "compliant_pct": row.percent,
                "compliant": row.compliant,
                "failing": row.failing,
                "waived": row.waived,
                "in_conflict": row.in_conflict,
                "rules": row.rule_list,
            }
            for framework in (data.controls.frameworks if data.controls else [])
            for row in framework.controls
        ],
        "waivers": [
            {**w, "expires_at": w["expires_at"].isoformat(), "approved_at": _iso(w["approved_at"])}
            for w in data.waivers
        ],
        # Recorded permissions to apply rules that conflict with the controls above (the integrated-authentication
        # rights): who proposed and approved each, until when, and the conflicts recorded when it was proposed.
        "exceptions": [
            {
                **e,
                "expires_at": e["expires_at"].isoformat(),
                "approved_at": _iso(e["approved_at"]),
                "proposed_at": _iso(e["proposed_at"]),
                "revoked_at": _iso(e["revoked_at"]),
            }
            for e in data.exceptions
        ],
        "servers": [
            {
                "customer": item.server.customer.name,
                "name": item.server.name,
                "address": item.server.address,
                "status": item.server.status,
                "compliance_pct": item.server.compliance_pct,
                "counts_in_average": item.assessment.assessed,
                "assessment": item.assessment_text,
                "verified_at": _iso(item.verified_at),
                "profile_version": item.profile_label,
                "facts": item.server.facts,
                "outcomes": item.outcomes,
            }
            for item in data.servers
        ],
        "changes": [
            {
                "server": c.server_name,
                "rule_id": c.rule_id,
                "target": c.target,
                "status": c.status,
                "action": c.action,
                "observed_text": c.observed_text,
                "at": c.created_at.isoformat(),
            }
            for c in data.changes
        ],
    }
    return json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=True).encode("ascii")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# --- PDF ------------------------------------------------------------------------------------
STATUS_WORDS = {
    "compliant": "Compliant",
    "drift": "DRIFT",
    "error": "ERROR",
    "not_applicable": "Not applicable",
    "needs_input": "Needs input",
    "waived": "Waived",
}


class _ReportPDF(FPDF):
    footer_text = ""

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("Helvetica", size=7)
        self.set_text_color(90, 90, 90)
        self.cell(0, 5, f"{self.footer_text} - page {self.page_no()}/{{nb}}", align="C")


Progress = Callable[[int], None]
# The executive summary is one page whatever the fleet: longer lists end with "and N more".
SUMMARY_CUSTOMERS = 8
SUMMARY_RULES = 10
SUMMARY_WAIVERS = 5
SUMMARY_EXCEPTIONS = 3
SUMMARY_CAUSES = 4
FAILING_STATUSES = frozenset({"drift", "error"})  # rows whose reason the PDF prints beside what was observed


def render_pdf(data: ReportData, progress: Progress | None = None) -> bytes:
    """Page 1: the executive summary; then the waivers, the servers, one section per server, the changes.

    `progress(n)` is called after the n-th server's section."""
    pdf = _ReportPDF(orientation="landscape", format="A4")
    pdf.footer_text = pdf_text(f"Fleet Lockdown report - {data.scope_label} - signed, key {data.key_id}", 150)
    pdf.set_title(pdf_text(f"Compliance report: {data.scope_label}", 200))
    pdf.set_author("Fleet Lockdown")
    pdf.set_subject(pdf_text(f"Period {data.period_start.isoformat()} to {data.period_end.isoformat()}"))
    pdf.set_keywords(f"fleet-lockdown-report key:{data.key_id}")
    pdf.set_creator("Fleet Lockdown (fpdf2)")
    pdf.set_creation_date(data.generated_at)
    _summary_page(pdf, data)
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    _heading(pdf, "Details")
    pdf.set_font("Helvetica", size=9)
    for line in _header_lines(data)[1:]:
        pdf.multi_cell(0, 5, pdf_text(line, 600), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)
    _heading(pdf, "Waivers in force during the period")
    if data.waivers:
        rows = [
            [
                w["rule_id"], w["subject"], w["status"], _when(w["expires_at"], data.tz),
                w["approved_by"] or "-", w["justification"],
            ]
            for w in data.waivers
        ]  # fmt: skip
        _table(pdf, ["Rule", "For", "Status", "Expires", "Approved by", "Justification"], rows, (50, 40, 18, 30, 25, 0))
    else:
        pdf.set_font("Helvetica", size=9)
        pdf.cell(0, 6, "No waiver applied during the period.", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    _exceptions_section(pdf, data)
    _controls_section(pdf, data)
    _heading(pdf, "Servers")
    _table(
        pdf,
        ["Customer", "Server", "Status", "Compliance", "Verified", "Profile version"],
        [
            [
                i.server.customer.name,
                i.server.name,
                i.server.get_status_display(),
                _pct(i.figure) if i.figure is not None else i.assessment.label,
                _when(i.verified_at, data.tz),
                i.profile_label or "-",
            ]
            for i in data.servers
        ],
        (50, 50, 30, 25, 40, 0),
    )
    for done, item in enumerate(data.servers, start=1):
        _server_section(pdf, data, item)
        if progress is not None:
            progress(done)
    if data.changes:
        pdf.add_page()
        _heading(pdf, "Rule outcomes that changed during the period")
        _table(
            pdf,
            ["When", "Server", "Rule", "Target", "Status"],
            [[_when(c.created_at, data.tz), c.server_name, c.rule_id, c.target, c.status] for c in data.changes],
            (38, 40, 70, 90, 0),
        )
    return bytes(pdf.output())


def _exceptions_section(pdf: FPDF, data: ReportData) -> None:
    """The recorded exceptions: permission to apply the guide's integrated-authentication rights, which conflict
    with CIS/STIG controls; without one, a server declared to use integrated authentication gets none of them."""
    _heading(pdf, "Exceptions in force during the period (integrated-authentication rights)")
    pdf.set_font("Helvetica", size=9)
    if not data.exceptions:
        pdf.multi_cell(
            0,
            5,
            "No exception applied during the period: no server was permitted the guide's integrated-authentication "
            "rights (a server declared to use integrated authentication gets none of them without one).",
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )
        return
    rows = [
        [
            e["subject"], e["status"], e["justification"], e["proposed_by"] or "-", e["approved_by"] or "-",
            _when(e["expires_at"], data.tz), e["conflicts_text"],
        ]
        for e in data.exceptions
    ]  # fmt: skip
    _table(
        pdf,
        ["For", "Status", "Justification", "Proposed by", "Approved by", "Expires", "Conflicts with"],
        rows,
        (38, 18, 60, 25, 25, 30, 0),
    )


def _control_name(ref: ControlRef) -> str:
    benchmark = " ".join(part for part in (ref.benchmark, ref.version) if part)
    return f"{ref.id} ({benchmark})" if benchmark else ref.id


def _controls_section(pdf: FPDF, data: ReportData) -> None:
    """Compliance by framework and control, as auditors read it; exceptions first named in words."""
    _heading(pdf, "Compliance by framework")
    rollup = data.controls
    if rollup is None or not rollup.frameworks:
        pdf.set_font("Helvetica", size=9)
        pdf.cell(0, 6, "No verified server has a rule mapped to a control.", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        return
    pdf.set_font("Helvetica", size=9)
    pdf.multi_cell(
        0,
        5,
        "Met: every counted result of the control's rules is compliant (compliant against compliant, drift and "
        "error). Exception: a rule that conflicts with the control is in force on a server (the guide's "
        "integrated-authentication rights), which must be recorded with the security officer.",
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )
    for framework in rollup.frameworks:
        _subheading(pdf, pdf.l_margin, f"{framework.label}: {framework.met} of {framework.assessed} assessed met")
        rows = [
            [
                _control_name(row.ref),
                row.ref.title,
                row.status.label,
                _pct(row.percent),
                str(len(row.failing_servers)),
                str(len(row.conflict_servers)),
            ]
            for row in framework.controls
        ]
        _table(
            pdf,
            ["Control", "Title", "Status", "Compliant", "Not met on", "Exceptions on"],
            rows,
            (70, 110, 22, 22, 26, 0),
        )


def facts_text(item: ReportServer) -> str:
    """What discovery read ("Windows Server 2022, PowerShell 5.1, MailEnable Professional 10.44"), only
    what is known: never a row of question marks for a server that could not be read."""
    facts = item.server.facts or {}
    parts = [str(facts["os_caption"])] if facts.get("os_caption") else []
    if facts.get("powershell_version"):
        parts.append(f"PowerShell {facts['powershell_version']}")
    mailenable = " ".join(str(facts[k]) for k in ("mailenable_edition", "mailenable_version") if facts.get(k))
    if mailenable:
        parts.append(f"MailEnable {mailenable}")
    if parts:
        return ", ".join(parts) + "."
    if not item.assessment.assessed:
        return "No facts were read from this server."  # the sentence before says why ("Not assessed: ...")
    return "No facts discovered yet."


def _server_section(pdf: FPDF, data: ReportData, item: ReportServer) -> None:
    pdf.add_page()
    _heading(pdf, f"{item.server.name} ({item.server.customer.name})")
    pdf.set_font("Helvetica", size=9)
    if item.assessment.assessed:
        state = (
            f"Status {item.server.get_status_display()}, compliance {_pct(item.figure)}, "
            f"verified {_when(item.verified_at, data.tz)} against {item.profile_label or '-'}."
        )
    else:
        state = f"{item.assessment_text}." + (
            f" Last read {_when(item.verified_at, data.tz)} against {item.profile_label or '-'}."
            if item.verified_at
            else ""
        )
    pdf.multi_cell(0, 5, pdf_text(f"{state} {facts_text(item)}", 600), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if not item.outcomes:
        pdf.multi_cell(0, 6, "No outcome to report.", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        return
    rows = []
    for o in item.outcomes:
        registry = is_registry_rule(str(o.get("rule_id", "")))
        status = STATUS_WORDS.get(str(o.get("status")), str(o.get("status")))
        if o.get("waiver_justification"):
            status += f" ({o.get('waiver_justification')})"
        elif o.get("status") == "needs_input" and o.get("reason"):
            status += f": {o.get('reason')}"  # why it was not checked, e.g. no exception for these rights
        observed = in_words(o.get("observed_text"), registry=registry)
        if o.get("status") in FAILING_STATUSES:
            # Why it fails, as the server page says it: "MailEnable Standard 9.83 is affected by CVE-...".
            reason = in_words(o.get("reason"), registry=registry) if o.get("reason") else ""
            if reason.startswith(observed):
                observed = reason  # "MailEnable Standard 9.83 is affected by ...", not the version twice
            elif reason:
                observed = f"{observed}: {reason}"
            expected = o.get("expected")
            if isinstance(expected, dict) and expected.get("remedy"):
                observed += " (a check only: harden does not change it)"  # a verify-only rule
        rows.append(
            [
                o.get("rule_id"),
                o.get("target"),
                status,
                in_words(o.get("expected_text"), registry=registry),
                observed,
            ]
        )
    _table(pdf, ["Rule", "Target", "Status", "Expected", "Observed"], rows, (62, 62, 30, 60, 0))


# --- The executive summary (page 1) --------------------------------------------------------
def _fit(pdf: FPDF, text: object, width: float) -> str:
    """One line that fits `width` (mm) in the current font, with "..." when cut."""
    value = pdf_text(text, 200)
    if pdf.get_string_width(value) <= width - 2:
        return value
    while value and pdf.get_string_width(value + "...") > width - 2:
        value = value[:-1]
    return value + "..."


def _line_table(
    pdf: FPDF, x: float, headings: list[str], rows: list[list[Any]], widths: list[float], aligns: str
) -> None:
    """A table of one-line cells at `x` (cut to fit): the summary page must not grow."""
    pdf.set_x(x)
    pdf.set_font("Helvetica", "B", 8)
    pdf.set_fill_color(230, 234, 240)
    for heading, width, align in zip(headings, widths, aligns, strict=True):
        pdf.cell(width, 5, _fit(pdf, heading, width), border=1, fill=True, align="R" if align == "R" else "L")
    pdf.ln(5)
    pdf.set_font("Helvetica", size=8)
    for row in rows:
        pdf.set_x(x)
        for value, width, align in zip(row, widths, aligns, strict=True):
            pdf.cell(width, 5, _fit(pdf, value, width), border=1, align="R" if align == "R" else "L")
        pdf.ln(5)


def _subheading(pdf: FPDF, x: float, text: str) -> None:
    pdf.set_x(x)
    pdf.set_font("Helvetica", "B", 11)
    pdf.cell(0, 7, pdf_text(text, 120), new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _summary_page(pdf: FPDF, data: ReportData) -> None:
    pdf.set_auto_page_break(auto=False)
    pdf.add_page()
    left, gap = pdf.l_margin, 8.0
    half = (pdf.w - pdf.l_margin - pdf.r_margin - gap) / 2
    right = left + half + gap
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 8, pdf_text(f"Compliance report: {data.scope_label}", 120), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("Helvetica", size=9)
    pdf.cell(
        0,
        5,
        pdf_text(
            f"Executive summary - period {_when(data.period_start, data.tz)} to {_when(data.period_end, data.tz)}; "
            f"generated {_when(data.generated_at, data.tz)} by {data.generated_by}",
            300,
        ),
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )
    pdf.ln(2)
    top = pdf.get_y()
    # Left: the figure with its coverage, the causes, compliance by customer.
    coverage = data.coverage
    pdf.set_font("Helvetica", "B", 26)
    pdf.cell(half, 12, _average(coverage))
    pdf.ln(12)
    pdf.set_font("Helvetica", size=10)
    pdf.multi_cell(half, 5, pdf_text(f"Average compliance {coverage.text}", 300), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    counts = ", ".join(f"{label.lower()} {n}" for label, n in data.status_counts if n)
    pdf.set_font("Helvetica", size=8)
    pdf.multi_cell(half, 4, pdf_text(f"Servers: {counts or 'none'}.", 300), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    causes = data.not_assessed_causes
    for cause, n in causes[:SUMMARY_CAUSES]:
        pdf.cell(half, 4, _fit(pdf, f"{n} {cause}", half), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if len(causes) > SUMMARY_CAUSES:
        pdf.cell(half, 4, f"and {len(causes) - SUMMARY_CAUSES} more causes (see the servers)")
        pdf.ln(4)
    pdf.ln(2)
    _subheading(pdf, left, "Compliance by customer")
    customers = data.customer_rows
    _line_table(
        pdf,
        left,
        ["Customer", "Servers", "Average", "Coverage"],
        [[name, str(cov.total), _average(cov), cov.sentence] for name, cov in customers[:SUMMARY_CUSTOMERS]],
        [half * 0.34, half * 0.12, half * 0.16, half * 0.38],
        "LRRL",
    )
    if len(customers) > SUMMARY_CUSTOMERS:
        pdf.set_font("Helvetica", size=8)
        pdf.cell(half, 5, f"and {len(customers) - SUMMARY_CUSTOMERS} more customers (see the servers)")
        pdf.ln(5)
    left_bottom = pdf.get_y()
    # Right: the trend chart.
    pdf.set_xy(right, top)
    _subheading(pdf, right, "Average compliance over the period")
    _trend_chart(pdf, data, right, pdf.get_y() + 1, half, 58)
    pdf.set_y(max(left_bottom, top + 72) + 4)
    row_top = pdf.get_y()
    _subheading(pdf, left, "Top failing rules (assessed servers)")
    rules = data.top_failing_rules(SUMMARY_RULES)
    if rules:
        _line_table(
            pdf,
            left,
            ["Rule", "Title", "Servers failing"],
            [[rule_id, title or "-", str(n)] for rule_id, title, n in rules],
            [half * 0.34, half * 0.48, half * 0.18],
            "LLR",
        )
    else:
        pdf.set_font("Helvetica", size=9)
        pdf.cell(half, 5, "No rule fails on an assessed server.")
    pdf.set_xy(right, row_top)
    waivers = data.open_waivers
    exceptions = data.open_exceptions
    if exceptions:
        pdf.set_xy(right, row_top)
        _subheading(pdf, right, f"Exceptions in force (integrated-authentication rights): {len(exceptions)}")
        _line_table(
            pdf,
            right,
            ["For", "Expires", "Approved by", "Conflicts with"],
            [
                [e["subject"], _when(e["expires_at"], data.tz)[:10], e["approved_by"] or "-", e["conflicts_text"]]
                for e in exceptions[:SUMMARY_EXCEPTIONS]
            ],
            [half * 0.26, half * 0.14, half * 0.18, half * 0.42],
            "LLLL",
        )
        if len(exceptions) > SUMMARY_EXCEPTIONS:
            pdf.set_x(right)
            pdf.set_font("Helvetica", size=8)
            pdf.cell(half, 5, f"and {len(exceptions) - SUMMARY_EXCEPTIONS} more (see Exceptions in the details)")
            pdf.ln(5)
        row_top = pdf.get_y() + 2
        pdf.set_xy(right, row_top)
    _subheading(pdf, right, f"Waivers in force: {len(waivers)}")
    if waivers:
        pdf.set_x(right)
        _line_table(
            pdf,
            right,
            ["Rule", "For", "Expires", "Justification"],
            [
                [w["rule_id"], w["subject"], _when(w["expires_at"], data.tz)[:10], w["justification"]]
                for w in waivers[:SUMMARY_WAIVERS]
            ],
            [half * 0.32, half * 0.22, half * 0.14, half * 0.32],
            "LLLL",
        )
        if len(waivers) > SUMMARY_WAIVERS:
            pdf.set_x(right)
            pdf.set_font("Helvetica", size=8)
            pdf.cell(half, 5, f"and {len(waivers) - SUMMARY_WAIVERS} more (see Waivers in the details)")
    else:
        pdf.set_x(right)
        pdf.set_font("Helvetica", size=9)
        pdf.cell(half, 5, "No waiver is in force.")
    pdf.set_xy(left, pdf.h - 22)
    pdf.set_font("Helvetica", size=7)
    pdf.set_text_color(90, 90, 90)
    pdf.multi_cell(
        0,
        3.5,
        pdf_text(
            "Average compliance counts the assessed servers only: a server not assessed (never verified, or its "
            "last run could not read it) or stale (results older than a change) is outside it and counted beside "
            "it. Details per server follow. Check this file's signature on the Verify a report page.",
            600,
        ),
    )
    pdf.set_text_color(0, 0, 0)


def _trend_chart(pdf: FPDF, data: ReportData, x: float, y: float, w: float, h: float) -> None:
    """The trend as vector lines (the same points as the pages' SVG, reports.charts), 0-100 %."""
    points = data.trend
    left, bottom = 12.0, 8.0
    plot_x, plot_w, plot_h = x + left, w - left - 2, h - bottom
    pdf.set_draw_color(210, 214, 220)
    pdf.set_line_width(0.2)
    pdf.set_font("Helvetica", size=7)
    for pct in (0, 25, 50, 75, 100):
        gy = y + plot_h * (1 - pct / 100)
        pdf.line(plot_x, gy, plot_x + plot_w, gy)
        pdf.set_xy(x, gy - 2)
        pdf.cell(left - 1, 4, f"{pct} %", align="R")
    known = [p for p in points if p.average_pct is not None]
    span = max(1, (points[-1].day - points[0].day).days) if points else 1

    def px(index: int) -> float:
        if len(points) == 1:
            return plot_x + plot_w / 2
        return plot_x + plot_w * (points[index].day - points[0].day).days / span

    def py(pct: float) -> float:
        return y + plot_h * (1 - pct / 100)

    if points:
        for index in sorted({0, len(points) - 1}):
            label = "today" if points[index].live else f"{points[index].day:%d %b %Y}"
            pdf.set_xy(px(index) - 15, y + plot_h + 1)
            pdf.cell(30, 4, label, align="C")
    pdf.set_draw_color(37, 99, 235)
    pdf.set_fill_color(37, 99, 235)
    pdf.set_line_width(0.6)
    line: list[tuple[float, float]] = []
    for index, point in enumerate(points):
        if point.average_pct is None:
            if len(line) > 1:
                pdf.polyline(line)
            line = []
            continue
        line.append((px(index), py(point.average_pct)))
    if len(line) > 1:
        pdf.polyline(line)
    for index, point in enumerate(points):
        if point.average_pct is not None:
            pdf.circle(px(index), py(point.average_pct), 0.9, style="F")
    pdf.set_line_width(0.2)
    pdf.set_draw_color(0, 0, 0)
    pdf.set_xy(x, y + h + 1)
    pdf.set_font("Helvetica", size=8)
    if not known:
        note = "No server was assessed during the period: no figure to draw."
    elif len(known) == 1:
        note = "One day with data so far: the scheduler records a point every day."
    else:
        note = trend_description(points)
    pdf.multi_cell(w, 4, pdf_text(note, 300))


def _heading(pdf: FPDF, text: str) -> None:
    pdf.ln(2)
    pdf.set_font("Helvetica", "B", 12)
    pdf.cell(0, 7, pdf_text(text, 150), new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _table(pdf: FPDF, headings: list[str], rows: Iterable[list[Any]], widths: tuple[float, ...]) -> None:
    """A simple wrapped table; the last width 0 takes what is left of the line."""
    usable = pdf.w - pdf.l_margin - pdf.r_margin
    cols = [w or usable - sum(widths) for w in widths]
    pdf.set_font("Helvetica", "B", 8)
    _row(pdf, headings, cols, fill=True)
    pdf.set_font("Helvetica", size=8)
    for row in rows:
        _row(pdf, [pdf_text(v, 300) for v in row], cols)


def _line_count(pdf: FPDF, width: float, line_height: float, text: str) -> int:
    wrapped = pdf.multi_cell(width, line_height, text, dry_run=True, output="LINES")
    return max(1, len(wrapped)) if isinstance(wrapped, list) else 1


def _row(pdf: FPDF, values: list[str], cols: list[float], fill: bool = False) -> None:
    line_height = 4.0
    lines = [_line_count(pdf, w, line_height, v) for v, w in zip(values, cols, strict=True)]
    height = max(lines) * line_height + 1
    if pdf.get_y() + height > pdf.page_break_trigger:
        pdf.add_page()
    x, y = pdf.get_x(), pdf.get_y()
    if fill:
        pdf.set_fill_color(230, 234, 240)
    for value, width in zip(values, cols, strict=True):
        pdf.rect(pdf.get_x(), y, width, height, style="DF" if fill else "D")
        pdf.multi_cell(width, line_height, value, new_x=XPos.RIGHT, new_y=YPos.TOP, max_line_height=line_height)
        pdf.set_xy(pdf.get_x(), y)
    pdf.set_xy(x, y + height)
