"""Keeps the in-memory index current with the store's change feed.

Writes made by this process are applied at once (``catch_up`` after each
write); writes made by other processes, or by ``hashshare-server admin``,
arrive by polling.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .index import SignalIndex
from .model import TokenRevoked
from .store.base import Store

log = logging.getLogger(__name__)

_LOAD_BATCH = 1_000_000


class FeedFollower:
    def __init__(
        self,
        store: Store,
        index: SignalIndex,
        poll_seconds: float,
        on_token_revoked: Callable[[bytes], None] = lambda token_hash: None,
    ) -> None:
        self._store = store
        self._index = index
        self._poll_seconds = poll_seconds
        self._on_token_revoked = on_token_revoked
        self._lock = threading.Lock()
        self._position = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.loaded = threading.Event()

    @property
    def position(self) -> str:
        return self._position

    def load(self) -> int:
        """Build the index from the store, then replay what changed meanwhile."""
        with self._lock:
            # The position is read before the signals: replaying changes that
            # the scan already saw is harmless, missing one would not be.
            position = self._store.feed_position()
            # Grouped per sub-index and built once per sub-index, _LOAD_BATCH rows at a time.
            count = self._index.add_many(self._store.active_signals(), batch=_LOAD_BATCH)
            self._position = position
        self.catch_up()
        self.loaded.set()
        return count

    def catch_up(self) -> int:
        """Apply every change after our position; how many there were."""
        applied = 0
        with self._lock:
            while True:
                changes, position = self._store.changes_since(self._position)
                for change in changes:
                    if isinstance(change, TokenRevoked):
                        self._on_token_revoked(change.token_hash)
                    else:
                        self._index.apply(change)
                self._position = position
                applied += len(changes)
                if not changes:
                    return applied

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hashshare-feed", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._poll_seconds):
            try:
                self.catch_up()
            except Exception:  # the store may be briefly unreachable; keep serving
                log.exception("could not read the change feed; retrying")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
