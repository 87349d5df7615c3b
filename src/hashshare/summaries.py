"""What Match needs to know about matched entries, kept in memory.

A near-duplicate upload matches a handful of entries, and reading their
summaries from the store was the largest part of a Match. The summaries
change only through writes that put a change in the store's feed
(submissions add signals, retractions remove them, feedback and trust emit
``EntryChanged``), and every process applies the feed, so each process keeps
the summaries it read and forgets them when the feed says they changed. A
process sees another's write as late as its index does (``--feed-poll-seconds``).

The cache holds whatever ``Store.entry_summaries`` returns, unchanged: it
knows nothing of a summary's fields.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Generic, Protocol, TypeVar

from .model import Change, EntryChanged, SignalsAdded, SignalsRemoved

S = TypeVar("S")

# Summaries kept at most: a few hundred bytes each, so well under 100 MB.
MAX_CACHED = 200_000


class SummarySource(Protocol[S]):
    def entry_summaries(self, entry_ids: Iterable[int]) -> dict[int, S]: ...


class SummaryCache(Generic[S]):
    """``entry_summaries`` of a store, answered from memory after the first read."""

    def __init__(self, source: SummarySource[S], max_cached: int = MAX_CACHED) -> None:
        self._source = source
        self._max_cached = max_cached
        self._cached: dict[int, S] = {}
        self._lock = threading.Lock()
        # Bumped by every forget: a read that started before one may carry what was
        # forgotten, so it is answered but not kept.
        self._generation = 0

    def entry_summaries(self, entry_ids: Iterable[int]) -> dict[int, S]:
        """The summaries of the entries among ``entry_ids`` that exist, by entry id."""
        cached = self._cached
        found: dict[int, S] = {}
        missing: list[int] = []
        for entry_id in entry_ids:
            summary = cached.get(entry_id)
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
                if len(cached) + len(read) > self._max_cached:
                    cached.clear()  # rare (a bank far larger than its hot set): start over
                cached.update(read)
        return found

    def forget(self, entry_ids: Iterable[int]) -> None:
        with self._lock:
            self._generation += 1
            for entry_id in entry_ids:
                self._cached.pop(entry_id, None)

    def forget_all(self) -> None:
        with self._lock:
            self._generation += 1
            self._cached.clear()

    def apply(self, change: Change) -> None:
        """Forget what ``change`` may have made stale."""
        if isinstance(change, SignalsAdded):
            # A submission joining an entry changes its corroborations.
            self.forget({row.entry_id for row in change.rows})
        elif isinstance(change, EntryChanged):
            self.forget(change.entry_ids)
        elif isinstance(change, SignalsRemoved):
            # A retraction names rows, not entries; retractions are rare.
            self.forget_all()

    def __len__(self) -> int:
        return len(self._cached)
