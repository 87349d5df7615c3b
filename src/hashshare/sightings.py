"""Records Match hits as sightings without slowing the lookup down.

Hits are queued and written in batches by one background thread. A crash
can lose the last ``flush_seconds`` of sightings: they are analytics, not
the bank, and the README says so.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import numpy as np

from .store.base import Store
from .store.sighting_cells import fold

log = logging.getLogger(__name__)

_MAX_QUEUED = 100_000  # sightings
# Lookups wait for the interpreter while a part is prepared: parts of 500 cells, not 2,000,
# gave Match p99 2.76-2.83 ms against 2.89-3.53 (servers alternated four times).
_CELLS_PER_WRITE = 500


class SightingRecorder:
    def __init__(self, store: Store, flush_seconds: float) -> None:
        self._store = store
        self._flush_seconds = flush_seconds
        # Per lookup batch: the matched entry ids, the member and the time. A list under a
        # lock, swapped out whole by the writer; a Match appends in one step and makes no
        # object per matched entry (a lookup near a cluster matches hundreds).
        self._pending: list[tuple[np.ndarray, int, float]] = []
        self._queued = 0
        self._pending_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped = 0

    def record_matches(self, member_id: int, at: float, seen: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        """Queue the sightings of lookups: per lookup, the entry ids it matched and the ranks
        of their verdicts (matching.VERDICT_RANK; not kept). Beyond the queue's bound they are
        dropped (and counted): an upload check is never held up for analytics."""
        entries = np.concatenate([ids for ids, _ in seen]) if seen else np.zeros(0, dtype=np.int64)
        if not len(entries):
            return
        with self._pending_lock:
            room = _MAX_QUEUED - self._queued
            if room < len(entries):
                self.dropped += len(entries) - max(room, 0)
                entries = entries[: max(room, 0)]
            if len(entries):
                self._pending.append((entries, member_id, at))
                self._queued += len(entries)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hashshare-sightings", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._flush_seconds):
            self.flush()
        self.flush()

    def flush(self) -> int:
        """Write what is queued now, folded into hour cells; how many sightings were written."""
        with self._pending_lock:
            pending, self._pending, self._queued = self._pending, [], 0
        if not pending:
            return 0
        lengths = [len(entries) for entries, _, _ in pending]
        cells = fold(
            np.concatenate([entries for entries, _, _ in pending]),
            np.repeat(np.array([member for _, member, _ in pending], dtype=np.int64), lengths),
            np.repeat(np.array([at for _, _, at in pending], dtype=np.float64), lengths),
        )
        written = 0
        for part in cells.parts(_CELLS_PER_WRITE):
            try:
                self._store.add_sighting_cells(part)
            except Exception:
                log.exception("could not write %d sightings; they are lost", sum(lengths) - written)
                return written
            written += int(part.counts.sum())
            # Lookups waiting for the interpreter go first: a flush is analytics, not urgent.
            time.sleep(0)
        return written

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()
