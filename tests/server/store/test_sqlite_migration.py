"""A bank written by schema 2 (a row per sighting beside its hour cell) opens under schema 3
(the cells alone, with their first and last sighting) and answers as before."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from hashshare.model import MemberSightings, Sighting, SightingStats
from hashshare.store import open_store
from hashshare.store.rollups import Dimension, Rollup
from hashshare.store.sqlite import SCHEMA_VERSION, SqliteStore

HOUR, DAY = 3600.0, 86400.0
MIDNIGHT = datetime(2024, 3, 2, tzinfo=UTC).timestamp()


def _as_schema_2(path: Path, sightings: list[tuple[int, int, float, str]]) -> None:
    """Rewrite a fresh bank's sighting tables as schema 2 had them, holding ``sightings``."""
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(
        """
        DROP TABLE sighting_hours;
        CREATE TABLE sighting_hours (
            entry_id INTEGER NOT NULL, member_id INTEGER NOT NULL, hour INTEGER NOT NULL, count INTEGER NOT NULL,
            PRIMARY KEY (entry_id, member_id, hour)) WITHOUT ROWID;
        CREATE INDEX sighting_hours_by_hour ON sighting_hours(hour, count);
        CREATE TABLE sightings (
            id INTEGER PRIMARY KEY, entry_id INTEGER NOT NULL, member_id INTEGER NOT NULL,
            at REAL NOT NULL, verdict TEXT NOT NULL);
        CREATE INDEX sightings_by_entry ON sightings(entry_id, at);
        UPDATE meta SET value = '2' WHERE key = 'schema_version';
        """
    )
    db.executemany("INSERT INTO sightings (entry_id, member_id, at, verdict) VALUES (?, ?, ?, ?)", sightings)
    db.execute(
        "INSERT INTO sighting_hours SELECT entry_id, member_id, CAST(at / 3600 AS INTEGER), COUNT(*)"
        " FROM sightings GROUP BY 1, 2, 3"
    )
    db.close()


def test_a_schema_2_bank_keeps_its_sightings(tmp_path: Path) -> None:
    path = tmp_path / "bank.db"
    open_store(f"sqlite:///{path}").close()
    old = [
        (1, 7, MIDNIGHT - 0.5, "block"),
        (1, 7, MIDNIGHT - DAY, "block"),
        (1, 8, MIDNIGHT + 10.25, "review"),
        (1, 8, MIDNIGHT + 20.5, "review"),
        (2, 7, MIDNIGHT + 2 * HOUR, "block"),
    ]
    _as_schema_2(path, old)

    store = SqliteStore(path)
    try:
        assert store.sighting_stats(1) == SightingStats(
            1,
            {"2024-03-01": 2, "2024-03-02": 2},
            (
                MemberSightings(7, 2, MIDNIGHT - DAY, MIDNIGHT - 0.5),
                MemberSightings(8, 2, MIDNIGHT + 10.25, MIDNIGHT + 20.5),
            ),
        )
        # New sightings join the migrated cells, first and last seen included.
        store.add_sightings([Sighting(1, 8, MIDNIGHT + 5.0, "block"), Sighting(2, 7, MIDNIGHT + 2 * HOUR + 1, "block")])
        assert store.sighting_stats(1).members[1] == MemberSightings(8, 3, MIDNIGHT + 5.0, MIDNIGHT + 20.5)
        assert store.sighting_stats(2) == SightingStats(
            2, {"2024-03-02": 2}, (MemberSightings(7, 2, MIDNIGHT + 2 * HOUR, MIDNIGHT + 2 * HOUR + 1),)
        )
        tallies = store.sighting_rollup(
            Rollup(by=(Dimension.MEMBER,), start=MIDNIGHT - 2 * DAY, end=MIDNIGHT + 2 * DAY)
        )
        assert {key: tally.sightings for key, tally in tallies.items()} == {(7,): 4, (8,): 3}
    finally:
        store.close()

    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'sightings'").fetchone() is None
    finally:
        db.close()
    # Opening it again changes nothing.
    again = SqliteStore(path)
    try:
        assert again.sighting_stats(1).members[1] == MemberSightings(8, 3, MIDNIGHT + 5.0, MIDNIGHT + 20.5)
    finally:
        again.close()
