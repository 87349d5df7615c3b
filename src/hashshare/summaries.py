"""What Match needs to know about matched entries, kept in memory.

A near-duplicate upload matches a handful of entries, and reading their
summaries from the store was the largest part of a Match. The summaries
change only through writes that put a change in the store's feed
(submissions add signals, retractions remove them, feedback and trust emit
``EntryChanged``), and every process applies the feed, so each process keeps
the summaries it read and forgets them when the feed says they changed. A
process sees another's write as late as its index does (``--feed-poll-seconds``).

The summaries read one by one are kept as the store returns them, the
hottest ``MAX_CACHED``. A store that can list every entry's summary cheaply
(SQLite) also keeps a ``SummaryTable``: every entry in a few compact columns
(about 11 bytes an entry), so that an upload matching entries nobody looked up
since the start reads nothing from the store either. It is saved with the index
snapshots and loaded with them; a server that loads its index from the store
reads it before it serves, one whose snapshot lacks it reads it in the
background. A feed change marks the entries it names unknown in the table; the
next lookup of one reads it from the store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .model import Change, EntryChanged, EntrySummary, SignalsAdded, SignalsRemoved
from .store.base import SummaryColumns

log = logging.getLogger(__name__)

# Summaries kept at most: a few hundred bytes each, so well under 100 MB.
MAX_CACHED = 200_000
# Entries read per step of a table load; the loader pauses between steps so that
# lookups running meanwhile are not kept waiting for the interpreter.
LOAD_STEP = 2_000
LOAD_PAUSE_SECONDS = 0.001

_KNOWN, _ACTIVE, _TRUSTED, _CONFIRMED, _DISABLED = 1, 2, 4, 8, 16
_SMALL = np.iinfo(np.uint16).max  # counts above this are kept in the per-entry cache instead


@dataclass(frozen=True)
class EntryFacts:
    """The summaries of some entries as columns aligned with ``entry_ids``: Match decides the
    verdicts of all the entries a lookup found in a few whole-array steps (an upload near a
    cluster finds thousands). ``found`` is False for an entry that does not exist."""

    entry_ids: np.ndarray
    found: np.ndarray
    active: np.ndarray
    disabled: np.ndarray
    confirmed: np.ndarray
    trusted: np.ndarray
    corroborations: np.ndarray
    endorsers: np.ndarray
    disputes: np.ndarray
    category_codes: np.ndarray
    category_names: Sequence[str]

    @classmethod
    def of(cls, entry_ids: np.ndarray, summaries: Mapping[int, EntrySummary]) -> EntryFacts:
        """The facts of ``entry_ids`` from summary objects (absent ones: not found)."""
        names: dict[str, int] = {}
        rows = [summaries.get(entry_id) for entry_id in entry_ids.tolist()]
        known = [s for s in rows if s is not None]
        found = np.array([s is not None for s in rows], dtype=bool)

        def column(values: list[object], dtype: type) -> np.ndarray:
            out: np.ndarray = np.zeros(len(rows), dtype=dtype)
            out[found] = np.array(values, dtype=dtype)
            return out

        return cls(
            entry_ids,
            found,
            column([s.active for s in known], bool),
            column([s.disabled for s in known], bool),
            column([s.confirmed for s in known], bool),
            column([s.trusted for s in known], bool),
            column([s.corroborations for s in known], np.int64),
            column([s.endorsers for s in known], np.int64),
            column([s.disputes for s in known], np.int64),
            column([names.setdefault(s.category, len(names)) for s in known], np.int64),
            list(names),
        )

    def take(self, entry_ids: np.ndarray) -> EntryFacts:
        """The facts of ``entry_ids``, all of them among (ascending) ``self.entry_ids``."""
        at = np.searchsorted(self.entry_ids, entry_ids)
        return EntryFacts(
            entry_ids,
            self.found[at],
            self.active[at],
            self.disabled[at],
            self.confirmed[at],
            self.trusted[at],
            self.corroborations[at],
            self.endorsers[at],
            self.disputes[at],
            self.category_codes[at],
            self.category_names,
        )

    def category(self, position: int) -> str:
        return self.category_names[int(self.category_codes[position])]


class SummarySource(Protocol):
    def entry_summaries(self, entry_ids: Iterable[int]) -> dict[int, EntrySummary]: ...


class SummaryTable:
    """Every entry's summary as columns indexed by entry id; a row is used only while its
    KNOWN flag is set."""

    _COLUMNS = ("category", "corroborations", "endorsers", "disputes", "flags")

    def __init__(self) -> None:
        self.categories: list[str] = []
        self._codes: dict[str, int] = {}
        self.category = np.zeros(0, dtype=np.uint16)
        self.corroborations = np.zeros(0, dtype=np.uint16)
        self.endorsers = np.zeros(0, dtype=np.uint16)
        self.disputes = np.zeros(0, dtype=np.uint16)
        self.flags = np.zeros(0, dtype=np.uint8)

    def add(self, step: SummaryColumns) -> None:
        """Write these entries' rows (a step of a load, in entry id order)."""
        if not len(step):
            return
        self._grow(step.entry_ids[-1] + 1)
        for category in dict.fromkeys(step.categories):
            if category not in self._codes:
                self._codes[category] = len(self.categories)
                self.categories.append(category)
        ids = np.array(step.entry_ids, dtype=np.int64)
        corroborations = np.array(step.corroborations, dtype=np.int64)
        fits = corroborations <= _SMALL  # else unknown here: read from the store when matched
        if len(self.categories) > _SMALL:
            return  # not a real bank: every row stays unknown
        codes = self._codes
        self.category[ids] = np.array([codes[c] for c in step.categories], dtype=np.uint16)
        self.corroborations[ids] = np.minimum(corroborations, _SMALL)
        self.endorsers[ids] = 0
        self.disputes[ids] = 0
        trusted = np.array(step.trusted, dtype=bool)
        self.flags[ids] = np.where(
            fits, _KNOWN | np.where(corroborations > 0, _ACTIVE, 0) | np.where(trusted, _TRUSTED, 0), 0
        )
        # Entries with feedback or a review (few) are written whole, as a lookup's are.
        for refused in self.put(step.others.values()):
            self.flags[refused.entry_id] = 0

    def _grow(self, size: int) -> None:
        if size <= len(self.flags):
            return
        grown = max(size, len(self.flags) * 3 // 2)
        # Flags last: a reader that sees the longer flags sees the longer columns too.
        for name in self._COLUMNS:
            column = getattr(self, name)
            wider = np.zeros(grown, dtype=column.dtype)
            wider[: len(column)] = column
            setattr(self, name, wider)

    def put(self, summaries: Iterable[EntrySummary]) -> list[EntrySummary]:
        """Write these entries' rows (read one by one since the load); those it cannot hold."""
        refused = []
        for s in summaries:
            code = self._codes.get(s.category)
            if code is None and len(self.categories) <= _SMALL:
                code = self._codes[s.category] = len(self.categories)
                self.categories.append(s.category)
            if code is None or max(s.corroborations, s.endorsers, s.disputes) > _SMALL:
                refused.append(s)
                continue
            self._grow(s.entry_id + 1)
            n = s.entry_id
            self.category[n] = code
            self.corroborations[n] = s.corroborations
            self.endorsers[n] = s.endorsers
            self.disputes[n] = s.disputes
            self.flags[n] = (
                _KNOWN
                | (_ACTIVE if s.active else 0)
                | (_TRUSTED if s.trusted else 0)
                | (_CONFIRMED if s.confirmed else 0)
                | (_DISABLED if s.disabled else 0)
            )
        return refused

    def __len__(self) -> int:
        return int(np.count_nonzero(self.flags & _KNOWN))

    def arrays(self) -> dict[str, np.ndarray]:
        """The table as named arrays (saved with index snapshots)."""
        columns = {name: getattr(self, name) for name in self._COLUMNS}
        return {**columns, "categories": np.array(self.categories, dtype=np.str_)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> SummaryTable:
        """``arrays()``' table back; ValueError if they do not make one."""
        table = cls()
        expected = {name: getattr(table, name).dtype for name in cls._COLUMNS}
        columns = [arrays.get(name) for name in cls._COLUMNS]
        categories = arrays.get("categories")
        if categories is None or categories.ndim != 1 or categories.dtype.kind != "U":
            raise ValueError("no category names")
        if any(c is None or c.ndim != 1 or c.dtype != expected[n] for n, c in zip(cls._COLUMNS, columns, strict=True)):
            raise ValueError("columns of another layout")
        if len({len(c) for c in columns if c is not None}) != 1:
            raise ValueError("columns of unequal lengths")
        if len(arrays["category"]) and int(arrays["category"].max()) >= max(len(categories), 1):
            raise ValueError("category codes beyond the names")
        for name in cls._COLUMNS:
            setattr(table, name, np.array(arrays[name]))
        table.categories = [str(c) for c in categories]
        table._codes = {c: n for n, c in enumerate(table.categories)}
        return table

    def get(self, entry_id: int) -> EntrySummary | None:
        if not 0 <= entry_id < len(self.flags):
            return None
        flags = int(self.flags[entry_id])
        if not flags & _KNOWN:
            return None
        return EntrySummary(
            entry_id,
            self.categories[self.category[entry_id]],
            int(self.corroborations[entry_id]),
            bool(flags & _ACTIVE),
            trusted=bool(flags & _TRUSTED),
            endorsers=int(self.endorsers[entry_id]),
            disputes=int(self.disputes[entry_id]),
            confirmed=bool(flags & _CONFIRMED),
            disabled=bool(flags & _DISABLED),
        )

    def facts(self, entry_ids: np.ndarray) -> tuple[EntryFacts, np.ndarray]:
        """The facts of ``entry_ids`` (int64) the table knows, and which those are."""
        flags = self.flags  # read once: a reader that sees these flags sees columns as long
        if not len(flags):
            return EntryFacts.of(entry_ids, {}), np.zeros(len(entry_ids), dtype=bool)
        inside = (entry_ids >= 0) & (entry_ids < len(flags))
        at = np.where(inside, entry_ids, 0)
        row_flags = np.where(inside, flags[at], 0)
        known = (row_flags & _KNOWN) > 0
        facts = EntryFacts(
            entry_ids,
            known,
            (row_flags & _ACTIVE) > 0,
            (row_flags & _DISABLED) > 0,
            (row_flags & _CONFIRMED) > 0,
            (row_flags & _TRUSTED) > 0,
            self.corroborations[at].astype(np.int64),
            self.endorsers[at].astype(np.int64),
            self.disputes[at].astype(np.int64),
            self.category[at].astype(np.int64),
            self.categories,
        )
        return facts, known

    def forget(self, entry_ids: Iterable[int]) -> None:
        ids = np.fromiter(entry_ids, dtype=np.int64)
        ids = ids[(ids >= 0) & (ids < len(self.flags))]
        self.flags[ids] = 0

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.category, self.corroborations, self.endorsers, self.disputes, self.flags))


class SummaryCache:
    """``entry_summaries`` of a store, answered from memory after the first read."""

    def __init__(self, source: SummarySource, max_cached: int = MAX_CACHED) -> None:
        self._source = source
        self._max_cached = max_cached
        self._cached: dict[int, EntrySummary] = {}
        self._lock = threading.Lock()
        # Bumped by every forget: a read that started before one may carry what was
        # forgotten, so it is answered but not kept.
        self._generation = 0
        self.table: SummaryTable | None = None
        # While a table loads: the entries forgotten since it started (None: all of them).
        self._forgotten_while_loading: set[int] | None = set()
        self._loading = False
        self._stop = threading.Event()
        self._loader: threading.Thread | None = None

    def entry_summaries(self, entry_ids: Iterable[int]) -> dict[int, EntrySummary]:
        """The summaries of the entries among ``entry_ids`` that exist, by entry id."""
        cached = self._cached
        table = self.table
        found: dict[int, EntrySummary] = {}
        missing: list[int] = []
        for entry_id in entry_ids:
            summary = cached.get(entry_id)
            if summary is None and table is not None:
                summary = table.get(entry_id)
            if summary is None:
                missing.append(entry_id)
            else:
                found[entry_id] = summary
        if not missing:
            return found
        generation = self._generation
        read = self._source.entry_summaries(missing)
        found.update(read)
        with self._lock:
            if generation == self._generation:
                if self.table is not None:  # it learns the entries added since it was read
                    read = {s.entry_id: s for s in self.table.put(read.values())}
                if len(cached) + len(read) > self._max_cached:
                    cached.clear()  # rare (a bank far larger than its hot set): start over
                cached.update(read)
        return found

    def facts(self, entry_ids: np.ndarray) -> EntryFacts:
        """``entry_summaries`` of ``entry_ids`` (int64) as columns: from the table where it knows
        them, in one gather; the others as ``entry_summaries`` reads them."""
        table = self.table
        if table is None:
            return EntryFacts.of(entry_ids, self.entry_summaries(entry_ids.tolist()))
        facts, known = table.facts(entry_ids)
        if bool(known.all()):
            return facts
        unknown = np.flatnonzero(~known)
        read = EntryFacts.of(entry_ids[unknown], self.entry_summaries(entry_ids[unknown].tolist()))
        names = list(facts.category_names)
        codes = {name: n for n, name in enumerate(names)}
        for name in read.category_names:
            codes.setdefault(name, len(names))
            if len(names) < len(codes):
                names.append(name)
        remap = np.array([codes[name] for name in read.category_names] or [0], dtype=np.int64)
        columns = {}
        for name in ("found", "active", "disabled", "confirmed", "trusted", "corroborations", "endorsers", "disputes"):
            column = getattr(facts, name).copy()
            column[unknown] = getattr(read, name)
            columns[name] = column
        category_codes = facts.category_codes.copy()
        category_codes[unknown] = remap[read.category_codes]
        return EntryFacts(entry_ids, **columns, category_codes=category_codes, category_names=names)

    def forget(self, entry_ids: Iterable[int]) -> None:
        ids = list(entry_ids)
        with self._lock:
            self._generation += 1
            for entry_id in ids:
                self._cached.pop(entry_id, None)
            if self.table is not None:
                self.table.forget(ids)
            if self._loading and self._forgotten_while_loading is not None:
                self._forgotten_while_loading.update(ids)

    def forget_all(self) -> None:
        with self._lock:
            self._generation += 1
            self._cached.clear()
            reload = self.table is not None and not self._loading
            self.table = None
            self._forgotten_while_loading = None  # a load under way is stale: it starts over
        if reload:
            self.start_loading()

    def start_loading(self, background: bool = True) -> None:
        """Fill the table, in the background or now, if the store can list every summary."""
        with self._lock:
            if self._loading or self._stop.is_set():
                return
            self._loading = True
            if background:
                self._loader = threading.Thread(target=self._load, name="hashshare-summaries", daemon=True)
                self._loader.start()
        if not background:
            self._load(pause=0.0)

    def export_snapshot(self) -> dict[str, np.ndarray]:
        with self._lock:
            table = self.table
            if table is None:
                return {}
            arrays = table.arrays()
            arrays["flags"] = arrays["flags"].copy()  # the one column forgets change
        return arrays

    def load_snapshot(self, arrays: dict[str, np.ndarray]) -> None:
        if not arrays:
            return
        try:
            table = SummaryTable.from_arrays(arrays)
        except (KeyError, ValueError) as error:
            log.warning("entry summaries in the snapshot are not usable (%s): read from the store", error)
            return
        with self._lock:
            self.table = table

    @property
    def loading(self) -> bool:
        return self._loading

    def stop(self) -> None:
        self._stop.set()
        if self._loader is not None:
            self._loader.join(timeout=10)

    def _load(self, pause: float = LOAD_PAUSE_SECONDS) -> None:
        read_after = getattr(self._source, "entry_summaries_after", None)
        try:
            while read_after is not None and not self._stop.is_set():
                with self._lock:
                    self._forgotten_while_loading = set()
                started = time.monotonic()
                table = self._read_all(read_after, pause)
                if table is None:
                    return  # this store lists no summaries, or we are stopping
                with self._lock:
                    forgotten = self._forgotten_while_loading
                    if forgotten is None:
                        continue  # everything was forgotten while we read: read again
                    table.forget(forgotten)
                    self.table = table
                log.info(
                    "entry summaries in memory: %d entries, %.1f MB, %.1f s",
                    len(table),
                    table.nbytes / 1e6,
                    time.monotonic() - started,
                )
                return
        except Exception:  # the table only saves store reads: keep serving without it
            log.exception("could not load the entry summaries; Match reads them from the store")
        finally:
            with self._lock:
                self._loading = False

    def _read_all(self, read_after: Callable[[int, int], SummaryColumns | None], pause: float) -> SummaryTable | None:
        table = SummaryTable()
        last = 0
        while not self._stop.is_set():
            step = read_after(last, LOAD_STEP)
            if step is None:
                return None
            if not len(step):
                return table
            table.add(step)
            last = step.entry_ids[-1]
            if pause:
                time.sleep(pause)
        return None

    def apply(self, change: Change) -> None:
        """Forget what ``change`` may have made stale."""
        if isinstance(change, SignalsAdded):
            # A submission joining an entry changes its corroborations.
            self.forget({row.entry_id for row in change.rows})
        elif isinstance(change, EntryChanged):
            self.forget(change.entry_ids)
        elif isinstance(change, SignalsRemoved):
            if change.entry_ids is None:
                self.forget_all()  # a change from before stores named the entries
            else:
                self.forget(change.entry_ids)

    def __len__(self) -> int:
        """Summaries answered from memory: the table's known rows and those kept beside it."""
        table = self.table
        return len(self._cached) + (len(table) if table is not None else 0)
