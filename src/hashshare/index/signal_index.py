"""The in-memory index of every active signal, one sub-index per signal type
and version, kept current by applying the store's changes."""

from __future__ import annotations

import contextlib
import gc
import itertools
import operator
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from hashshare_client.signal_types import SIGNAL_TYPES, Comparison, SignalType, view

from ..model import Change, IndexedSignal, SignalsAdded, SignalsRemoved
from .base import Found, Hit, SubIndex
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
# A sub-index's live rows as arrays: row ids, entry ids, encoded values (a snapshot).
RowArrays = tuple[np.ndarray, np.ndarray, np.ndarray]


def region_of(variant: str) -> str | None:
    found = view(variant)
    return found.region if found is not None else None


_BATCH = 1_000_000
_GROUP_KEY = operator.attrgetter("type", "version", "variant")
_ROW_ID = operator.attrgetter("row_id")
_ENTRY_ID = operator.attrgetter("entry_id")
_VALUE = operator.attrgetter("value")


class _Staged:
    """A sub-index's rows of a bulk load, encoded batch by batch into compact arrays."""

    def __init__(self, index: SubIndex) -> None:
        self.index = index
        self.row_ids: list[np.ndarray] = []
        self.entry_ids: list[np.ndarray] = []
        self.values: list[Any] = []

    def stage(self, rows: list[IndexedSignal]) -> None:
        self.row_ids.append(np.fromiter(map(_ROW_ID, rows), dtype=np.int64, count=len(rows)))
        self.entry_ids.append(np.fromiter(map(_ENTRY_ID, rows), dtype=np.int64, count=len(rows)))
        values = list(map(_VALUE, rows))
        encode_many = getattr(self.index, "encode_many", None)
        self.values.append(encode_many(values) if encode_many is not None else values)

    def prepare(self) -> contextlib.AbstractContextManager[Callable[[], None]]:
        """The staged rows as one ``SubIndex.prepare_add``."""
        row_ids, entry_ids = np.concatenate(self.row_ids), np.concatenate(self.entry_ids)
        arrays = [v for v in self.values if isinstance(v, np.ndarray)]
        values: Any = np.concatenate(arrays) if len(arrays) == len(self.values) else list(itertools.chain(*self.values))
        self.row_ids, self.entry_ids, self.values = [], [], []
        return self.index.prepare_add(row_ids, entry_ids, values)


# A search: type name, version, region, values, threshold (SignalIndex.search_arrays).
Search = tuple[str, str, str, Sequence[bytes], float]
# Fewer values of one search than this are searched in one piece, in the caller: a part's
# fixed costs would outweigh what a second thread gains. That includes one upload's searches:
# overlapping its PDQ, pHash and dHash searches on threads made a lookup at 1M entries slower
# in process (p50 0.43-0.54 -> 0.68-0.73 ms), since their numpy calls are small and the
# threads pass the interpreter back and forth between them.
PARALLEL_PART = 200


class SignalIndex:
    def __init__(self, search_threads: int = 0) -> None:
        """``search_threads``: threads that search parts of large searches (of ``PARALLEL_PART``
        values or more) alongside the caller (0: none)."""
        self._lock = threading.Lock()
        self._indexes: dict[IndexKey, SubIndex] = {}
        self._threads = search_threads
        self._pool = ThreadPoolExecutor(search_threads, "hashshare-search") if search_threads else None
        self._searching = 0  # callers in search_arrays_together now
        # Held while the rows of one add_many are published to every sub-index, and while a
        # lookup reads its sub-indexes' views: it sees all of a feed batch or none of it (a
        # submission's PDQ with its pHash and dHash). Held for microseconds, never in a search.
        self._publishing = threading.Lock()

    def _index_for(self, key: IndexKey) -> SubIndex:
        index = self._indexes.get(key)
        if index is None:
            with self._lock:
                index = self._indexes.setdefault(key, _sub_index(SIGNAL_TYPES[key[0]]))
        return index

    def add(self, row: IndexedSignal) -> None:
        self.add_many([row])

    def remove(self, row_id: int) -> None:
        for index in list(self._indexes.values()):
            if index.remove(row_id):
                return

    def apply(self, change: Change) -> None:
        if isinstance(change, SignalsAdded):
            # A SubmitBatch adds thousands of rows: each sub-index takes its share at once.
            self.add_many(change.rows)
        elif isinstance(change, SignalsRemoved):
            for row_id in change.row_ids:
                self.remove(row_id)

    def search(self, type_name: str, version: str, region: str, value: bytes, threshold: float) -> list[Hit]:
        index = self._indexes.get((type_name, version, region))
        return index.search(value, threshold) if index is not None else []

    def search_many(
        self, type_name: str, version: str, region: str, values: Sequence[bytes], threshold: float
    ) -> list[list[Hit]]:
        """``search`` for each of ``values`` (signals of one sub-index), in one batched pass."""
        index = self._indexes.get((type_name, version, region))
        return index.search_many(values, threshold) if index is not None else [[] for _ in values]

    def search_arrays(
        self, type_name: str, version: str, region: str, values: Sequence[bytes], threshold: float
    ) -> Found:
        """``search_many``'s hits as arrays (see base.Found)."""
        index = self._indexes.get((type_name, version, region))
        return index.search_arrays(values, threshold) if index is not None else Found.of([[] for _ in values])

    def _views(self, searches: Sequence[Search]) -> list[tuple[SubIndex, Any] | None]:
        """Each search's sub-index and its view, all read at one moment between two publications
        (the sub-indexes too: a batch that brings a new one publishes after making it)."""
        with self._publishing:
            indexes = [self._indexes.get(search[:3]) for search in searches]
            return [(index, index.view()) if index is not None else None for index in indexes]

    @staticmethod
    def _search_view(viewed: tuple[SubIndex, Any] | None, values: Sequence[bytes], threshold: float) -> Found:
        if viewed is None:
            return Found.of([[] for _ in values])
        index, view = viewed
        return index.search_arrays(values, threshold, view)

    def search_arrays_together(self, searches: Sequence[Search]) -> list[Found]:
        """``search_arrays`` of each search; while no other caller is searching, a search of
        many values (a SubmitBatch's) is split between the search threads and the caller.

        numpy releases the interpreter while it gathers and counts bits over thousands of
        values, so the parts overlap. Handing a part to a thread costs CPU, though, which a
        busy server's other requests would rather have, and one upload's searches are too
        small to gain (see PARALLEL_PART)."""
        views = self._views(searches)
        with self._lock:
            self._searching += 1
            alone = self._searching == 1
        try:
            if alone and self._pool is not None:
                return self._overlapped(self._pool, searches, views)
            return [self._search_view(viewed, s[3], s[4]) for viewed, s in zip(views, searches, strict=True)]
        finally:
            with self._lock:
                self._searching -= 1

    def _overlapped(
        self, pool: ThreadPoolExecutor, searches: Sequence[Search], views: list[tuple[SubIndex, Any] | None]
    ) -> list[Found]:
        # Parts: (search, first value, values); a large search in one part per thread and the caller.
        parts: list[tuple[int, int, Sequence[bytes]]] = []
        for n, search in enumerate(searches):
            values = search[3]
            size = max(PARALLEL_PART, -(-len(values) // (self._threads + 1)))
            parts.extend((n, first, values[first : first + size]) for first in range(0, len(values), size))
        if len(parts) < 2:
            return [self._search_view(viewed, s[3], s[4]) for viewed, s in zip(views, searches, strict=True)]
        sizes = [len(viewed[0]) * len(values) if (viewed := views[n]) else 0 for n, _, values in parts]
        # The largest parts on the pool, the smallest here, which would wait anyway.
        order = sorted(range(len(parts)), key=sizes.__getitem__, reverse=True)
        handed = {k for k in order[:-1] if len(parts[k][2]) >= PARALLEL_PART}
        if not handed:
            return [self._search_view(viewed, s[3], s[4]) for viewed, s in zip(views, searches, strict=True)]

        def search_part(k: int) -> Found:
            n, _, values = parts[k]
            return self._search_view(views[n], values, searches[n][4])

        futures = {k: pool.submit(search_part, k) for k in handed}
        found = {k: search_part(k) for k in range(len(parts)) if k not in futures}
        found.update((k, future.result()) for k, future in futures.items())
        by_search: list[list[Found]] = [[] for _ in searches]
        for k, (n, first, _) in enumerate(parts):
            part = found[k]
            by_search[n].append(Found(part.queries + first, part.entry_ids, part.scores))
        return [pieces[0] if len(pieces) == 1 else Found.concat(pieces) for pieces in by_search]

    def add_many(self, rows: Iterable[IndexedSignal], batch: int = _BATCH) -> int:
        """Add rows at once (a server's start-up, a batch from the feed): rows are grouped per
        sub-index, ``batch`` at a time, as compact arrays, then each sub-index takes its share
        in one call (``SubIndex.add_many``). How many rows were read."""
        staged: dict[tuple[str, str, str], _Staged | None] = {}  # by type, version and variant
        count = 0
        iterator = iter(rows)
        # Millions of short-lived rows would trigger the cycle collector over and over,
        # each time walking every live row; they hold no cycles.
        collecting = gc.isenabled()
        gc.disable()
        try:
            while True:
                chunk = list(itertools.islice(iterator, batch))
                if not chunk:
                    break
                count += len(chunk)
                groups: defaultdict[tuple[str, str, str], list[IndexedSignal]] = defaultdict(list)
                for row in chunk:
                    groups[_GROUP_KEY(row)].append(row)
                for key, group in groups.items():
                    if key not in staged:
                        staged[key] = self._staging(key, staged)
                    part = staged[key]
                    if part is not None:
                        part.stage(group)
                del chunk, groups
        finally:
            if collecting:
                gc.enable()
        parts = {id(p.index): p for p in staged.values() if p is not None and p.row_ids}
        with contextlib.ExitStack() as stack:
            # Sub-indexes taken in one order (by id), as any other writer of several would.
            publishes = [stack.enter_context(parts[key].prepare()) for key in sorted(parts)]
            with self._publishing:
                for publish in publishes:
                    publish()
        return count

    def _staging(self, key: tuple[str, str, str], staged: dict[tuple[str, str, str], _Staged | None]) -> _Staged | None:
        """The staging area of a (type, version, variant): one per sub-index, shared by the
        variants of a region; None for a type or view this server no longer knows (the rows
        stay in the store only)."""
        type_name, version, variant = key
        region = region_of(variant)
        if region is None or type_name not in SIGNAL_TYPES:
            return None
        index = self._index_for((type_name, version, region))
        for part in staged.values():
            if part is not None and part.index is index:
                return part
        return _Staged(index)

    def export(self) -> dict[IndexKey, RowArrays]:
        """Every sub-index's live rows as arrays (``SubIndex.export_rows``), by key."""
        with self._lock:
            indexes = dict(self._indexes)
        return {key: index.export_rows() for key, index in indexes.items()}

    def export_snapshot(self) -> dict[IndexKey, tuple[RowArrays, dict[str, np.ndarray] | None]]:
        """``export``, with each sub-index's search structure where it can hand it over."""
        with self._lock:
            indexes = dict(self._indexes)
        return {key: index.export_snapshot() for key, index in indexes.items()}

    def load_arrays(
        self, rows: dict[IndexKey, RowArrays], structures: dict[IndexKey, dict[str, np.ndarray]] | None = None
    ) -> int:
        """Bulk load ``export``'s arrays (no per-row objects); how many rows were given.
        Keys of types or views this server does not index are skipped. ValueError, before
        anything is added, when some values are not in the form their sub-index exports."""
        loads: list[tuple[IndexKey, SubIndex, RowArrays]] = []
        for (type_name, version, region), arrays in rows.items():
            if type_name not in SIGNAL_TYPES:
                continue
            index = _sub_index(SIGNAL_TYPES[type_name])
            index.check_rows(arrays[2])
            key = (type_name, version, region)
            loads.append((key, self._index_for(key), arrays))
        count = 0
        for key, index, arrays in loads:
            structure = (structures or {}).get(key)
            try:
                index.load_snapshot(arrays, structure)
            except ValueError:
                if structure is None:
                    raise
                index.load_snapshot(arrays, None)  # a structure that does not fit: build one
            count += len(arrays[0])
        return count

    def wait_merged(self, timeout: float | None = None) -> bool:
        """Wait until no sub-index has a merge running or due (``SegmentedIndex.wait_merged``);
        whether that came before ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            indexes = list(self._indexes.values())
        for index in indexes:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not index.wait_merged(left):
                return False
        return True

    def sizes(self) -> dict[IndexKey, int]:
        return {key: len(index) for key, index in self._indexes.items()}
