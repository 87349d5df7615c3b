"""Writes the review: CSV files, PNG charts and index.html (one page, no
outside resources: its tables are inline and its charts are the PNGs beside it)."""

from __future__ import annotations

import csv
import html
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from .gather import QuarterFigures, Review
from .tables import SUPPRESSED, Cell, Table, platform_view

CHARTS = {
    "reuploads_per_week.png": "Re-upload attempts per week",
    "share_blocked_per_platform.png": "Share of reported re-uploads blocked, per platform",
    "notices_within_24h_per_platform.png": "Share of notices decided within 24 hours, per platform",
    "top_clusters.png": "Spread of the largest clusters",
}


def _text(cell: Cell) -> str:
    if cell is None:
        return ""
    if isinstance(cell, float):
        return f"{cell:.4g}"
    return str(cell)


def write_csv(table: Table, directory: Path) -> Path:
    path = directory / f"{table.name}.csv"
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(table.header)
        writer.writerows([_text(c) for c in row] for row in table.rows)
    return path


def _number(cell: Cell) -> float:
    """A chart's value: withheld and unknown figures are drawn as 0."""
    return float(cell) if isinstance(cell, (int, float)) else 0.0


def _figure(width: float = 8.0, height: float = 4.5):  # type: ignore[no-untyped-def]
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _bars(path: Path, title: str, labels: Sequence[str], series: dict[str, list[float]], xlabel: str) -> Path:
    figure = _figure(8.0, max(2.5, 0.45 * len(labels) + 1.5))
    axis = figure.subplots()
    if not labels:
        axis.text(0.5, 0.5, "no data for this quarter", ha="center", va="center", transform=axis.transAxes)
        axis.set_axis_off()
    else:
        height = 0.8 / len(series)
        for n, (name, values) in enumerate(series.items()):
            axis.barh([i + n * height for i in range(len(labels))], values, height=height, label=name)
        axis.set_yticks([i + height * (len(series) - 1) / 2 for i in range(len(labels))], labels, fontsize=8)
        axis.invert_yaxis()
        axis.set_xlabel(xlabel)
        axis.legend(fontsize=8, loc="lower right")
    axis.set_title(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path


def _reuploads_per_week(review: Review, path: Path) -> Path:
    figure = _figure()
    axis = figure.subplots()
    today = datetime.now(UTC).date()
    for figures, style in ((review.current, "-o"), (review.previous, "--o")):
        # Weeks still to come are not zeros: leave them out.
        values = [_number(p.reupload_attempts.value) for p in figures.series if p.start <= today]
        axis.plot(range(1, len(values) + 1), values, style, label=str(figures.quarter), markersize=3)
    axis.set_xlabel("week of the quarter")
    axis.set_ylabel("re-upload attempts (Match hits)")
    axis.legend(fontsize=8)
    axis.set_title(CHARTS[path.name], fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path


def _per_platform(review: Review, path: Path, attribute: str) -> Path:
    names = sorted(set(review.current.platform_names()) | set(review.previous.platform_names()))
    series: dict[str, list[float]] = {}
    for figures in (review.current, review.previous):
        values = []
        for name in names:
            view = platform_view(figures, name)
            if attribute == "share_blocked":
                values.append(view.stats.actions.share_blocked if view.stats else 0.0)
            else:
                values.append(view.notices.share_decided_within_24h if view.notices else 0.0)
        series[str(figures.quarter)] = values
    shown = names if attribute == "share_blocked" or review.current.notices is not None else []
    return _bars(path, CHARTS[path.name], shown, series, "share (0 to 1)")


def _top_clusters(figures: QuarterFigures, path: Path) -> Path:
    labels = [f"{c.entry_id} ({c.category})" for c in figures.clusters]
    series = {
        "re-upload attempts": [_number(c.reupload_attempts.value) for c in figures.clusters],
        "platforms reached": [_number(c.distinct_platforms.value) for c in figures.clusters],
    }
    return _bars(path, CHARTS[path.name], labels, series, "count (withheld counts drawn as 0)")


def write_charts(review: Review, directory: Path) -> list[Path]:
    return [
        _reuploads_per_week(review, directory / "reuploads_per_week.png"),
        _per_platform(review, directory / "share_blocked_per_platform.png", "share_blocked"),
        _per_platform(review, directory / "notices_within_24h_per_platform.png", "notices"),
        _top_clusters(review.current, directory / "top_clusters.png"),
    ]


_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 12px; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td.withheld { color: #999; font-style: italic; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.note { color: #555; font-size: 13px; }
"""


def _cell(cell: Cell) -> str:
    if cell == SUPPRESSED:
        return '<td class="withheld">withheld</td>'
    if cell is None:
        return "<td>n/a</td>"
    return f"<td>{html.escape(_text(cell))}</td>"


def _table(table: Table, columns: int | None = None) -> str:
    """The table's first ``columns`` columns (all by default)."""
    width = columns or len(table.header)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header[:width])
    body = "".join("<tr>" + "".join(_cell(c) for c in row[:width]) + "</tr>" for row in table.rows)
    return f'<table id="{table.name}"><tr>{head}</tr>{body}</table>' if table.rows else "<p>No data.</p>"


def write_html(review: Review, tables: list[Table], charts: list[Path], directory: Path) -> Path:
    current, previous = review.current.quarter, review.previous.quarter
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>hashshare quarterly review {current}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Quarterly review {current}</h1>",
        f'<p class="note">From {current.start:%Y-%m-%d} to {current.end:%Y-%m-%d} (UTC, end excluded), '
        f"compared with {previous}. Built {datetime.now(UTC):%Y-%m-%d %H:%M} UTC from the hashshare API only. "
        "Platforms appear under the bank's pseudonyms. Counts too small to publish are withheld by the server "
        "and shown as <em>withheld</em>; <em>n/a</em> marks what the server does not answer.</p>",
    ]
    if review.missing:
        parts.append(f'<p class="note">Not answered by this server: {html.escape(", ".join(review.missing))}.</p>')
    for path in charts:
        parts.append(f'<h3>{html.escape(CHARTS[path.name])}</h3><img src="{path.name}" alt="{path.name}">')
    per_quarter = {"platforms", "categories"}
    for table in tables:
        columns = (len(table.header) - 1) // 3 + 1 if table.name in per_quarter else None
        parts.append(f"<h2>{html.escape(table.title)}</h2>")
        parts.append(_table(table, columns))
        if table.name in per_quarter and table.rows:
            changes = Table(
                table.name + "_changes",
                "",
                [table.header[0], *table.header[2 * (columns or 1) - 1 :]],
                [[row[0], *row[2 * (columns or 1) - 1 :]] for row in table.rows],
            )
            parts.append(f"<h3>Changes against {previous}</h3>{_table(changes)}")
        parts.append(f'<p class="note">CSV: <a href="{table.name}.csv">{table.name}.csv</a></p>')
    parts.append("</body></html>")
    path = directory / "index.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
