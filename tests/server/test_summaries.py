"""The entry-summary cache: Match answers from memory, and forgets what the feed changes.

Two Banks on one real store stand for two server processes: one caches an
entry's summary through a Match, the other writes; after the first applies the
change feed, its answer reflects the write.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from hashshare import members, summaries
from hashshare.bank import Bank
from hashshare.model import (
    DisputeReason,
    EntryChanged,
    Feedback,
    Opinion,
    Principal,
    Review,
    ReviewDecision,
    Role,
    SignalsRemoved,
    SubmissionDraft,
)
from hashshare.settings import Settings
from hashshare.store import open_store
from hashshare.store.base import Store, SummaryColumns
from hashshare.summaries import SummaryCache, SummaryTable
from hashshare.taxonomy import Taxonomy
from hashshare_client import DiscoveryMethod, LegalBasis, Signal, Verdict, signal_types


def _pdq(seed: int) -> Signal:
    value = np.random.default_rng(seed).integers(0, 2**8, 32, dtype=np.uint8).tobytes()
    return Signal(signal_types.PDQ.name, signal_types.PDQ.version, value, 90)


def _draft(signal: Signal) -> SubmissionDraft:
    return SubmissionDraft(
        (signal,), "hate_speech", LegalBasis.LOCAL_LAW, DiscoveryMethod.UNSPECIFIED, "", None, time.time()
    )


def _principal(store: Store, name: str) -> Principal:
    member, token, _ = members.create_member(store, name, ["trust_safety", "platform"], time.time())
    return Principal(member.member_id, name, token.token_id, frozenset({Role.TRUST_SAFETY, Role.PLATFORM}))


class _CountingStore:
    """A real store, counting the summary reads that reach it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.reads: list[list[int]] = []

    def entry_summaries(self, entry_ids: object) -> dict[int, object]:
        ids = list(entry_ids)  # type: ignore[call-overload]
        self.reads.append(ids)
        return dict(self.store.entry_summaries(ids))


class _ListingStore(_CountingStore):
    """A real store that also lists every summary (the table's bulk read)."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.steps = 0

    def entry_summaries_after(self, entry_id: int, limit: int) -> SummaryColumns | None:
        self.steps += 1
        return self.store.entry_summaries_after(entry_id, limit)


def _loaded(cache: SummaryCache) -> SummaryTable:
    deadline = time.monotonic() + 10
    while cache.table is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cache.table is not None, "the summary table did not load"
    return cache.table


@pytest.fixture
def two_banks(store_url: str) -> Iterator[tuple[Bank, Bank]]:
    # A long poll: each bank sees the other's writes only when a test calls catch_up.
    settings = Settings(store=store_url, feed_poll_seconds=3600, sighting_flush_seconds=3600)
    banks = []
    for _ in range(2):
        bank = Bank(open_store(store_url), settings, Taxonomy())
        bank.start(writes_snapshots=False)
        banks.append(bank)
    yield banks[0], banks[1]
    for bank in banks:
        bank.stop()
        bank.store.close()


def test_a_second_lookup_of_an_entry_reads_no_summary_from_the_store(tmp_path: object) -> None:
    store = open_store(f"sqlite:///{tmp_path}/bank.db")
    try:
        member = _principal(store, "a")
        outcome = store.submit(member.member_id, "r1", b"d1", _draft(_pdq(1)), None, time.time())
        counting = _CountingStore(store)
        cache = SummaryCache(counting)  # type: ignore[arg-type]
        first = cache.entry_summaries([outcome.entry_id, 999])
        second = cache.entry_summaries([outcome.entry_id])
        assert first == second == {outcome.entry_id: store.entry_summaries([outcome.entry_id])[outcome.entry_id]}
        assert counting.reads == [[outcome.entry_id, 999]]
        cache.apply(EntryChanged((outcome.entry_id,)))
        cache.entry_summaries([outcome.entry_id])
        assert counting.reads[-1] == [outcome.entry_id]
    finally:
        store.close()


def test_a_read_overtaken_by_a_change_is_answered_but_not_kept(tmp_path: object) -> None:
    store = open_store(f"sqlite:///{tmp_path}/bank.db")
    try:
        member = _principal(store, "a")
        entry_id = store.submit(member.member_id, "r1", b"d1", _draft(_pdq(1)), None, time.time()).entry_id

        class Overtaken(_CountingStore):
            def entry_summaries(self, entry_ids: object) -> dict[int, object]:
                found = super().entry_summaries(entry_ids)
                cache.apply(EntryChanged((entry_id,)))  # the feed forgets it while the read is under way
                return found

        counting = Overtaken(store)
        cache = SummaryCache(counting)  # type: ignore[arg-type]
        assert entry_id in cache.entry_summaries([entry_id])
        assert len(cache) == 0
    finally:
        store.close()


def test_cached_summaries_follow_corroborations_and_retractions_of_another_process(
    two_banks: tuple[Bank, Bank],
) -> None:
    serving, writer = two_banks
    first, second = _principal(writer.store, "first"), _principal(writer.store, "second")
    signal = _pdq(7)
    submitted = writer.submit(first, str(uuid.uuid4()), b"1", _draft(signal))
    serving.feed.catch_up()

    def corroborations() -> list[int]:
        return [m.corroborations for m in serving.match(first, [signal]).matches]

    assert corroborations() == [1]
    assert len(serving.summaries) == 1  # cached: the next lookups read no summary

    joined = writer.submit(second, str(uuid.uuid4()), b"2", _draft(signal))
    assert joined.entry_id == submitted.entry_id and joined.corroborations == 2
    serving.feed.catch_up()
    assert corroborations() == [2]

    writer.retract(second, str(uuid.uuid4()), b"3", submitted.entry_id, "")
    serving.feed.catch_up()
    assert corroborations() == [1]

    writer.retract(first, str(uuid.uuid4()), b"4", submitted.entry_id, "")
    serving.feed.catch_up()
    assert serving.match(first, [signal]).verdict is Verdict.NONE


def test_every_matched_entry_is_recorded_as_a_sighting(two_banks: tuple[Bank, Bank]) -> None:
    serving, _ = two_banks
    member = _principal(serving.store, "a")
    signals = [_pdq(seed) for seed in range(3)]
    entry_ids = [serving.submit(member, str(uuid.uuid4()), b"x", _draft(s)).entry_id for s in signals]
    outcome = serving.match(member, signals)
    assert sorted(m.entry_id for m in outcome.matches) == sorted(entry_ids)
    assert serving.sightings.flush() == 3
    for entry_id in entry_ids:
        stats = serving.store.sighting_stats(entry_id)
        assert [(m.member_id, m.count) for m in stats.members] == [(member.member_id, 1)]


def test_the_table_answers_every_entry_without_store_reads_and_forgets_what_changes(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(summaries, "LOAD_STEP", 7)  # several steps of a load
    store = open_store(f"sqlite:///{tmp_path}/bank.db")
    try:
        first, second = _principal(store, "a"), _principal(store, "b")
        entry_ids = [
            store.submit(first.member_id, f"r{n}", b"d", _draft(_pdq(n)), None, time.time()).entry_id for n in range(30)
        ]
        store.submit(second.member_id, "s1", b"d", _draft(_pdq(3)), entry_ids[3], time.time())
        # Entries with feedback and reviews are described whole.
        now = time.time()
        for member, opinion in ((first, Opinion.AGREE), (second, Opinion.DISAGREE)):
            reason = DisputeReason.LAWFUL if opinion is Opinion.DISAGREE else DisputeReason.NONE
            feedback = Feedback(entry_ids[8], member.member_id, opinion, reason, "", now)
            store.give_feedback(member.member_id, f"f{member.member_id}", b"f", feedback)
        store.review_entry(Review(entry_ids[9], ReviewDecision.DISABLE, "lawful satire", first.member_id, now))
        source = _ListingStore(store)
        cache = SummaryCache(source)  # type: ignore[arg-type]
        cache.start_loading()
        table = _loaded(cache)
        assert source.steps >= 30 // 7 and len(table) == 30
        expected = store.entry_summaries(entry_ids)
        assert cache.entry_summaries(entry_ids) == expected
        assert expected[entry_ids[3]].corroborations == 2
        assert (expected[entry_ids[8]].disputes, expected[entry_ids[8]].endorsers) == (1, 0)
        assert expected[entry_ids[9]].disabled
        assert source.reads == [], "every summary came from the table"

        cache.apply(EntryChanged((entry_ids[5],)))  # the feed says it changed: read it again
        assert cache.entry_summaries([entry_ids[5], entry_ids[6]]) == {
            entry_ids[5]: expected[entry_ids[5]],
            entry_ids[6]: expected[entry_ids[6]],
        }
        assert source.reads == [[entry_ids[5]]]

        # A retraction's change names its entry: that entry alone is read again.
        position = store.feed_position()
        store.retract(second.member_id, "t1", b"d", entry_ids[3], "", time.time())
        retraction, _ = store.changes_since(position)
        assert [type(c) for c in retraction] == [SignalsRemoved]
        source.reads.clear()
        for change in retraction:
            cache.apply(change)
        assert cache.table is table, "the table is kept"
        assert cache.entry_summaries([entry_ids[3], entry_ids[4]]) == {
            entry_ids[3]: store.entry_summaries([entry_ids[3]])[entry_ids[3]],
            entry_ids[4]: expected[entry_ids[4]],
        }
        assert cache.entry_summaries([entry_ids[3]])[entry_ids[3]].corroborations == 1
        assert source.reads == [[entry_ids[3]]]

        # A removal from a feed written before stores named entries: the whole table is read again.
        store.retract(first.member_id, "t2", b"d", entry_ids[4], "", time.time())
        cache.apply(SignalsRemoved((5,)))
        assert cache.table is None
        assert _loaded(cache).get(entry_ids[4]) == store.entry_summaries([entry_ids[4]])[entry_ids[4]]
        assert not cache.entry_summaries([entry_ids[4]])[entry_ids[4]].active
    finally:
        cache.stop()
        store.close()


def test_a_change_during_the_load_is_not_lost(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(summaries, "LOAD_STEP", 4)
    store = open_store(f"sqlite:///{tmp_path}/bank.db")
    try:
        member = _principal(store, "a")
        entry_ids = [
            store.submit(member.member_id, f"r{n}", b"d", _draft(_pdq(n)), None, time.time()).entry_id
            for n in range(12)
        ]

        class ChangedMidway(_ListingStore):
            def entry_summaries_after(self, entry_id: int, limit: int) -> SummaryColumns | None:
                step = super().entry_summaries_after(entry_id, limit)
                if self.steps == 2:  # the first step's entries were read; the feed now says one changed
                    cache.apply(EntryChanged((entry_ids[0],)))
                return step

        source = ChangedMidway(store)
        cache = SummaryCache(source)  # type: ignore[arg-type]
        cache.start_loading()
        table = _loaded(cache)
        assert table.get(entry_ids[0]) is None, "read before the change: not trusted"
        assert table.get(entry_ids[11]) is not None
        assert entry_ids[0] in cache.entry_summaries([entry_ids[0]])
        assert source.reads == [[entry_ids[0]]]
    finally:
        cache.stop()
        store.close()


def test_a_store_that_cannot_list_summaries_keeps_the_per_entry_cache(redis_url: str) -> None:
    store = open_store(redis_url)
    try:
        member = _principal(store, "a")
        entry_id = store.submit(member.member_id, "r1", b"d1", _draft(_pdq(1)), None, time.time()).entry_id
        source = _ListingStore(store)
        cache = SummaryCache(source)  # type: ignore[arg-type]
        cache.start_loading()
        deadline = time.monotonic() + 10
        while cache.loading and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not cache.loading and cache.table is None and source.steps == 1, "Redis lists no summaries"
        assert entry_id in cache.entry_summaries([entry_id]) and source.reads == [[entry_id]]
    finally:
        store.close()


def test_the_table_is_saved_with_the_index_snapshot_and_replayed_over(tmp_path: object) -> None:
    store_url = f"sqlite:///{tmp_path}/bank.db"
    settings = Settings(store=store_url, feed_poll_seconds=3600, sighting_flush_seconds=3600)
    first = Bank(open_store(store_url), settings, Taxonomy())
    first.start()  # a full load from the store: the table is read before serving
    assert first.summaries.table is not None and not first.summaries.loading
    member, other = _principal(first.store, "a"), _principal(first.store, "b")
    entry_ids = [first.submit(member, str(uuid.uuid4()), b"x", _draft(_pdq(n))).entry_id for n in range(5)]
    for n in range(5):  # entries added since the table was read: it learns them when they match
        assert [m.entry_id for m in first.match(member, [_pdq(n)]).matches] == [entry_ids[n]]
    assert all(first.summaries.table.get(entry_id) is not None for entry_id in entry_ids)
    first.stop()  # writes the snapshot, table included
    first.store.close()

    # After the snapshot, another process records a dispute of one entry.
    writer = open_store(store_url)
    feedback = Feedback(entry_ids[2], other.member_id, Opinion.DISAGREE, DisputeReason.LAWFUL, "", time.time())
    writer.give_feedback(other.member_id, "f1", b"f", feedback)
    expected = writer.entry_summaries(entry_ids)
    writer.close()

    counting = _CountingStore(open_store(store_url))
    second = Bank(counting.store, settings, Taxonomy())
    second.summaries = SummaryCache(counting)  # type: ignore[arg-type]
    second.feed.subscribe(second.summaries.apply)
    second.feed.add_snapshot_part("summaries", second.summaries)
    try:
        second.start()
        assert second.summaries.table is not None and not second.summaries.loading, "taken from the snapshot"
        assert second.summaries.table.get(entry_ids[2]) is None, "the replayed change forgot it"
        assert second.summaries.entry_summaries(entry_ids) == expected
        assert expected[entry_ids[2]].disputes == 1
        assert counting.reads == [[entry_ids[2]]]
    finally:
        second.stop()
        counting.store.close()


def test_facts_equal_the_summaries_for_known_forgotten_and_absent_entries(tmp_path: object) -> None:
    store = open_store(f"sqlite:///{tmp_path}/bank.db")
    try:
        first, second = _principal(store, "a"), _principal(store, "b")
        entry_ids = [
            store.submit(first.member_id, f"r{n}", b"d", _draft(_pdq(n)), None, time.time()).entry_id for n in range(12)
        ]
        store.submit(second.member_id, "s1", b"d", _draft(_pdq(2)), entry_ids[2], time.time())
        now = time.time()
        feedback = Feedback(entry_ids[4], second.member_id, Opinion.DISAGREE, DisputeReason.LAWFUL, "", now)
        store.give_feedback(second.member_id, "f1", b"f", feedback)
        store.review_entry(Review(entry_ids[6], ReviewDecision.DISABLE, "satire", first.member_id, now))
        source = _ListingStore(store)
        cache = SummaryCache(source)  # type: ignore[arg-type]
        cache.start_loading()
        _loaded(cache)
        cache.apply(EntryChanged((entry_ids[2], entry_ids[4])))  # unknown to the table: read from the store
        wanted = np.array(sorted([*entry_ids, 10_000]), dtype=np.int64)  # and one that does not exist
        facts = cache.facts(wanted)
        expected = store.entry_summaries(wanted.tolist())
        assert source.reads == [[entry_ids[2], entry_ids[4], 10_000]]
        assert facts.found.tolist() == [int(e) in expected for e in wanted]
        for place, entry_id in enumerate(wanted.tolist()):
            if entry_id not in expected:
                continue
            summary = expected[entry_id]
            assert (
                bool(facts.active[place]),
                bool(facts.disabled[place]),
                bool(facts.confirmed[place]),
                bool(facts.trusted[place]),
                int(facts.corroborations[place]),
                int(facts.endorsers[place]),
                int(facts.disputes[place]),
                facts.category(place),
            ) == (
                summary.active,
                summary.disabled,
                summary.confirmed,
                summary.trusted,
                summary.corroborations,
                summary.endorsers,
                summary.disputes,
                summary.category,
            ), entry_id
        assert int(facts.corroborations[list(wanted).index(entry_ids[2])]) == 2
        assert int(facts.disputes[list(wanted).index(entry_ids[4])]) == 1
        assert bool(facts.disabled[list(wanted).index(entry_ids[6])])
        # The facts of some of them are those entries' rows.
        some = wanted[[1, 4, 12]]
        taken = facts.take(some)
        assert taken.entry_ids.tolist() == some.tolist()
        assert taken.corroborations.tolist() == [int(facts.corroborations[p]) for p in (1, 4, 12)]
    finally:
        cache.stop()
        store.close()
