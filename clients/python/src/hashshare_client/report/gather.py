"""Everything the quarterly review shows, asked of the API with the caller's
own token (authority or researcher): the quarter's figures and the previous
quarter's, joined per platform pseudonym and per category.

A question the server cannot answer (UNIMPLEMENTED: an older server) leaves
its figures out and is listed in ``missing``; any other error stops the report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from .._client import Client
from .._exceptions import ApiError
from .._research import (
    CategoryStats,
    ClusterSpread,
    FeedbackStats,
    NoticeStats,
    PlatformStats,
    SeriesPoint,
)
from .quarter import Quarter

T = TypeVar("T")


@dataclass(frozen=True)
class QuarterFigures:
    quarter: Quarter
    platforms: list[PlatformStats]
    categories: list[CategoryStats]
    clusters: list[ClusterSpread]
    series: list[SeriesPoint]  # weekly
    notices: list[NoticeStats] | None  # None: the server does not answer
    feedback: list[FeedbackStats] | None

    def platform_names(self) -> list[str]:
        names = {p.platform for p in self.platforms}
        names |= {n.platform for n in self.notices or ()} | {f.platform for f in self.feedback or ()}
        return sorted(names)


@dataclass(frozen=True)
class Review:
    current: QuarterFigures
    previous: QuarterFigures
    missing: list[str] = field(default_factory=list)  # the RPCs the server did not answer


def _optional(call: Callable[[], list[T]], name: str, missing: list[str]) -> list[T] | None:
    try:
        return call()
    except ApiError as error:
        if getattr(error, "code", "") != "UNIMPLEMENTED":
            raise
        if name not in missing:
            missing.append(name)
        return None


def quarter_figures(client: Client, quarter: Quarter, top: int, missing: list[str]) -> QuarterFigures:
    start: datetime = quarter.start
    end: datetime = quarter.end
    return QuarterFigures(
        quarter=quarter,
        platforms=client.platform_stats(start, end),
        categories=client.category_stats(start, end),
        clusters=client.top_clusters(start, end, limit=top),
        series=client.spread_series(start, end, granularity="week"),
        notices=_optional(lambda: client.notice_stats(start, end), "GetNoticeStats", missing),
        feedback=_optional(lambda: client.feedback_stats(start, end), "GetFeedbackStats", missing),
    )


def gather(client: Client, quarter: Quarter, top: int = 10) -> Review:
    """The quarter's figures and the previous quarter's."""
    missing: list[str] = []
    current = quarter_figures(client, quarter, top, missing)
    previous = quarter_figures(client, quarter.previous(), top, missing)
    return Review(current, previous, missing)
