"""What every per-signal-type index offers."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np


class Hit(NamedTuple):
    """One stored signal near a query: its row, entry and distance or similarity.

    A named tuple rather than a dataclass: searches build many of them, and a
    tuple is several times cheaper to create."""

    row_id: int
    entry_id: int
    score: float


class SubIndex(abc.ABC):
    """Signals of one type and version. Adding a present row or removing an
    absent one does nothing, so a change feed may be replayed over it."""

    @abc.abstractmethod
    def add(self, row_id: int, entry_id: int, value: bytes) -> None: ...

    def add_many(
        self,
        row_ids: Sequence[int] | np.ndarray,
        entry_ids: Sequence[int] | np.ndarray,
        values: Sequence[bytes] | np.ndarray,
    ) -> None:
        """Add many rows at once (a bulk load); indexes with a faster path override this."""
        for row_id, entry_id, value in zip(row_ids, entry_ids, values, strict=True):
            self.add(int(row_id), int(entry_id), bytes(value))

    @abc.abstractmethod
    def remove(self, row_id: int) -> bool:
        """Remove a row; whether it was there."""

    @abc.abstractmethod
    def search(self, value: bytes, threshold: float) -> list[Hit]:
        """Every row within ``threshold`` of ``value`` (a distance or a similarity)."""

    def search_many(self, values: Sequence[bytes], threshold: float) -> list[list[Hit]]:
        """``[self.search(v, threshold) for v in values]``; indexes with a batched path override this."""
        return [self.search(value, threshold) for value in values]

    @abc.abstractmethod
    def __len__(self) -> int: ...
