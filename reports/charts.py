"""The compliance trend as an SVG drawn on the server: no JavaScript, no inline style (CSP).

Colours and strokes come from classes in app.css; presentation is not required to read it:
the <title>/<desc> say what it shows, every point has a <title>, and the pages offer the same
figures as a table.
"""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import escape, quoteattr

from django.utils.safestring import SafeString, mark_safe

from reports.selectors import TrendPoint

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 16, 36


def _pct(value: float | None) -> str:
    return "no data" if value is None else f"{value:.1f} %"


def trend_description(points: Sequence[TrendPoint], *, one_server: bool = False) -> str:
    known = [p for p in points if p.average_pct is not None]
    if not known:
        if one_server:
            return "No run of this server recorded a compliance figure in this period."
        return "No server has been verified yet, so there is no compliance to show."
    first, last = known[0], known[-1]
    subject = "Compliance" if one_server else "Average compliance"
    if first is last:
        over = "" if one_server else f" over {last.servers} servers"
        when = "today" if last.live else f"on {last.day:%Y-%m-%d}"
        return f"{subject} {when}: {_pct(last.average_pct)}{over}."
    return (
        f"{subject} went from {_pct(first.average_pct)} on {first.day:%Y-%m-%d} "
        f"to {_pct(last.average_pct)} on {last.day:%Y-%m-%d}, {len(known)} days with data."
    )


def trend_svg(
    points: Sequence[TrendPoint],
    *,
    chart_id: str = "trend",
    title: str = "Compliance over time",
    one_server: bool = False,
) -> SafeString:
    """An accessible line chart of average compliance per day (0–100 %); `one_server`: of one server."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    span = max(1, (points[-1].day - points[0].day).days) if points else 1

    def x(index: int) -> float:
        if len(points) == 1:
            return LEFT + plot_w / 2
        return LEFT + plot_w * (points[index].day - points[0].day).days / span

    def y(pct: float) -> float:
        return TOP + plot_h * (1 - pct / 100)

    parts = [
        f'<svg class="chart" id={quoteattr(chart_id)} viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
        f'<desc id="{chart_id}-desc">{escape(trend_description(points, one_server=one_server))}</desc>',
    ]
    for pct in (0, 25, 50, 75, 100):
        parts.append(f'<line class="chart-grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(pct):.1f}" y2="{y(pct):.1f}"/>')
        parts.append(f'<text class="chart-label" x="{LEFT - 6}" y="{y(pct) + 4:.1f}" text-anchor="end">{pct} %</text>')
    if points:
        shown = sorted({0, len(points) - 1, len(points) // 2}) if len(points) > 2 else list(range(len(points)))
        for index in shown:
            anchor = "start" if index == 0 and len(points) > 1 else "end" if index == len(points) - 1 else "middle"
            if len(points) == 1:
                anchor = "middle"
            label = "today" if points[index].live else f"{points[index].day:%d %b}"
            parts.append(
                f'<text class="chart-label" x="{x(index):.1f}" y="{HEIGHT - 12}" text-anchor="{anchor}">{label}</text>'
            )
    segment: list[str] = []
    segments: list[list[str]] = []
    for index, point in enumerate(points):
        if point.average_pct is None:
            if segment:
                segments.append(segment)
            segment = []
            continue
        segment.append(f"{x(index):.1f},{y(point.average_pct):.1f}")
    if segment:
        segments.append(segment)
    for line in segments:
        if len(line) > 1:
            parts.append(f'<polyline class="chart-line" points="{" ".join(line)}"/>')
    for index, point in enumerate(points):
        if point.average_pct is None:
            continue
        label = f"{point.day:%Y-%m-%d}{' (now)' if point.live else ''}: {_pct(point.average_pct)}" + (
            "" if one_server else f", {point.compliant} of {point.servers} servers compliant"
        )
        parts.append(
            f'<circle class="chart-point" cx="{x(index):.1f}" cy="{y(point.average_pct):.1f}" r="4">'
            f"<title>{escape(label)}</title></circle>"
        )
    if points and points[-1].average_pct is not None:
        last = points[-1]
        # Beside the last point: below it near the top, above it elsewhere, so it never leaves the plot.
        value_y = y(last.average_pct or 0) + (20 if (last.average_pct or 0) > 80 else -10)
        parts.append(
            f'<text class="chart-value" x="{x(len(points) - 1) - 8:.1f}" y="{value_y:.1f}" '
            f'text-anchor="end">{_pct(last.average_pct)}</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 (every interpolated text is escaped above)
