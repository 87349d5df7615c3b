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

import numpy as np

from hashshare_client import Signal, Verdict

from .audit import AuditLog
from .auth import Authenticator
from .errors import InvalidArgument, NotFound, RateLimited
from .feed import FeedFollower, SnapshotWriter
from .index import SignalIndex
from .index.snapshot import snapshot_directory
from .matching import (
    CLUSTERING_THRESHOLDS,
    DEFAULT_THRESHOLDS,
    MatchOutcome,
    Thresholds,
    VerdictPolicy,
    blocking_entries,
    decide,
    find_candidates,
    find_candidates_many,
    find_clustering_candidates,
)
from .model import (
    AllowedItem,
    DisputeReason,
    Entry,
    EntrySummary,
    EntryTrust,
    Feedback,
    FeedbackOutcome,
    IndexedSignal,
    Member,
    MemberFeedbackStats,
    Opinion,
    Principal,
    RetractOutcome,
    Review,
    ReviewDecision,
    SubmissionDraft,
    SubmitOutcome,
    TrustLevel,
)
from .settings import Settings
from .sightings import SightingRecorder
from .store.base import BatchSubmission, Replayed, Store
from .summaries import EntryFacts, SummaryCache
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
        self.index = SignalIndex(search_threads=settings.search_threads)
        self.auth = Authenticator(store, settings.token_cache_seconds)
        self.feed = FeedFollower(store, self.index, settings.feed_poll_seconds, self.auth.forget)
        self.sightings = SightingRecorder(store, settings.sighting_flush_seconds)
        self.summaries = SummaryCache(store)
        self.feed.subscribe(self.summaries.apply)
        self.feed.add_snapshot_part("summaries", self.summaries)
        self._clock = clock
        # Serialises "find the cluster, then write" so that two submissions
        # of the same content through this process land in one entry.
        self._submit_lock = threading.Lock()
        self._pseudonym_key = b""
        self.audit_log = AuditLog(store, clock)
        # Settings that would silently block or hold everything are refused at start.
        if settings.disputes_to_review < 1:
            raise ValueError(f"--disputes-to-review must be at least 1, got {settings.disputes_to_review}")
        try:
            self.new_member_trust = TrustLevel(settings.new_member_trust)
        except ValueError:
            valid = ", ".join(level.value for level in TrustLevel)
            raise ValueError(f"--new-member-trust must be one of {valid}, got {settings.new_member_trust!r}") from None
        self.policy = VerdictPolicy(disputes_to_review=settings.disputes_to_review)

    def start(self, writes_snapshots: bool = True) -> None:
        """Load the index; the server reports SERVING only after this returns.

        Of several processes on one store, only one writes index snapshots."""
        self._pseudonym_key = self.store.secret("pseudonyms")
        directory = snapshot_directory(self.settings)
        self.feed.load(directory)
        if self.summaries.table is None:
            # A full load from the store takes long anyway: the table is read with it,
            # before serving. A snapshot without one leaves it to the background.
            self.summaries.start_loading(background=self.feed.snapshot_position is not None)
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
        self.summaries.stop()
        self.feed.stop()
        snapshots: SnapshotWriter | None = getattr(self, "_snapshots", None)
        if snapshots is not None:
            snapshots.stop()  # after the feed: the last snapshot is at its final position
        self.sightings.stop()

    def now(self) -> float:
        return self._clock()

    def match(
        self,
        principal: Principal,
        signals: Sequence[Signal],
        thresholds: Mapping[str, Thresholds] = DEFAULT_THRESHOLDS,
        limit: int | None = None,
    ) -> MatchOutcome:
        return self.match_many(principal, [(signals, thresholds)], [limit])[0]

    def submit(
        self, principal: Principal, request_id: str, request_digest: bytes, draft: SubmissionDraft
    ) -> SubmitOutcome:
        if not self._take_quota(principal, 1):
            raise RateLimited(self._rate_message())
        with self._submit_lock:
            cluster = self._cluster_for(draft.signals)
            outcome = self.store.submit(principal.member_id, request_id, request_digest, draft, cluster, self._clock())
            self.feed.catch_up()  # the caller's next Match must see it
        return outcome

    def submit_many(
        self, principal: Principal, items: Sequence[tuple[str, bytes, SubmissionDraft]]
    ) -> list[SubmitOutcome | InvalidArgument | RateLimited]:
        """Store a batch of ``(request_id, request_digest, draft)`` in one write.

        Each item is clustered as ``submit`` clusters it: into the entry it
        matches at BLOCK strength in the bank, else into the entry of the
        earlier item of this batch it matches, else a new entry. Items past
        the member's submission quota are refused (RateLimited in their place)."""
        granted = self._take_quota(principal, len(items))
        refused: list[SubmitOutcome | InvalidArgument | RateLimited] = [
            RateLimited(self._rate_message()) for _ in items[granted:]
        ]
        if not granted:
            return refused
        return [*self._submit_many(principal, items[:granted]), *refused]

    def _submit_many(
        self, principal: Principal, items: Sequence[tuple[str, bytes, SubmissionDraft]]
    ) -> list[SubmitOutcome | InvalidArgument]:
        with self._submit_lock:
            clusters = self._clusters_for([draft.signals for _, _, draft in items])
            # The batch's own items, under local ids 1, 2, ... (item n + 1), indexed and
            # searched at once; item n looks only at the hits of items before it.
            rows = [(n + 1, s) for n, (_, _, draft) in enumerate(items) for s in draft.signals]
            batch = SignalIndex()
            batch.add_many(
                IndexedSignal(row, local, s.type, s.version, s.value, s.variant)
                for row, (local, s) in enumerate(rows, 1)
            )
            lookups = [(draft.signals, CLUSTERING_THRESHOLDS) for _, _, draft in items]
            earlier = find_candidates_many(batch, lookups, below=range(1, len(items) + 1))
            summaries = {n + 1: EntrySummary(n + 1, draft.category, 1, True) for n, (_, _, draft) in enumerate(items)}
            planned: list[BatchSubmission] = []
            for n, ((request_id, digest, draft), join_entry_id) in enumerate(zip(items, clusters, strict=True)):
                join_item = None
                if join_entry_id is None and len(earlier[n].entry_ids):
                    blocking = blocking_entries(earlier[n], summaries)
                    join_item = blocking[0] - 1 if blocking else None
                planned.append(BatchSubmission(request_id, digest, draft, join_entry_id, join_item))
            outcomes = self.store.submit_many(principal.member_id, planned, self._clock())
            self.feed.catch_up()  # the caller's next Match must see them
        return [o.outcome if isinstance(o, Replayed) else o for o in outcomes]

    def _cluster_for(self, signals: Sequence[Signal]) -> int | None:
        """The entry these signals match at BLOCK strength, the closest first."""
        return self._clusters_for([signals])[0]

    def _clusters_for(self, items: Sequence[Sequence[Signal]]) -> list[int | None]:
        """``_cluster_for`` of each item, searched in one batch per sub-index and with
        one read of the entries found (per item, the searches cost more than the write)."""
        found = find_clustering_candidates(self.index, items)
        # Not the allow-list's (negative ids); most items of a batch found nothing.
        entry_ids = {e for candidates in found if len(candidates.entry_ids) for e in candidates.entries() if e > 0}
        summaries = self.store.entry_summaries(sorted(entry_ids)) if entry_ids else {}
        clusters: list[int | None] = []
        for candidates in found:
            blocking = blocking_entries(candidates, summaries)
            clusters.append(blocking[0] if blocking else None)
        return clusters

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

    # Trust and safety: quotas, feedback, review, trust levels, the allow-list

    def _take_quota(self, principal: Principal, wanted: int) -> int:
        """How many of ``wanted`` submissions the member may make now (all with no limit set)."""
        limit = self.settings.submit_rate_limit
        if limit <= 0 or wanted <= 0:
            return wanted
        reason = f"submitted faster than {limit} per minute"
        return self.store.take_submit_quota(principal.member_id, wanted, limit, 60.0, self._clock(), reason)

    def _rate_message(self) -> str:
        return (
            f"more than {self.settings.submit_rate_limit} submissions in the last minute: refused, not stored; "
            "the member is flagged for an admin to review"
        )

    def entry_verdict(self, entry: Entry) -> tuple[Verdict, tuple[str, ...]]:
        """What an exact copy of the entry's content gets now, and why it is held.

        The entry's own active signals are looked up like an upload, so the
        answer is decided by the same rules as Match (allow-list included)."""
        active = {s.submission_id for s in entry.submissions if s.active}
        signals = [s.signal for s in entry.signals if s.submission_id in active]
        if not signals:
            return Verdict.NONE, ()
        found = find_candidates(self.index, signals)
        mine = found.where((found.entry_ids == entry.entry_id) | (found.entry_ids < 0))
        outcome = decide(mine, self.store.entry_summaries([entry.entry_id]), self.policy)
        for match in outcome.matches:
            return match.verdict, match.held_reasons
        return Verdict.NONE, ()

    def give_feedback(
        self,
        principal: Principal,
        request_id: str,
        request_digest: bytes,
        entry_id: int,
        opinion: Opinion,
        reason: DisputeReason,
        comment: str,
    ) -> FeedbackOutcome:
        feedback = Feedback(entry_id, principal.member_id, opinion, reason, comment, self._clock())
        outcome = self.store.give_feedback(principal.member_id, request_id, request_digest, feedback)
        self.feed.catch_up()  # every cache of this process forgets the entry's verdict at once
        return outcome

    def review_entry(self, principal: Principal, entry_id: int, decision: ReviewDecision, reason: str) -> EntryTrust:
        trust = self.store.review_entry(Review(entry_id, decision, reason, principal.member_id, self._clock()))
        self.feed.catch_up()
        return trust

    def entry_trust(self, entry_id: int) -> EntryTrust:
        return self.store.entry_trust(entry_id)

    def set_trust_level(self, member_id: int, trust_level: TrustLevel) -> Member:
        member = self.store.set_trust_level(member_id, trust_level)
        self.feed.catch_up()
        return member

    def clear_flag(self, member_id: int) -> Member:
        return self.store.clear_flag(member_id)

    def add_to_allow_list(
        self, principal: Principal, request_id: str, request_digest: bytes, signals: Sequence[Signal], label: str
    ) -> AllowedItem:
        item = self.store.add_allowed(principal.member_id, request_id, request_digest, signals, label, self._clock())
        self.feed.catch_up()  # the next Match of this process sees it
        return item

    def remove_from_allow_list(
        self, principal: Principal, request_id: str, request_digest: bytes, allow_id: int, reason: str
    ) -> None:
        self.store.remove_allowed(principal.member_id, request_id, request_digest, allow_id, reason, self._clock())
        self.feed.catch_up()

    def feedback_stats(self, start: float | None, end: float | None) -> list[tuple[str, MemberFeedbackStats]]:
        """Per member, under its pseudonym (sorted by it), never its name or id."""
        return sorted((self.pseudonym(s.member_id), s) for s in self.store.feedback_stats(start, end))

    def match_many(
        self,
        principal: Principal,
        lookups: Sequence[tuple[Sequence[Signal], Mapping[str, Thresholds]]],
        limits: Sequence[int | None] | None = None,
    ) -> list[MatchOutcome]:
        """``match`` of each ``(signals, thresholds)`` lookup, searched together (MatchStream);
        ``limits`` caps how many matches each outcome describes (all when None)."""
        candidates = find_candidates_many(self.index, lookups)
        # Negative ids are the allow-list's: decide() reads them from the evidence, never as entries.
        matched = [np.unique(c.entry_ids[c.entry_ids > 0]) for c in candidates]
        every = None
        if any(len(ids) for ids in matched):
            every = matched[0] if len(matched) == 1 else np.unique(np.concatenate(matched))
        known: list[EntryFacts | dict[int, EntrySummary]] = [{}] * len(matched)
        if every is not None:
            facts = self.summaries.facts(every)
            known = [facts] if len(matched) == 1 else [facts.take(ids) for ids in matched]
        outcomes = [
            decide(c, facts_of, self.policy, limit)
            for c, facts_of, limit in zip(candidates, known, limits or [None] * len(candidates), strict=True)
        ]
        if every is not None:
            self.sightings.record_matches(
                principal.member_id, self._clock(), [(o.seen_entries, o.seen_ranks) for o in outcomes]
            )
        return outcomes
