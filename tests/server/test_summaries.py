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

from hashshare import members
from hashshare.bank import Bank
from hashshare.model import EntryChanged, Principal, Role, SubmissionDraft
from hashshare.settings import Settings
from hashshare.store import open_store
from hashshare.store.base import Store
from hashshare.summaries import SummaryCache
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
        cache: SummaryCache[object] = SummaryCache(counting)
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
        cache: SummaryCache[object] = SummaryCache(counting)
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
