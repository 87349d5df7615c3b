"""Keeps the in-memory index current with the store's change feed.

Writes made by this process are applied at once (``catch_up`` after each
write); writes made by other processes, or by ``hashshare-server admin``,
arrive through ``Store.wait_for_changes``: a blocking read of the feed on
Redis (XREAD BLOCK: applied within milliseconds), a short sleep on SQLite.

A follower never runs with holes: when the store says the feed no longer
holds every change after our position (trimmed while we were cut off, or
rolled back by a failover), the index is reconciled with the store's active
signals and the feed is replayed from there.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from .index import SignalIndex, snapshot
from .model import Change, IndexedSignal, SignalsAdded, SignalsRemoved, TokenRevoked
from .store.base import FeedGap, Store

log = logging.getLogger(__name__)

_LOAD_BATCH = 1_000_000
_SWEEP_CHECK_SECONDS = 1.0  # how often the sweeper asks the store (which throttles itself)


class SnapshotPart(Protocol):
    """State besides the index that follows the feed and is saved with its snapshots."""

    def export_snapshot(self) -> dict[str, np.ndarray]: ...

    def load_snapshot(self, arrays: dict[str, np.ndarray]) -> None:
        """Take ``arrays`` (maybe none, or of an older layout: then ignore them)."""


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
        self._sweeper: threading.Thread | None = None
        self.loaded = threading.Event()
        self.snapshot_position: str | None = None  # of the snapshot last loaded or written
        self.rebuilds = 0  # times the feed had a gap and the index was reconciled with the store
        self._listeners: list[Callable[[Change], None]] = []
        self._snapshot_parts: dict[str, SnapshotPart] = {}

    @property
    def position(self) -> str:
        return self._position

    def bank_id(self) -> str:
        """The store's stable identity: a snapshot of another bank is never loaded."""
        return self._store.secret("bank-id").hex()

    def load(self, snapshot_dir: Path | None = None) -> int:
        """Build the index from a snapshot in ``snapshot_dir`` if there is a usable one, else
        from the store; then replay what changed meanwhile. How many rows were loaded."""
        started = time.monotonic()
        with self._lock:
            count = self._load_snapshot(snapshot_dir) if snapshot_dir is not None else None
            source = f"snapshot {snapshot_dir}"
            if count is None:
                source = "store"
                # The position is read before the signals: replaying changes that
                # the scan already saw is harmless, missing one would not be.
                position = self._store.feed_position()
                # Grouped per sub-index and built once per sub-index, _LOAD_BATCH rows at a time.
                # The allow-list's rows (negative ids) share the index with the entries'.
                rows = itertools.chain(self._store.active_signals(), self._store.allowed_signals())
                count = self._index.add_many(rows, batch=_LOAD_BATCH)
                self._position = position
        replayed = self.catch_up()
        self.loaded.set()
        log.info(
            "index loaded from the %s: %d rows, %d changes replayed, %.1f s",
            source,
            count,
            replayed,
            time.monotonic() - started,
        )
        return count

    def _load_snapshot(self, directory: Path) -> int | None:
        """Rows loaded from the snapshot (and our position set to its), or None (logged)
        when there is none fit for this store; under ``_lock``, on an empty index."""
        found = snapshot.load_with_structures(directory, self.bank_id())
        if found is None:
            return None
        position, rows, structures = found.position, found.rows, found.structures
        current = self._store.feed_position()
        try:
            ahead = snapshot.position_key(position) > snapshot.position_key(current)
        except ValueError:
            ahead = True
        if ahead:
            log.warning("index snapshot %s is at %r, past the store's %r: ignored", directory, position, current)
            return None
        try:
            count = self._index.load_arrays(rows, structures)
        except ValueError as error:
            log.warning("index snapshot %s does not fit this index (%s): ignored", directory, error)
            return None
        self._position = position
        self.snapshot_position = position
        for name, part in self._snapshot_parts.items():
            # Before the replay after it, which forgets what changed since.
            part.load_snapshot({k.split(".", 1)[1]: v for k, v in found.extras.items() if k.startswith(f"{name}.")})
        return count

    def save_snapshot(self, directory: Path) -> str:
        """Write the index as a snapshot at ``directory``; the feed position it reflects."""
        with self._lock:
            # Every change up to here is applied; changes applied while exporting are
            # replayed over the snapshot on load, which is harmless.
            position = self._position
        started = time.monotonic()
        # The parts are exported after the position was read: every change up to it is
        # applied to them, and later ones are replayed over them on load.
        extras = {
            f"{name}.{key}": array
            for name, part in self._snapshot_parts.items()
            for key, array in part.export_snapshot().items()
        }
        count = snapshot.save(self._index, position, self.bank_id(), directory, extras)
        self.snapshot_position = position
        log.info(
            "index snapshot written to %s: %d rows at %r, %.1f s",
            directory,
            count,
            position,
            time.monotonic() - started,
        )
        return position

    def catch_up(self) -> int:
        """Apply every change after our position; how many there were."""
        applied = 0
        with self._lock:
            while True:
                try:
                    changes, position = self._store.changes_since(self._position)
                except FeedGap as gap:
                    log.warning("%s: rebuilding the index from the store", gap)
                    self._rebuild()
                    continue
                for change in changes:
                    if isinstance(change, TokenRevoked):
                        self._on_token_revoked(change.token_hash)
                    elif isinstance(change, SignalsAdded):
                        # A store may publish an addition late, after the row's removal:
                        # index only the rows still active.
                        active = self._store.active_row_ids(change.rows)
                        self._index.apply(SignalsAdded(tuple(r for r in change.rows if r.row_id in active)))
                    else:
                        self._index.apply(change)
                    for listener in self._listeners:
                        listener(change)
                self._position = position
                applied += len(changes)
                if not changes:
                    return applied

    def _rebuild(self) -> None:
        """Make the index hold exactly the store's active signals, and follow the feed
        from now on; under ``_lock``. Matching goes on meanwhile: rows are added and
        removed one by one, never all dropped at once."""
        started = time.monotonic()
        position = self._store.feed_position()  # before the scan, as in load()
        rows = itertools.chain(self._store.active_signals(), self._store.allowed_signals())
        wanted: dict[int, IndexedSignal] = {row.row_id: row for row in rows}
        held: set[int] = set()
        for row_ids, _, _ in self._index.export().values():
            held.update(int(r) for r in row_ids)
        # No entries named: changes that fell into the gap (feedback, reviews) went unseen too,
        # so listeners must treat every entry as changed.
        removed = SignalsRemoved(tuple(held - wanted.keys()), None)
        added = SignalsAdded(tuple(row for row_id, row in wanted.items() if row_id not in held))
        for row_id in removed.row_ids:
            self._index.remove(row_id)
        self._index.add_many(added.rows)
        for listener in self._listeners:  # what the index went through, as changes
            listener(removed)
            listener(added)
        self._position = position
        self.rebuilds += 1
        log.info(
            "index reconciled with the store: %d rows, %d removed, %d added, %.1f s",
            len(wanted),
            len(held - wanted.keys()),
            len(wanted.keys() - held),
            time.monotonic() - started,
        )

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hashshare-feed", daemon=True)
        self._thread.start()
        # Its own thread: a sweep of every outbox must not delay applying the feed.
        self._sweeper = threading.Thread(target=self._sweep, name="hashshare-outbox", daemon=True)
        self._sweeper.start()

    def _sweep(self) -> None:
        while not self._stop.wait(_SWEEP_CHECK_SECONDS):
            try:
                self._store.publish_pending()
            except Exception:  # as for the feed: keep serving, try again
                log.exception("could not publish pending changes; retrying")

    def _run(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                self._store.wait_for_changes(self._position, self._poll_seconds)
                if self._stop.is_set():
                    return
                self.catch_up()
                if failing:
                    log.info("reading the change feed again")
                failing = False
            except Exception as error:  # the store may be briefly unreachable; keep serving
                if not failing:  # once per outage, not at every retry
                    log.exception("could not read the change feed; retrying")
                else:
                    log.debug("still cannot read the change feed: %s", error)
                failing = True
                self._stop.wait(self._poll_seconds)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sweeper is not None:
            self._sweeper.join(timeout=5)

    def add_snapshot_part(self, name: str, part: SnapshotPart) -> None:
        """Save ``part`` with every index snapshot and load it from one (it must follow the
        feed as a listener, so that a replay after the snapshot brings it up to date)."""
        self._snapshot_parts[name] = part

    def subscribe(self, listener: Callable[[Change], None]) -> None:
        """Call ``listener`` with every change applied from now on (after the index applied
        it), under the feed's lock: it must be quick and must not read the feed."""
        self._listeners.append(listener)


class SnapshotWriter:
    """Writes an index snapshot every ``seconds`` when the feed moved since the last one,
    and a last one at a graceful stop."""

    def __init__(self, feed: FeedFollower, directory: Path, seconds: float) -> None:
        self._feed = feed
        self._directory = directory
        self._seconds = seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._saving = threading.Lock()

    def start(self) -> None:
        if self._seconds > 0:
            self._thread = threading.Thread(target=self._run, name="hashshare-snapshot", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._seconds):
            self.save_if_moved()

    def save_if_moved(self) -> bool:
        """Write a snapshot unless the last one is at the feed's position; whether one was."""
        with self._saving:
            if self._feed.loaded.is_set() and self._feed.position != self._feed.snapshot_position:
                try:
                    self._feed.save_snapshot(self._directory)
                    return True
                except Exception:  # a snapshot is only a cache: keep serving
                    log.exception("could not write the index snapshot to %s", self._directory)
            return False

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.save_if_moved()
