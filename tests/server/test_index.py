"""The sublinear indexes return exactly what a brute-force scan returns, on clustered banks,
including after interleaved adds, removals and re-adds of the same row ids."""

from __future__ import annotations

import math
import os
import threading
import time
from typing import Any

import numpy as np
import pytest

from hashshare.index import SignalIndex, mih, segments
from hashshare.index.exact import ExactIndex
from hashshare.index.hamming import HammingIndex
from hashshare.index.lsh import MinHashLSHIndex, compact, equal_counts, scan16
from hashshare.index.mih import MIHIndex, choose_widths, chunk_radii
from hashshare.model import IndexedSignal, SignalsAdded, SignalsRemoved
from hashshare_client.signal_types import DHASH, MD5, MINHASH, PDQ, PHASH

# Small deltas so a few thousand adds exercise freezing, merging and compaction.
pytestmark = pytest.mark.usefixtures("small_delta")


@pytest.fixture
def small_delta(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segments, "DELTA_CAPACITY", 256)


def clustered(rng: np.random.Generator, n: int, words: int, max_flips: int) -> np.ndarray:
    """Half near duplicates of a few centres (uneven buckets), half uniform noise."""
    values = rng.integers(0, 2**64, size=(n, words), dtype=np.uint64)
    centres = values[: max(1, n // 40)]
    for i in range(n // 2):
        row = centres[int(len(centres) * rng.random() ** 2)].copy()
        for bit in rng.choice(words * 64, size=int(rng.integers(0, max_flips + 1)), replace=False):
            row[bit // 64] ^= np.uint64(1) << np.uint64(bit % 64)
        values[n // 2 + i] = row
    return values


def near(rng: np.random.Generator, row: np.ndarray, flips: int) -> np.ndarray:
    out = row.copy()
    for bit in rng.choice(len(row) * 64, size=flips, replace=False):
        out[bit // 64] ^= np.uint64(1) << np.uint64(bit % 64)
    return out


def as_set(hits: list) -> set[tuple[int, int, float]]:
    result = {(h.row_id, h.entry_id, h.score) for h in hits}
    assert len(result) == len(hits), "a row was returned twice"
    return result


def check_hamming(index: MIHIndex, reference: HammingIndex, queries: list[np.ndarray], radii: list[int]) -> int:
    # A merge publishing between two searches reorders their hits (they come by segment).
    assert index.wait_merged(timeout=60)
    found = 0
    values = [query.tobytes() for query in queries]
    values += values[:3]  # a batch may repeat a value
    for radius in radii:
        batched = index.search_many(values, radius)
        assert len(batched) == len(values)
        for value, many in zip(values, batched, strict=True):
            expected = as_set(reference.search(value, radius))
            one = index.search(value, radius)
            assert as_set(one) == expected
            assert many == one, "a batch returns what one search does, in the same order"
            found += len(expected)
    return found


@pytest.mark.parametrize(
    ("size_bytes", "design", "radii"), [(8, 12, [0, 3, 10, 12, 16]), (32, 40, [0, 15, 31, 40, 52])]
)
def test_mih_equals_brute_force_through_adds_and_removals(size_bytes: int, design: int, radii: list[int]) -> None:
    rng = np.random.default_rng(size_bytes)
    words = size_bytes // 8
    bank = clustered(rng, 3000, words, max_flips=design // 2)
    index, reference = MIHIndex(size_bytes, design_radius=design), HammingIndex(size_bytes)
    live: set[int] = set()
    found = most_segments = 0
    for step, row_id in enumerate(rng.permutation(len(bank)).tolist()):
        for target in (index, reference):
            target.add(row_id, row_id * 7, bank[row_id].tobytes())
        live.add(row_id)
        if step % 3 == 0:  # remove a random live row, and sometimes re-add it right away
            victim = int(rng.choice(sorted(live)))
            assert index.remove(victim) and reference.remove(victim)
            live.discard(victim)
            if step % 2 == 0:
                for target in (index, reference):
                    target.add(victim, victim * 7, bank[victim].tobytes())
                live.add(victim)
        if step % 500 == 499:
            queries = [near(rng, bank[int(rng.integers(len(bank)))], int(rng.integers(0, design))) for _ in range(8)]
            queries.append(rng.integers(0, 2**64, size=words, dtype=np.uint64))
            found += check_hamming(index, reference, queries, radii)
        most_segments = max(most_segments, len(index.segment_sizes()))
    assert len(index) == len(reference) == len(live)
    assert most_segments > 1, "the bank should have spanned several segments and a delta"
    assert found > 100, "queries near stored rows must find some"


class HeldMIHIndex(MIHIndex):
    """An MIH index whose merge threads wait at ``gate`` before building a segment of more
    than ``held_rows`` rows, so a test can act while such a merge is under way. Segments
    frozen by the writer are built at once."""

    def __init__(self, size_bytes: int, design_radius: int, held_rows: int) -> None:
        super().__init__(size_bytes, design_radius=design_radius)
        self.held_rows = held_rows
        self.gate = threading.Event()
        self.holding = threading.Event()  # a merge waits at the gate

    def build(self, values: np.ndarray) -> Any:
        if threading.current_thread().name == "hashshare-merge" and len(values) > self.held_rows:
            self.holding.set()
            assert self.gate.wait(timeout=30), "the test never let the merge go on"
        return super().build(values)


def merge_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "hashshare-merge"]


def test_mih_equals_brute_force_while_a_merge_is_held() -> None:
    """Adds, removals (of rows in the merge's parts too), re-adds and searches while a merge
    builds: searches equal the scan throughout, and what was removed meanwhile stays removed
    once the merge is published."""
    rng = np.random.default_rng(17)
    bank = clustered(rng, 4000, 4, max_flips=20)
    index, reference = HeldMIHIndex(32, design_radius=31, held_rows=1500), HammingIndex(32)

    def add(row_ids: np.ndarray, entry_offset: int = 0) -> None:
        index.add_many(row_ids, row_ids * 7 + entry_offset, bank[row_ids])
        for row_id in row_ids.tolist():
            reference.add(row_id, row_id * 7 + entry_offset, bank[row_id].tobytes())

    def same_as_scan() -> int:
        found = 0
        for _ in range(6):
            query = near(rng, bank[int(rng.integers(len(bank)))], int(rng.integers(0, 32))).tobytes()
            for radius in (0, 15, 31):
                expected = as_set(reference.search(query, radius))
                assert as_set(index.search(query, radius)) == expected
                found += len(expected)
        return found

    add(np.arange(0, 1000))
    add(np.arange(1000, 1800))  # two segments of 1000 and 800 rows: their merge is held
    try:
        assert index.holding.wait(timeout=30)
        held = index._merging[max(index._merging)]
        assert sorted(len(part.rows) for part in held.parts) == [800, 1000]
        assert not index.wait_merged(timeout=0.05), "a held merge is still running"

        found = same_as_scan()
        removed = rng.choice(1800, size=150, replace=False)  # rows of the merge's parts
        for row_id in removed.tolist():
            assert index.remove(row_id) and reference.remove(row_id)
        readded = removed[:40]
        add(readded, entry_offset=1)  # to the delta, told apart from the old copy by entry id
        start = 1800
        for size in (100, 256, 30, 600, 256):  # fills and freezes the delta, merges small segments
            add(np.arange(start, start + size))
            start += size
            for row_id in rng.choice(start, size=10, replace=False).tolist():
                assert index.remove(row_id) == reference.remove(row_id)
            found += same_as_scan()
        assert held.lane in index._merging and index._merging[held.lane] is held, "still held"
        assert len(index) == len(reference)

    finally:
        index.gate.set()
    assert index.wait_merged(timeout=30)
    assert all(part not in index._state.segments for part in held.parts), "the merge was published"
    for row_id in removed[40:].tolist():
        assert not index.remove(row_id), "a row removed during the merge came back"
    assert len(index) == len(reference)
    found += same_as_scan()
    assert found > 100
    for thread in merge_threads():
        thread.join(timeout=10)
    assert not merge_threads(), "merge threads end with their merges: an idle index may fork"


def test_a_snapshot_does_not_wait_for_a_merge_that_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past SNAPSHOT_MERGE_WAIT the snapshot takes the live rows without the search structure
    (a restart rebuilds it) instead of waiting for merges a busy feed may never let end."""
    monkeypatch.setattr(segments, "SNAPSHOT_MERGE_WAIT", 0.05)
    monkeypatch.setattr(mih, "choose_widths", lambda bits, rows, radius, compact: [12] * 8)  # no flat scans
    rng = np.random.default_rng(29)
    bank = clustered(rng, 2000, 4, max_flips=20)
    index = HeldMIHIndex(32, design_radius=31, held_rows=1500)
    index.add_many(np.arange(1000), np.arange(1000) + 5, bank[:1000])
    assert index.remove(7)  # a tombstone the merge leaves behind
    index.add_many(np.arange(1000, 1800), np.arange(1000, 1800) + 5, bank[1000:1800])  # their merge is held
    try:
        assert index.holding.wait(timeout=30)
        started = time.monotonic()
        (row_ids, entry_ids, values), structure = index.export_snapshot()
        assert time.monotonic() - started < 10, "the snapshot waited for the held merge"
        assert structure is None
        assert row_ids.tolist() == [r for r in range(1800) if r != 7]
        assert entry_ids.tolist() == [r + 5 for r in range(1800) if r != 7]
        assert np.array_equal(values, np.delete(bank[:1800], 7, axis=0))
    finally:
        index.gate.set()
    assert index.wait_merged(timeout=30)
    assert index.segment_sizes() == [1799]
    (row_ids, _, _), structure = index.export_snapshot()
    assert len(row_ids) == 1799
    assert structure is not None, "once merged into one segment without tombstones, the structure goes too"


def test_small_merges_go_on_while_a_large_one_is_held() -> None:
    # Lanes: with a 256-row delta, merges into fewer than 4096 rows are lane 0, larger ones
    # lane 1. The feed freezes a segment every 256 rows; they are merged meanwhile.
    rng = np.random.default_rng(23)
    bank = clustered(rng, 20_000, 1, max_flips=6)
    index = HeldMIHIndex(8, design_radius=10, held_rows=4096)
    ids = np.arange(len(bank), dtype=np.int64)
    index.add_many(ids[:6000], ids[:6000], bank[:6000])
    index.add_many(ids[6000:11000], ids[6000:11000], bank[6000:11000])
    try:
        assert index.holding.wait(timeout=30)
        most = 0
        deadline = time.monotonic() + 20
        for start in range(11_000, 19_000, 250):  # 32 feed batches: about 32 frozen segments
            index.add_many(ids[start : start + 250], ids[start : start + 250], bank[start : start + 250])
            while 0 in index._merging and time.monotonic() < deadline:  # lane 0's merge, if one runs
                time.sleep(0.001)
            most = max(most, len(index.segment_sizes()))
        assert index._merging.keys() == {1}, "only the held merge runs: lane 0's are done"
        # 8000 rows in segments whose sizes grow geometrically, besides the two held ones.
        assert most <= 2 + 8, index.segment_sizes()
    finally:
        index.gate.set()
    assert index.wait_merged(timeout=30)
    assert len(index) == 19_000
    query = bank[12_345].tobytes()
    assert any(hit.row_id == 12_345 for hit in index.search(query, 0))


def test_a_child_forked_during_a_merge_merges_on_its_own() -> None:
    # Nothing forks with an index today (an import forks readers only when it runs no other
    # thread; a server's parent holds no index), but a child must not inherit lanes taken by
    # merge threads it lacks: it would never merge again, and wait_merged would never return.
    rng = np.random.default_rng(31)
    bank = clustered(rng, 3000, 1, max_flips=6)
    ids = np.arange(len(bank), dtype=np.int64)
    index = HeldMIHIndex(8, design_radius=10, held_rows=1500)
    index.add_many(ids[:1000], ids[:1000], bank[:1000])
    index.add_many(ids[1000:1800], ids[1000:1800], bank[1000:1800])
    try:
        assert index.holding.wait(timeout=30)
        pid = os.fork()
        if pid == 0:  # the child: report through the exit status only
            status = 1
            try:
                index.gate.set()
                index.add_many(ids[1800:3000], ids[1800:3000], bank[1800:3000])
                merged = index.wait_merged(timeout=30) and index.segment_sizes() == [3000]
                status = 0 if merged else 2
            finally:
                os._exit(status)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the child could not merge on its own"
        assert not index.wait_merged(timeout=0.01), "the parent's merge is still held"
    finally:
        index.gate.set()
    assert index.wait_merged(timeout=30)
    assert sum(index.segment_sizes()) == 1800


def test_mih_feed_with_merges_in_the_background_equals_brute_force() -> None:
    """A feed of adds and removals, searched at every step while merges come and go on
    their threads (no waiting), then at checkpoints once they settle."""
    rng = np.random.default_rng(29)
    bank = clustered(rng, 12_000, 1, max_flips=6)
    index, reference = MIHIndex(8, design_radius=10), HammingIndex(8)
    live: set[int] = set()
    start = searched_merging = 0
    deadline = time.monotonic() + 60
    for step in range(120):
        assert time.monotonic() < deadline, "the feed took too long"
        size = int(rng.integers(1, 200))
        batch = np.arange(start, start + size)
        start += size
        index.add_many(batch, batch + 3, bank[batch])
        for row_id in batch.tolist():
            reference.add(row_id, row_id + 3, bank[row_id].tobytes())
        live.update(batch.tolist())
        for victim in rng.choice(sorted(live), size=min(len(live), 15), replace=False).tolist():
            assert index.remove(victim) and reference.remove(victim)
            live.discard(victim)
            if victim % 3 == 0:  # back at once
                index.add(victim, victim + 3, bank[victim].tobytes())
                reference.add(victim, victim + 3, bank[victim].tobytes())
                live.add(victim)
        searched_merging += bool(index._merging)
        query = near(rng, bank[int(rng.integers(start))], int(rng.integers(0, 8))).tobytes()
        for radius in (0, 6, 10):
            assert as_set(index.search(query, radius)) == as_set(reference.search(query, radius))
        if step % 40 == 39:
            queries = [near(rng, bank[int(rng.integers(start))], int(rng.integers(0, 11))) for _ in range(10)]
            assert check_hamming(index, reference, queries, [0, 4, 10]) > 10
    assert len(index) == len(reference) == len(live)
    assert searched_merging > 0, "some searches should have run while a merge did"


def test_mih_bulk_load_replayed_feed_and_chunked_segments() -> None:
    rng = np.random.default_rng(7)
    bank = clustered(rng, 20_000, 1, max_flips=6)
    ids = np.arange(len(bank), dtype=np.int64)
    index, reference = MIHIndex(8, design_radius=10), HammingIndex(8)
    index.add_many(ids, ids + 1, bank)
    structure = index._state.segments[0].structure
    assert structure is not None and structure.keyed is not None, "20k 64-bit rows are searched through tables"
    index.add_many(ids[:100], ids[:100] + 1, bank[:100])  # a replayed feed adds nothing twice
    index.add(5, 6, bank[5].tobytes())
    for i, row in enumerate(bank):
        reference.add(i, i + 1, row.tobytes())
    for row_id in range(0, 20_000, 3):
        assert index.remove(row_id) and reference.remove(row_id)
        assert not index.remove(row_id)
    assert len(index) == len(reference)
    queries = [near(rng, bank[int(rng.integers(len(bank)))], int(rng.integers(0, 11))) for _ in range(40)]
    assert check_hamming(index, reference, queries, [0, 4, 10, 16]) > 40


def test_mih_feed_batches_fill_the_delta_then_become_segments() -> None:
    # SubmitBatch's rows arrive a thousand at a time: a batch that fits joins the delta,
    # one that does not turns the delta and itself into a segment. Replays add nothing.
    rng = np.random.default_rng(21)
    bank = clustered(rng, 4000, 4, max_flips=20)
    index, reference = MIHIndex(32, design_radius=31), HammingIndex(32)
    capacity = segments.DELTA_CAPACITY
    start = 0
    removed: set[int] = set()
    for step, size in enumerate([1, 40, 200, 15, 300, 250, 700, 5, 1200, 90, 600, 400]):
        chosen = np.arange(start, start + size)
        # The end of the batch before, again (its rows still there).
        replayed = np.array([r for r in range(max(0, start - 20), start) if r not in removed], dtype=np.int64)
        batch = rng.permutation(np.concatenate([chosen, replayed]))
        assert index.wait_merged(timeout=60)  # no merge left to change the segments below
        before = (index.segment_sizes(), index._state.delta_size)
        index.add_many(batch * 3, batch + 7, bank[batch])
        for row_id in chosen.tolist():
            reference.add(row_id * 3, row_id + 7, bank[row_id].tobytes())
        if before[1] + size <= capacity:
            assert index.segment_sizes() == before[0] and index._state.delta_size == before[1] + size
        else:
            assert index._state.delta_size == 0 and sum(index.segment_sizes()) >= len(reference)
        start += size
        if step % 3 == 1:  # removals in the delta and in segments
            for row_id in rng.choice(start, size=10, replace=False).tolist():
                assert index.remove(row_id * 3) == reference.remove(row_id * 3)
                removed.add(row_id)
        assert len(index) == len(reference)
    queries = [near(rng, bank[int(rng.integers(start))], int(rng.integers(0, 32))) for _ in range(30)]
    assert check_hamming(index, reference, queries, [0, 15, 31]) > 30


def test_chunking_follows_bank_size_and_pigeonhole() -> None:
    small, large = choose_widths(64, 100_000, 10), choose_widths(64, 10_000_000, 10)
    assert small is not None and large is not None and sum(small) <= 64 and sum(large) <= 64
    assert max(large) > max(small)
    # Fewer, wider tables for a large PDQ bank: some bits are left out of every chunk.
    pdq = choose_widths(256, 10_000_000, 31)
    assert pdq is not None and len(pdq) <= 11 and sum(pdq) < 256
    # The chunk probed one bit deeper (the first, at radius 12 over four chunks) is the widest.
    phash = choose_widths(64, 1_000_000, 12)
    assert phash is not None and len(phash) == 4 and phash[0] > phash[-1] and sum(phash) == 64
    # Memory is priced by the megabyte: at 1M rows a few MB more buys more, faster tables.
    mid = choose_widths(256, 1_000_000, 31)
    assert mid is not None and len(mid) > len(pdq)
    assert choose_widths(64, 50, 10) is None  # a tiny segment is scanned
    for radius in range(0, 60):
        for chunks in range(1, 17):
            radii = chunk_radii(radius, chunks)
            # Missing every probe means each chunk differs by at least radius + 1 in total.
            assert sum(r + 1 for r in radii) == radius + 1


def test_mih_with_bits_left_out_of_the_chunks_equals_brute_force(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pigeonhole over 8 chunks of 12 bits (160 of 256 bits in no chunk), searched below,
    # at and above the radius the chunking serves.
    monkeypatch.setattr(mih, "choose_widths", lambda bits, rows, radius, compact: [12] * 8)
    rng = np.random.default_rng(11)
    bank = clustered(rng, 6000, 4, max_flips=20)
    ids = np.arange(len(bank), dtype=np.int64)
    index, reference = MIHIndex(32, design_radius=31), HammingIndex(32)
    index.add_many(ids, ids * 3, bank)
    for i, row in enumerate(bank):
        reference.add(i, i * 3, row.tobytes())
    for row_id in range(0, len(bank), 5):
        assert index.remove(row_id) and reference.remove(row_id)
    structure = index._state.segments[0].structure
    assert structure is not None and structure.widths == [12] * 8
    queries = [near(rng, bank[int(rng.integers(len(bank)))], int(rng.integers(0, 32))) for _ in range(30)]
    assert check_hamming(index, reference, queries, [0, 7, 31, 40]) > 30


def signature_bank(rng: np.random.Generator, n: int) -> np.ndarray:
    sigs = rng.integers(0, 2**32, size=(n, 128), dtype=np.uint32)
    centres = sigs[: n // 20]
    for i in range(n // 2, n):
        keep = rng.random(128) < rng.uniform(0.25, 1.0)
        sigs[i] = np.where(keep, centres[int(rng.integers(len(centres)))], sigs[i])
    return sigs


def test_minhash_lsh_matches_the_16_bit_scan() -> None:
    rng = np.random.default_rng(3)
    bank = signature_bank(rng, 6000)
    index = MinHashLSHIndex(128, min_similarity=0.3)
    live: dict[int, np.ndarray] = {}
    for step, row_id in enumerate(rng.permutation(len(bank)).tolist()):
        index.add(row_id, row_id + 100, bank[row_id].tobytes())
        live[row_id] = bank[row_id]
        if step % 4 == 0:
            victim = int(rng.choice(list(live)))
            assert index.remove(victim)
            del live[victim]
    assert len(index) == len(live)
    assert index.wait_merged(timeout=60)  # searches below compare orders of hits
    ids = np.array(sorted(live))
    stored = compact(np.array([live[i] for i in ids]))
    expected_total = missed = 0
    for _ in range(60):
        base = live[int(rng.choice(ids))]
        query = np.where(rng.random(128) < rng.uniform(0.3, 1.0), base, rng.integers(0, 2**32, 128, dtype=np.uint32))
        for threshold in (0.2, 0.3, 0.4, 0.5, 0.9):
            positions, similarity = scan16(stored, compact(query), threshold)
            expected = {(int(ids[p]), int(ids[p]) + 100, float(s)) for p, s in zip(positions, similarity, strict=True)}
            got = as_set(index.search(query.astype("<u4").tobytes(), threshold))
            batch = [query.astype("<u4").tobytes(), bank[int(rng.integers(len(bank)))].astype("<u4").tobytes()]
            assert index.search_many(batch, threshold) == [index.search(v, threshold) for v in batch]
            assert got <= expected, "every hit is verified against the stored signature"
            if threshold < 0.3:
                assert got == expected, "below the banding threshold the index scans"
            expected_total += len(expected)
            missed += len(expected - got)
    # At J = 0.3 a pair is a candidate with probability 0.9976; above, more.
    assert expected_total > 200 and missed <= max(1, expected_total // 100)


def test_minhash_lsh_recall_at_the_thresholds() -> None:
    rng = np.random.default_rng(11)
    bank = rng.integers(0, 2**32, size=(5000, 128), dtype=np.uint32)
    index = MinHashLSHIndex(128, min_similarity=0.3)
    ids = np.arange(len(bank))
    index.add_many(ids, ids, compact(bank))
    for threshold, floor in ((0.3, 0.98), (0.4, 0.995), (0.5, 1.0)):
        found = 0
        for target in range(300):
            query = rng.integers(0, 2**32, size=128, dtype=np.uint32)
            same = rng.choice(128, size=math.ceil(128 * threshold), replace=False)
            query[same] = bank[target, same]
            found += any(hit.row_id == target for hit in index.search(query.tobytes(), threshold))
        assert found / 300 >= floor, threshold


@pytest.mark.parametrize("width", [128, 16, 6, 130, 256])
def test_equal_counts_is_the_scans_count(width: int) -> None:
    rng = np.random.default_rng(width)
    rows = rng.integers(0, 3, size=(300, width), dtype=np.uint16)  # small values: many equal
    query = rng.integers(0, 3, size=width, dtype=np.uint16)
    rows[0] = query  # every value equal: the largest count must not overflow
    rows[1] = query + 3  # none equal
    assert equal_counts(rows, query).tolist() == np.count_nonzero(rows == query, axis=1).tolist()
    pairs = rng.integers(0, 3, size=rows.shape, dtype=np.uint16)  # one query per row
    assert equal_counts(rows, pairs).tolist() == np.count_nonzero(rows == pairs, axis=1).tolist()


def test_minhash_lsh_in_a_large_cluster_of_near_duplicates() -> None:
    """Rows of one cluster share many bands with a query near it: repeated candidates
    are verified once, and every search (single or batched) still equals the scan's."""
    rng = np.random.default_rng(13)
    centre = rng.integers(0, 2**32, size=128, dtype=np.uint32)
    bank = rng.integers(0, 2**32, size=(5000, 128), dtype=np.uint32)
    members = rng.random((2500, 128)) < rng.uniform(0.5, 1.0, size=(2500, 1))
    bank[:2500] = np.where(members, centre, bank[:2500])
    bank = bank[rng.permutation(len(bank))]
    stored = compact(bank)
    index = MinHashLSHIndex(128, min_similarity=0.3)
    ids = np.arange(len(bank))
    index.add_many(ids, ids + 7, stored)
    queries = [
        np.where(rng.random(128) < share, centre, rng.integers(0, 2**32, 128, dtype=np.uint32))
        for share in (1.0, 0.8, 0.6)
    ]
    queries += [bank[int(i)] for i in rng.integers(len(bank), size=3)]
    queries.append(rng.integers(0, 2**32, size=128, dtype=np.uint32))
    values = [query.astype("<u4").tobytes() for query in queries]
    proposed, distinct = index.candidates(values[0])
    assert proposed > 10 * distinct >= 10 * 2500, "the cluster's rows come up in many bands"
    batched = index.search_many(values + values[:2], 0.3)
    expected_total = missed = 0
    for value, query, many in zip(values + values[:2], queries + queries[:2], batched, strict=True):
        got = index.search(value, 0.3)
        assert many == got, "a batch returns what one search does, in the same order"
        positions, similarity = scan16(stored, compact(query), 0.3)
        expected = {(int(p), int(p) + 7, float(s)) for p, s in zip(positions, similarity, strict=True)}
        assert as_set(got) <= expected
        expected_total += len(expected)
        missed += len(expected - as_set(got))
    # Each member is at similarity 0.5 or more to the centre: missed with probability 2e-8 at most.
    assert len(batched[0]) >= 2500
    assert expected_total > 5000 and missed <= expected_total // 100


# Ids 3e6 apart pack in blocks (64 of them span 2**28); 2**27 apart they do not (2**33).
@pytest.mark.parametrize("spacing", [3_000_000, 2**27])
def test_mih_ids_beyond_int32_and_empty_batches(spacing: int) -> None:
    rng = np.random.default_rng(5)
    bank = clustered(rng, 3000, 1, max_flips=6)
    ids = np.arange(len(bank), dtype=np.int64) * spacing  # beyond int32
    index, reference = MIHIndex(8, design_radius=10), HammingIndex(8)
    index.add_many(ids[::-1], ids[::-1] + 2**40, bank[::-1])  # unsorted input is sorted
    for row_id, row in zip(ids.tolist(), bank, strict=True):
        reference.add(row_id, row_id + 2**40, row.tobytes())
    for row_id in ids[::7].tolist():
        assert index.remove(row_id) and reference.remove(row_id)
        assert not index.remove(row_id) and not index.remove(row_id + 1)
    queries = [near(rng, bank[int(rng.integers(len(bank)))], int(rng.integers(0, 8))) for _ in range(30)]
    assert check_hamming(index, reference, queries, [0, 6, 10, 20]) > 30
    assert index.search_many([], 10) == []
    assert MIHIndex(8, 10).search_many([bank[0].tobytes()], 10) == [[]]


def random_rows(rng: np.random.Generator, n: int) -> list[IndexedSignal]:
    """Signals of several types and views, with near duplicates, unknown views and types."""
    pdq = clustered(rng, n, 4, max_flips=20)
    phash = clustered(rng, n, 1, max_flips=8)
    text = signature_bank(rng, n)
    variants = ["", "trimmed", "center80", "center60", "not-a-view"]
    rows = []
    for i in range(n):
        variant = variants[i % len(variants)]
        rows.append(IndexedSignal(4 * i, i, "image/pdq", PDQ.version, pdq[i].tobytes(), variant))
        rows.append(IndexedSignal(4 * i + 1, i, "image/phash", PHASH.version, phash[i].tobytes(), variant))
        rows.append(IndexedSignal(4 * i + 2, i, "text/minhash", MINHASH.version, text[i].astype("<u4").tobytes()))
        rows.append(IndexedSignal(4 * i + 3, i, "exact/md5", MD5.version, bytes([i % 7]) * 16))
    rows.append(IndexedSignal(4 * n, n, "unknown/type", "1", b"x"))
    return rows


def test_signal_index_bulk_load_equals_adds_through_removals() -> None:
    rng = np.random.default_rng(9)
    rows = random_rows(rng, 1500)
    bulk, one_by_one = SignalIndex(), SignalIndex()
    shuffled = [rows[i] for i in rng.permutation(len(rows))]
    assert bulk.add_many(shuffled + shuffled[:50], batch=700) == len(rows) + 50  # a replay adds nothing twice
    for row in rows:
        one_by_one.add(row)
    assert bulk.sizes() == one_by_one.sizes()
    assert len(bulk.sizes()) == 2 * 3 + 2  # pdq and phash in 3 regions, text, md5; unknown ones left out

    def check() -> None:
        assert bulk.wait_merged(timeout=60) and one_by_one.wait_merged(timeout=60)
        for type_name, version, threshold, size in (
            ("image/pdq", PDQ.version, 40, 4),
            ("image/phash", PHASH.version, 12, 1),
            ("text/minhash", MINHASH.version, 0.3, 0),
            ("exact/md5", MD5.version, 0, 0),
        ):
            picks = rng.choice([r for r in rows if r.type == type_name], size=12)
            values = [r.value for r in picks]
            if size:
                values += [near(rng, np.frombuffer(r.value, np.uint64), 5).tobytes() for r in picks[:6]]
                values.append(rng.integers(0, 2**64, size=size, dtype=np.uint64).tobytes())
            for region in ("full", "center80", "center60", "top85"):
                batched = bulk.search_many(type_name, version, region, values, threshold)
                for value, many in zip(values, batched, strict=True):
                    one = bulk.search(type_name, version, region, value, threshold)
                    assert many == one
                    assert as_set(one) == as_set(one_by_one.search(type_name, version, region, value, threshold))

    check()
    removed = [int(i) for i in rng.choice(len(rows), size=400, replace=False)]
    for target in (bulk, one_by_one):
        target.apply(SignalsRemoved(tuple(rows[i].row_id for i in removed)))
        target.apply(SignalsAdded(tuple(rows[i] for i in removed[:150])))  # re-added
    assert bulk.sizes() == one_by_one.sizes()
    check()


def test_a_lookup_sees_a_feed_batch_whole() -> None:
    """A SubmitBatch's rows reach the sub-indexes together: a lookup across them (of 210 values
    a sub-index, split between the search threads as a SubmitBatch's are) finds an entry's
    PDQ, pHash, dHash and MD5, or none of them, while the feed applies batch after batch
    (freezing and merging too)."""
    rng = np.random.default_rng(37)
    batches, size = 120, 70  # a lookup of three batches: past PARALLEL_PART, so on threads
    n = batches * size
    types = [PDQ, PHASH, DHASH, MD5]
    values = {
        PDQ: [v.tobytes() for v in rng.integers(0, 2**64, size=(n, 4), dtype=np.uint64)],
        PHASH: [v.tobytes() for v in rng.integers(0, 2**64, size=(n, 1), dtype=np.uint64)],
        DHASH: [v.tobytes() for v in rng.integers(0, 2**64, size=(n, 1), dtype=np.uint64)],
        MD5: [rng.bytes(16) for _ in range(n)],
    }
    index = SignalIndex(search_threads=2)
    applied = 0  # batches the feed applied so far
    done = threading.Event()
    looking = threading.Event()  # a lookup is starting: the feed applies its next batch meanwhile

    def feed() -> None:
        nonlocal applied
        try:
            for batch in range(batches):
                looking.wait(timeout=5)
                looking.clear()
                entries = range(batch * size, (batch + 1) * size)
                rows = [
                    IndexedSignal(4 * e + k, e, t.name, t.version, values[t][e])
                    for e in entries
                    for k, t in enumerate(types)
                ]
                index.apply(SignalsAdded(tuple(rows)))
                applied = batch + 1
        finally:
            done.set()

    feeding = threading.Thread(target=feed, name="test-feed")
    feeding.start()
    lookups = torn = whole = 0
    deadline = time.monotonic() + 60
    try:
        while not done.is_set() and time.monotonic() < deadline:
            # The batch applied last (whole by now), the one being applied, and the one after.
            entries = range(max(0, applied - 1) * size, min(n, (applied + 2) * size))
            looking.set()
            found = index.search_arrays_together(
                [(t.name, t.version, "full", [values[t][e] for e in entries], 0) for t in types]
            )
            seen = [set(f.entry_ids.tolist()) for f in found]
            for e in entries:
                hits = sum(e in s for s in seen)
                torn += 0 < hits < len(types)
                whole += hits == len(types)
            lookups += 1
    finally:
        feeding.join(timeout=60)
    assert done.is_set() and applied == batches
    assert lookups >= batches // 2 and whole > 0
    assert torn == 0, f"{torn} entries were seen in some sub-indexes but not all"


@pytest.mark.parametrize("kind", ["mih", "exact"])
def test_a_view_leaves_out_later_rows_and_unpublished_rows_are_dropped(kind: str) -> None:
    rng = np.random.default_rng(41)
    values = [v.tobytes() for v in rng.integers(0, 2**64, size=(600, 4), dtype=np.uint64)]
    index = MIHIndex(32, design_radius=31) if kind == "mih" else ExactIndex()
    index.add_many(range(100), range(100), values[:100])
    before = index.view()
    # Past the delta (256 rows): these rows are frozen with the delta's into a new segment.
    index.add_many(range(100, 400), range(100, 400), values[100:400])
    found = index.search_arrays([values[50], values[150]], 0, before)
    assert found.entry_ids.tolist() == [50], "the view holds the rows added before it only"
    assert index.search_arrays([values[50], values[150]], 0).entry_ids.tolist() == [50, 150]

    class Stop(Exception):
        pass

    with pytest.raises(Stop), index.prepare_add(range(400, 600), range(400, 600), values[400:600]):
        raise Stop  # another sub-index failed: nothing of this batch is published
    assert len(index) == 400 and not index.search_arrays([values[450]], 0).entry_ids.size
    index.add_many(range(400, 600), range(400, 600), values[400:600])
    assert len(index) == 600 and index.search_arrays([values[450]], 0).entry_ids.tolist() == [450]


def test_sub_index_defaults_loop() -> None:
    index = ExactIndex()
    index.add_many([1, 2, 3], [10, 20, 30], [b"a", b"b", b"a"])
    assert index.search_many([b"a", b"c"], 0) == [index.search(b"a"), []]
    assert {h.row_id for h in index.search(b"a")} == {1, 3}
