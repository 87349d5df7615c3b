"""The in-memory index of every active signal, one sub-index per signal type
and version, kept current by applying the store's changes."""

from __future__ import annotations

import threading

from hashshare_client.signal_types import SIGNAL_TYPES, Comparison, SignalType

from ..model import Change, IndexedSignal, SignalsAdded, SignalsRemoved
from .base import Hit, SubIndex
from .exact import ExactIndex
from .hamming import HammingIndex
from .minhash import MinHashIndex


def _sub_index(signal_type: SignalType) -> SubIndex:
    if signal_type.comparison is Comparison.HAMMING:
        return HammingIndex(signal_type.size_bytes)
    if signal_type.comparison is Comparison.MINHASH:
        return MinHashIndex(signal_type.size_bytes // 4)
    return ExactIndex()


class SignalIndex:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._indexes: dict[tuple[str, str], SubIndex] = {}

    def _index_for(self, type_name: str, version: str) -> SubIndex | None:
        key = (type_name, version)
        index = self._indexes.get(key)
        if index is None and type_name in SIGNAL_TYPES:
            with self._lock:
                index = self._indexes.setdefault(key, _sub_index(SIGNAL_TYPES[type_name]))
        return index

    def add(self, row: IndexedSignal) -> None:
        index = self._index_for(row.type, row.version)
        if index is not None:  # a type this server no longer knows stays in the store only
            index.add(row.row_id, row.entry_id, row.value)

    def remove(self, row_id: int) -> None:
        for index in list(self._indexes.values()):
            if index.remove(row_id):
                return

    def apply(self, change: Change) -> None:
        if isinstance(change, SignalsAdded):
            for row in change.rows:
                self.add(row)
        elif isinstance(change, SignalsRemoved):
            for row_id in change.row_ids:
                self.remove(row_id)

    def search(self, type_name: str, version: str, value: bytes, threshold: float) -> list[Hit]:
        index = self._indexes.get((type_name, version))
        return index.search(value, threshold) if index is not None else []

    def sizes(self) -> dict[tuple[str, str], int]:
        return {key: len(index) for key, index in self._indexes.items()}
