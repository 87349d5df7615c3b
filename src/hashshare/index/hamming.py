"""Hamming-radius search over packed bit strings (PDQ, pHash, dHash)."""

from __future__ import annotations

import numpy as np

from .arrays import RowTable
from .base import Hit, SubIndex


class HammingIndex(SubIndex):
    """A vectorised scan: XOR against every stored hash, count bits."""

    def __init__(self, size_bytes: int) -> None:
        if size_bytes % 8:
            raise ValueError("hash sizes must be a multiple of 64 bits")
        self._words = size_bytes // 8
        self._table = RowTable(self._words, np.uint64)

    def _row(self, value: bytes) -> np.ndarray:
        return np.frombuffer(value, dtype=np.uint64, count=self._words)

    def add(self, row_id: int, entry_id: int, value: bytes) -> None:
        self._table.add(row_id, entry_id, self._row(value))

    def remove(self, row_id: int) -> bool:
        return self._table.remove(row_id)

    def search(self, value: bytes, threshold: float) -> list[Hit]:
        snap = self._table.snapshot()
        if snap.size == 0:
            return []
        query = self._row(value)
        distances = np.bitwise_count(snap.values[: snap.size] ^ query).sum(axis=1, dtype=np.int32)
        found = np.flatnonzero((distances <= threshold) & snap.alive[: snap.size])
        return [Hit(int(snap.row_ids[i]), int(snap.entry_ids[i]), float(distances[i])) for i in found]

    def __len__(self) -> int:
        return len(self._table)
