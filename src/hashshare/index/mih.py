"""Exact Hamming-radius search by multi-index hashing (Norouzi et al., 2012).

Each hash is split into ``m`` disjoint chunks. If two hashes differ in at most
``r = s*m + a`` bits (``0 <= a < m``), then one of the first ``a + 1`` chunks
differs in at most ``s`` bits or one of the others in at most ``s - 1`` (else
the total would be at least ``r + 1``). So probing, per chunk, every key in the
Hamming ball of that radius around the query's chunk finds every match; the
candidates are then verified with a vectorised popcount, so results equal a
brute-force scan. Chunk widths follow the segment size (about log2(n) bits,
so a bucket holds about one uniform row), and a segment is scanned flat when a
cost model says the probes would cost more (small segments, huge radii).

The argument needs disjoint chunks, not chunks that cover every bit: the
``m`` probe radii only have to satisfy ``sum(r_i + 1) = r + 1``. So a 256-bit
hash at radius 31 can have 11 tables of 23 bits (some bits in none) rather
than 12 narrower ones; the chunking is chosen by modelled time plus a price
per megabyte of tables, which 256-bit hashes keep compact (bit-packed, see
buckets.py) and 64-bit ones plain.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .buckets import Buckets
from .segments import SegmentedIndex

# Rough costs in nanoseconds on one core, measured with numpy 2 (see bench/index_bench.py).
_NS_SCAN_WORD = 0.8  # XOR + popcount + sum of one 64-bit word in a flat scan
_NS_PROBE = 12.0  # one bucket lookup (offsets gathers, range expansion)
_NS_CANDIDATE_WORD = 6.0  # random gather + XOR + popcount of one candidate word
_NS_CHUNK = 1500.0  # per-chunk Python work of a query
_MAX_TABLE_BITS = 24  # offsets table of 2**24 int32 = 64 MiB at most per chunk
_MAX_PROBES = 200_000  # beyond this the ball has exploded: scan instead
# The price of memory in the choice of chunking: a megabyte of tables is worth this many
# nanoseconds of modelled query time (measured: ~2.5x the model plus ~0.2 ms). At 10M rows a
# 256-bit index then takes 11 tables (43 bytes a row) rather than 12-16, which would save about
# 0.1 ms; at 1M, where a table is a few MB, 13 (batched PDQ queries 0.178 -> 0.125 ms, for 5
# bytes a row more). A 64-bit index keeps its fastest chunking at every size.
_NS_PER_TABLE_MB = 600.0

_MAX_SKEW = 3  # bits by which a chunk probed deeper may be wider than the others (see chunkings)
_COMPACT_WORDS = 4  # hashes of this many 64-bit words and more get compact tables
_NO_ROWS = np.zeros(0, dtype=np.int64)
_SCAN_BLOCK = 1 << 20  # words per block of a batched flat scan
# Probes plus expected candidates per block of a batched search (a PDQ query at radius 31 makes
# about 4,000 at 1M rows, a 64-bit one at 10 bits 7,000): blocks of dozens of queries share
# numpy's per-call costs; measured, 1,000 PDQ queries cost 280 ms in blocks of 3 and 215 in
# blocks of 30-60, and 64-bit ones 93 and 77-79 (larger blocks gain nothing more).
_BLOCK_WORK = 200_000


@functools.lru_cache(maxsize=4096)  # the choice of chunking prices thousands of splits over a few widths
def ball_size(width: int, radius: int) -> int:
    """Keys within ``radius`` bits of a ``width``-bit key."""
    return sum(math.comb(width, i) for i in range(min(radius, width) + 1)) if radius >= 0 else 0


@functools.lru_cache(maxsize=256)
def _ball(width: int, radius: int) -> np.ndarray:
    """XOR masks of the Hamming ball, as uint32 (``width <= 32``)."""
    masks = [0]
    for weight in range(1, min(radius, width) + 1):
        masks.extend(sum(1 << b for b in bits) for bits in itertools.combinations(range(width), weight))
    return np.array(masks, dtype=np.uint32)


def chunk_radii(radius: int, chunks: int) -> list[int]:
    """Per-chunk probe radii that together guarantee finding every match within ``radius``."""
    s, a = divmod(radius, chunks)
    return [s if i <= a else s - 1 for i in range(chunks)]


def split(bits: int, chunks: int) -> list[int]:
    """Chunk widths as even as possible, widest first."""
    base, extra = divmod(bits, chunks)
    return [base + 1 if i < extra else base for i in range(chunks)]


def probe_cost(widths: list[int], radius: int, rows: int, words: int) -> tuple[float, int]:
    """Estimated nanoseconds and probes of one MIH query (buckets assumed uniform)."""
    probes, candidates = 0, 0.0
    for width, r in zip(widths, chunk_radii(radius, len(widths)), strict=True):
        ball = ball_size(width, r)
        probes += ball
        candidates += ball * rows / 2.0**width
    cost = probes * _NS_PROBE + candidates * _NS_CANDIDATE_WORD * words + len(widths) * _NS_CHUNK
    return cost, probes


def scan_cost(rows: int, words: int) -> float:
    # A scan compares wider hashes on their first two words, and the rest only for the few
    # rows that come close there (MIHIndex._scan_many).
    return rows * min(words, 2) * _NS_SCAN_WORD


def chunkings(bits: int, max_width: int, leave_bits_out: bool, radius: int) -> list[list[int]]:
    """Candidate chunk widths: every even split of all ``bits`` and, if ``leave_bits_out``,
    ``m`` equal chunks that leave some bits out. The pigeonhole bound needs disjoint chunks,
    not chunks covering every bit, so fewer, wider tables (memory) can be had without keys
    wider than the bank warrants. And splits whose chunks probed one bit deeper at ``radius``
    (the first ones, see chunk_radii) are wider than the rest: a deeper ball holds more keys,
    and a wider chunk keeps their buckets small (pHash at radius 12, 1M rows: 16, 16, 16, 16
    bits 0.136 ms a query batched, 18, 16, 15, 15 bits 0.124)."""
    options = []
    for chunks in range(1, bits + 1):
        widths = split(bits, chunks)
        if widths[-1] < 6:
            break
        if widths[0] <= max_width:
            options.append(widths)
        if leave_bits_out:
            options.extend([width] * chunks for width in range(6, min(max_width, bits // chunks) + 1))
        deep = radius % chunks + 1
        shallow = chunks - deep
        for wide in range(7, max_width + 1) if shallow else ():
            rest = bits - deep * wide
            if rest < 6 * shallow:
                break
            # A few bits wider at most: beyond that the shallow tables' buckets swell (and
            # pricing thousands of splits would cost a segment build tens of milliseconds).
            narrow = split(rest, shallow)
            if wide - _MAX_SKEW <= narrow[0] < wide:
                options.append([wide] * deep + narrow)
            if leave_bits_out:
                narrower = range(max(6, wide - _MAX_SKEW), min(wide, rest // shallow + 1))
                options.extend([wide] * deep + [width] * shallow for width in narrower)
    return options


# Pricing ~1,100 splits of 256 bits takes ~10 ms, and the feed freezes segments of one size.
@functools.lru_cache(maxsize=1024)
def choose_widths(bits: int, rows: int, radius: int, compact: bool = True) -> list[int] | None:
    """The chunking for a segment of ``rows`` hashes searched at ``radius`` (in compact or plain
    tables, see buckets.py); None to scan flat. The list is cached: callers copy it to change it."""
    words = bits // 64
    # A table much larger than the segment wastes memory and gains nothing.
    max_width = min(_MAX_TABLE_BITS, max(12, math.ceil(math.log2(max(rows, 2)))))
    options = []
    for widths in chunkings(bits, max_width, compact, radius):
        cost, probes = probe_cost(widths, radius, rows, words)
        if probes <= _MAX_PROBES:
            price = _NS_PER_TABLE_MB * table_bytes(widths, rows, compact) * rows / 1e6
            options.append((cost + price, cost, widths))
    if not options or min(cost for _, cost, _ in options) >= scan_cost(rows, words):
        return None
    return min(options, key=lambda option: option[0])[2]


def table_bytes(widths: list[int], rows: int, compact: bool = True) -> float:
    """Bytes per row of a chunking's buckets (see buckets.py). Compact: a bit-packed position
    per chunk, and per bucket an offset of about the bit length of 64 buckets' rows, plus 1.5
    bits of per-block bookkeeping. Plain: 4 bytes a position and 4 an offset."""
    rows = max(rows, 2)
    if not compact:
        return float(sum(4 + 4 * (1 << width) / rows for width in widths))
    position_bits = math.ceil(math.log2(rows))
    total = 0.0
    for width in widths:
        buckets = 1 << width
        offset_bits = max(1.0, math.log2(64 * rows / buckets) + 1) + 1.5
        total += position_bits + buckets * offset_bits / rows
    return total / 8


def extract(values: np.ndarray, start: int, width: int) -> np.ndarray:
    """Bits ``[start, start + width)`` of each row of little-endian uint64 words, as uint32."""
    word, shift = divmod(start, 64)
    out = values[:, word] >> np.uint64(shift)
    if shift + width > 64:
        out |= values[:, word + 1] << np.uint64(64 - shift)
    return (out & np.uint64((1 << width) - 1)).astype(np.uint32)


@dataclass(frozen=True)
class _Probe:
    """The ball masks of every chunk at one radius, concatenated, and their tables' bases."""

    masks: np.ndarray
    counts: np.ndarray
    bases: np.ndarray
    chunks: np.ndarray  # the chunk of each mask
    candidates: int  # expected per query, were the buckets even


@dataclass
class MultiIndex:
    """A segment's chunking and buckets."""

    starts: list[int]
    widths: list[int]
    buckets: Buckets
    rows: int
    words: int
    # 64-bit hashes only: every table's hashes in the table's own order (laid out like
    # ``buckets.positions``). Candidates are then read from contiguous runs instead of
    # through a random gather of positions and another of values, which is most of a
    # search's cost; positions are looked up for the matches alone. 8 bytes a row a table.
    keyed: np.ndarray | None = None
    _probes: dict[int, _Probe | None] = field(default_factory=dict)

    def probe(self, radius: int) -> _Probe | None:
        """Masks for ``radius``, or None when scanning the segment is cheaper (cached per radius)."""
        if radius not in self._probes:
            cost, probes = probe_cost(self.widths, radius, self.rows, self.words)
            if probes > _MAX_PROBES or cost >= scan_cost(self.rows, self.words):
                self._probes[radius] = None
            else:
                self._probes[radius] = self._make_probe(radius)
        return self._probes[radius]

    def _make_probe(self, radius: int) -> _Probe:
        masks, counts, bases = [], [], []
        for width, r, base in zip(self.widths, chunk_radii(radius, len(self.widths)), self.buckets.bases, strict=True):
            ball = _ball(width, r) if r >= 0 else np.zeros(0, dtype=np.uint32)
            masks.append(ball)
            counts.append(len(ball))
            bases.append(np.full(len(ball), base, dtype=np.int64))
        chunks = np.repeat(np.arange(len(counts)), counts)
        candidates = sum(count * self.rows // (1 << width) for count, width in zip(counts, self.widths, strict=True))
        return _Probe(np.concatenate(masks), np.array(counts), np.concatenate(bases), chunks, candidates)

    def slots(self, query: np.ndarray, probe: _Probe) -> np.ndarray:
        whole = int.from_bytes(query.tobytes(), "little")
        keys = np.array(
            [(whole >> start) & ((1 << width) - 1) for start, width in zip(self.starts, self.widths, strict=True)],
            dtype=np.uint32,
        )
        slots: np.ndarray = (np.repeat(keys, probe.counts) ^ probe.masks).astype(np.int64) + probe.bases
        return slots

    def slots_many(self, queries: np.ndarray, probe: _Probe) -> np.ndarray:
        """``slots`` of each row of ``queries``, shape (queries, probes)."""
        keys = np.stack([extract(queries, s, w) for s, w in zip(self.starts, self.widths, strict=True)], axis=1)
        slots: np.ndarray = (keys[:, probe.chunks] ^ probe.masks).astype(np.int64) + probe.bases
        return slots


class MIHIndex(SegmentedIndex):
    """Hamming search over 64-bit multiples; ``design_radius`` is the radius the chunking is tuned for."""

    def __init__(self, size_bytes: int, design_radius: int) -> None:
        if size_bytes % 8:
            raise ValueError("hash sizes must be a multiple of 64 bits")
        # 256-bit hashes: compact tables and packed ids (see _COMPACT_WORDS).
        super().__init__(size_bytes // 8, np.uint64, packed_ids=size_bytes // 8 >= _COMPACT_WORDS)
        self._words = size_bytes // 8
        self._bits = size_bytes * 8
        self._design_radius = design_radius

    def encode(self, value: bytes) -> np.ndarray:
        return np.frombuffer(value, dtype=np.uint64, count=self._words)

    def encode_many(self, values: Sequence[bytes]) -> np.ndarray:
        joined = b"".join(values)
        if len(joined) != len(values) * self._words * 8:
            return super().encode_many(values)  # some value of another size: encode() says which
        return np.frombuffer(joined, dtype=np.uint64).reshape(len(values), self._words)

    def build(self, values: np.ndarray) -> MultiIndex | None:
        chosen = choose_widths(self._bits, len(values), self._design_radius, self._words >= _COMPACT_WORDS)
        if chosen is None:
            return None
        widths = list(chosen)  # the choice is cached: the structure keeps its own copy
        starts = [sum(widths[:i]) for i in range(len(widths))]
        keys = [extract(values, s, w) for s, w in zip(starts, widths, strict=True)]
        # A 256-bit candidate costs a cache miss to verify, which hides the unpacking of compact
        # tables; a 64-bit one is one word's XOR, so its tables stay plain (and fast).
        buckets = Buckets.build(keys, widths, compact=self._words >= _COMPACT_WORDS)
        return self._structure(starts, widths, buckets, values)

    def _structure(self, starts: list[int], widths: list[int], buckets: Buckets, values: np.ndarray) -> MultiIndex:
        positions = buckets.positions
        keyed = values[positions, 0] if self._words == 1 and isinstance(positions, np.ndarray) else None
        return MultiIndex(starts, widths, buckets, len(values), self._words, keyed)

    def structure_arrays(self, structure: Any) -> dict[str, np.ndarray] | None:
        return {"widths": np.array(structure.widths, dtype=np.int64), **structure.buckets.arrays()}

    def structure_from_arrays(self, arrays: dict[str, np.ndarray], values: np.ndarray) -> MultiIndex:
        widths = [int(w) for w in arrays["widths"]]
        if sum(widths) > self._bits or not all(1 <= w <= _MAX_TABLE_BITS for w in widths):
            raise ValueError(f"chunk widths {widths} do not split {self._bits} bits")
        starts = [sum(widths[:i]) for i in range(len(widths))]
        return self._structure(starts, widths, Buckets.from_arrays(arrays, widths, len(values)), values)

    def match(self, values: np.ndarray, structure: Any, query: np.ndarray, threshold: float) -> tuple[Any, Any]:
        radius = math.floor(threshold)
        if radius < 0 or len(values) == 0:
            return _NO_ROWS, _NO_ROWS
        probe = structure.probe(radius) if structure is not None else None
        if probe is None:
            # The batched scan compares wide hashes on two words first: a fifth of the work of
            # comparing all four (16k PDQ rows: 0.107 -> 0.035 ms a query).
            _, found, distances = self._scan_many(values, query[None, :], radius)
            return found, distances
        slots = structure.slots(query, probe)
        if structure.keyed is not None:
            entries = structure.buckets.entries(slots)
            # np.take of a 1-D array beats indexing by about a fifth; XOR in place spares a copy.
            gathered = np.take(structure.keyed, entries)
            gathered ^= query[0]
            distances = np.bitwise_count(gathered)
            close = np.flatnonzero(distances <= radius)
            candidates = structure.buckets.positions.take(entries[close])
            distances = distances[close]
        else:
            candidates = structure.buckets.candidates(slots)
            distances = self._distances(values, query, candidates)
            within = distances <= radius
            candidates, distances = candidates[within], distances[within]
        # A near duplicate agrees on several chunks, so it can be a candidate more than once.
        found, first = np.unique(candidates, return_index=True)
        return found, distances[first]

    def match_many(
        self, values: np.ndarray, structure: Any, queries: np.ndarray, threshold: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        radius = math.floor(threshold)
        n = len(values)
        if radius < 0 or n == 0 or len(queries) == 0:
            return _NO_ROWS, _NO_ROWS, _NO_ROWS
        probe = structure.probe(radius) if structure is not None else None
        if probe is None:
            return self._scan_many(values, queries, radius)
        step = max(1, _BLOCK_WORK // (len(probe.masks) + probe.candidates))
        found = [
            self._probe_many(values, structure, queries[i : i + step], probe, radius)
            for i in range(0, len(queries), step)
        ]
        if len(found) == 1:
            return found[0]
        return (
            np.concatenate([owners + i * step for i, (owners, _, _) in enumerate(found)]),
            np.concatenate([positions for _, positions, _ in found]),
            np.concatenate([scores for _, _, scores in found]),
        )

    def _probe_many(
        self, values: np.ndarray, structure: MultiIndex, queries: np.ndarray, probe: _Probe, radius: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(values)
        slots = structure.slots_many(queries, probe)
        if structure.keyed is not None:
            entries, per_query = structure.buckets.entries_per_row(slots)
            gathered = np.take(structure.keyed, entries)
            gathered ^= np.repeat(queries[:, 0], per_query)
            distances = np.bitwise_count(gathered)
            close = np.flatnonzero(distances <= radius)
            rows = structure.buckets.positions.take(entries[close])
        else:
            candidates, per_query = structure.buckets.candidates_per_row(slots)
            # np.take of whole rows copies each row at once; indexing does it element by element (4x slower).
            counts = np.bitwise_count(np.take(values, candidates, axis=0) ^ np.repeat(queries, per_query, axis=0))
            distances = counts[:, 0].astype(np.int16)
            for word in range(1, self._words):
                distances += counts[:, word]
            close = np.flatnonzero(distances <= radius)
            rows = candidates[close]
        # One (query, row) pair may be found through several chunks: keep it once,
        # sorted by query then row like the per-query search.
        owners = np.searchsorted(np.cumsum(per_query), close, side="right")
        pairs, first = np.unique(owners * n + rows, return_index=True)
        return pairs // n, pairs % n, distances[close[first]]

    def _scan_many(
        self, values: np.ndarray, queries: np.ndarray, radius: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A (queries x rows) popcount, in blocks of about a million distances.

        Wider hashes are compared on their first two words first: a pair within ``radius``
        bits overall is within it there, while unrelated 256-bit hashes come that close on 128
        bits about once in 10**8 at radius 31 (2% at 52), so the other words are compared
        for the few pairs left, which halves the work of a scan."""
        n = len(values)
        first = min(self._words, 2)
        step = max(1, _SCAN_BLOCK // (n * first))
        owners, positions, scores = [], [], []
        for start in range(0, len(queries), step):
            block = queries[start : start + step]
            distances = np.bitwise_count(values[None, :, 0] ^ block[:, None, 0])
            if first > 1:
                distances = distances.astype(np.int16)
                distances += np.bitwise_count(values[None, :, 1] ^ block[:, None, 1])
            found = np.flatnonzero(distances <= radius)  # row-major: by query, then position
            owner, position, score = found // n, found % n, distances.ravel()[found]
            if self._words > first and len(found):
                rest = np.bitwise_count(values[position, first:] ^ block[owner, first:]).sum(axis=1, dtype=np.int16)
                score = score + rest
                close = np.flatnonzero(score <= radius)
                owner, position, score = owner[close], position[close], score[close]
            owners.append(owner + start)
            positions.append(position)
            scores.append(score)
        return np.concatenate(owners), np.concatenate(positions), np.concatenate(scores)

    def _distances(self, values: np.ndarray, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Distances from ``query`` to the hashes at ``rows``."""
        if self._words == 1:
            counted: np.ndarray = np.bitwise_count(values[rows, 0] ^ query[0])
            return counted
        counts = np.bitwise_count(np.take(values, rows, axis=0) ^ query)
        # Adding columns beats numpy's reduction over a 4-wide inner axis several times over.
        distances: np.ndarray = counts[:, 0].astype(np.int16)
        for word in range(1, self._words):
            distances += counts[:, word]
        return distances
