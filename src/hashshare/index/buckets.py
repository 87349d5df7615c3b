"""Bucket tables in CSR form: the rows of a segment grouped by a small integer key.

Every table (one per hash chunk, or per LSH band) maps a key of ``width`` bits
to the rows holding it through a direct offsets table of ``2**width + 1``
entries: a lookup is two array reads, and a whole query's lookups across all
tables are one vectorised gather because the tables share two flat arrays.
Both arrays are bit-packed (see packed.py): positions are most of an index's bytes.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .packed import BlockPacked, Packed, bits_for

_EMPTY = np.zeros(0, dtype=np.int64)
_PARALLEL_ROWS = 200_000
_CHECK_BLOCK = 1 << 20  # offsets or positions decoded at a time when a snapshot's tables are checked


def _stable_order(keys: np.ndarray) -> np.ndarray:
    """``np.argsort(keys, kind="stable")`` as uint32, by sorting (key, row) pairs packed in
    uint64: numpy's vectorised sort of those is 2-6x faster than a stable argsort."""
    packed = (keys.astype(np.uint64) << np.uint64(32)) | np.arange(len(keys), dtype=np.uint64)
    packed.sort()
    order: np.ndarray = (packed & np.uint64(0xFFFF_FFFF)).astype(np.uint32)
    return order


def _span(values: np.ndarray | Packed | BlockPacked, start: int, stop: int) -> np.ndarray:
    """Values ``[start, stop)`` of a plain or packed array."""
    if isinstance(values, np.ndarray):
        return values[start:stop]
    return values.take(np.arange(start, stop, dtype=np.int64))


@dataclass(frozen=True)
class Buckets:
    """Tables over the same ``n`` rows. Table ``t`` owns offsets ``bases[t]`` to ``bases[t]+2**width``
    (absolute indexes into ``positions``) and positions ``t*n`` to ``(t+1)*n`` (row numbers, by
    key).

    Plain tables hold int32 offsets and uint32 positions. Compact ones bit-pack positions
    (``ceil(log2(n))`` bits, 24 at 10M rows) and store the offsets of all tables, one
    non-decreasing sequence, as ``packed.BlockPacked`` (7-10 bits an offset): less than half
    the bytes, for a few more vector operations per lookup. That pays where verifying a
    candidate costs a cache miss anyway (a 256-bit hash), not where it is one word's XOR."""

    offsets: BlockPacked | np.ndarray
    positions: Packed | np.ndarray
    bases: tuple[int, ...]

    @classmethod
    def build(cls, keys: list[np.ndarray], widths: list[int], compact: bool = False) -> Buckets:
        n = len(keys[0]) if keys else 0
        # Tables are built (in parallel) into plain arrays, then packed together if compact.
        positions = np.empty(n * len(keys), dtype=np.uint32)
        offset_dtype = np.int32 if len(positions) < 2**31 else np.int64
        offsets: list[np.ndarray] = [_EMPTY] * len(keys)

        def table(t: int) -> None:
            positions[t * n : (t + 1) * n] = _stable_order(keys[t])
            counts = np.bincount(keys[t], minlength=1 << widths[t])
            offsets[t] = (np.concatenate([[0], np.cumsum(counts)]) + t * n).astype(offset_dtype)

        if n >= _PARALLEL_ROWS and len(keys) > 1:
            # numpy's sort releases the GIL: a large segment's tables are built on every core.
            with ThreadPoolExecutor(max_workers=min(len(keys), os.cpu_count() or 1)) as pool:
                list(pool.map(table, range(len(keys))))
        else:
            for t in range(len(keys)):
                table(t)
        bases = np.cumsum([0] + [len(o) for o in offsets[:-1]]).tolist() if keys else []
        all_offsets = np.concatenate(offsets) if offsets else np.zeros(1, dtype=offset_dtype)
        if not compact:
            return cls(all_offsets, positions, tuple(int(b) for b in bases))
        return cls(
            BlockPacked.pack(all_offsets),
            Packed.pack(positions, bits_for(n)),
            tuple(int(b) for b in bases),
        )

    def arrays(self) -> dict[str, np.ndarray]:
        """The tables as named arrays (an index snapshot)."""
        if isinstance(self.offsets, np.ndarray) or isinstance(self.positions, np.ndarray):
            return {
                "plain_offsets": np.asarray(self.offsets),
                "plain_positions": np.asarray(self.positions),
                "bases": np.array(self.bases, dtype=np.int64),
            }
        return {
            "offset_data": self.offsets.data,
            "offset_widths": self.offsets.widths,
            "offset_bases": self.offsets.bases,
            "packed_positions": self.positions.data,
            "position_bits": np.array([self.positions.bits], dtype=np.int64),
            "bases": np.array(self.bases, dtype=np.int64),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], widths: list[int], rows: int) -> Buckets:
        """``arrays()``' tables back, for ``widths`` and ``rows``; ValueError if they do not fit
        (tables of the layout before this one, ``offsets`` and ``positions``, included)."""
        total = rows * len(widths)
        count = sum((1 << w) + 1 for w in widths)
        expected = np.cumsum([0] + [(1 << w) + 1 for w in widths[:-1]]).tolist() if widths else []
        if "bases" not in arrays or arrays["bases"].tolist() != expected:
            raise ValueError("bucket tables that do not fit their rows")
        built: Buckets
        if {"plain_offsets", "plain_positions"} <= arrays.keys():
            plain_offsets, plain_positions = arrays["plain_offsets"], arrays["plain_positions"]
            if (
                plain_offsets.ndim != 1
                or plain_offsets.dtype.kind != "i"
                or len(plain_offsets) != count
                or plain_positions.dtype != np.uint32
                or plain_positions.shape != (total,)
            ):
                raise ValueError("bucket tables that do not fit their rows")
            built = cls(plain_offsets, plain_positions, tuple(int(b) for b in expected))
        elif {"offset_data", "offset_widths", "offset_bases", "packed_positions", "position_bits"} <= arrays.keys():
            if arrays["position_bits"].tolist() != [bits_for(rows)]:
                raise ValueError("bucket tables that do not fit their rows")
            built = cls(
                BlockPacked(arrays["offset_data"], arrays["offset_widths"], arrays["offset_bases"], count),
                Packed(arrays["packed_positions"], bits_for(rows), total),
                tuple(int(b) for b in expected),
            )
        else:
            raise ValueError("bucket tables of another layout")
        built._check(rows, expected, count)
        return built

    def _check(self, rows: int, firsts: list[int], count: int) -> None:
        """ValueError unless each table's offsets run from ``t*rows`` to ``(t+1)*rows`` without
        going down, and every position is a row (in blocks: whole-array temporaries of 10M-row
        tables would cost more in page faults than the decoding)."""
        total = rows * len(firsts)
        starts = self.offsets.take(np.array(firsts, dtype=np.int64))
        ends = self.offsets.take(np.array([*firsts[1:], count], dtype=np.int64) - 1)
        if not np.array_equal(starts, np.arange(len(firsts)) * rows) or not np.array_equal(
            ends, np.arange(1, len(firsts) + 1) * rows
        ):
            raise ValueError("bucket offsets that do not fit their rows")
        for start in range(0, count, _CHECK_BLOCK):
            # One offset of overlap: the order is checked across blocks too.
            block = _span(self.offsets, max(0, start - 1), min(count, start + _CHECK_BLOCK))
            if bool(np.any(block[1:] < block[:-1])):
                raise ValueError("bucket offsets that go down")
        for start in range(0, total, _CHECK_BLOCK):
            block = _span(self.positions, start, min(total, start + _CHECK_BLOCK))
            if len(block) and int(block.max()) >= rows:
                raise ValueError("bucket positions beyond the rows")

    def candidates(self, slots: np.ndarray) -> np.ndarray:
        """Rows in the buckets at ``slots`` (absolute offsets-table indexes), with repeats."""
        entries = self.entries(slots)
        rows: np.ndarray = self.positions.take(entries) if len(entries) else _EMPTY
        return rows

    def candidates_per_row(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``candidates`` of each row of ``slots`` (2-D), concatenated, and how many each row has."""
        entries, per_row = self.entries_per_row(slots)
        return (self.positions.take(entries) if len(entries) else _EMPTY), per_row

    def entries(self, slots: np.ndarray) -> np.ndarray:
        """Indexes into ``positions`` (and any array laid out like it) of the buckets at ``slots``."""
        return self._entries(self._ranges(slots.ravel()))

    def entries_per_row(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``entries`` of each row of ``slots`` (2-D), concatenated, and how many each row has."""
        ranges = self._ranges(slots.ravel())
        ends = ranges[1]
        if len(ends) == 0 or ends[-1] == 0:
            return _EMPTY, np.zeros(len(slots), dtype=np.int64)
        per_row = np.diff(ends[slots.shape[1] - 1 :: slots.shape[1]], prepend=0)
        return self._entries(ranges), per_row

    def _ranges(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each slot's bucket as its start in ``positions``, its length and the running end."""
        if isinstance(self.offsets, BlockPacked):
            starts, stops = self.offsets.take_pairs(slots)
        else:
            starts, stops = self.offsets[slots].astype(np.int64), self.offsets[slots + 1]
        lengths = stops - starts
        return starts, np.cumsum(lengths), lengths

    @staticmethod
    def _entries(ranges: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
        starts, ends, lengths = ranges
        if len(ends) == 0 or ends[-1] == 0:
            return _EMPTY
        # Concatenated ranges [start, start + length) without a Python loop.
        shift = np.repeat(starts - (ends - lengths), lengths)
        entries = np.arange(int(ends[-1]), dtype=np.int64)
        entries += shift
        return entries
