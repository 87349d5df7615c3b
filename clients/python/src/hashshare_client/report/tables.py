"""The report's tables, shared by the CSV files and the HTML page.

A cell is a number, ``SUPPRESSED`` (the server withheld a small count) or
None (the server does not answer that question). Changes against the
previous quarter are given only where both quarters have a number.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .._research import DELAY_BUCKETS, CategoryStats, Count, FeedbackStats, NoticeStats, PlatformStats
from .gather import QuarterFigures, Review

SUPPRESSED = "suppressed"
Cell = int | float | str | None


def count(value: Count | None) -> Cell:
    if value is None:
        return None
    return SUPPRESSED if value.suppressed else value.value


def change(current: Cell, previous: Cell) -> Cell:
    if isinstance(current, (int, float)) and isinstance(previous, (int, float)):
        difference = current - previous
        return round(difference, 4) if isinstance(difference, float) else difference
    return None


def rounded(value: float | None) -> Cell:
    return None if value is None else round(value, 4)


@dataclass(frozen=True)
class Table:
    name: str  # also the CSV file's stem
    title: str
    header: list[str]
    rows: list[list[Cell]]


@dataclass(frozen=True)
class PlatformView:
    """What one quarter says about one platform (a missing row: nothing happened)."""

    stats: PlatformStats | None
    notices: NoticeStats | None
    feedback: FeedbackStats | None
    has_notices: bool  # False: the server does not answer GetNoticeStats
    has_feedback: bool


def platform_view(figures: QuarterFigures, name: str) -> PlatformView:
    return PlatformView(
        stats=next((p for p in figures.platforms if p.platform == name), None),
        notices=next((n for n in figures.notices or () if n.platform == name), None),
        feedback=next((f for f in figures.feedback or () if f.platform == name), None),
        has_notices=figures.notices is not None,
        has_feedback=figures.feedback is not None,
    )


PlatformMetric = tuple[str, Callable[[PlatformView], Cell]]


def _stats(name: str, read: Callable[[PlatformStats], Cell]) -> PlatformMetric:
    return name, lambda v: read(v.stats) if v.stats is not None else 0


def _notices(name: str, read: Callable[[NoticeStats], Cell]) -> PlatformMetric:
    return name, lambda v: None if not v.has_notices else read(v.notices) if v.notices is not None else 0


def _feedback(name: str, read: Callable[[FeedbackStats], Cell]) -> PlatformMetric:
    return name, lambda v: None if not v.has_feedback else read(v.feedback) if v.feedback is not None else 0


PLATFORM_METRICS: list[PlatformMetric] = [
    _notices("notices_received", lambda n: count(n.received)),
    _notices("share_decided_within_24h", lambda n: rounded(n.share_decided_within_24h)),
    _notices("median_hours_to_decision", lambda n: rounded(n.median_hours_to_decision)),
    _stats("median_hours_to_removal", lambda p: rounded(p.median_hours_to_removal)),
    _stats("submissions", lambda p: count(p.submissions)),
    _stats("corroborations", lambda p: count(p.corroborations)),
    _feedback("disputes_received", lambda f: count(f.disputes_received)),
    _feedback("disputes_given", lambda f: count(f.disputes_given)),
    _stats("reupload_attempts", lambda p: count(p.reupload_attempts)),
    _stats("reuploads_blocked", lambda p: count(p.actions.blocked)),
    _stats("share_blocked", lambda p: rounded(p.actions.share_blocked)),
]

CategoryMetric = tuple[str, Callable[[CategoryStats], Cell]]

CATEGORY_METRICS: list[CategoryMetric] = [
    ("entries", lambda c: count(c.entries)),
    ("submissions", lambda c: count(c.submissions)),
    ("reupload_attempts", lambda c: count(c.reupload_attempts)),
    ("distinct_platforms", lambda c: count(c.distinct_platforms)),
    ("reuploads_blocked", lambda c: count(c.actions.blocked)),
    ("share_blocked", lambda c: rounded(c.actions.share_blocked)),
]


def _compared(
    key: str,
    names: Sequence[str],
    metrics: list[str],
    read: Callable[[QuarterFigures, str], list[Cell]],
    review: Review,
) -> tuple[list[str], list[list[Cell]]]:
    header = [key, *metrics, *(f"previous_{m}" for m in metrics), *(f"change_{m}" for m in metrics)]
    rows = []
    for name in names:
        now, before = read(review.current, name), read(review.previous, name)
        rows.append([name, *now, *before, *(change(a, b) for a, b in zip(now, before, strict=True))])
    return header, rows


def platforms(review: Review) -> Table:
    names = sorted(set(review.current.platform_names()) | set(review.previous.platform_names()))

    def read(figures: QuarterFigures, name: str) -> list[Cell]:
        view = platform_view(figures, name)
        return [metric(view) for _, metric in PLATFORM_METRICS]

    header, rows = _compared("platform", names, [m for m, _ in PLATFORM_METRICS], read, review)
    return Table("platforms", "Per platform", header, rows)


def categories(review: Review) -> Table:
    names = list(dict.fromkeys(c.category for c in [*review.current.categories, *review.previous.categories]))

    def read(figures: QuarterFigures, name: str) -> list[Cell]:
        row = next((c for c in figures.categories if c.category == name), None)
        return [metric(row) if row is not None else 0 for _, metric in CATEGORY_METRICS]

    header, rows = _compared("category", names, [m for m, _ in CATEGORY_METRICS], read, review)
    return Table("categories", "Per category", header, rows)


def clusters(review: Review) -> Table:
    header = [
        "rank",
        "entry_id",
        "category",
        "first_removed_at",
        "reupload_attempts",
        "distinct_platforms",
        "reuploads_blocked",
        "share_blocked",
        "median_hours_to_reupload",
        "p90_hours_to_reupload",
        *(f"reuploads_within_{b}" if b != "later" else "reuploads_later" for b in DELAY_BUCKETS),
    ]
    rows: list[list[Cell]] = []
    for rank, c in enumerate(review.current.clusters, 1):
        histogram = list(c.delay.histogram) + [None] * (len(DELAY_BUCKETS) - len(c.delay.histogram))
        rows.append(
            [
                rank,
                c.entry_id,
                c.category,
                c.first_removed_at.isoformat() if c.first_removed_at else None,
                count(c.reupload_attempts),
                count(c.distinct_platforms),
                count(c.actions.blocked),
                rounded(c.actions.share_blocked),
                rounded(c.delay.median_hours),
                rounded(c.delay.p90_hours),
                *(count(h) for h in histogram[: len(DELAY_BUCKETS)]),
            ]
        )
    return Table("clusters", "The largest clusters of the quarter", header, rows)


def notices(review: Review) -> Table:
    header = [
        "quarter",
        "platform",
        "received",
        "decided",
        "decided_within_24h",
        "share_decided_within_24h",
        "median_hours_to_decision",
        "removed",
        "disabled",
        "rejected",
    ]
    rows: list[list[Cell]] = []
    for figures in (review.current, review.previous):
        for n in figures.notices or ():
            rows.append(
                [
                    str(figures.quarter),
                    n.platform,
                    count(n.received),
                    count(n.decided),
                    count(n.decided_within_24h),
                    rounded(n.share_decided_within_24h),
                    rounded(n.median_hours_to_decision),
                    count(n.removed),
                    count(n.disabled),
                    count(n.rejected),
                ]
            )
    return Table("notices", "Notices per platform", header, rows)


def series(review: Review) -> Table:
    header = [
        "quarter",
        "week_start",
        "reupload_attempts",
        "distinct_platforms",
        "blocked",
        "sent_to_review",
        "allowed_after_review",
        "removed_after_review",
        "share_blocked",
    ]
    rows: list[list[Cell]] = []
    for figures in (review.current, review.previous):
        for p in figures.series:
            rows.append(
                [
                    str(figures.quarter),
                    p.start.isoformat(),
                    count(p.reupload_attempts),
                    count(p.distinct_platforms),
                    count(p.actions.blocked),
                    count(p.actions.sent_to_review),
                    count(p.actions.allowed_after_review),
                    count(p.actions.removed_after_review),
                    rounded(p.actions.share_blocked),
                ]
            )
    return Table("series", "Re-uploads per week", header, rows)


def all_tables(review: Review) -> list[Table]:
    return [platforms(review), categories(review), clusters(review), notices(review), series(review)]
