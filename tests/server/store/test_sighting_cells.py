"""Sightings are folded into hour cells once, over whole columns, and the recorder
writes a server's queued sightings so, in parts: every store ends up with the counts a
sighting-by-sighting fold gives."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from hashshare import sightings
from hashshare.model import MemberSightings, Sighting, SightingStats
from hashshare.sightings import SightingRecorder
from hashshare.store import Store
from hashshare.store.rollups import hour_of
from hashshare.store.sighting_cells import fold, fold_objects

from .test_store_contract import draft, member, sha256, submit

MIDNIGHT = datetime(2024, 3, 2, tzinfo=UTC).timestamp()


def _by_hand(entries: list[int], members: list[int], times: list[float]) -> dict[tuple[int, int, int], list[float]]:
    cells: dict[tuple[int, int, int], list[float]] = {}
    for entry_id, member_id, at in zip(entries, members, times, strict=True):
        cell = cells.setdefault((entry_id, member_id, hour_of(at)), [0, at, at])
        cell[0] += 1
        cell[1], cell[2] = min(cell[1], at), max(cell[2], at)
    return cells


def test_folding_columns_equals_folding_sighting_by_sighting() -> None:
    rng = np.random.default_rng(3)
    n = 5_000
    entries = rng.integers(1, 40, n)
    members = rng.integers(1, 4, n)
    # Times within a few hours of midnight, some exactly on an hour's boundary.
    times = MIDNIGHT + rng.integers(-3, 4, n) * 3600.0 + np.where(rng.random(n) < 0.1, 0.0, rng.random(n) * 3600)
    cells = fold(entries, members, times)
    expected = _by_hand(entries.tolist(), members.tolist(), times.tolist())
    assert {(e, m, h): [c, f, la] for e, m, h, c, f, la in cells.rows()} == expected
    assert [row[:3] for row in cells.rows()] == sorted(expected), "ordered by entry, member and hour"
    assert int(cells.counts.sum()) == n
    parts = list(cells.parts(7))
    assert sum(len(p) for p in parts) == len(cells) and [r for p in parts for r in p.rows()] == cells.rows()


def test_folding_nothing_gives_no_cells() -> None:
    assert len(fold(np.zeros(0), np.zeros(0), np.zeros(0))) == 0
    assert len(fold_objects([])) == 0


def test_the_recorder_writes_every_queued_sighting_in_parts(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sightings, "_CELLS_PER_WRITE", 2)  # several writes of one flush
    alpha, beta = member(store, "alpha"), member(store, "beta")
    first = submit(store, alpha, "req-1", draft(sha256("a"))).entry_id
    second = submit(store, alpha, "req-2", draft(sha256("b"))).entry_id
    recorder = SightingRecorder(store, flush_seconds=3600)
    ranks = np.zeros(2, dtype=np.int64)
    # Two lookups of one MatchStream batch by beta, then one by alpha the next hour.
    recorder.record_matches(beta, MIDNIGHT + 5, [(np.array([first, second]), ranks), (np.array([first]), ranks[:1])])
    recorder.record_matches(alpha, MIDNIGHT + 3600 + 1, [(np.array([first]), ranks[:1])])
    recorder.record_matches(alpha, MIDNIGHT + 3600 + 9, [])
    assert recorder.flush() == 4
    assert recorder.flush() == 0, "nothing is written twice"
    expected = fold_objects(
        [
            Sighting(first, beta, MIDNIGHT + 5, "block"),
            Sighting(second, beta, MIDNIGHT + 5, "block"),
            Sighting(first, beta, MIDNIGHT + 5, "block"),
            Sighting(first, alpha, MIDNIGHT + 3601, "block"),
        ]
    )
    assert len(expected) == 3
    assert store.sighting_stats(first) == SightingStats(
        first,
        {"2024-03-02": 3},
        (
            MemberSightings(alpha, 1, MIDNIGHT + 3601, MIDNIGHT + 3601),
            MemberSightings(beta, 2, MIDNIGHT + 5, MIDNIGHT + 5),
        ),
    )
    assert store.sighting_stats(second) == SightingStats(
        second, {"2024-03-02": 1}, (MemberSightings(beta, 1, MIDNIGHT + 5, MIDNIGHT + 5),)
    )


def test_the_recorder_drops_and_counts_what_overflows_its_queue(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sightings, "_MAX_QUEUED", 3)
    alpha = member(store, "alpha")
    entry = submit(store, alpha, "req-1", draft(sha256("a"))).entry_id
    recorder = SightingRecorder(store, flush_seconds=3600)
    ranks = np.zeros(2, dtype=np.int64)
    recorder.record_matches(alpha, MIDNIGHT, [(np.array([entry, entry]), ranks)])
    recorder.record_matches(alpha, MIDNIGHT + 1, [(np.array([entry, entry]), ranks)])  # one fits
    recorder.record_matches(alpha, MIDNIGHT + 2, [(np.array([entry]), ranks[:1])])
    assert recorder.dropped == 2
    assert recorder.flush() == 3
    assert store.sighting_stats(entry).members == (MemberSightings(alpha, 3, MIDNIGHT, MIDNIGHT + 1),)
