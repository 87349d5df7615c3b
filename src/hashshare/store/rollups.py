"""What the stores keep for spread analytics and how they answer for it.

Sightings (Match hits) and platform actions (MatchService.ReportAction)
are kept as *hour cells*: counts per (entry, member, hour[, action]). Every
analytic is a sum over cells, so both stores answer the same questions with
the same numbers, and a period counts the cells whose hour starts inside it.
Hours, days and weeks are integers: hours and days since the UNIX epoch,
and a week is the number of its Monday.

The SQLite store answers a ``Rollup`` with one GROUP BY; the Redis store
reads the cells and folds them here (``fold_sightings``, ``fold_actions``).
"""

from __future__ import annotations

import enum
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

HOUR = 3600.0
EPOCH_DAY = date(1970, 1, 1)


class Action(enum.StrEnum):
    """What a platform did with a matched upload (match.proto Action)."""

    BLOCKED = "blocked"
    SENT_TO_REVIEW = "sent_to_review"
    ALLOWED_AFTER_REVIEW = "allowed_after_review"
    REMOVED_AFTER_REVIEW = "removed_after_review"


class Dimension(enum.StrEnum):
    """What a rollup can group by."""

    ENTRY = "entry"
    MEMBER = "member"
    CATEGORY = "category"
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"


Key = tuple[int | str, ...]


@dataclass(frozen=True)
class ActionRecord:
    """One validated action report, as the store keeps it.

    ``item_key`` is a keyed hash of the platform's item id (empty when it
    gave none): an item reported again with the same action on the same
    entry is not counted twice, and the item id itself is never stored."""

    entry_id: int
    action: Action
    acted_at: float
    item_key: bytes = b""


@dataclass(frozen=True)
class Rollup:
    """Cells in the period [start, end) (by their hour's start), optionally of
    one category or some entries, grouped by ``by`` (in that order)."""

    by: tuple[Dimension, ...] = ()
    start: float | None = None
    end: float | None = None
    category: str | None = None
    entry_ids: frozenset[int] | None = None

    def hours(self) -> tuple[int | None, int | None]:
        """The first and the after-last hour of the period."""
        first = None if self.start is None else math.ceil(self.start / HOUR)
        after = None if self.end is None else math.ceil(self.end / HOUR)
        return first, after

    def keeps(self, hour: int) -> bool:
        first, after = self.hours()
        return (first is None or hour >= first) and (after is None or hour < after)

    @property
    def needs_category(self) -> bool:
        return self.category is not None or Dimension.CATEGORY in self.by


@dataclass(frozen=True)
class SightingTally:
    sightings: int
    members: int  # distinct members among them


@dataclass(frozen=True)
class ActionTally:
    counts: Mapping[Action, int] = field(default_factory=dict)

    def get(self, action: Action) -> int:
        return self.counts.get(action, 0)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class SubmissionTally:
    """Active submissions removed in a period, for one member or category."""

    submissions: int
    # Those that joined an entry another member had submitted before.
    corroborations: int
    # Those that were the first of their entry.
    new_entries: int
    # Hours from notice to removal, for those with a notice time.
    hours_to_removal: tuple[float, ...] = ()


def hour_of(at: float) -> int:
    return math.floor(at / HOUR)


def day_of_hour(hour: int) -> int:
    return hour // 24


def week_of_day(day: int) -> int:
    # Day 0, 1970-01-01, was a Thursday: (day + 3) % 7 is 0 on Mondays.
    return day - (day + 3) % 7


def day_text(day: int) -> str:
    return (EPOCH_DAY + timedelta(days=day)).isoformat()


def day_number(value: datetime | date) -> int:
    if isinstance(value, datetime):
        value = value.astimezone(UTC).date()
    return (value - EPOCH_DAY).days


def days_between(start: float, end: float) -> range:
    """The UTC day numbers that hours of [start, end) fall on."""
    first = day_of_hour(math.ceil(start / HOUR))
    last = day_of_hour(math.ceil(end / HOUR) - 1)
    return range(first, last + 1)


def time_key(dimension: Dimension, hour: int) -> int:
    if dimension is Dimension.HOUR:
        return hour
    day = day_of_hour(hour)
    return day if dimension is Dimension.DAY else week_of_day(day)


def _key(
    query: Rollup, entry_id: int, member_id: int, hour: int, category_of: Callable[[int], str | None]
) -> Key | None:
    """The group a cell falls in, or None when the query leaves it out."""
    if not query.keeps(hour) or (query.entry_ids is not None and entry_id not in query.entry_ids):
        return None
    category = category_of(entry_id) if query.needs_category else ""
    if query.needs_category and (category is None or (query.category is not None and category != query.category)):
        return None
    parts: list[int | str] = []
    for dimension in query.by:
        if dimension is Dimension.ENTRY:
            parts.append(entry_id)
        elif dimension is Dimension.MEMBER:
            parts.append(member_id)
        elif dimension is Dimension.CATEGORY:
            parts.append(category or "")
        else:
            parts.append(time_key(dimension, hour))
    return tuple(parts)


def fold_sightings(
    query: Rollup, cells: Iterable[tuple[int, int, int, int]], category_of: Callable[[int], str | None]
) -> dict[Key, SightingTally]:
    """Group (entry, member, hour, count) cells as ``query`` asks."""
    counts: dict[Key, int] = defaultdict(int)
    members: dict[Key, set[int]] = defaultdict(set)
    for entry_id, member_id, hour, count in cells:
        key = _key(query, entry_id, member_id, hour, category_of)
        if key is None or count <= 0:
            continue
        counts[key] += count
        members[key].add(member_id)
    return {key: SightingTally(count, len(members[key])) for key, count in counts.items()}


def fold_actions(
    query: Rollup,
    cells: Iterable[tuple[int, int, int, Action, int]],
    category_of: Callable[[int], str | None],
) -> dict[Key, ActionTally]:
    """Group (entry, member, hour, action, count) cells as ``query`` asks."""
    counts: dict[Key, dict[Action, int]] = defaultdict(lambda: defaultdict(int))
    for entry_id, member_id, hour, action, count in cells:
        key = _key(query, entry_id, member_id, hour, category_of)
        if key is not None and count > 0:
            counts[key][action] += count
    return {key: ActionTally(dict(by_action)) for key, by_action in counts.items()}


@dataclass(frozen=True)
class SubmissionFacts:
    """What ``tally_submissions`` needs of one submission."""

    submission_id: int
    member_id: int
    category: str
    removed_at: float
    notice_received_at: float | None
    active: bool


def tally_submissions(
    entries: Iterable[Iterable[SubmissionFacts]], start: float, end: float, by: Dimension
) -> dict[int | str, SubmissionTally]:
    """SubmissionTally per member or category, from each entry's submissions
    (for a store that cannot ask its database to do it)."""
    submissions: dict[int | str, int] = defaultdict(int)
    corroborations: dict[int | str, int] = defaultdict(int)
    new_entries: dict[int | str, int] = defaultdict(int)
    hours: dict[int | str, list[float]] = defaultdict(list)
    for entry in entries:
        ordered = sorted(entry, key=lambda s: s.submission_id)
        members_before: set[int] = set()
        for n, s in enumerate(ordered):
            if s.active and start <= s.removed_at < end:
                key: int | str = s.member_id if by is Dimension.MEMBER else s.category
                submissions[key] += 1
                corroborations[key] += bool(members_before - {s.member_id})
                new_entries[key] += n == 0
                if s.notice_received_at is not None:
                    hours[key].append(max(0.0, s.removed_at - s.notice_received_at) / HOUR)
            members_before.add(s.member_id)
    return {
        key: SubmissionTally(count, corroborations[key], new_entries[key], tuple(sorted(hours[key])))
        for key, count in submissions.items()
    }
