"""The embedded store copies its WAL into the database file on a thread of its own: no commit
does it (one that crossed SQLite's threshold stalled for up to 0.7 s at 1M entries), yet what
was committed reaches the file without a further write, and an import checkpoints as before."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

from hashshare.store.sqlite import SqliteStore


def _members_in_file(path: Path) -> int:
    """Members in the database file itself (``immutable``: the WAL is not read); 0 while
    even the tables are only in the WAL."""
    with closing(sqlite3.connect(f"file:{path}?immutable=1", uri=True)) as db:
        try:
            return int(db.execute("SELECT COUNT(*) FROM members").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def _autocheckpoint(store: SqliteStore) -> int:
    return int(store._writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0])


def test_commits_reach_the_database_file_without_another_write(tmp_path: Path) -> None:
    path = tmp_path / "bank.db"
    store = SqliteStore(path)
    try:
        assert _autocheckpoint(store) == 0  # commits never checkpoint
        for n in range(5):
            store.create_member(f"member {n}", frozenset(), 0.0)
        deadline = time.monotonic() + 30
        while _members_in_file(path) < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _members_in_file(path) == 5
        with store.bulk_writes():  # an import's writer checkpoints itself, every 64 MiB
            assert _autocheckpoint(store) > 0
        assert _autocheckpoint(store) == 0
    finally:
        store.close()
    reopened = SqliteStore(path)  # and the thread stops with the store, leaving it whole
    try:
        assert [m.name for m in reopened.list_members()] == [f"member {n}" for n in range(5)]
    finally:
        reopened.close()
