"""The Redis store's route to the feed (outbox, publication, late changes) on a
real redis-server; the same code runs on a Redis Cluster (tests/cluster)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

import pytest

from hashshare.feed import FeedFollower
from hashshare.index import SignalIndex
from hashshare.model import EntryChanged, Role, SignalsAdded, SubmissionDraft
from hashshare.store import redis_keys as keys
from hashshare.store.redis import RedisOptions, RedisStore, _Pending
from hashshare_client import DiscoveryMethod, LegalBasis, Signal, signal_types

pytestmark = pytest.mark.redis


@pytest.fixture
def store(redis_url: str) -> Iterator[RedisStore]:
    opened = RedisStore.from_url(redis_url, RedisOptions(sweep_seconds=0, outbox_grace_seconds=0))
    yield opened
    opened.close()


def sha256(text: str) -> Signal:
    return Signal(signal_types.SHA256.name, signal_types.SHA256.version, hashlib.sha256(text.encode()).digest())


def draft(*values: Signal) -> SubmissionDraft:
    return SubmissionDraft(
        values, "hate_speech", LegalBasis.COMMUNITY_GUIDELINES, DiscoveryMethod.USER_REPORT, "", None, time.time()
    )


def rows_held(index: SignalIndex) -> set[int]:
    return {int(r) for row_ids, _, _ in index.export().values() for r in row_ids}


def test_a_change_left_in_an_outbox_is_published_by_the_sweeper(store: RedisStore) -> None:
    member = store.create_member("alpha", frozenset({Role.TRUST_SAFETY}), time.time()).member_id
    entry = store.submit(member, "req", b"d", draft(sha256("a")), None, time.time()).entry_id
    position = store.feed_position()
    # A write that commits its change and dies before publishing it, as a method
    # written with its own pipeline (not through _atomically) leaves it too.
    with store._redis.pipeline(transaction=True) as tx:
        tx.hset(keys.entry(entry), "note", "x")
        store._append(tx, EntryChanged((entry,)))
        tx.execute()
    assert store.changes_since(position) == ([], position)
    assert store._redis.hlen(keys.outbox(keys.slot_of(keys.entry(entry)))) == 1

    assert store.publish_pending() == 1

    assert store.changes_since(position)[0] == [EntryChanged((entry,))]
    assert store._redis.hlen(keys.outbox(keys.slot_of(keys.entry(entry)))) == 0
    assert store.publish_pending() == 0


def test_an_addition_published_after_its_removal_is_not_indexed(store: RedisStore, redis_url: str) -> None:
    member = store.create_member("alpha", frozenset({Role.TRUST_SAFETY}), time.time()).member_id
    kept = store.submit(member, "kept", b"k", draft(sha256("kept")), None, time.time())
    gone = store.submit(member, "gone", b"g", draft(sha256("gone")), None, time.time())
    index = SignalIndex()
    follower = FeedFollower(store, index, 0.05)
    follower.load()
    assert rows_held(index) == {1, 2}
    added = store.changes_since("")[0][1]
    assert isinstance(added, SignalsAdded) and added.rows[0].entry_id == gone.entry_id

    store.retract(member, "retract", b"r", gone.entry_id, "mistake", time.time())
    # A writer that stalled publishes its addition only now, after the removal.
    store._publish([_Pending(keys.slot_of(keys.entry(gone.entry_id)), "late", added)])
    follower.catch_up()

    assert rows_held(index) == {1} and kept.entry_id != gone.entry_id


def test_wait_for_changes_returns_as_soon_as_a_change_is_published(store: RedisStore) -> None:
    position = store.feed_position()
    started = time.monotonic()
    store.wait_for_changes(position, 0.3)  # nothing new: blocks for the whole timeout
    assert time.monotonic() - started >= 0.25
    member = store.create_member("alpha", frozenset({Role.TRUST_SAFETY}), time.time()).member_id
    store.submit(member, "req", b"d", draft(sha256("a")), None, time.time())
    started = time.monotonic()
    store.wait_for_changes(position, 5.0)
    assert time.monotonic() - started < 0.5
