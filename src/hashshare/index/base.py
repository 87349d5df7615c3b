"""What every per-signal-type index offers."""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np


class Hit(NamedTuple):
    """One stored signal near a query: its row, entry and distance or similarity.

    A named tuple rather than a dataclass: searches build many of them, and a
    tuple is several times cheaper to create."""

    row_id: int
    entry_id: int
    score: float


class Found(NamedTuple):
    """The hits of a batch of queries as arrays, one element a hit: the query (its place in
    the batch), the stored row's entry and the distance or similarity. Matching grades and
    decides over these whole arrays; Hit objects cost a microsecond or more each, and an
    upload near a cluster of near duplicates has thousands of hits."""

    queries: np.ndarray
    entry_ids: np.ndarray
    scores: np.ndarray

    @staticmethod
    def concat(parts: Sequence[Found]) -> Found:
        return Found(*(np.concatenate(column) for column in zip(*parts, strict=True)))

    @staticmethod
    def of(hits: Sequence[Sequence[Hit]]) -> Found:
        counts = [len(found) for found in hits]
        return Found(
            np.repeat(np.arange(len(hits), dtype=np.int64), counts),
            np.array([hit.entry_id for found in hits for hit in found], dtype=np.int64),
            np.array([hit.score for found in hits for hit in found], dtype=np.float64),
        )


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
        """Add many rows at once (a bulk load, a batch of the feed): ``prepare_add``, then publish."""
        with self.prepare_add(row_ids, entry_ids, values) as publish:
            publish()

    @contextlib.contextmanager
    def prepare_add(
        self,
        row_ids: Sequence[int] | np.ndarray,
        entry_ids: Sequence[int] | np.ndarray,
        values: Sequence[bytes] | np.ndarray,
    ) -> Iterator[Callable[[], None]]:
        """``add_many`` in two steps, so that rows given to several indexes become visible
        together: the work is done on entering, and the context gives ``publish``, which
        makes the rows visible to searches at once (quick: an assignment or two). Rows not
        published when the context ends are dropped; the index's other writers wait until
        then. Indexes without the two steps add the rows one by one in ``publish``."""

        def add_each() -> None:
            for row_id, entry_id, value in zip(row_ids, entry_ids, values, strict=True):
                self.add(int(row_id), int(entry_id), bytes(value))

        yield add_each

    def view(self) -> Any:
        """What searches see now, for ``search_arrays(..., view=)`` to search as it was
        (rows published later are left out); None for an index that has no such view."""
        return None

    def export_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The live rows (a snapshot): row ids and entry ids (int64, ascending row ids) and
        values in the form ``add_many`` takes back; indexes that can export override this."""
        raise NotImplementedError(f"{type(self).__name__} cannot export its rows")

    def check_rows(self, values: np.ndarray) -> None:
        """Raise ValueError unless ``values`` (from a snapshot) is what ``export_rows`` gives."""
        raise ValueError(f"{type(self).__name__} cannot load exported rows")

    @abc.abstractmethod
    def remove(self, row_id: int) -> bool:
        """Remove a row; whether it was there."""

    @abc.abstractmethod
    def search(self, value: bytes, threshold: float) -> list[Hit]:
        """Every row within ``threshold`` of ``value`` (a distance or a similarity)."""

    def search_many(self, values: Sequence[bytes], threshold: float) -> list[list[Hit]]:
        """``[self.search(v, threshold) for v in values]``; indexes with a batched path override this."""
        return [self.search(value, threshold) for value in values]

    def search_arrays(self, values: Sequence[bytes], threshold: float, view: Any = None) -> Found:
        """``search_many``'s hits as arrays, in ``view`` if given (see ``view``); indexes with
        views or a faster path override this."""
        return Found.of(self.search_many(values, threshold))

    @abc.abstractmethod
    def __len__(self) -> int: ...

    def wait_merged(self, timeout: float | None = None) -> bool:
        """Wait until no background rebuild of the index runs or is due; whether that came
        before ``timeout`` seconds. Indexes that rebuild nothing in the background have none."""
        return True

    def export_snapshot(self) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], dict[str, np.ndarray] | None]:
        """``export_rows`` and, when the index can hand it over, its search structure over
        exactly those rows as named arrays (for a restart without rebuilding); else None."""
        return self.export_rows(), None

    def load_snapshot(
        self,
        rows: tuple[np.ndarray, np.ndarray, np.ndarray],
        structure: dict[str, np.ndarray] | None,
    ) -> None:
        """Bulk load ``export_snapshot``'s rows, reusing its structure where the index can."""
        self.add_many(*rows)
