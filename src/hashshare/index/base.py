"""What every per-signal-type index offers."""

from __future__ import annotations

import abc
from dataclasses import dataclass


@dataclass(frozen=True)
class Hit:
    """One stored signal near a query: its row, entry and distance or similarity."""

    row_id: int
    entry_id: int
    score: float


class SubIndex(abc.ABC):
    """Signals of one type and version. Adding a present row or removing an
    absent one does nothing, so a change feed may be replayed over it."""

    @abc.abstractmethod
    def add(self, row_id: int, entry_id: int, value: bytes) -> None: ...

    @abc.abstractmethod
    def remove(self, row_id: int) -> bool:
        """Remove a row; whether it was there."""

    @abc.abstractmethod
    def search(self, value: bytes, threshold: float) -> list[Hit]:
        """Every row within ``threshold`` of ``value`` (a distance or a similarity)."""

    @abc.abstractmethod
    def __len__(self) -> int: ...
