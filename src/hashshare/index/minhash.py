"""Jaccard search over MinHash signatures."""

from __future__ import annotations

import numpy as np

from .arrays import RowTable
from .base import Hit, SubIndex


class MinHashIndex(SubIndex):
    """A vectorised scan: the share of equal minima estimates Jaccard similarity."""

    def __init__(self, permutations: int) -> None:
        self._permutations = permutations
        self._table = RowTable(permutations, np.uint32)

    def _row(self, value: bytes) -> np.ndarray:
        return np.frombuffer(value, dtype="<u4", count=self._permutations)

    def add(self, row_id: int, entry_id: int, value: bytes) -> None:
        self._table.add(row_id, entry_id, self._row(value))

    def remove(self, row_id: int) -> bool:
        return self._table.remove(row_id)

    def search(self, value: bytes, threshold: float) -> list[Hit]:
        snap = self._table.snapshot()
        if snap.size == 0:
            return []
        equal = (snap.values[: snap.size] == self._row(value)).sum(axis=1)
        similarity = equal / self._permutations
        found = np.flatnonzero((similarity >= threshold) & snap.alive[: snap.size])
        return [Hit(int(snap.row_ids[i]), int(snap.entry_ids[i]), float(similarity[i])) for i in found]

    def __len__(self) -> int:
        return len(self._table)
