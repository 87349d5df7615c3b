"""``hashshare report``: the quarterly review of the Code of Conduct, built
from the API alone with the caller's own token (authority or researcher).

``write_report`` writes DIR/index.html, PNG charts and platforms.csv,
categories.csv, clusters.csv, notices.csv and series.csv. Needs the
``report`` extra (matplotlib).
"""

from __future__ import annotations

from pathlib import Path

from .._client import Client
from .gather import QuarterFigures, Review, gather
from .quarter import Quarter
from .render import write_charts, write_csv, write_html
from .tables import all_tables

__all__ = ["Quarter", "QuarterFigures", "Review", "gather", "write_report"]


def write_report(client: Client, quarter: Quarter | str, out: Path, top: int = 10) -> list[Path]:
    """Ask the server for the quarter's and the previous quarter's figures and
    write the review into ``out``; returns the files written, index.html first."""
    if isinstance(quarter, str):
        quarter = Quarter.parse(quarter)
    review = gather(client, quarter, top)
    out.mkdir(parents=True, exist_ok=True)
    tables = all_tables(review)
    csvs = [write_csv(table, out) for table in tables]
    charts = write_charts(review, out)
    return [write_html(review, tables, charts, out), *charts, *csvs]
