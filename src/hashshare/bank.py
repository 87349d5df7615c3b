"""The bank: what each RPC does, independent of gRPC.

It owns the in-memory index, keeps it current with the store's change feed,
decides verdicts, clusters submissions and records sightings.
"""

from __future__ import annotations

import gc
import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from hashshare_client import Signal, Verdict

from .auth import Authenticator
from .errors import InvalidArgument, NotFound
from .feed import FeedFollower, SnapshotWriter
from .index import SignalIndex
from .index.snapshot import snapshot_directory
from .matching import DEFAULT_THRESHOLDS, MatchOutcome, Thresholds, decide, find_candidates, find_candidates_many
from .model import (
    Entry,
    EntrySummary,
    IndexedSignal,
    Principal,
    RetractOutcome,
    Sighting,
    SubmissionDraft,
    SubmitOutcome,
)
from .settings import Settings
from .sightings import SightingRecorder
from .store.base import BatchSubmission, Replayed, Store
from .summaries import SummaryCache
from .taxonomy import Taxonomy


@dataclass(frozen=True)
class PlatformSpread:
    platform: str  # a stable pseudonym, never the member's name or id
    sightings: int
    first_seen: float
    last_seen: float


@dataclass(frozen=True)
class Spread:
    entry_id: int
    sightings: int
    first_seen: float | None
    last_seen: float | None
    daily: tuple[tuple[str, int], ...]
    platforms: tuple[PlatformSpread, ...]


class Bank:
    def __init__(
        self, store: Store, settings: Settings, taxonomy: Taxonomy, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.settings = settings
        self.taxonomy = taxonomy
        self.index = SignalIndex()
        self.auth = Authenticator(store, settings.token_cache_seconds)
        self.feed = FeedFollower(store, self.index, settings.feed_poll_seconds, self.auth.forget)
        self.sightings = SightingRecorder(store, settings.sighting_flush_seconds)
        self.summaries: SummaryCache[EntrySummary] = SummaryCache(store)
        self.feed.subscribe(self.summaries.apply)
        self._clock = clock
        # Serialises "find the cluster, then write" so that two submissions
        # of the same content through this process land in one entry.
        self._submit_lock = threading.Lock()
        self._pseudonym_key = b""

    def start(self, writes_snapshots: bool = True) -> None:
        """Load the index; the server reports SERVING only after this returns.

        Of several processes on one store, only one writes index snapshots."""
        self._pseudonym_key = self.store.secret("pseudonyms")
        directory = snapshot_directory(self.settings)
        self.feed.load(directory)
        # The loaded index and everything before it live as long as the process: keep
        # them out of the cycle collector's full passes, which otherwise walk them all
        # and pause lookups for milliseconds.
        gc.collect()
        gc.freeze()
        self.feed.start()
        self.sightings.start()
        self._snapshots: SnapshotWriter | None = None
        if directory is not None and writes_snapshots:
            self._snapshots = SnapshotWriter(self.feed, directory, self.settings.snapshot_seconds)
            self._snapshots.start()

    def stop(self) -> None:
        self.feed.stop()
        snapshots: SnapshotWriter | None = getattr(self, "_snapshots", None)
        if snapshots is not None:
            snapshots.stop()  # after the feed: the last snapshot is at its final position
        self.sightings.stop()

    def now(self) -> float:
        return self._clock()

    def match(
        self, principal: Principal, signals: Sequence[Signal], thresholds: Mapping[str, Thresholds] = DEFAULT_THRESHOLDS
    ) -> MatchOutcome:
        return self.match_many(principal, [(signals, thresholds)])[0]

    def submit(
        self, principal: Principal, request_id: str, request_digest: bytes, draft: SubmissionDraft
    ) -> SubmitOutcome:
        with self._submit_lock:
            cluster = self._cluster_for(draft.signals)
            outcome = self.store.submit(principal.member_id, request_id, request_digest, draft, cluster, self._clock())
            self.feed.catch_up()  # the caller's next Match must see it
        return outcome

    def submit_many(
        self, principal: Principal, items: Sequence[tuple[str, bytes, SubmissionDraft]]
    ) -> list[SubmitOutcome | InvalidArgument]:
        """Store a batch of ``(request_id, request_digest, draft)`` in one write.

        Each item is clustered as ``submit`` clusters it: into the entry it
        matches at BLOCK strength in the bank, else into the entry of the
        earlier item of this batch it matches, else a new entry."""
        with self._submit_lock:
            batch = SignalIndex()  # the batch's own items, under local ids -1, -2, ...
            summaries: dict[int, EntrySummary] = {}
            planned: list[BatchSubmission] = []
            row = 0
            for n, (request_id, digest, draft) in enumerate(items):
                join_entry_id = self._cluster_for(draft.signals)
                join_item = None
                if join_entry_id is None and summaries:
                    candidates = find_candidates(batch, draft.signals)
                    blocking = [m for m in decide(candidates, summaries).matches if m.verdict is Verdict.BLOCK]
                    join_item = -blocking[0].entry_id - 1 if blocking else None
                planned.append(BatchSubmission(request_id, digest, draft, join_entry_id, join_item))
                local = -n - 1
                summaries[local] = EntrySummary(local, draft.category, 1, True)
                for signal in draft.signals:
                    row += 1
                    batch.add(IndexedSignal(row, local, signal.type, signal.version, signal.value, signal.variant))
            outcomes = self.store.submit_many(principal.member_id, planned, self._clock())
            self.feed.catch_up()  # the caller's next Match must see them
        return [o.outcome if isinstance(o, Replayed) else o for o in outcomes]

    def _cluster_for(self, signals: Sequence[Signal]) -> int | None:
        """The entry these signals match at BLOCK strength, the closest first."""
        candidates = find_candidates(self.index, signals)
        summaries = self.store.entry_summaries(candidates.evidence) if candidates.evidence else {}
        blocking = [m for m in decide(candidates, summaries).matches if m.verdict is Verdict.BLOCK]
        return blocking[0].entry_id if blocking else None

    def retract(
        self, principal: Principal, request_id: str, request_digest: bytes, entry_id: int, reason: str
    ) -> RetractOutcome:
        outcome = self.store.retract(principal.member_id, request_id, request_digest, entry_id, reason, self._clock())
        self.feed.catch_up()  # stops matching at once
        return outcome

    def get_entry(self, entry_id: int) -> Entry:
        entry = self.store.get_entry(entry_id)
        if entry is None:
            raise NotFound(f"no entry {entry_id}")
        return entry

    def spread(self, entry_id: int) -> Spread:
        if self.store.get_entry(entry_id) is None:
            raise NotFound(f"no entry {entry_id}")
        stats = self.store.sighting_stats(entry_id)
        platforms = tuple(
            PlatformSpread(self.pseudonym(m.member_id), m.count, m.first_seen, m.last_seen) for m in stats.members
        )
        return Spread(
            entry_id=entry_id,
            sightings=sum(p.sightings for p in platforms),
            first_seen=min((p.first_seen for p in platforms), default=None),
            last_seen=max((p.last_seen for p in platforms), default=None),
            daily=tuple(stats.daily.items()),
            platforms=tuple(sorted(platforms, key=lambda p: (-p.sightings, p.platform))),
        )

    def pseudonym(self, member_id: int) -> str:
        """A stable pseudonym: the same member always gets the same one in this bank,
        and it cannot be reversed without the bank's secret key."""
        digest = hmac.new(self._pseudonym_key, str(member_id).encode(), hashlib.sha256).hexdigest()
        return f"platform-{digest[:12]}"

    def match_many(
        self, principal: Principal, lookups: Sequence[tuple[Sequence[Signal], Mapping[str, Thresholds]]]
    ) -> list[MatchOutcome]:
        """``match`` of each ``(signals, thresholds)`` lookup, searched together (MatchStream)."""
        candidates = find_candidates_many(self.index, lookups)
        entry_ids = {entry_id for found in candidates for entry_id in found.evidence}
        summaries = self.summaries.entry_summaries(entry_ids) if entry_ids else {}
        outcomes = [decide(found, summaries) for found in candidates]
        if entry_ids:
            now = self._clock()
            member_id = principal.member_id
            self.sightings.record_many(
                Sighting(match.entry_id, member_id, now, match.verdict.value)
                for outcome in outcomes
                for match in outcome.matches
            )
        return outcomes
