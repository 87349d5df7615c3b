"""Jaccard search over MinHash signatures by LSH banding, verified on compact signatures.

Storage: each signature keeps only the low 16 bits of each of its 128 minima
(256 bytes instead of 512). Two different 32-bit minima agree on their low 16
bits with probability 2**-16, so the estimated similarity (share of equal
values) exceeds the 32-bit estimate by (1 - J) * 2**-16 on average, about 0.002
equal values in 128: a result differs from the 32-bit scan only when such a
collision lifts a pair across the threshold. ``scan16`` is the exact reference
of this estimator.

Banding: 64 bands of 2 values. A pair with similarity J becomes a candidate
with probability 1 - (1 - J**2)**64: 0.9976 at J = 0.3, 0.99997 at 0.4 and
1 - 2e-8 at 0.5 (the bands are tuned below the loosest threshold, 0.3, then
every candidate is verified). Each band's pair of values is hashed to a
bucket key of about log2(n) - 2 bits, so a query meets about 64 * 4 unrelated
rows, which verification discards.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .buckets import Buckets
from .segments import SegmentedIndex

ROWS_PER_BAND = 2
_MIX = np.uint32(0x9E3779B1)  # Fibonacci hashing: spreads the band's 32 bits over the top key bits
# Bucket keys of floor(log2(n * share)) bits: a query meets about 64 / share unrelated rows,
# and the offsets tables cost at most 64 * 4 * share bytes a row (about 70 at 0.27).
_OFFSETS_SHARE = 0.27
_FLAT_BELOW = 2048  # rows; a scan of this many signatures is cheaper than 64 probes
_NO_ROWS = np.zeros(0, dtype=np.int64)


def compact(signature: np.ndarray) -> np.ndarray:
    """The stored form: low 16 bits of each 32-bit minimum."""
    return signature.astype(np.uint16)


def scan16(values: np.ndarray, query: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Brute force over compact signatures: positions and similarities at or above ``threshold``."""
    similarity = np.count_nonzero(values == query, axis=1) / values.shape[1]
    found = np.flatnonzero(similarity >= threshold)
    return found, similarity[found]


_BYTE_SUM = np.uint64(0x0101_0101_0101_0101)  # times a word: the sum of its 8 bytes in the top byte


def equal_counts(values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """How many of each row's values equal the query's (``scan16``'s similarity times the
    width), in a few numpy calls: the comparison's booleans are summed eight at a time."""
    equal = values == query  # a new array: contiguous, so its rows can be read as words
    width = values.shape[1]
    if width % 8 or width > 255:
        counted: np.ndarray = np.count_nonzero(equal, axis=1)
        return counted
    # Each byte lane of a word sums width / 8 booleans (no carry), then the lanes are added up.
    lanes = equal.view(np.uint64).sum(axis=1, dtype=np.uint64)
    counts: np.ndarray = (lanes * _BYTE_SUM) >> np.uint64(56)
    return counts


def distinct(rows: np.ndarray) -> np.ndarray:
    """The sorted distinct values of ``rows`` (``np.unique`` without its per-call overhead)."""
    rows = np.sort(rows)
    keep = np.empty(len(rows), dtype=bool)
    keep[:1] = True
    np.not_equal(rows[1:], rows[:-1], out=keep[1:])
    picked: np.ndarray = rows[keep]
    return picked


def _mixed(values: np.ndarray) -> np.ndarray:
    """Each band's two 16-bit values joined in one 32-bit word and mixed: shape (..., bands),
    the key's bits on top (a key of ``b`` bits is the word shifted right by ``32 - b``)."""
    wide = values.astype(np.uint32)
    joined = (wide[..., 0::ROWS_PER_BAND] << np.uint32(16)) | wide[..., 1::ROWS_PER_BAND]
    mixed: np.ndarray = joined * _MIX
    return mixed


def band_keys(values: np.ndarray, bits: int) -> np.ndarray:
    """Bucket keys, shape (bands, n): each band's two 16-bit values mixed down to ``bits`` bits."""
    return np.ascontiguousarray((_mixed(values) >> np.uint32(32 - bits)).T)


@dataclass(frozen=True)
class Bands:
    bits: int
    buckets: Buckets
    bases: np.ndarray

    def slots(self, queries: np.ndarray) -> np.ndarray:
        """The bucket of each band of each query (one query or a 2-D array of them) as
        absolute offsets-table indexes, shape (..., bands)."""
        slots: np.ndarray = (_mixed(queries) >> np.uint32(32 - self.bits)) + self.bases
        return slots


class MinHashLSHIndex(SegmentedIndex):
    """``min_similarity`` is the loosest threshold the bands are tuned for; lower ones scan flat."""

    def __init__(self, permutations: int, min_similarity: float) -> None:
        if permutations % ROWS_PER_BAND:
            raise ValueError("permutations must be a multiple of the band size")
        super().__init__(permutations, np.uint16)
        self._permutations = permutations
        self._min_similarity = min_similarity

    def encode(self, value: bytes) -> np.ndarray:
        return compact(np.frombuffer(value, dtype="<u4", count=self._permutations))

    def encode_many(self, values: Sequence[bytes]) -> np.ndarray:
        joined = b"".join(values)
        if len(joined) != len(values) * self._permutations * 4:
            return super().encode_many(values)  # some value of another size: encode() says which
        return compact(np.frombuffer(joined, dtype="<u4").reshape(len(values), self._permutations))

    def build(self, values: np.ndarray) -> Bands | None:
        n = len(values)
        if n < _FLAT_BELOW:
            return None
        bits = min(20, max(8, math.floor(math.log2(n * _OFFSETS_SHARE))))
        keys = band_keys(values, bits)
        buckets = Buckets.build(list(keys), [bits] * len(keys))
        return Bands(bits, buckets, np.array(buckets.bases, dtype=np.int64))

    def structure_arrays(self, structure: Any) -> dict[str, np.ndarray] | None:
        return {"bits": np.array([structure.bits], dtype=np.int64), **structure.buckets.arrays()}

    def structure_from_arrays(self, arrays: dict[str, np.ndarray], values: np.ndarray) -> Bands:
        bits = int(arrays["bits"][0])
        if not 8 <= bits <= 20:
            raise ValueError(f"band keys of {bits} bits")
        buckets = Buckets.from_arrays(arrays, [bits] * (self._permutations // ROWS_PER_BAND), len(values))
        return Bands(bits, buckets, np.array(buckets.bases, dtype=np.int64))

    def match(self, values: np.ndarray, structure: Any, query: np.ndarray, threshold: float) -> tuple[Any, Any]:
        if len(values) == 0:
            return _NO_ROWS, _NO_ROWS
        if structure is None or threshold < self._min_similarity:
            similarity = equal_counts(values, query) / self._permutations  # as scan16 compares
            found = np.flatnonzero(similarity >= threshold)
            return found, similarity[found]
        # Near duplicates share many bands: dropping repeats before verifying reads each
        # row once, and leaves the positions sorted and unique as ``match`` returns them.
        candidates = distinct(structure.buckets.candidates(structure.slots(query)))
        similarity = equal_counts(values.take(candidates, axis=0), query) / self._permutations
        close = similarity >= threshold
        return candidates[close], similarity[close]

    def candidates(self, value: bytes) -> tuple[int, int]:
        """How many rows the bands propose for ``value`` over every banded segment, with
        repeats and distinct: what a search verifies (a benchmark's and a tuning figure)."""
        query = self.encode(value)
        proposed = [
            structure.buckets.candidates(structure.slots(query))
            for structure in (segment.structure for segment in self._state.segments)
            if structure is not None
        ]
        return sum(len(rows) for rows in proposed), sum(len(distinct(rows)) for rows in proposed)

    def match_many(
        self, values: np.ndarray, structure: Any, queries: np.ndarray, threshold: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(values)
        if n == 0 or len(queries) == 0:
            return _NO_ROWS, _NO_ROWS, _NO_ROWS
        if structure is None or threshold < self._min_similarity:
            return super().match_many(values, structure, queries, threshold)
        candidates, per_query = structure.buckets.candidates_per_row(structure.slots(queries))
        owners = np.repeat(np.arange(len(queries), dtype=np.int64), per_query)
        # (query, row) pairs without repeats, sorted by query then row, as ``match_many`` returns them.
        owners, positions = np.divmod(distinct(owners * n + candidates), n)
        equal = equal_counts(values.take(positions, axis=0), queries.take(owners, axis=0))
        similarity = equal / self._permutations
        close = np.flatnonzero(similarity >= threshold)
        return owners[close], positions[close], similarity[close]
