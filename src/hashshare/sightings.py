"""Records Match hits as sightings without slowing the lookup down.

Hits are queued and written in batches by one background thread. A crash
can lose the last ``flush_seconds`` of sightings: they are analytics, not
the bank, and the README says so.
"""

from __future__ import annotations

import logging
import queue
import threading

from .model import Sighting
from .store.base import Store

log = logging.getLogger(__name__)

_MAX_QUEUED = 100_000
_MAX_BATCH = 5_000


class SightingRecorder:
    def __init__(self, store: Store, flush_seconds: float) -> None:
        self._store = store
        self._flush_seconds = flush_seconds
        self._queue: queue.Queue[Sighting] = queue.Queue(maxsize=_MAX_QUEUED)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped = 0

    def record(self, sighting: Sighting) -> None:
        try:
            self._queue.put_nowait(sighting)
        except queue.Full:
            # Never hold up an upload check for analytics.
            self.dropped += 1

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hashshare-sightings", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._flush_seconds):
            self.flush()
        self.flush()

    def flush(self) -> int:
        """Write what is queued now; how many were written."""
        written = 0
        while True:
            batch: list[Sighting] = []
            while len(batch) < _MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if not batch:
                return written
            try:
                self._store.add_sightings(batch)
                written += len(batch)
            except Exception:
                log.exception("could not write %d sightings; they are lost", len(batch))
                return written

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()
