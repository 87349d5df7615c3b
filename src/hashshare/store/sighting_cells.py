"""Sightings folded into hour cells: per entry, member and hour, how many and when the
first and last were. Stores keep cells, not sightings, and the fold is done once, here,
over whole columns: a busy server records tens of thousands of sightings a second, and a
Python loop over them would hold the interpreter long enough to stall lookups."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..model import Sighting
from .rollups import HOUR

_NO_INTS = np.zeros(0, dtype=np.int64)
_NO_TIMES = np.zeros(0, dtype=np.float64)


@dataclass(frozen=True)
class SightingCells:
    """Distinct (entry, member, hour) cells as columns, ordered by entry, member and hour."""

    entry_ids: np.ndarray
    member_ids: np.ndarray
    hours: np.ndarray
    counts: np.ndarray
    first_at: np.ndarray
    last_at: np.ndarray

    def __len__(self) -> int:
        return len(self.entry_ids)

    def rows(self) -> list[tuple[int, int, int, int, float, float]]:
        """(entry_id, member_id, hour, count, first_at, last_at) of each cell."""
        columns = (self.entry_ids, self.member_ids, self.hours, self.counts, self.first_at, self.last_at)
        return list(zip(*(column.tolist() for column in columns), strict=True))

    def parts(self, size: int) -> Iterator[SightingCells]:
        """The cells ``size`` at a time."""
        for start in range(0, len(self), size):
            end = start + size
            yield SightingCells(
                self.entry_ids[start:end],
                self.member_ids[start:end],
                self.hours[start:end],
                self.counts[start:end],
                self.first_at[start:end],
                self.last_at[start:end],
            )


def fold(entry_ids: np.ndarray, member_ids: np.ndarray, times: np.ndarray) -> SightingCells:
    """The cells of sightings given as columns (one row a sighting)."""
    entry_ids = np.asarray(entry_ids, dtype=np.int64)
    if not len(entry_ids):
        return SightingCells(_NO_INTS, _NO_INTS, _NO_INTS, _NO_INTS, _NO_TIMES, _NO_TIMES)
    member_ids = np.asarray(member_ids, dtype=np.int64)
    times = np.asarray(times, dtype=np.float64)
    hours = np.floor(times / HOUR).astype(np.int64)  # rollups.hour_of, whole columns at once
    order = np.lexsort((hours, member_ids, entry_ids))
    entry_ids, member_ids, hours, times = entry_ids[order], member_ids[order], hours[order], times[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (entry_ids[1:] != entry_ids[:-1]) | (member_ids[1:] != member_ids[:-1]) | (hours[1:] != hours[:-1])
    starts = np.flatnonzero(new)
    return SightingCells(
        entry_ids[starts],
        member_ids[starts],
        hours[starts],
        np.diff(starts, append=len(order)),
        np.minimum.reduceat(times, starts),
        np.maximum.reduceat(times, starts),
    )


def fold_objects(sightings: Sequence[Sighting]) -> SightingCells:
    """``fold`` of sighting objects (``rollups.fold_sightings`` is another thing: it folds cells into tallies)."""
    return fold(
        np.fromiter((s.entry_id for s in sightings), dtype=np.int64, count=len(sightings)),
        np.fromiter((s.member_id for s in sightings), dtype=np.int64, count=len(sightings)),
        np.fromiter((s.at for s in sightings), dtype=np.float64, count=len(sightings)),
    )
