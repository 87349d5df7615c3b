"""Import into the embedded store: what a killed import leaves behind, and the
bulk write path's batches and feed rows (SqliteStore.bulk_writes, multi-row inserts)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

from hashshare import bankfile, members
from hashshare.model import SignalsAdded, SubmissionDraft
from hashshare.store.base import BatchSubmission, submitted
from hashshare.store.sqlite import SqliteStore
from hashshare_client import DiscoveryMethod, LegalBasis, Signal, signal_types

MD5 = signal_types.MD5
BATCH = 100
KILLED_AFTER = 350  # lines parsed when the child stops reading: 3 whole batches written, the 4th not sent
FILE_BATCH = 1000
FILE_LINES = 200_000  # a few seconds' import, killed after its first batches

# Imports md5 signals 0, 1, 2, ... in batches of BATCH; after KILLED_AFTER lines it says so and
# waits to be killed.
CHILD = f"""
import sys, time
from hashshare import bankfile
from hashshare.store import open_store
from hashshare_client import Signal, signal_types

bankfile.BATCH_LINES = {BATCH}

def items():
    for n in range(1000):
        if n == {KILLED_AFTER}:
            print("waiting", flush=True)
            time.sleep(600)
        yield [Signal(signal_types.MD5.name, signal_types.MD5.version, n.to_bytes(16, "big"))]

bankfile.import_signals(open_store(sys.argv[1]), member_name="importer", items=items(), category="hate_speech")
"""


# Imports a hash list of md5 hashes in batches of FILE_BATCH lines, read by processes of
# its own (bankfile._read_apart).
FILE_CHILD = f"""
import sys
from pathlib import Path
from hashshare import bankfile
from hashshare.store import open_store

bankfile.BATCH_LINES = {FILE_BATCH}
bankfile.import_file(
    open_store(sys.argv[1]), Path(sys.argv[2]), "importer",
    file_format="hashlist", signal_type="exact/md5", category="hate_speech",
)
"""


def md5_items(count: int) -> Iterator[list[Signal]]:
    for n in range(count):
        yield [Signal(MD5.name, MD5.version, n.to_bytes(16, "big"))]


def entries_in(path: Path) -> int:
    with closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT COUNT(*) FROM entries").fetchone()[0])


def test_a_killed_import_leaves_whole_batches_and_a_second_run_finishes_it(tmp_path: Path) -> None:
    path = tmp_path / "bank.db"
    store = SqliteStore(path)
    members.create_member(store, "importer", ["trust_safety"], time.time())
    store.close()
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, f"sqlite:///{path}"],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)},
    ) as child:
        try:
            assert child.stdout is not None and child.stdout.readline() == "waiting\n"
            deadline = time.monotonic() + 60
            while entries_in(path) < 3 * BATCH and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            child.send_signal(signal.SIGKILL)

    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert entries_in(path) == 3 * BATCH  # whole batches, all that were written
    store = SqliteStore(path)
    try:
        report = bankfile.import_signals(store, member_name="importer", items=md5_items(1000), category="hate_speech")
        assert (report.already_present, report.imported, report.errors) == (3 * BATCH, 1000 - 3 * BATCH, [])
        assert sorted(row.value for row in store.active_signals()) == [n.to_bytes(16, "big") for n in range(1000)]
    finally:
        store.close()


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # ended meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def test_a_killed_file_import_leaves_whole_batches_and_its_readers_end(tmp_path: Path) -> None:
    path, hashes = tmp_path / "bank.db", tmp_path / "md5.txt"
    hashes.write_text("".join(f"{n:032x}\n" for n in range(FILE_LINES)))
    store = SqliteStore(path)
    members.create_member(store, "importer", ["trust_safety"], time.time())
    store.close()
    with subprocess.Popen(
        [sys.executable, "-c", FILE_CHILD, f"sqlite:///{path}", str(hashes)],
        env=os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)},
    ) as child:
        try:
            deadline = time.monotonic() + 60
            while entries_in(path) < 3 * FILE_BATCH and time.monotonic() < deadline:
                time.sleep(0.01)
            readers = children_of(child.pid)
        finally:
            child.send_signal(signal.SIGKILL)
    assert readers, "the file was not read by processes of the import's own"

    # A reader that finds no one to send its next batch to ends.
    deadline = time.monotonic() + 30
    while any(map(running, readers)):
        assert time.monotonic() < deadline, "a reading process outlived the import"
        time.sleep(0.05)
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    written = entries_in(path)
    assert written % FILE_BATCH == 0 and 3 * FILE_BATCH <= written < FILE_LINES  # whole batches
    store = SqliteStore(path)
    try:
        report = bankfile.import_file(
            store, hashes, "importer", file_format="hashlist", signal_type="exact/md5", category="hate_speech"
        )
        assert (report.already_present, report.imported, report.errors) == (written, FILE_LINES - written, [])
    finally:
        store.close()


def test_a_pipe_is_read_once(tmp_path: Path) -> None:
    """Readers each open a file; a pipe would hand each of them a part of it."""
    fifo = tmp_path / "md5.fifo"
    os.mkfifo(fifo)
    source = tmp_path / "md5.txt"
    source.write_text("".join(f"{n:032x}\n" for n in range(500)))
    # Fed by another process: a thread here would keep the import from forking readers.
    feeding = subprocess.Popen(["sh", "-c", 'cat "$0" > "$1"', source, fifo])
    store = SqliteStore(tmp_path / "bank.db")
    try:
        members.create_member(store, "importer", ["trust_safety"], time.time())
        report = bankfile.import_file(
            store, fifo, "importer", file_format="hashlist", signal_type="exact/md5", category="hate_speech"
        )
        assert (report.lines, report.imported, report.errors) == (500, 500, [])
        assert sorted(row.value for row in store.active_signals()) == [n.to_bytes(16, "big") for n in range(500)]
    finally:
        store.close()
        feeding.wait()


def test_an_import_leaves_the_store_writing_durably_again(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "bank.db")
    try:
        members.create_member(store, "importer", ["trust_safety"], time.time())
        bankfile.import_signals(store, member_name="importer", items=md5_items(10), category="hate_speech")
        # Only inside bulk_writes may a commit skip the fsync that makes it survive a power
        # loss, or a row go in without its references checked.
        assert store._writer.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
        assert store._writer.execute("PRAGMA foreign_keys").fetchone() == (1,)
    finally:
        store.close()


def test_batches_spanning_several_statements_are_stored_and_published_whole(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "bank.db")
    try:
        member = store.create_member("importer", frozenset(), 0.0).member_id
        now = time.time()
        sizes = (4096 + 4096 + 37, 1, 100)  # statements of 4,096 rows, then shorter ones, then one padded
        first_value = 0
        for size in sizes:
            with store.bulk_writes():
                outcomes = store.submit_many(member, [_item(first_value + n, now) for n in range(size)], now)
            assert [submitted(o).entry_id for o in outcomes] == list(range(first_value + 1, first_value + size + 1))  # type: ignore[union-attr]
            first_value += size

        total = sum(sizes)
        expected = [(n + 1, n + 1, n.to_bytes(16, "big")) for n in range(total)]
        assert [(r.row_id, r.entry_id, r.value) for r in store.active_signals()] == expected
        changes, _ = store.changes_since("")
        assert len(changes) == len(sizes) and all(isinstance(c, SignalsAdded) for c in changes)
        published = [(r.row_id, r.entry_id, r.value) for c in changes for r in c.rows]  # type: ignore[union-attr]
        assert published == expected
    finally:
        store.close()


def _item(n: int, now: float) -> BatchSubmission:
    draft = SubmissionDraft(
        (Signal(MD5.name, MD5.version, n.to_bytes(16, "big")),),
        "hate_speech",
        LegalBasis.COMMUNITY_GUIDELINES,
        DiscoveryMethod.UNSPECIFIED,
        "",
        None,
        now,
    )
    return BatchSubmission(f"item-{n}", n.to_bytes(32, "big"), draft)
