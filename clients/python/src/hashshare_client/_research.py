"""Platform actions and spread analytics: the SDK's records and their
conversions (MatchService.ReportAction and ResearchService), shared by the
sync and async clients.

Researchers see platforms under pseudonyms only; a ``Count`` below the
server's minimum arrives withheld (``suppressed``, value 0).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from ._timestamps import from_timestamp, timestamp
from .pb.hashshare.v1 import match_pb2, research_pb2

__all__ = [
    "Action",
    "ActionCounts",
    "ActionReport",
    "CategoryStats",
    "ClusterSpread",
    "Count",
    "Delay",
    "FeedbackStats",
    "NoticeStats",
    "PlatformStats",
    "SeriesPoint",
]

# The most reports the server takes in one ReportAction call.
MAX_ACTION_REPORTS = 1000
# What Delay.histogram's buckets hold: re-uploads within each bound, then later.
DELAY_BUCKETS = ("1h", "24h", "7d", "30d", "later")


class Action(enum.StrEnum):
    """What a platform did with a matched upload."""

    BLOCKED = "blocked"
    SENT_TO_REVIEW = "sent_to_review"
    ALLOWED_AFTER_REVIEW = "allowed_after_review"
    REMOVED_AFTER_REVIEW = "removed_after_review"


_ACTION_NUMBERS = {
    Action.BLOCKED: match_pb2.ACTION_BLOCKED,
    Action.SENT_TO_REVIEW: match_pb2.ACTION_SENT_TO_REVIEW,
    Action.ALLOWED_AFTER_REVIEW: match_pb2.ACTION_ALLOWED_AFTER_REVIEW,
    Action.REMOVED_AFTER_REVIEW: match_pb2.ACTION_REMOVED_AFTER_REVIEW,
}


@dataclass(frozen=True)
class ActionReport:
    """What the platform did with one matched item (``Client.report_actions``).

    ``item_id`` is the platform's own reference: the server keeps only a keyed
    hash of it, so that reporting the same item and action again counts once."""

    entry_id: str
    action: Action | str
    acted_at: datetime | None = None
    item_id: str = ""


@dataclass(frozen=True)
class Count:
    """A count; ``suppressed`` (and value 0) when too small to publish."""

    value: int
    suppressed: bool = False

    def __str__(self) -> str:
        return "<min" if self.suppressed else str(self.value)


@dataclass(frozen=True)
class ActionCounts:
    blocked: Count
    sent_to_review: Count
    allowed_after_review: Count
    removed_after_review: Count
    # (blocked + removed after review) / all reported actions; 0 when none or withheld.
    share_blocked: float


@dataclass(frozen=True)
class Delay:
    """Hours from an entry's first removal to its re-uploads."""

    median_hours: float
    p90_hours: float
    histogram: tuple[Count, ...]  # within 1 h, 24 h, 7 days, 30 days, later (DELAY_BUCKETS)


@dataclass(frozen=True)
class SeriesPoint:
    start: date  # the bucket's first day (UTC)
    reupload_attempts: Count
    distinct_platforms: Count
    actions: ActionCounts


@dataclass(frozen=True)
class ClusterSpread:
    entry_id: str
    category: str
    first_removed_at: datetime | None
    reupload_attempts: Count
    distinct_platforms: Count
    actions: ActionCounts
    delay: Delay


@dataclass(frozen=True)
class PlatformStats:
    platform: str  # a pseudonym
    submissions: Count
    corroborations: Count
    reupload_attempts: Count
    actions: ActionCounts
    median_hours_to_removal: float


@dataclass(frozen=True)
class CategoryStats:
    category: str
    entries: Count
    submissions: Count
    reupload_attempts: Count
    distinct_platforms: Count
    actions: ActionCounts


@dataclass(frozen=True)
class NoticeStats:
    platform: str  # a pseudonym
    received: Count
    decided: Count
    decided_within_24h: Count
    share_decided_within_24h: float
    median_hours_to_decision: float
    removed: Count
    disabled: Count
    rejected: Count


@dataclass(frozen=True)
class FeedbackStats:
    platform: str  # a pseudonym
    agreements_given: Count
    disputes_given: Count
    disputes_received: Count
    seen_too_given: Count


# Requests


def report_action_requests(
    reports: Iterable[ActionReport], request_id: str | None
) -> list[match_pb2.ReportActionRequest]:
    """ReportAction requests of at most 1000 reports each. A given request_id
    names the first; the others get it with ":2", ":3"... so a replay of the
    whole sequence stores nothing twice."""
    pending = [
        match_pb2.ActionReport(
            entry_id=r.entry_id,
            action=_ACTION_NUMBERS[Action(r.action)],
            acted_at=timestamp(r.acted_at),
            item_id=r.item_id,
        )
        for r in reports
    ]
    base = request_id or str(uuid.uuid4())
    return [
        match_pb2.ReportActionRequest(
            request_id=base if n == 0 else f"{base}:{n + 1}",
            actions=pending[start : start + MAX_ACTION_REPORTS],
        )
        for n, start in enumerate(range(0, len(pending), MAX_ACTION_REPORTS))
    ]


def period(start: datetime | None, end: datetime | None) -> research_pb2.Period:
    return research_pb2.Period(start=timestamp(start), end=timestamp(end))


GRANULARITIES = {"day": research_pb2.GRANULARITY_DAY, "week": research_pb2.GRANULARITY_WEEK}


def granularity(name: str) -> research_pb2.Granularity.ValueType:
    if name not in GRANULARITIES:
        raise ValueError(f"granularity must be 'day' or 'week', got {name!r}")
    return GRANULARITIES[name]


# Answers


def count(message: research_pb2.Count) -> Count:
    return Count(message.value, message.suppressed)


def action_counts(message: research_pb2.ActionCounts) -> ActionCounts:
    return ActionCounts(
        blocked=count(message.blocked),
        sent_to_review=count(message.sent_to_review),
        allowed_after_review=count(message.allowed_after_review),
        removed_after_review=count(message.removed_after_review),
        share_blocked=message.share_blocked,
    )


def delay(message: research_pb2.Delay) -> Delay:
    return Delay(message.median_hours, message.p90_hours, tuple(count(c) for c in message.histogram))


def series_result(response: research_pb2.GetSpreadSeriesResponse) -> list[SeriesPoint]:
    return [
        SeriesPoint(
            start=date.fromisoformat(p.start),
            reupload_attempts=count(p.reupload_attempts),
            distinct_platforms=count(p.distinct_platforms),
            actions=action_counts(p.actions),
        )
        for p in response.points
    ]


def clusters_result(response: research_pb2.ListTopClustersResponse) -> list[ClusterSpread]:
    return [
        ClusterSpread(
            entry_id=c.entry_id,
            category=c.category,
            first_removed_at=from_timestamp(c, "first_removed_at"),
            reupload_attempts=count(c.reupload_attempts),
            distinct_platforms=count(c.distinct_platforms),
            actions=action_counts(c.actions),
            delay=delay(c.delay),
        )
        for c in response.clusters
    ]


def platforms_result(response: research_pb2.GetPlatformStatsResponse) -> list[PlatformStats]:
    return [
        PlatformStats(
            platform=p.platform,
            submissions=count(p.submissions),
            corroborations=count(p.corroborations),
            reupload_attempts=count(p.reupload_attempts),
            actions=action_counts(p.actions),
            median_hours_to_removal=p.median_hours_to_removal,
        )
        for p in response.platforms
    ]


def categories_result(response: research_pb2.GetCategoryStatsResponse) -> list[CategoryStats]:
    return [
        CategoryStats(
            category=c.category,
            entries=count(c.entries),
            submissions=count(c.submissions),
            reupload_attempts=count(c.reupload_attempts),
            distinct_platforms=count(c.distinct_platforms),
            actions=action_counts(c.actions),
        )
        for c in response.categories
    ]


def notices_result(response: research_pb2.GetNoticeStatsResponse) -> list[NoticeStats]:
    return [
        NoticeStats(
            platform=p.platform,
            received=count(p.received),
            decided=count(p.decided),
            decided_within_24h=count(p.decided_within_24h),
            share_decided_within_24h=p.share_decided_within_24h,
            median_hours_to_decision=p.median_hours_to_decision,
            removed=count(p.removed),
            disabled=count(p.disabled),
            rejected=count(p.rejected),
        )
        for p in response.platforms
    ]


def feedback_result(response: research_pb2.GetFeedbackStatsResponse) -> list[FeedbackStats]:
    return [
        FeedbackStats(
            platform=p.platform,
            agreements_given=count(p.agreements_given),
            disputes_given=count(p.disputes_given),
            disputes_received=count(p.disputes_received),
            seen_too_given=count(p.seen_too_given),
        )
        for p in response.platforms
    ]
