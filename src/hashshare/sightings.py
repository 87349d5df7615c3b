"""Records Match hits as sightings without slowing the lookup down.

Hits are queued and written in batches by one background thread. A crash
can lose the last ``flush_seconds`` of sightings: they are analytics, not
the bank, and the README says so.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterable, Sequence

import numpy as np

from hashshare_client import Verdict

from .model import Sighting
from .store.base import Store

log = logging.getLogger(__name__)

# Verdict names by rank (matching.VERDICT_RANK).
_VERDICT_NAMES = (Verdict.NONE.value, Verdict.REVIEW.value, Verdict.BLOCK.value)
_MAX_QUEUED = 100_000
_MAX_BATCH = 5_000


class SightingRecorder:
    def __init__(self, store: Store, flush_seconds: float) -> None:
        self._store = store
        self._flush_seconds = flush_seconds
        # A list under a lock, swapped out whole by the writer: a Match appends its
        # hits in one step (queue.Queue costs a condition variable per item).
        self._pending: list[Sighting] = []
        self._pending_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped = 0

    def record(self, sighting: Sighting) -> None:
        self.record_many((sighting,))

    def record_many(self, sightings: Iterable[Sighting]) -> None:
        """Queue the sightings of one lookup; beyond the queue's bound they are dropped
        (and counted): an upload check is never held up for analytics."""
        batch = list(sightings)
        with self._pending_lock:
            room = _MAX_QUEUED - len(self._pending)
            if room >= len(batch):
                self._pending.extend(batch)
                return
            self._pending.extend(batch[: max(room, 0)])
            self.dropped += len(batch) - max(room, 0)

    def record_matches(self, member_id: int, at: float, seen: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        """``record_many`` of the entries lookups matched: per lookup, the entry ids and
        the ranks of their verdicts (matching.VERDICT_RANK)."""
        entries = np.concatenate([ids for ids, _ in seen]).tolist()
        verdicts = np.array(_VERDICT_NAMES)[np.concatenate([ranks for _, ranks in seen])].tolist()
        self.record_many(map(Sighting, entries, itertools.repeat(member_id), itertools.repeat(at), verdicts))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hashshare-sightings", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._flush_seconds):
            self.flush()
        self.flush()

    def flush(self) -> int:
        """Write what is queued now; how many were written."""
        with self._pending_lock:
            pending, self._pending = self._pending, []
        written = 0
        for start in range(0, len(pending), _MAX_BATCH):
            batch = pending[start : start + _MAX_BATCH]
            try:
                self._store.add_sightings(batch)
                written += len(batch)
            except Exception:
                log.exception("could not write %d sightings; they are lost", len(pending) - start)
                return written
        return written

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()
