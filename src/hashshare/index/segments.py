"""Storage shared by the sublinear indexes: immutable segments plus a small delta.

Rebuilding a bucket index on every submit would cost O(N), so new rows go to a
small append-only *delta* that searches scan flat. When the delta fills it is
frozen into a *segment* (rows sorted by row id, with the index's bucket
structure built over them); segments of similar size are merged, so there are
O(log N) of them and each row is rebuilt O(log N) times (amortised). Removals
are tombstones in a segment's ``alive`` flags (a bit a row); a segment with
many of them is rebuilt without them.

Readers never lock: they read ``self._state`` once, a frozen tuple of segments
and a delta view. The one writer (under ``_lock``) only appends delta rows past
the published size, flips ``alive`` flags (a reader sees either value, both
consistent), or publishes a new state made of new arrays.

Merges and rebuilds run on background threads, not in the writer's call: a merge
at a million rows takes over a second, and the writer is the feed, which a
SubmitBatch waits for. The writer freezes a full delta into a small segment (a
few thousand rows) and notes that merges may be due; a merge thread builds the
new segment from its parts' immutable rows without the lock, then, under it,
clears the rows removed meanwhile and swaps the parts for it. A segment is in at
most one merge at a time; rows added meanwhile are in the delta or newer
segments, which the merge does not touch.

``search_many`` answers a batch of queries (the ~190 signals of one upload)
with one vectorised pass per segment; Hit objects are made only at the end.
A segment's ids are int32 when they fit, or packed in blocks of 64
(packed.BlockPacked, 1-2 bytes an id) when the index asks for ``packed_ids``.
"""

from __future__ import annotations

import abc
import contextlib
import itertools
import logging
import math
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .base import Found, Hit, SubIndex
from .packed import BlockPacked, Flags, Packed

# Scanning this many rows costs about as much as one bucket lookup round trip.
DELTA_CAPACITY = 4096
# Merge two neighbouring segments when the smaller holds at least 1/MERGE_RATIO
# of the larger's rows: sizes then grow geometrically, so few segments exist.
MERGE_RATIO = 4
# Rebuild a segment once this share of its rows are tombstones.
MAX_DEAD_SHARE = 0.25
# Merges whose results are within a factor of LANE_RATIO in size share a lane, and at most
# one merge runs per lane: a merge of a few thousand rows (milliseconds) never waits behind
# one of millions (seconds at 1M rows, far more at 10M), during which the feed would freeze
# a new small segment every DELTA_CAPACITY rows and searches would scan each of them. Lanes
# grow geometrically, so few run at once (three at 10M rows), each on its own thread.
LANE_RATIO = 16
# Seconds a snapshot waits for merges to end before it exports rows without the search
# structure; a merge into 10M PDQ rows takes about 12 s here.
SNAPSHOT_MERGE_WAIT = 60.0

log = logging.getLogger(__name__)

_NO_ROWS = np.zeros(0, dtype=np.int64)
_NO_SCORES = np.zeros(0, dtype=np.float64)


@dataclass(frozen=True)
class Rows:
    """Rows of encoded values with their row and entry ids (arrays, or packed in a segment)."""

    values: np.ndarray
    row_ids: np.ndarray | BlockPacked
    entry_ids: np.ndarray | BlockPacked

    def __len__(self) -> int:
        return len(self.row_ids)

    def take(self, order: np.ndarray) -> Rows:
        return Rows(self.values[order], self.row_ids[order], self.entry_ids[order])

    def compact_ids(self, packed: bool) -> Rows:
        """The same rows with narrower ids. ``packed``: in blocks (a segment's row ids ascend and
        its entry ids nearly do, so an id takes 1-2 bytes), else int32 where they fit."""
        compact = _compact if packed else _narrow
        return Rows(self.values, compact(self.row_ids), compact(self.entry_ids))

    @staticmethod
    def concat(parts: list[Rows]) -> Rows:
        return Rows(
            np.concatenate([p.values for p in parts]),
            np.concatenate([ids_array(p.row_ids) for p in parts]),
            np.concatenate([ids_array(p.entry_ids) for p in parts]),
        )


def ids_array(ids: np.ndarray | BlockPacked) -> np.ndarray:
    """Ids as an int64 array."""
    return ids.unpack() if isinstance(ids, BlockPacked) else ids.astype(np.int64, copy=False)


def _compact(ids: np.ndarray | BlockPacked) -> np.ndarray | BlockPacked:
    if isinstance(ids, BlockPacked):
        return ids
    try:
        return BlockPacked.pack(ids)
    except ValueError:  # ids more than 2**32 apart within a block
        return _narrow(ids)


def _narrow(ids: np.ndarray | BlockPacked) -> np.ndarray | BlockPacked:
    if not isinstance(ids, np.ndarray) or not len(ids) or ids.dtype == np.int32:
        return ids
    return ids.astype(np.int32) if int(ids.min()) >= -(2**31) and int(ids.max()) < 2**31 else ids


class Segment:
    """Immutable rows sorted by row id, their bucket structure, and tombstones."""

    def __init__(self, rows: Rows, structure: Any) -> None:
        self.rows = rows
        self.structure = structure
        self.alive = Flags(len(rows))  # a bit a row: a bool array would take 8
        self.dead = 0

    @property
    def live(self) -> int:
        return len(self.rows) - self.dead

    def find(self, row_ids: np.ndarray) -> np.ndarray:
        """The position of each of ``row_ids`` (int64) among the live rows, or -1 (sorted
        row ids: no per-row dict, and one binary search per id)."""
        ids = self.rows.row_ids
        if isinstance(ids, BlockPacked):
            positions = ids.search_sorted(row_ids)
        else:
            # Searched in the ids' own dtype: a wider query would make numpy convert all of them.
            info = np.iinfo(ids.dtype)
            fits = (row_ids >= info.min) & (row_ids <= info.max)
            narrow = np.where(fits, row_ids, 0).astype(ids.dtype)
            positions = np.minimum(np.searchsorted(ids, narrow), len(ids) - 1)
            positions = np.where(fits & (ids[positions] == narrow), positions, -1)
        found = np.flatnonzero(positions >= 0)
        positions[found[~self.alive[positions[found]]]] = -1
        return positions

    def live_rows(self) -> Rows:
        return self.rows if self.dead == 0 else self.rows.take(np.flatnonzero(self.alive.mask()))


class _Delta:
    """Preallocated append-only rows; only the first ``size`` (in the state) are visible."""

    def __init__(self, width: int, dtype: np.dtype[Any]) -> None:
        self.values = np.zeros((DELTA_CAPACITY, width), dtype=dtype)
        self.row_ids = np.zeros(DELTA_CAPACITY, dtype=np.int64)
        self.entry_ids = np.zeros(DELTA_CAPACITY, dtype=np.int64)
        self.alive = np.zeros(DELTA_CAPACITY, dtype=bool)

    def find(self, row_ids: np.ndarray, size: int) -> np.ndarray:
        """The position of each of ``row_ids`` among the first ``size`` rows if live there, or -1."""
        live = np.flatnonzero(self.alive[:size])
        if not len(live):
            return np.full(len(row_ids), -1, dtype=np.int64)
        order = live[np.argsort(self.row_ids[live], kind="stable")]  # live row ids are distinct
        ordered = self.row_ids[order]
        at = np.minimum(np.searchsorted(ordered, row_ids), len(order) - 1)
        positions: np.ndarray = np.where(ordered[at] == row_ids, order[at], -1)
        return positions

    def live_rows(self, size: int) -> Rows:
        keep = np.flatnonzero(self.alive[:size])
        return Rows(self.values[keep], self.row_ids[keep], self.entry_ids[keep])


@dataclass(frozen=True)
class _State:
    segments: tuple[Segment, ...]
    delta: _Delta
    delta_size: int


@dataclass(frozen=True)
class _Merge:
    """Segments being rebuilt as one (one segment: without its tombstones), with their
    tombstones as they were when it started: the rows built from."""

    parts: tuple[Segment, ...]
    alive: tuple[Flags, ...]
    lane: int


def _lane(rows: int) -> int:
    """The lane of a merge that makes a segment of ``rows`` rows (see LANE_RATIO)."""
    small = DELTA_CAPACITY * LANE_RATIO
    return 0 if rows < small else 1 + int(math.log(rows / small, LANE_RATIO))


def _cleared_since(before: Flags, now: Flags) -> np.ndarray:
    """Positions set in ``before`` and clear in ``now`` (only the bytes that differ are unpacked)."""
    changed = np.flatnonzero(before.data != now.data)
    cleared = before.data[changed] & ~now.data[changed]
    byte, bit = np.nonzero(np.unpackbits(cleared[:, None], axis=1, bitorder="little"))
    positions: np.ndarray = changed[byte].astype(np.int64) * 8 + bit
    return positions


class SegmentedIndex(SubIndex):
    """A SubIndex over segments; subclasses encode values, build and search structures."""

    def __init__(self, width: int, dtype: type | np.dtype[Any], packed_ids: bool = False) -> None:
        """Rows of ``width`` items of ``dtype``. ``packed_ids``: segments keep their ids packed
        in blocks (1-2 bytes an id instead of 4), which costs a few microseconds per search
        with hits: worth it where the rest of a row is small next to a hit's cost."""
        self._width = width
        self._packed_ids = packed_ids
        self._dtype = np.dtype(dtype)
        self._lock = threading.Lock()
        self._count = 0
        self._state = _State((), _Delta(width, self._dtype), 0)
        self._merging: dict[int, _Merge] = {}  # running merges by lane (under ``_lock``)
        self._merges_done = threading.Condition(self._lock)  # notified when none runs
        _INDEXES.add(self)

    # What a concrete index provides.

    @abc.abstractmethod
    def encode(self, value: bytes) -> np.ndarray:
        """One stored row (shape ``(width,)``) from a signal's bytes."""

    @abc.abstractmethod
    def build(self, values: np.ndarray) -> Any:
        """The bucket structure over a segment's values, or None to scan it flat."""

    @abc.abstractmethod
    def match(self, values: np.ndarray, structure: Any, query: np.ndarray, threshold: float) -> tuple[Any, Any]:
        """Positions (unique, ascending) of rows within ``threshold`` and their scores."""

    def encode_many(self, values: Sequence[bytes]) -> np.ndarray:
        """Rows (shape ``(len(values), width)``) from many signals' bytes."""
        if not values:
            return np.zeros((0, self._width), dtype=self._dtype)
        return np.stack([self.encode(value) for value in values])

    def match_many(
        self, values: np.ndarray, structure: Any, queries: np.ndarray, threshold: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``match`` for each row of ``queries``: query numbers, positions and scores, sorted
        by query then position. Indexes with a vectorised path override this loop."""
        found = [self.match(values, structure, query, threshold) for query in queries]
        counts = [len(positions) for positions, _ in found]
        if not sum(counts):
            return _NO_ROWS, _NO_ROWS, _NO_ROWS
        return (
            np.repeat(np.arange(len(queries)), counts),
            np.concatenate([np.asarray(positions, dtype=np.int64) for positions, _ in found]),
            np.concatenate([np.asarray(scores) for _, scores in found]),
        )

    # SubIndex.

    def __len__(self) -> int:
        return self._count

    def add(self, row_id: int, entry_id: int, value: bytes) -> None:
        self.add_many([row_id], [entry_id], self.encode(value)[None, :])

    @contextlib.contextmanager
    def prepare_add(
        self,
        row_ids: Sequence[int] | np.ndarray,
        entry_ids: Sequence[int] | np.ndarray,
        values: Sequence[bytes] | np.ndarray,
    ) -> Iterator[Callable[[], None]]:
        """``add_many`` up to the new state, which ``publish`` makes the one searches read
        (SubIndex.prepare_add); under ``_lock`` throughout. ``values`` are signals' bytes or
        already encoded rows (n, width), which the index may keep without a copy; rows already
        present (or repeated) are skipped. Rows that fit in the delta go there (a batch of the
        feed); else they and the delta's rows become one new segment (a bulk load)."""
        row_ids = np.asarray(row_ids, dtype=np.int64)
        entry_ids = np.asarray(entry_ids, dtype=np.int64)
        encoded = values if isinstance(values, np.ndarray) else self.encode_many(values)
        with self._lock:
            prepared = self._prepare(row_ids, entry_ids, encoded) if len(row_ids) else None
            state = prepared[0] if prepared is not None else None
            froze = state is not None and state.delta is not self._state.delta

            def publish() -> None:
                if prepared is not None:
                    self._state, added = prepared
                    self._count += added

            try:
                yield publish
            finally:
                # A new segment may make merges due: started here, after the caller published
                # (maybe under a lock that lookups take), as planning copies tombstones.
                if froze and self._state is state:
                    self._start_merges()

    def _prepare(self, row_ids: np.ndarray, entry_ids: np.ndarray, encoded: np.ndarray) -> tuple[_State, int] | None:
        """The state with the rows not yet present, and how many; None if none (under ``_lock``).
        Rows that fit go to the delta past the published size, where no reader looks."""
        # Rows sorted by row id (a store usually yields them so: no sort needed).
        if len(row_ids) > 1 and not bool(np.all(row_ids[1:] > row_ids[:-1])):
            order = np.argsort(row_ids, kind="stable")
            row_ids, entry_ids = row_ids[order], entry_ids[order]
            first = np.ones(len(order), dtype=bool)
            first[1:] = row_ids[1:] != row_ids[:-1]
            order = order[first]
            row_ids, entry_ids = row_ids[first], entry_ids[first]
        else:
            order = None
        state = self._state
        keep = state.delta.find(row_ids, state.delta_size) < 0
        for segment in state.segments:
            keep &= segment.find(row_ids) < 0
        if order is not None:
            picked = encoded[order[keep]]
        elif keep.all():
            picked = encoded  # kept, not copied: a caller must not change it afterwards
        else:
            picked = encoded[keep]
        if not keep.all():
            row_ids, entry_ids = row_ids[keep], entry_ids[keep]
        rows = Rows(np.ascontiguousarray(picked, dtype=self._dtype), row_ids, entry_ids)
        if not len(rows):
            return None
        delta, size = state.delta, state.delta_size
        if size + len(rows) <= len(delta.row_ids):
            end = size + len(rows)
            delta.values[size:end] = rows.values
            delta.row_ids[size:end] = row_ids
            delta.entry_ids[size:end] = entry_ids
            delta.alive[size:end] = True
            return _State(state.segments, delta, end), len(rows)
        live = delta.live_rows(size)
        if len(live):
            rows, ordered = Rows.concat([live, rows]), False
        else:
            ordered = True
        # The new segment is searched at once; merging it with others is left to a merge thread.
        segments = _by_size([*state.segments, self._segment(rows, ordered)])
        return _State(segments, _Delta(self._width, self._dtype), 0), len(rows) - len(live)

    def export_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Live rows of every segment and the delta, encoded, sorted by row id."""
        with self._lock:
            # Segments' rows never change and the delta only grows past ``delta_size``:
            # copying the tombstones is enough for a consistent view, the rest runs unlocked.
            state = self._state
            alive = [segment.alive.copy() for segment in state.segments]
            delta_alive = state.delta.alive[: state.delta_size].copy()
        parts = [
            segment.rows.take(np.flatnonzero(keep.mask())) for segment, keep in zip(state.segments, alive, strict=True)
        ]
        keep = np.flatnonzero(delta_alive)
        parts.append(Rows(state.delta.values[keep], state.delta.row_ids[keep], state.delta.entry_ids[keep]))
        rows = Rows.concat(parts)
        row_ids, entry_ids, values = ids_array(rows.row_ids), ids_array(rows.entry_ids), rows.values
        if len(row_ids) > 1 and not bool(np.all(row_ids[1:] > row_ids[:-1])):
            order = np.argsort(row_ids, kind="stable")
            row_ids, entry_ids, values = row_ids[order], entry_ids[order], values[order]
        return row_ids, entry_ids, values

    def check_rows(self, values: np.ndarray) -> None:
        if values.ndim != 2 or values.shape[1] != self._width or values.dtype != self._dtype:
            raise ValueError(
                f"{type(self).__name__} rows are ({self._width},) {self._dtype}, not {values.shape[1:]} {values.dtype}"
            )

    def remove(self, row_id: int) -> bool:
        with self._lock:
            found = self._locate(row_id)
            if found is None:
                return False
            segment, position = found
            if segment is None:
                self._state.delta.alive[position] = False
            else:
                segment.alive.clear(position)
                segment.dead += 1
                if segment.dead > MAX_DEAD_SHARE * len(segment.rows):
                    self._start_merges()  # a rebuild without the tombstones is due
            self._count -= 1
            return True

    def search(self, value: bytes, threshold: float) -> list[Hit]:
        return self.search_many([value], threshold)[0]

    def search_many(self, values: Sequence[bytes], threshold: float) -> list[list[Hit]]:
        """One vectorised pass per segment for all of ``values``; equal to searching each."""
        found, row_ids = self._found(values, threshold, with_row_ids=True)
        out: list[list[Hit]] = [[] for _ in values]
        hits = map(Hit, row_ids.tolist(), found.entry_ids.tolist(), found.scores.astype(np.float64).tolist())
        for query, hit in zip(found.queries.tolist(), hits, strict=True):
            out[query].append(hit)
        return out

    def view(self) -> _State:
        return self._state

    def search_arrays(self, values: Sequence[bytes], threshold: float, view: Any = None) -> Found:
        return self._found(values, threshold, state=view)[0]

    def _found(
        self, values: Sequence[bytes], threshold: float, with_row_ids: bool = False, state: _State | None = None
    ) -> tuple[Found, np.ndarray]:
        """The live hits of ``values`` (by segment, then query, then position) in ``state``
        (else the current one) and, if asked, their row ids."""
        if not values:
            return Found(_NO_ROWS, _NO_ROWS, _NO_SCORES), _NO_ROWS
        distinct = list(dict.fromkeys(values))
        if len(distinct) < len(values):
            # Views of one upload often hash alike (blank crops, symmetric pictures): search each once.
            return self._expand(self._found(distinct, threshold, with_row_ids, state), distinct, values)
        if state is None:
            state = self._state
        parts: list[tuple[Rows, np.ndarray | Flags, tuple[np.ndarray, np.ndarray, np.ndarray]]] = []
        if len(values) == 1:
            # One value (a Match of the whole image): the single-query path has fewer steps.
            query = self.encode(values[0])
            for segment in state.segments:
                positions, scores = self.match(segment.rows.values, segment.structure, query, threshold)
                parts.append((segment.rows, segment.alive, (np.zeros(len(positions), np.int64), positions, scores)))
            if state.delta_size:
                delta = state.delta
                positions, scores = self.match(delta.values[: state.delta_size], None, query, threshold)
                rows = Rows(delta.values, delta.row_ids, delta.entry_ids)
                parts.append((rows, delta.alive, (np.zeros(len(positions), np.int64), positions, scores)))
        else:
            queries = self.encode_many(values)
            for segment in state.segments:
                found = self.match_many(segment.rows.values, segment.structure, queries, threshold)
                parts.append((segment.rows, segment.alive, found))
            if state.delta_size:
                delta = state.delta
                found = self.match_many(delta.values[: state.delta_size], None, queries, threshold)
                parts.append((Rows(delta.values, delta.row_ids, delta.entry_ids), delta.alive, found))
        return self._collect(parts, with_row_ids)

    @staticmethod
    def _collect(
        parts: list[tuple[Rows, np.ndarray | Flags, tuple[Any, Any, Any]]], with_row_ids: bool
    ) -> tuple[Found, np.ndarray]:
        """The live rows among each part's (queries, positions, scores), their ids read once."""
        queries, entry_ids, scores, row_ids = [], [], [], []
        for rows, alive, (owners, positions, found_scores) in parts:
            if len(positions) == 0:
                continue
            keep = alive[positions]
            positions = positions[keep]
            queries.append(owners[keep])
            entry_ids.append(np.asarray(rows.entry_ids[positions], dtype=np.int64))
            scores.append(np.asarray(found_scores)[keep])
            if with_row_ids:
                row_ids.append(np.asarray(rows.row_ids[positions], dtype=np.int64))
        if not queries:
            return Found(_NO_ROWS, _NO_ROWS, _NO_SCORES), _NO_ROWS
        if len(queries) == 1:
            return Found(queries[0], entry_ids[0], scores[0]), (row_ids[0] if with_row_ids else _NO_ROWS)
        found = Found(np.concatenate(queries), np.concatenate(entry_ids), np.concatenate(scores))
        return found, (np.concatenate(row_ids) if with_row_ids else _NO_ROWS)

    @staticmethod
    def _expand(
        found: tuple[Found, np.ndarray], distinct: list[bytes], values: Sequence[bytes]
    ) -> tuple[Found, np.ndarray]:
        """Hits of the distinct values given to every query that repeats one."""
        hits, row_ids = found
        where = {value: n for n, value in enumerate(distinct)}
        copies: list[list[int]] = [[] for _ in distinct]
        for query, value in enumerate(values):
            copies[where[value]].append(query)
        counts = np.array([len(c) for c in copies], dtype=np.int64)[hits.queries]
        take = np.repeat(np.arange(len(hits.queries)), counts)
        # The k-th copy of a hit goes to the k-th query that repeats its value.
        firsts = np.cumsum(counts) - counts
        nth = np.arange(len(take)) - np.repeat(firsts, counts)
        owners = np.concatenate([np.array(c, dtype=np.int64) for c in copies])
        starts = np.cumsum([0] + [len(c) for c in copies])[:-1]
        queries = owners[starts[hits.queries[take]] + nth]
        expanded = Found(queries, hits.entry_ids[take], hits.scores[take])
        return expanded, (row_ids[take] if len(row_ids) else row_ids)

    def structure_arrays(self, structure: Any) -> dict[str, np.ndarray] | None:
        """A segment's structure as named arrays (a snapshot), or None if it has no such form."""
        return None

    def structure_from_arrays(self, arrays: dict[str, np.ndarray], values: np.ndarray) -> Any:
        """``structure_arrays``' structure back over ``values``; ValueError if they do not fit."""
        raise ValueError(f"{type(self).__name__} cannot load a structure")

    def export_snapshot(self) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], dict[str, np.ndarray] | None]:
        # A structure is exported only for one whole segment, which a merge may be making. A feed
        # that never pauses can keep merges coming: past SNAPSHOT_MERGE_WAIT the rows go without
        # it (a restart then rebuilds the structure), rather than the snapshot never being taken.
        if not self.wait_merged(SNAPSHOT_MERGE_WAIT):
            return self.export_rows(), None
        with self._lock:
            state = self._state
            whole = (
                len(state.segments) == 1
                and state.segments[0].dead == 0
                and not state.delta.alive[: state.delta_size].any()
                and state.segments[0].structure is not None
            )
        if not whole:
            return self.export_rows(), None
        # One segment without tombstones holds every live row: its structure is over exactly
        # the exported rows. A removal after the lock is replayed from the feed on load.
        segment = state.segments[0]
        rows = (ids_array(segment.rows.row_ids), ids_array(segment.rows.entry_ids), segment.rows.values)
        return rows, self.structure_arrays(segment.structure)

    def load_snapshot(
        self,
        rows: tuple[np.ndarray, np.ndarray, np.ndarray],
        structure: dict[str, np.ndarray] | None,
    ) -> None:
        row_ids, entry_ids, values = rows
        with self._lock:
            usable = (
                structure is not None
                and not self._state.segments
                and self._state.delta_size == 0
                and len(row_ids) > 0
                and bool(np.all(row_ids[1:] > row_ids[:-1]))
            )
            if usable:
                assert structure is not None
                values = np.ascontiguousarray(values, dtype=self._dtype)
                built = self.structure_from_arrays(structure, values)
                segment = Segment(
                    Rows(values, np.asarray(row_ids, dtype=np.int64), np.asarray(entry_ids)).compact_ids(
                        self._packed_ids
                    ),
                    built,
                )
                self._count += len(row_ids)
                self._state = _State((segment,), self._state.delta, 0)
                return
        self.add_many(row_ids, entry_ids, values)

    def nbytes(self) -> int:
        """Bytes held in numpy arrays by the current state (rows, ids, buckets, delta)."""
        state = self._state
        total = _nbytes(vars(state.delta))
        for segment in state.segments:
            total += _nbytes(vars(segment.rows)) + segment.alive.nbytes + _nbytes(segment.structure)
        return total

    def segment_sizes(self) -> list[int]:
        return [len(s.rows) for s in self._state.segments]

    # Internals (writer side, under ``_lock``).

    def _locate(self, row_id: int) -> tuple[Segment | None, int] | None:
        state = self._state
        wanted = np.array([row_id], dtype=np.int64)
        for segment in state.segments:
            position = int(segment.find(wanted)[0])
            if position >= 0:
                return segment, position
        position = int(state.delta.find(wanted, state.delta_size)[0])
        return (None, position) if position >= 0 else None

    def _segment(self, rows: Rows, ordered: bool = False) -> Segment:
        if not ordered:
            rows = rows.take(np.argsort(ids_array(rows.row_ids), kind="stable"))
        rows = rows.compact_ids(self._packed_ids)
        return Segment(rows, self.build(rows.values) if len(rows) else None)

    # Merges (see LANE_RATIO and the module's docstring).

    def wait_merged(self, timeout: float | None = None) -> bool:
        """Wait until no merge runs or is due; whether that came before ``timeout`` seconds.
        Merges are planned when a write freezes a segment or leaves one with too many
        tombstones, and when a merge ends, and each due one starts as soon as its lane is
        free: none running means none due. A merge that failed (logged) is tried again at
        the next such write. A feed that never pauses may keep merges coming."""
        with self._merges_done:
            return self._merges_done.wait_for(lambda: not self._merging, timeout)

    def _start_merges(self) -> None:
        """Start each due merge whose lane is free, on its own thread (under ``_lock``).

        Threads live as long as their merge: a process whose index has nothing to merge has
        none, so it may still fork (an import forks its readers only when it is alone)."""
        while (merge := self._due_merge()) is not None:
            # A daemon: a process may end in the middle of a merge, which only loses the merge.
            thread = threading.Thread(target=self._merge, args=(merge,), name="hashshare-merge", daemon=True)
            self._merging[merge.lane] = merge
            try:
                thread.start()
            except RuntimeError:  # no thread to be had now: the segments stay as they are
                del self._merging[merge.lane]
                log.exception("could not start a merge of %s", type(self).__name__)
                return

    def _due_merge(self) -> _Merge | None:
        """The smallest due merge whose lane is free and whose parts are in no other merge.

        Due: two neighbours in size order of which the smaller holds at least 1/MERGE_RATIO
        of the larger's live rows (sizes then grow geometrically: O(log N) segments, each row
        rebuilt O(log N) times), or one segment whose tombstones exceed MAX_DEAD_SHARE. The
        smallest first: it is the quickest to cut the number of segments searched."""
        busy = {id(part) for merge in self._merging.values() for part in merge.parts}
        idle = sorted((s for s in self._state.segments if id(s) not in busy), key=lambda s: -s.live)
        due: list[tuple[Segment, ...]] = [(s,) for s in idle if s.dead > MAX_DEAD_SHARE * len(s.rows)]
        due += [(a, b) for a, b in itertools.pairwise(idle) if b.live * MERGE_RATIO >= a.live]
        for parts in sorted(due, key=lambda parts: sum(s.live for s in parts)):
            lane = _lane(sum(s.live for s in parts))
            if lane not in self._merging:
                return _Merge(parts, tuple(s.alive.copy() for s in parts), lane)
        return None

    def _merge(self, merge: _Merge) -> None:
        """A merge thread: build the merged segment unlocked, then publish it."""
        try:
            masks = [alive.mask() for alive in merge.alive]
            parts = [
                part.rows if bool(mask.all()) else part.rows.take(np.flatnonzero(mask))
                for part, mask in zip(merge.parts, masks, strict=True)
            ]
            rows = parts[0] if len(parts) == 1 else Rows.concat(parts)
            merged = self._segment(rows) if len(rows) else None
        except Exception:
            # Not retried here (it would likely fail again at once): the next write that
            # makes a merge due starts it again. Searches are unaffected: the parts stay.
            log.exception("merging %d segments of %s failed", len(merge.parts), type(self).__name__)
            with self._lock:
                del self._merging[merge.lane]
                self._merges_done.notify_all()
            return
        with self._lock:
            del self._merging[merge.lane]
            self._publish_merge(merge, merged)
            self._start_merges()
            if not self._merging:
                self._merges_done.notify_all()

    def _publish_merge(self, merge: _Merge, merged: Segment | None) -> None:
        """Swap ``merge``'s parts for ``merged`` if they are all still published, after clearing
        in it the rows removed from them while it was built (under ``_lock``)."""
        state = self._state
        published = {id(s) for s in state.segments}
        if not all(id(part) in published for part in merge.parts):
            return  # the state was replaced meanwhile (not done today: a safeguard)
        if merged is not None:
            for part, alive in zip(merge.parts, merge.alive, strict=True):
                removed = _cleared_since(alive, part.alive)
                if len(removed):
                    gone = np.asarray(part.rows.row_ids[removed], dtype=np.int64)
                    for position in merged.find(gone).tolist():
                        merged.alive.clear(position)
                        merged.dead += 1
        parts = {id(part) for part in merge.parts}
        kept = [s for s in state.segments if id(s) not in parts]
        if merged is not None and merged.live:
            kept.append(merged)
        self._state = _State(_by_size(kept), state.delta, state.delta_size)


# Every index, for a forked child to forget the merge threads it does not have.
_INDEXES: weakref.WeakSet[SegmentedIndex] = weakref.WeakSet()


def _forget_merges_after_fork() -> None:
    """In a forked child: no merge thread came along, so their lanes would stay taken (no
    merge again) and ``wait_merged`` would never return; a lock one of them held would stay
    held. The state is whole either way (a merge publishes with one assignment); the merges
    are planned again at the next write that makes one due."""
    for index in list(_INDEXES):
        index._lock = threading.Lock()
        index._merges_done = threading.Condition(index._lock)
        index._merging = {}


os.register_at_fork(after_in_child=_forget_merges_after_fork)


def _by_size(segments: list[Segment]) -> tuple[Segment, ...]:
    """The largest first. A segment whose rows were all removed stays until its rebuild
    (due: all tombstones) drops it: a merge may be holding it."""
    return tuple(sorted(segments, key=lambda s: -s.live))


def _nbytes(obj: Any) -> int:
    """Sum of the nbytes of the numpy arrays in ``obj`` (an array, dict, list or dataclass)."""
    if isinstance(obj, np.ndarray | Packed | BlockPacked):
        return int(obj.nbytes)
    if isinstance(obj, dict):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(_nbytes(v) for v in obj)
    if hasattr(obj, "__dataclass_fields__"):
        return sum(_nbytes(getattr(obj, name)) for name in obj.__dataclass_fields__)
    return 0
