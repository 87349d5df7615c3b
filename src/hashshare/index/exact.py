"""Equality lookup for cryptographic hashes of the file's bytes."""

from __future__ import annotations

import threading

from .base import Hit, SubIndex


class ExactIndex(SubIndex):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[bytes, dict[int, int]] = {}
        self._values: dict[int, bytes] = {}

    def add(self, row_id: int, entry_id: int, value: bytes) -> None:
        with self._lock:
            if row_id in self._values:
                return
            self._values[row_id] = value
            self._rows.setdefault(value, {})[row_id] = entry_id

    def remove(self, row_id: int) -> bool:
        with self._lock:
            value = self._values.pop(row_id, None)
            if value is None:
                return False
            rows = self._rows[value]
            del rows[row_id]
            if not rows:
                del self._rows[value]
            return True

    def search(self, value: bytes, threshold: float = 0) -> list[Hit]:
        with self._lock:
            rows = list(self._rows.get(value, {}).items())
        return [Hit(row_id, entry_id, 0.0) for row_id, entry_id in rows]

    def __len__(self) -> int:
        return len(self._values)
