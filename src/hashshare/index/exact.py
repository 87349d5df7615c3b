"""Equality lookup for cryptographic hashes of the file's bytes."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

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

    def add_many(
        self,
        row_ids: Sequence[int] | np.ndarray,
        entry_ids: Sequence[int] | np.ndarray,
        values: Sequence[bytes] | np.ndarray,
    ) -> None:
        """Also takes ``export_rows``'s values: a (n, size) uint8 array, one hash a row."""
        if isinstance(values, np.ndarray) and values.ndim == 2:
            width = values.shape[1]
            joined = np.ascontiguousarray(values, dtype=np.uint8).tobytes()
            values = [joined[i * width : (i + 1) * width] for i in range(len(values))]
        rows = zip(np.asarray(row_ids).tolist(), np.asarray(entry_ids).tolist(), values, strict=True)
        with self._lock:
            for row_id, entry_id, value in rows:
                if row_id not in self._values:
                    value = bytes(value)
                    self._values[row_id] = value
                    self._rows.setdefault(value, {})[row_id] = entry_id

    def export_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with self._lock:
            items = sorted(self._values.items())
            entries = [self._rows[value][row_id] for row_id, value in items]
        widths = {len(value) for _, value in items}
        if len(widths) > 1:
            raise ValueError(f"hashes of several sizes {sorted(widths)} cannot be exported as one array")
        width = widths.pop() if widths else 0
        values = np.frombuffer(b"".join(value for _, value in items), dtype=np.uint8).reshape(len(items), width)
        return (
            np.array([row_id for row_id, _ in items], dtype=np.int64),
            np.array(entries, dtype=np.int64),
            values,
        )

    def check_rows(self, values: np.ndarray) -> None:
        if values.ndim != 2 or values.dtype != np.uint8:
            raise ValueError(f"exact rows are (n, size) uint8, not {values.shape} {values.dtype}")

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
