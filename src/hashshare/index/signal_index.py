"""The in-memory index of every active signal, one sub-index per signal type
and version, kept current by applying the store's changes."""

from __future__ import annotations

import threading

from hashshare_client.signal_types import SIGNAL_TYPES, Comparison, SignalType, view

from ..model import Change, IndexedSignal, SignalsAdded, SignalsRemoved
from .base import Hit, SubIndex
from .exact import ExactIndex
from .lsh import MinHashLSHIndex
from .mih import MIHIndex


def _sub_index(signal_type: SignalType) -> SubIndex:
    # hamming.HammingIndex and minhash.MinHashIndex stay as the brute-force references.
    if signal_type.comparison is Comparison.HAMMING:
        # Tuned for the review radius: searches are made at the loosest threshold a request uses.
        return MIHIndex(signal_type.size_bytes, design_radius=int(signal_type.review))
    if signal_type.comparison is Comparison.MINHASH:
        return MinHashLSHIndex(signal_type.size_bytes // 4, min_similarity=signal_type.limit)
    return ExactIndex()


# One sub-index per signal type, version and image region: a hash of the
# top 85% of a picture is only ever compared with hashes of top 85%s.
IndexKey = tuple[str, str, str]


def region_of(variant: str) -> str | None:
    found = view(variant)
    return found.region if found is not None else None


class SignalIndex:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._indexes: dict[IndexKey, SubIndex] = {}

    def _index_for(self, key: IndexKey) -> SubIndex:
        index = self._indexes.get(key)
        if index is None:
            with self._lock:
                index = self._indexes.setdefault(key, _sub_index(SIGNAL_TYPES[key[0]]))
        return index

    def add(self, row: IndexedSignal) -> None:
        region = region_of(row.variant)
        # A type or view this server no longer knows stays in the store only.
        if row.type in SIGNAL_TYPES and region is not None:
            self._index_for((row.type, row.version, region)).add(row.row_id, row.entry_id, row.value)

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

    def search(self, type_name: str, version: str, region: str, value: bytes, threshold: float) -> list[Hit]:
        index = self._indexes.get((type_name, version, region))
        return index.search(value, threshold) if index is not None else []

    def sizes(self) -> dict[IndexKey, int]:
        return {key: len(index) for key, index in self._indexes.items()}
