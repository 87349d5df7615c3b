"""Bucket tables in CSR form: the rows of a segment grouped by a small integer key.

Every table (one per hash chunk, or per LSH band) maps a key of ``width`` bits
to the rows holding it through a direct offsets table of ``2**width + 1``
entries: a lookup is two array reads, and a whole query's lookups across all
tables are one vectorised gather because the tables share two flat arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_EMPTY = np.zeros(0, dtype=np.uint32)


@dataclass(frozen=True)
class Buckets:
    """Tables over the same ``n`` rows. Table ``t`` owns ``offsets[bases[t]:bases[t]+2**width+1]``
    (absolute indexes into ``positions``) and ``positions[t*n:(t+1)*n]`` (row numbers, by key)."""

    offsets: np.ndarray
    positions: np.ndarray
    bases: tuple[int, ...]

    @classmethod
    def build(cls, keys: list[np.ndarray], widths: list[int]) -> Buckets:
        n = len(keys[0]) if keys else 0
        total = n * len(keys)
        offset_dtype = np.int32 if total < 2**31 else np.int64
        offsets, positions, bases, base = [], [], [], 0
        for table, (table_keys, width) in enumerate(zip(keys, widths, strict=True)):
            order = np.argsort(table_keys, kind="stable").astype(np.uint32)
            counts = np.bincount(table_keys, minlength=1 << width)
            table_offsets = (np.concatenate([[0], np.cumsum(counts)]) + table * n).astype(offset_dtype)
            offsets.append(table_offsets)
            positions.append(order)
            bases.append(base)
            base += len(table_offsets)
        return cls(
            np.concatenate(offsets) if offsets else np.zeros(1, dtype=offset_dtype),
            np.concatenate(positions) if positions else _EMPTY,
            tuple(bases),
        )

    def candidates(self, slots: np.ndarray) -> np.ndarray:
        """Rows in the buckets at ``slots`` (absolute offsets-table indexes), with repeats."""
        starts = self.offsets[slots].astype(np.int64)
        lengths = self.offsets[slots + 1] - starts
        ends = np.cumsum(lengths)
        if len(ends) == 0 or ends[-1] == 0:
            return _EMPTY
        # Concatenated ranges [start, start + length) without a Python loop.
        shift = np.repeat(starts - (ends - lengths), lengths)
        rows: np.ndarray = self.positions[np.arange(int(ends[-1]), dtype=np.int64) + shift]
        return rows
