"""Spread analytics: what platforms did with matches, and what researchers
and the authority may learn about how removed content keeps spreading.

Researchers see members only under the bank's stable pseudonyms, never a
name, an id or a hash; every count from 1 to ``research_min_count - 1`` is
withheld (``Counted.suppressed``), and so is any figure derived from so few
(a share, a median). Sightings and actions are counted in hour cells
(store/rollups.py): a period counts the hours that start inside it, and a
delay is measured to the middle of its hour.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .bank import Bank, PlatformSpread
from .errors import FieldViolation, InvalidArgument, NotFound
from .model import Principal
from .store.rollups import (
    HOUR,
    Action,
    ActionRecord,
    ActionTally,
    Dimension,
    Rollup,
    SightingTally,
    SubmissionTally,
    day_text,
    days_between,
    time_key,
)

# The most reports one ReportAction call may carry (documented in match.proto).
MAX_ACTION_REPORTS = 1000
# Upper bounds (in hours) of the delay histogram's buckets; the last is open.
DELAY_BUCKETS_HOURS = (1.0, 24.0, 7 * 24.0, 30 * 24.0)
# ListTopClusters: default and largest page.
DEFAULT_TOP = 10
MAX_TOP = 100
# The longest period one question may span: about three years of daily points.
MAX_PERIOD_DAYS = 1100
# The keyed hash of an item id: enough bits that two items of one platform never collide.
ITEM_KEY_BYTES = 16


@dataclass(frozen=True)
class Counted:
    """A count as researchers see it: ``value`` is 0 when ``suppressed``."""

    value: int
    suppressed: bool = False


@dataclass(frozen=True)
class Period:
    start: float
    end: float


@dataclass(frozen=True)
class ActionReportDraft:
    """One validated item of ReportAction, before its entry is checked."""

    entry_id: int
    action: Action
    acted_at: float
    item_id: str


@dataclass(frozen=True)
class ActionFigures:
    blocked: Counted
    sent_to_review: Counted
    allowed_after_review: Counted
    removed_after_review: Counted
    share_blocked: float


@dataclass(frozen=True)
class DelayFigures:
    median_hours: float
    p90_hours: float
    histogram: tuple[Counted, ...]


@dataclass(frozen=True)
class SpreadFigures:
    """GetSpread: one entry over all time."""

    entry_id: int
    category: str
    first_removed_at: float | None
    sightings: Counted
    distinct_platforms: Counted
    first_seen: float | None
    last_seen: float | None
    daily: tuple[tuple[str, Counted], ...]  # only days with enough sightings to show
    platforms: tuple[PlatformSpread, ...]  # only platforms with enough sightings to show
    actions: ActionFigures
    delay: DelayFigures


@dataclass(frozen=True)
class SeriesPoint:
    start: str  # the bucket's first day, YYYY-MM-DD
    reupload_attempts: Counted
    distinct_platforms: Counted
    actions: ActionFigures


@dataclass(frozen=True)
class ClusterFigures:
    entry_id: int
    category: str
    first_removed_at: float | None
    reupload_attempts: Counted
    distinct_platforms: Counted
    actions: ActionFigures
    delay: DelayFigures


@dataclass(frozen=True)
class PlatformFigures:
    platform: str  # a pseudonym
    submissions: Counted
    corroborations: Counted
    reupload_attempts: Counted
    actions: ActionFigures
    median_hours_to_removal: float


@dataclass(frozen=True)
class CategoryFigures:
    category: str
    entries: Counted
    submissions: Counted
    reupload_attempts: Counted
    distinct_platforms: Counted
    actions: ActionFigures


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """The nearest-rank quantile of ascending values; 0 for none."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


class Research:
    """Spread analytics over one bank's store, under its pseudonyms."""

    def __init__(self, bank: Bank) -> None:
        self.bank = bank
        self.store = bank.store
        self.min_count = bank.settings.research_min_count
        self._item_key = b""

    # Suppression

    def count(self, value: int) -> Counted:
        if 0 < value < self.min_count:
            return Counted(0, True)
        return Counted(value)

    def shown(self, value: int) -> bool:
        return value == 0 or value >= self.min_count

    def actions(self, tally: ActionTally | None) -> ActionFigures:
        tally = tally or ActionTally()
        total = tally.total
        blocked = tally.get(Action.BLOCKED) + tally.get(Action.REMOVED_AFTER_REVIEW)
        return ActionFigures(
            blocked=self.count(tally.get(Action.BLOCKED)),
            sent_to_review=self.count(tally.get(Action.SENT_TO_REVIEW)),
            allowed_after_review=self.count(tally.get(Action.ALLOWED_AFTER_REVIEW)),
            removed_after_review=self.count(tally.get(Action.REMOVED_AFTER_REVIEW)),
            # A share of a withheld total would give the small counts away.
            share_blocked=blocked / total if total and self.shown(total) else 0.0,
        )

    def delay(self, cells: Mapping[int, int], first_removed_at: float | None) -> DelayFigures:
        """Delays from the first removal to sightings counted per hour."""
        delays: list[float] = []
        if first_removed_at is not None:
            for hour, count in sorted(cells.items()):
                delays.extend([max(0.0, (hour + 0.5) * HOUR - first_removed_at) / HOUR] * count)
        delays.sort()
        buckets = [0] * (len(DELAY_BUCKETS_HOURS) + 1)
        for hours in delays:
            buckets[next((i for i, b in enumerate(DELAY_BUCKETS_HOURS) if hours <= b), len(DELAY_BUCKETS_HOURS))] += 1
        enough = self.shown(len(delays))
        return DelayFigures(
            median_hours=quantile(delays, 0.5) if enough else 0.0,
            p90_hours=quantile(delays, 0.9) if enough else 0.0,
            histogram=tuple(self.count(n) for n in buckets),
        )

    # ReportAction

    def item_key(self, member_id: int, item_id: str) -> bytes:
        """A keyed hash of a platform's item id; the id itself is never stored."""
        if not item_id:
            return b""
        if not self._item_key:
            self._item_key = self.store.secret("action-items")
        digest = hmac.new(self._item_key, f"{member_id}:{item_id}".encode(), hashlib.sha256).digest()
        return digest[:ITEM_KEY_BYTES]

    def known_entries(self, entry_ids: Iterable[int]) -> set[int]:
        return set(self.store.entry_summaries(entry_ids))

    def report_actions(
        self, principal: Principal, request_id: str, request_digest: bytes, drafts: Sequence[ActionReportDraft]
    ) -> int:
        """Store validated reports (their entries checked with ``known_entries``)."""
        records = [
            ActionRecord(d.entry_id, d.action, d.acted_at, self.item_key(principal.member_id, d.item_id))
            for d in drafts
        ]
        return self.store.report_actions(principal.member_id, request_id, request_digest, records, self.bank.now())

    # Questions

    def spread(self, entry_id: int) -> SpreadFigures:
        entry = self.store.get_entry(entry_id)
        if entry is None:
            raise NotFound(f"no entry {entry_id}")
        spread = self.bank.spread(entry_id)
        only = frozenset({entry_id})
        hours = self.store.sighting_rollup(Rollup(by=(Dimension.HOUR,), entry_ids=only))
        actions = self.store.action_rollup(Rollup(entry_ids=only)).get(())
        sightings = self.count(spread.sightings)
        return SpreadFigures(
            entry_id=entry_id,
            category=entry.category,
            first_removed_at=entry.first_removed_at,
            sightings=sightings,
            distinct_platforms=self.count(len(spread.platforms)),
            # When and on which days would give a withheld count away.
            first_seen=None if sightings.suppressed else spread.first_seen,
            last_seen=None if sightings.suppressed else spread.last_seen,
            daily=tuple((day, self.count(n)) for day, n in spread.daily if self.shown(n)),
            platforms=tuple(p for p in spread.platforms if self.shown(p.sightings)),
            actions=self.actions(actions),
            delay=self.delay({int(k[0]): t.sightings for k, t in hours.items()}, entry.first_removed_at),
        )

    def _entry_scope(self, category: str, entry_id: int | None) -> frozenset[int] | None:
        violations: list[FieldViolation] = []
        if category and category not in self.bank.taxonomy:
            violations.append(FieldViolation("category", f"unknown category {category!r}; see ListCategories"))
        if category and entry_id is not None:
            violations.append(FieldViolation("entry_id", "give a category or an entry, not both"))
        if violations:
            raise InvalidArgument(violations)
        if entry_id is None:
            return None
        if not self.store.entry_summaries([entry_id]):
            raise NotFound(f"no entry {entry_id}")
        return frozenset({entry_id})

    def series(self, period: Period, weekly: bool, category: str, entry_id: int | None) -> list[SeriesPoint]:
        entries = self._entry_scope(category, entry_id)
        bucket = Dimension.WEEK if weekly else Dimension.DAY
        query = Rollup(by=(bucket,), start=period.start, end=period.end, category=category or None, entry_ids=entries)
        sightings = self.store.sighting_rollup(query)
        actions = self.store.action_rollup(query)
        days = days_between(period.start, period.end)
        starts = sorted({time_key(bucket, day * 24) for day in days})
        points = []
        for start in starts:
            tally = sightings.get((start,), SightingTally(0, 0))
            points.append(
                SeriesPoint(
                    # A week cut by the period starts where the period does.
                    start=day_text(max(start, days[0])),
                    reupload_attempts=self.count(tally.sightings),
                    distinct_platforms=self.count(tally.members),
                    actions=self.actions(actions.get((start,))),
                )
            )
        return points

    def top_clusters(self, period: Period, category: str, limit: int) -> list[ClusterFigures]:
        self._entry_scope(category, None)
        if limit < 0 or limit > MAX_TOP:
            raise InvalidArgument.field("limit", f"0 (for {DEFAULT_TOP}) to {MAX_TOP}, got {limit}")
        scope = Rollup(start=period.start, end=period.end, category=category or None)
        per_entry = self.store.sighting_rollup(dataclasses.replace(scope, by=(Dimension.ENTRY,)))
        ranked = sorted(per_entry.items(), key=lambda kv: (-kv[1].sightings, kv[0][0]))[: limit or DEFAULT_TOP]
        top = frozenset(int(key[0]) for key, _ in ranked)
        if not top:
            return []
        chosen = Rollup(by=(Dimension.ENTRY,), start=period.start, end=period.end, entry_ids=top)
        actions = self.store.action_rollup(chosen)
        hours = self.store.sighting_rollup(dataclasses.replace(chosen, by=(Dimension.ENTRY, Dimension.HOUR)))
        cells: dict[int, dict[int, int]] = {entry_id: {} for entry_id in top}
        for (entry_id, hour), tally in hours.items():
            cells[int(entry_id)][int(hour)] = tally.sightings
        clusters = []
        for (entry_id,), tally in ranked:
            entry = self.store.get_entry(int(entry_id))
            first_removed_at = entry.first_removed_at if entry is not None else None
            clusters.append(
                ClusterFigures(
                    entry_id=int(entry_id),
                    category=entry.category if entry is not None else "",
                    first_removed_at=first_removed_at,
                    reupload_attempts=self.count(tally.sightings),
                    distinct_platforms=self.count(tally.members),
                    actions=self.actions(actions.get((entry_id,))),
                    delay=self.delay(cells[int(entry_id)], first_removed_at),
                )
            )
        return clusters

    def platform_stats(self, period: Period) -> list[PlatformFigures]:
        submissions = self.store.submission_rollup(period.start, period.end, Dimension.MEMBER)
        query = Rollup(by=(Dimension.MEMBER,), start=period.start, end=period.end)
        sightings = self.store.sighting_rollup(query)
        actions = self.store.action_rollup(query)
        members = {int(k) for k in submissions} | {int(k[0]) for k in sightings} | {int(k[0]) for k in actions}
        rows = []
        for member_id in members:
            tally = submissions.get(member_id, SubmissionTally(0, 0, 0))
            hours = tally.hours_to_removal
            rows.append(
                PlatformFigures(
                    platform=self.bank.pseudonym(member_id),
                    submissions=self.count(tally.submissions),
                    corroborations=self.count(tally.corroborations),
                    reupload_attempts=self.count(sightings.get((member_id,), SightingTally(0, 0)).sightings),
                    actions=self.actions(actions.get((member_id,))),
                    median_hours_to_removal=quantile(hours, 0.5) if self.shown(len(hours)) else 0.0,
                )
            )
        return sorted(rows, key=lambda row: row.platform)

    def category_stats(self, period: Period) -> list[CategoryFigures]:
        submissions = self.store.submission_rollup(period.start, period.end, Dimension.CATEGORY)
        query = Rollup(by=(Dimension.CATEGORY,), start=period.start, end=period.end)
        sightings = self.store.sighting_rollup(query)
        actions = self.store.action_rollup(query)
        categories = _ordered(
            [c.id for c in self.bank.taxonomy.categories],
            [str(k) for k in submissions] + [str(k[0]) for k in sightings] + [str(k[0]) for k in actions],
        )
        rows = []
        for category in categories:
            tally = submissions.get(category, SubmissionTally(0, 0, 0))
            seen = sightings.get((category,), SightingTally(0, 0))
            rows.append(
                CategoryFigures(
                    category=category,
                    entries=self.count(tally.new_entries),
                    submissions=self.count(tally.submissions),
                    reupload_attempts=self.count(seen.sightings),
                    distinct_platforms=self.count(seen.members),
                    actions=self.actions(actions.get((category,))),
                )
            )
        return rows


def _ordered(first: Iterable[str], then: Iterable[str]) -> list[str]:
    """``first`` in its order, then the rest of ``then`` sorted, each once."""
    listed = list(dict.fromkeys(first))
    return listed + sorted(set(then) - set(listed))
