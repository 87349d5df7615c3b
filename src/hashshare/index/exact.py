"""Equality lookup for cryptographic hashes of the file's bytes."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .base import Found, Hit, SubIndex


class ExactIndex(SubIndex):
    def __init__(self) -> None:
        self._lock = threading.Lock()  # the dicts, while read or changed
        self._writing = threading.Lock()  # one writer at a time, from prepare_add to its end
        # Value -> row id -> (entry id, the number of the add that brought it).
        self._rows: dict[bytes, dict[int, tuple[int, int]]] = {}
        self._values: dict[int, bytes] = {}
        self._adds = 0  # adds prepared so far
        self._published = 0  # rows of adds numbered up to this are visible

    def add(self, row_id: int, entry_id: int, value: bytes) -> None:
        self.add_many([row_id], [entry_id], [value])

    @contextlib.contextmanager
    def prepare_add(
        self,
        row_ids: Sequence[int] | np.ndarray,
        entry_ids: Sequence[int] | np.ndarray,
        values: Sequence[bytes] | np.ndarray,
    ) -> Iterator[Callable[[], None]]:
        """Also takes ``export_rows``'s values: a (n, size) uint8 array, one hash a row."""
        # The rows go in at once, numbered past what searches see; publishing moves the mark.
        if isinstance(values, np.ndarray) and values.ndim == 2:
            width = values.shape[1]
            joined = np.ascontiguousarray(values, dtype=np.uint8).tobytes()
            values = [joined[i * width : (i + 1) * width] for i in range(len(values))]
        rows = zip(np.asarray(row_ids).tolist(), np.asarray(entry_ids).tolist(), values, strict=True)
        with self._writing:
            added: list[int] = []
            with self._lock:
                self._adds += 1
                number = self._adds
                for row_id, entry_id, value in rows:
                    if row_id not in self._values:
                        value = bytes(value)
                        self._values[row_id] = value
                        self._rows.setdefault(value, {})[row_id] = (entry_id, number)
                        added.append(row_id)
            published = False

            def publish() -> None:
                nonlocal published
                self._published = number
                published = True

            try:
                yield publish
            finally:
                if not published:
                    for row_id in added:
                        self._remove(row_id)

    def view(self) -> int:
        return self._published

    def export_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with self._lock:
            items = sorted(self._values.items())
            entries = [self._rows[value][row_id][0] for row_id, value in items]
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
        with self._writing:
            return self._remove(row_id)

    def _remove(self, row_id: int) -> bool:
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
        return self._search(value, self._published)

    def search_arrays(self, values: Sequence[bytes], threshold: float, view: Any = None) -> Found:
        published = self._published if view is None else int(view)
        return Found.of([self._search(value, published) for value in values])

    def _search(self, value: bytes, published: int) -> list[Hit]:
        with self._lock:
            rows = list(self._rows.get(value, {}).items())
        return [Hit(row_id, entry_id, 0.0) for row_id, (entry_id, number) in rows if number <= published]

    def __len__(self) -> int:
        return len(self._values)
