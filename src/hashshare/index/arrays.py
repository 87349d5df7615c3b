"""A growable table of fixed-size rows in numpy arrays, safe to read while one
thread writes: readers take one consistent snapshot and never lock."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

_INITIAL_CAPACITY = 1024


@dataclass(frozen=True)
class Snapshot:
    """The first ``size`` rows of the arrays are valid; ``alive`` marks removals."""

    values: np.ndarray
    row_ids: np.ndarray
    entry_ids: np.ndarray
    alive: np.ndarray
    size: int


class RowTable:
    """Rows of ``width`` items of ``dtype``, with their row and entry ids."""

    def __init__(self, width: int, dtype: np.dtype | type) -> None:
        self._width = width
        self._dtype = np.dtype(dtype)
        self._lock = threading.Lock()
        self._positions: dict[int, int] = {}
        self._dead = 0
        self._snapshot = self._allocate(_INITIAL_CAPACITY, None)

    def _allocate(self, capacity: int, old: Snapshot | None) -> Snapshot:
        fresh = Snapshot(
            values=np.zeros((capacity, self._width), dtype=self._dtype),
            row_ids=np.zeros(capacity, dtype=np.int64),
            entry_ids=np.zeros(capacity, dtype=np.int64),
            alive=np.zeros(capacity, dtype=bool),
            size=0,
        )
        if old is None:
            return fresh
        keep = np.flatnonzero(old.alive[: old.size])
        count = len(keep)
        fresh.values[:count] = old.values[keep]
        fresh.row_ids[:count] = old.row_ids[keep]
        fresh.entry_ids[:count] = old.entry_ids[keep]
        fresh.alive[:count] = True
        self._positions = {int(r): i for i, r in enumerate(fresh.row_ids[:count])}
        self._dead = 0
        return Snapshot(fresh.values, fresh.row_ids, fresh.entry_ids, fresh.alive, count)

    def snapshot(self) -> Snapshot:
        return self._snapshot

    def __len__(self) -> int:
        return len(self._positions)

    def add(self, row_id: int, entry_id: int, row: np.ndarray) -> None:
        with self._lock:
            if row_id in self._positions:
                return
            current = self._snapshot
            if current.size == len(current.row_ids):
                # Grow, dropping removed rows; readers keep the old arrays.
                live = current.size - self._dead
                current = self._allocate(max(_INITIAL_CAPACITY, 2 * live + 1), current)
            position = current.size
            # Rows past ``size`` are invisible to readers until the new
            # snapshot is published below, so writing them in place is safe.
            current.values[position] = row
            current.row_ids[position] = row_id
            current.entry_ids[position] = entry_id
            current.alive[position] = True
            self._positions[row_id] = position
            self._snapshot = Snapshot(current.values, current.row_ids, current.entry_ids, current.alive, position + 1)

    def remove(self, row_id: int) -> bool:
        with self._lock:
            position = self._positions.pop(row_id, None)
            if position is None:
                return False
            self._snapshot.alive[position] = False
            self._dead += 1
            return True
