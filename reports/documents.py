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
from collections.abc import Iterable
from datetime import datetime, tzinfo
from typing import Any

from django.utils import timezone
from fpdf import FPDF
from fpdf.enums import XPos, YPos

from reports.selectors import ReportData

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


# --- CSV ------------------------------------------------------------------------------------
CSV_COLUMNS = [
    "customer", "server", "address", "server_status", "compliance_pct", "assessment", "verified_at", "profile_version",
    "section", "rule_id", "target", "status", "underlying_status", "risk", "expected", "observed", "reason",
    "waiver_justification",
]  # fmt: skip


def render_csv(data: ReportData) -> bytes:
    """One row per server × rule × target, after a commented header block; UTF-8 with BOM-less CRLF."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    tz = data.tz
    for line in _header_lines(data):
        writer.writerow([csv_cell("# " + line)])
    for waiver in data.waivers:
        writer.writerow(
            [csv_cell(f"# waiver {waiver['rule_id']} for {waiver['subject']}: {waiver['status']}, "
                      f"expires {_when(waiver['expires_at'], tz)}, approved by {waiver['approved_by'] or '-'}; "
                      f"justification: {waiver['justification']}")]
        )  # fmt: skip
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
        f"Signed with the installation's Ed25519 key {data.key_id}: check with manage.py verify_report",
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
        "waivers": [
            {**w, "expires_at": w["expires_at"].isoformat(), "approved_at": _iso(w["approved_at"])}
            for w in data.waivers
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


def render_pdf(data: ReportData) -> bytes:
    pdf = _ReportPDF(orientation="landscape", format="A4")
    pdf.footer_text = pdf_text(f"Fleet Lockdown report - {data.scope_label} - signed, key {data.key_id}", 150)
    pdf.set_title(pdf_text(f"Compliance report: {data.scope_label}", 200))
    pdf.set_author("Fleet Lockdown")
    pdf.set_subject(pdf_text(f"Period {data.period_start.isoformat()} to {data.period_end.isoformat()}"))
    pdf.set_keywords(f"fleet-lockdown-report key:{data.key_id}")
    pdf.set_creator("Fleet Lockdown (fpdf2)")
    pdf.set_creation_date(data.generated_at)
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 9, pdf_text(f"Compliance report: {data.scope_label}", 120), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
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
    for item in data.servers:
        pdf.add_page()
        _heading(pdf, f"{item.server.name} ({item.server.customer.name})")
        pdf.set_font("Helvetica", size=9)
        facts = item.server.facts or {}
        pdf.multi_cell(
            0,
            5,
            pdf_text(
                f"Status {item.server.get_status_display()}, compliance {_pct(item.figure)}, "
                f"verified {_when(item.verified_at, data.tz)} against {item.profile_label or '-'}. "
                + (f"{item.assessment_text}. " if item.assessment_text else "")
                + f"{facts.get('os_caption', 'OS unknown')}, PowerShell {facts.get('powershell_version', '?')}, "
                f"MailEnable {facts.get('mailenable_edition') or '?'} {facts.get('mailenable_version') or '?'}.",
                600,
            ),
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )
        if not item.outcomes:
            pdf.multi_cell(
                0,
                6,
                pdf_text(f"No outcome to report. {item.assessment_text}.", 600),
                new_x=XPos.LMARGIN,
                new_y=YPos.NEXT,
            )
            continue
        _table(
            pdf,
            ["Rule", "Target", "Status", "Expected", "Observed"],
            [
                [
                    o.get("rule_id"),
                    o.get("target"),
                    STATUS_WORDS.get(str(o.get("status")), str(o.get("status")))
                    + (f" ({o.get('waiver_justification')})" if o.get("waiver_justification") else ""),
                    o.get("expected_text"),
                    o.get("observed_text"),
                ]
                for o in item.outcomes
            ],
            (62, 62, 30, 60, 0),
        )
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
