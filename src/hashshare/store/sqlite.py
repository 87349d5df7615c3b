"""The embedded store: one SQLite file, nothing else to run.

All writes go through one connection under a lock (SQLite allows one writer
at a time anyway); reads use a connection per thread, which WAL lets run
beside the writer. ``synchronous=FULL`` makes every acknowledged write
survive a power loss, not only a crash of the process.
"""

from __future__ import annotations

import itertools
import json
import logging
import operator
import os
import re
import secrets
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hashshare_client import DiscoveryMethod, LegalBasis, Signal

from .. import audit
from ..errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from ..model import (
    AllowedItem,
    AuditDraft,
    AuditEvent,
    AuditFilter,
    Change,
    ContactPoint,
    DisputeReason,
    Entry,
    EntryChanged,
    EntrySummary,
    EntryTrust,
    Feedback,
    FeedbackOutcome,
    IndexedSignal,
    Member,
    MemberFeedbackStats,
    MemberSightings,
    Notice,
    NoticeDecision,
    NoticeDraft,
    NoticeFilter,
    NoticeState,
    Opinion,
    RetractOutcome,
    Review,
    ReviewDecision,
    Role,
    SightingStats,
    SignalsAdded,
    SignalsRemoved,
    StoredSignal,
    Submission,
    SubmissionDraft,
    SubmitOutcome,
    Token,
    TokenRevoked,
    TrustLevel,
    allowed_index_id,
)
from . import changes, codecs
from .base import (
    BatchOutcome,
    BatchSubmission,
    ImportBatch,
    ImportOutcome,
    Replayed,
    Store,
    SummaryColumns,
    submitted,
)
from .rollups import (
    HOUR,
    Action,
    ActionRecord,
    ActionTally,
    Dimension,
    Key,
    Rollup,
    SightingTally,
    SubmissionTally,
    hour_of,
)
from .sighting_cells import SightingCells

log = logging.getLogger(__name__)

# Host parameters per statement, under SQLite's limit on every build.
_IN_CHUNK = 900

# Inside bulk_writes: a WAL checkpoint every 64 MiB instead of every 4 MiB (SQLite's
# default), since each one rewrites the B-tree pages every batch touches again, and a
# page cache big enough to hold the import_keys table, whose keys arrive in random order.
_BULK_CHECKPOINT_PAGES = 16_384
_BULK_CACHE_KIB = 256 * 1024

# The WAL is copied into the database file (checkpointed) by a thread of its own, this often
# while there are new commits, instead of by whichever commit crosses SQLite's threshold (4 MiB):
# at 1M entries a checkpoint took 0.1-0.7 s, a stall of the SubmitBatch that happened to commit.
_CHECKPOINT_SECONDS = 1.0

# A feed row naming a batch's new signals by their (consecutive) row ids instead of
# copying them: changes_since reads them back from the signals table.
_SIGNAL_ROWS = "signal_rows"

# 3: an import's lines in import_keys, no longer as requests, and signals found by entry
# only (see _migrate_from_2); sightings as hour cells alone (see _sightings_to_cells).
SCHEMA_VERSION = 3

# A bank-file line's key in import_keys: the first 16 bytes of its content digest
# (ImportBatch.keys); two lines of a bank share one as likely as two random 128-bit ids.
_IMPORT_KEY_BYTES = 16
# How version 2 recorded the k-th submission of an imported line: as a request whose
# id held the first 40 hex digits of the line's key.
_LEGACY_IMPORT_REQUEST = re.compile(r"imp-([0-9a-f]{40})-[0-9]+")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS members (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, roles TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    id INTEGER PRIMARY KEY, member_id INTEGER NOT NULL REFERENCES members(id),
    token_hash BLOB NOT NULL UNIQUE, roles TEXT NOT NULL, created_at REAL NOT NULL, revoked_at REAL);
CREATE TABLE IF NOT EXISTS entries (id INTEGER PRIMARY KEY, category TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS submissions (
    id INTEGER PRIMARY KEY, entry_id INTEGER NOT NULL REFERENCES entries(id),
    member_id INTEGER NOT NULL REFERENCES members(id), category TEXT NOT NULL,
    legal_basis TEXT NOT NULL, discovery_method TEXT NOT NULL, notice_reference TEXT NOT NULL,
    notice_received_at REAL, removed_at REAL NOT NULL, created_at REAL NOT NULL,
    retracted_at REAL, retract_reason TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS submissions_by_entry ON submissions(entry_id);
CREATE TABLE IF NOT EXISTS signals (
    id INTEGER PRIMARY KEY, entry_id INTEGER NOT NULL REFERENCES entries(id),
    submission_id INTEGER NOT NULL REFERENCES submissions(id),
    type TEXT NOT NULL, version TEXT NOT NULL, value BLOB NOT NULL, quality INTEGER,
    variant TEXT NOT NULL DEFAULT '', active INTEGER NOT NULL DEFAULT 1);
CREATE INDEX IF NOT EXISTS signals_by_entry ON signals(entry_id);
CREATE TABLE IF NOT EXISTS requests (
    member_id INTEGER NOT NULL, request_id TEXT NOT NULL, digest BLOB NOT NULL,
    outcome TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (member_id, request_id));
CREATE TABLE IF NOT EXISTS changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, payload BLOB NOT NULL);
-- The bank-file lines each member imported (hashshare.bankfile), by key: importing
-- one again stores nothing. A key is 16 bytes where a request's record is 200: an
-- import writes one a line, and a transaction of 50,000 rewrites most of the pages.
CREATE TABLE IF NOT EXISTS import_keys (
    member_id INTEGER NOT NULL, key BLOB NOT NULL, PRIMARY KEY (member_id, key)) WITHOUT ROWID;

-- Spread analytics (hashshare.research, store/rollups.py): sightings as hour
-- cells (per entry, member and hour: how many, the first and the last; a busy
-- bank sees tens of thousands of sightings a second, so no row per sighting),
-- platform actions, and the period index of submissions.
CREATE TABLE IF NOT EXISTS sighting_hours (
    entry_id INTEGER NOT NULL, member_id INTEGER NOT NULL, hour INTEGER NOT NULL, count INTEGER NOT NULL,
    first_at REAL, last_at REAL, PRIMARY KEY (entry_id, member_id, hour)) WITHOUT ROWID;
-- By hour for the rollups; not covering: a count kept in the index would be rewritten there at every sighting.
CREATE INDEX IF NOT EXISTS sighting_cells_by_hour ON sighting_hours(hour);
CREATE TABLE IF NOT EXISTS actions (
    id INTEGER PRIMARY KEY, entry_id INTEGER NOT NULL, member_id INTEGER NOT NULL, action TEXT NOT NULL,
    acted_at REAL NOT NULL, hour INTEGER NOT NULL, item_key BLOB NOT NULL, created_at REAL NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS actions_once_per_item
    ON actions(member_id, item_key, entry_id, action) WHERE item_key != X'';
CREATE INDEX IF NOT EXISTS actions_by_hour ON actions(hour, entry_id, member_id, action);  -- covering
CREATE INDEX IF NOT EXISTS actions_by_entry ON actions(entry_id, hour);
CREATE INDEX IF NOT EXISTS submissions_by_removed_at ON submissions(removed_at);
"""

# Issue 6: the member directory, notices and the audit trail. Idempotent DDL
# of new tables only, so it also applies to a bank created before them.
SCHEMA_NOTICES_AUDIT = """
CREATE TABLE IF NOT EXISTS contact_points (
    member_id INTEGER PRIMARY KEY REFERENCES members(id), points TEXT NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS notices (
    id INTEGER PRIMARY KEY, platform_id INTEGER NOT NULL, filed_at REAL NOT NULL, state TEXT NOT NULL,
    record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS notices_by_platform ON notices(platform_id, id);
CREATE TABLE IF NOT EXISTS audit_events (
    seq INTEGER PRIMARY KEY, at REAL NOT NULL, member TEXT NOT NULL, roles TEXT NOT NULL, method TEXT NOT NULL,
    request_id TEXT NOT NULL, target TEXT NOT NULL, result TEXT NOT NULL, detail TEXT NOT NULL,
    previous_hash TEXT NOT NULL, hash TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_by_member ON audit_events(member, seq);
-- Trust and safety: trust levels and rate flags, submission quotas, feedback,
-- reviews, the allow-list. A member without a member_trust row predates
-- trust levels and is TRUSTED.
CREATE TABLE IF NOT EXISTS member_trust (
    member_id INTEGER PRIMARY KEY REFERENCES members(id), trust_level TEXT NOT NULL,
    flagged_at REAL, flag_reason TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS submissions_by_member ON submissions(member_id, entry_id);
CREATE TABLE IF NOT EXISTS submit_quota (member_id INTEGER NOT NULL, at REAL NOT NULL, granted INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS submit_quota_by_member ON submit_quota(member_id, at);
CREATE TABLE IF NOT EXISTS feedback (
    entry_id INTEGER NOT NULL REFERENCES entries(id), member_id INTEGER NOT NULL REFERENCES members(id),
    opinion TEXT NOT NULL, reason TEXT NOT NULL, comment TEXT NOT NULL, created_at REAL NOT NULL,
    PRIMARY KEY (entry_id, member_id));
CREATE INDEX IF NOT EXISTS feedback_by_time ON feedback(created_at);
CREATE TABLE IF NOT EXISTS entry_reviews (
    entry_id INTEGER PRIMARY KEY REFERENCES entries(id), decision TEXT NOT NULL, reason TEXT NOT NULL,
    reviewer_id INTEGER NOT NULL, at REAL NOT NULL, confirmed INTEGER NOT NULL, disabled INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS allowed_items (
    id INTEGER PRIMARY KEY, label TEXT NOT NULL, added_by INTEGER NOT NULL, created_at REAL NOT NULL,
    removed_at REAL, removed_by INTEGER, remove_reason TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS allowed_signals (
    id INTEGER PRIMARY KEY, allow_id INTEGER NOT NULL REFERENCES allowed_items(id),
    type TEXT NOT NULL, version TEXT NOT NULL, value BLOB NOT NULL, quality INTEGER,
    variant TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS allowed_signals_by_item ON allowed_signals(allow_id);
"""


def _roles_text(roles: frozenset[Role]) -> str:
    return ",".join(sorted(r.value for r in roles))


def _roles(text: str) -> frozenset[Role]:
    return frozenset(Role(r) for r in text.split(",") if r)


def _day(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d")


# A member with its trust row; members without one predate trust levels.
_MEMBER_COLUMNS = "m.id, m.name, m.roles, m.created_at, mt.trust_level, mt.flagged_at, mt.flag_reason"
_MEMBER_TABLES = "members m LEFT JOIN member_trust mt ON mt.member_id = m.id"


def _member(row: Sequence[Any]) -> Member:
    return Member(
        row[0], row[1], _roles(row[2]), row[3], TrustLevel(row[4] or TrustLevel.TRUSTED), row[5], row[6] or ""
    )


class SqliteStore(Store):
    """The bank in one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._commits = 0  # transactions committed through this store (checkpoints follow them)
        self._bulk = False
        self._closing = threading.Event()
        self._checkpointer: threading.Thread | None = None
        self._checkpoints_wanted = False
        self._writer = self._connect()
        self._writer.execute("PRAGMA journal_mode=WAL")
        self._writer.executescript(SCHEMA)
        self._writer.executescript(SCHEMA_NOTICES_AUDIT)
        self._check_schema_version()
        # The checkpoint thread starts with the first commit after this: a process that only
        # imports (bulk_writes checkpoints itself) stays single-threaded, so it may fork readers.
        self._checkpoints_wanted = self.path != ":memory:"
        if self._checkpoints_wanted:
            self._writer.execute("PRAGMA wal_autocheckpoint=0")

    # Connections

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA foreign_keys=ON")
        return connection

    def _reader(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
            with self._readers_lock:
                self._readers.append(connection)
        return connection

    @contextmanager
    def bulk_writes(self) -> Iterator[None]:
        """Store.bulk_writes: while inside, every write through this store commits with
        ``synchronous=NORMAL`` (WAL mode: a power loss may roll back the last
        transactions, never corrupt the file); at the end the WAL is synced once.

        Foreign keys are not checked inside either: the batch writes hand out the ids
        their rows refer to themselves, in the same transaction (and check the entries
        they join), and a check costs a lookup for every reference of every row."""
        db = self._writer
        with self._write_lock:
            # The writer checkpoints itself meanwhile, every 64 MiB (see _BULK_CHECKPOINT_PAGES).
            self._bulk = True
            checkpoint_pages = db.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
            cache_size = db.execute("PRAGMA cache_size").fetchone()[0]
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=OFF")
            db.execute(f"PRAGMA wal_autocheckpoint={_BULK_CHECKPOINT_PAGES}")
            db.execute(f"PRAGMA cache_size=-{_BULK_CACHE_KIB}")
        try:
            yield
        finally:
            with self._write_lock:
                db.execute("PRAGMA synchronous=FULL")
                db.execute("PRAGMA foreign_keys=ON")
                db.execute(f"PRAGMA wal_autocheckpoint={int(checkpoint_pages)}")
                db.execute(f"PRAGMA cache_size={int(cache_size)}")
                db.execute("PRAGMA wal_checkpoint(PASSIVE)")  # leaves the server a short WAL
                self._sync_wal()
                self._bulk = False

    def _checkpoints(self) -> None:
        """Checkpoint the WAL (PASSIVE: never waiting for readers or writers) every
        ``_CHECKPOINT_SECONDS`` while there are new commits; until ``close``. A checkpoint
        copies committed pages only: what a commit made durable stays so either way."""
        connection = self._connect()
        checkpointed = self._commits
        try:
            while not self._closing.wait(_CHECKPOINT_SECONDS):
                commits = self._commits
                if commits == checkpointed or self._bulk:
                    continue
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    checkpointed = commits
                except sqlite3.Error as error:  # another process checkpointing, a disk error: next time
                    log.warning("WAL checkpoint of %s failed: %s", self.path, error)
        finally:
            connection.close()

    def _sync_wal(self) -> None:
        """Make every committed transaction durable, as a commit with synchronous=FULL would.

        Under NORMAL, a checkpoint syncs what it copies into the database file, so what
        is not yet durable is only in the WAL; an fsync of it is what FULL adds to a
        commit. (A checkpoint alone may copy nothing while a reader holds an old snapshot.)"""
        if self.path == ":memory:":
            return
        try:
            descriptor = os.open(self.path + "-wal", os.O_RDONLY)
        except FileNotFoundError:  # no WAL: everything was checkpointed and synced
            return
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock:
            self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield self._writer
            except BaseException:
                self._writer.execute("ROLLBACK")
                raise
            self._writer.execute("COMMIT")
            self._commits += 1
            if self._checkpointer is None and self._checkpoints_wanted and not self._bulk:
                self._checkpointer = threading.Thread(
                    target=self._checkpoints, name="hashshare-checkpoint", daemon=True
                )
                self._checkpointer.start()

    def _check_schema_version(self) -> None:
        with self._transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) == 2:
                _migrate_from_2(db)
                _sightings_to_cells(db)
                db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                raise RuntimeError(f"{self.path}: schema version {row[0]}, this server knows {SCHEMA_VERSION}")

    def close(self) -> None:
        self._closing.set()
        if self._checkpointer is not None:
            self._checkpointer.join()
        with self._readers_lock:
            for connection in self._readers:
                connection.close()
            self._readers.clear()
        with self._write_lock:
            self._writer.close()

    # Members and tokens

    def create_member(
        self, name: str, roles: frozenset[Role], now: float, trust_level: TrustLevel = TrustLevel.PROVISIONAL
    ) -> Member:
        with self._transaction() as db:
            try:
                cursor = db.execute(
                    "INSERT INTO members (name, roles, created_at) VALUES (?, ?, ?)", (name, _roles_text(roles), now)
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"a member called {name!r} exists") from None
            assert cursor.lastrowid is not None
            db.execute(
                "INSERT INTO member_trust (member_id, trust_level) VALUES (?, ?)", (cursor.lastrowid, trust_level.value)
            )
            return Member(cursor.lastrowid, name, roles, now, trust_level)

    def get_member(self, member_id: int) -> Member | None:
        row = (
            self._reader()
            .execute(f"SELECT {_MEMBER_COLUMNS} FROM {_MEMBER_TABLES} WHERE m.id = ?", (member_id,))
            .fetchone()
        )
        return _member(row) if row else None

    def list_members(self) -> list[Member]:
        rows = self._reader().execute(f"SELECT {_MEMBER_COLUMNS} FROM {_MEMBER_TABLES} ORDER BY m.id").fetchall()
        return [_member(r) for r in rows]

    def create_token(self, member_id: int, token_hash: bytes, roles: frozenset[Role], now: float) -> Token:
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM members WHERE id = ?", (member_id,)).fetchone() is None:
                raise NotFound(f"no member {member_id}")
            try:
                cursor = db.execute(
                    "INSERT INTO tokens (member_id, token_hash, roles, created_at) VALUES (?, ?, ?, ?)",
                    (member_id, token_hash, _roles_text(roles), now),
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists("a token with this hash exists") from None
            assert cursor.lastrowid is not None
            return Token(cursor.lastrowid, member_id, roles, now)

    def revoke_token(self, token_id: int, now: float) -> tuple[Token, bytes]:
        with self._transaction() as db:
            row = db.execute(
                "SELECT member_id, token_hash, roles, created_at, revoked_at FROM tokens WHERE id = ?", (token_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no token {token_id}")
            revoked_at = row[4] if row[4] is not None else now
            if row[4] is None:
                db.execute("UPDATE tokens SET revoked_at = ? WHERE id = ?", (now, token_id))
                self._append(db, TokenRevoked(row[1]))
            return Token(token_id, row[0], _roles(row[2]), row[3], revoked_at), row[1]

    def find_token(self, token_hash: bytes) -> tuple[Token, Member] | None:
        row = (
            self._reader()
            .execute(
                f"SELECT t.id, t.member_id, t.roles, t.created_at, {_MEMBER_COLUMNS} "
                "FROM tokens t JOIN members m ON m.id = t.member_id LEFT JOIN member_trust mt ON mt.member_id = m.id "
                "WHERE t.token_hash = ? AND t.revoked_at IS NULL",
                (token_hash,),
            )
            .fetchone()
        )
        if row is None:
            return None
        return Token(row[0], row[1], _roles(row[2]), row[3]), _member(row[4:])

    # The bank

    def submit(
        self,
        member_id: int,
        request_id: str,
        request_digest: bytes,
        draft: SubmissionDraft,
        join_entry_id: int | None,
        now: float,
    ) -> SubmitOutcome:
        with self._transaction() as db:
            replay = self._replay(db, member_id, request_id, request_digest, "submit")
            if replay is not None:
                return SubmitOutcome(**replay)
            if (
                join_entry_id is None
                or db.execute("SELECT 1 FROM entries WHERE id = ?", (join_entry_id,)).fetchone() is None
            ):
                cursor = db.execute("INSERT INTO entries (category, created_at) VALUES (?, ?)", (draft.category, now))
                assert cursor.lastrowid is not None
                entry_id, joined = cursor.lastrowid, False
            else:
                entry_id, joined = join_entry_id, True
            cursor = db.execute(
                "INSERT INTO submissions (entry_id, member_id, category, legal_basis, discovery_method,"
                " notice_reference, notice_received_at, removed_at, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    entry_id,
                    member_id,
                    draft.category,
                    draft.legal_basis.value,
                    draft.discovery_method.value,
                    draft.notice_reference,
                    draft.notice_received_at,
                    draft.removed_at,
                    now,
                ),
            )
            submission_id = cursor.lastrowid
            assert submission_id is not None
            rows = []
            for signal in draft.signals:
                cursor = db.execute(
                    "INSERT INTO signals (entry_id, submission_id, type, version, value, quality, variant)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        entry_id,
                        submission_id,
                        signal.type,
                        signal.version,
                        signal.value,
                        signal.quality,
                        signal.variant,
                    ),
                )
                assert cursor.lastrowid is not None
                rows.append(
                    IndexedSignal(cursor.lastrowid, entry_id, signal.type, signal.version, signal.value, signal.variant)
                )
            self._append(db, SignalsAdded(tuple(rows)))
            outcome = SubmitOutcome(entry_id, submission_id, joined, self._corroborations(db, entry_id))
            self._remember(db, member_id, request_id, request_digest, "submit", asdict(outcome), now)
            return outcome

    def submit_many(self, member_id: int, items: Sequence[BatchSubmission], now: float) -> list[BatchOutcome]:
        if not items:
            return []
        with self._transaction() as db:
            return self._submit_many(db, member_id, items, now)

    def _submit_many(
        self, db: sqlite3.Connection, member_id: int, items: Sequence[BatchSubmission], now: float
    ) -> list[BatchOutcome]:
        # Under BEGIN IMMEDIATE nobody else writes, so ids can be handed out
        # here (as SQLite would: the largest plus one) and rows inserted in bulk.
        known = self._known_requests(db, member_id, [item.request_id for item in items])
        next_entry, next_submission, next_signal = (first - 1 for first in _first_free_ids(db))
        entry_members: dict[int, set[int]] = {}  # active members of every entry this batch touches

        def members_of(entry_id: int) -> set[int] | None:
            found = entry_members.get(entry_id)
            if found is None:
                if db.execute("SELECT 1 FROM entries WHERE id = ?", (entry_id,)).fetchone() is None:
                    return None
                found = {
                    r[0]
                    for r in db.execute(
                        "SELECT DISTINCT member_id FROM submissions WHERE entry_id = ? AND retracted_at IS NULL",
                        (entry_id,),
                    )
                }
                entry_members[entry_id] = found
            return found

        results: list[BatchOutcome] = []
        entry_rows: list[tuple[object, ...]] = []
        submission_rows: list[tuple[object, ...]] = []
        signal_rows: list[tuple[object, ...]] = []
        request_rows: list[tuple[object, ...]] = []
        first_signal = next_signal + 1
        for item in items:
            seen = known.get(item.request_id)
            if seen is not None:
                if seen[0] != item.request_digest or seen[1] is None:
                    results.append(InvalidArgument.field("request_id", "already used for a different request"))
                else:
                    results.append(Replayed(seen[1]))
                continue
            created_at = now if item.created_at is None else item.created_at
            target: int | None = None
            if item.join_entry_id is not None and members_of(item.join_entry_id) is not None:
                target = item.join_entry_id
            elif item.join_item is not None and 0 <= item.join_item < len(results):
                earlier = submitted(results[item.join_item])
                if earlier is not None and members_of(earlier.entry_id) is not None:
                    target = earlier.entry_id
            if target is None:
                next_entry += 1
                entry_id, joined = next_entry, False
                entry_rows.append((entry_id, item.draft.category, created_at))
                entry_members[entry_id] = set()
            else:
                entry_id, joined = target, True
            next_submission += 1
            draft = item.draft
            submission_rows.append(
                (
                    next_submission,
                    entry_id,
                    member_id,
                    draft.category,
                    draft.legal_basis.value,
                    draft.discovery_method.value,
                    draft.notice_reference,
                    draft.notice_received_at,
                    draft.removed_at,
                    created_at,
                )
            )
            for signal in draft.signals:
                next_signal += 1
                signal_rows.append(
                    (
                        next_signal,
                        entry_id,
                        next_submission,
                        signal.type,
                        signal.version,
                        signal.value,
                        signal.quality,
                        signal.variant,
                    )
                )
            active_members = entry_members[entry_id]
            active_members.add(member_id)
            outcome = SubmitOutcome(entry_id, next_submission, joined, len(active_members))
            # asdict and json.dumps of this fixed shape cost more than the inserts.
            text = (
                f'{{"kind": "submit", "outcome": {{"entry_id": {entry_id}, "submission_id": {next_submission}, '
                f'"joined_existing": {"true" if joined else "false"}, "corroborations": {outcome.corroborations}}}}}'
            )
            request_rows.append((member_id, item.request_id, item.request_digest, text, now))
            known[item.request_id] = (item.request_digest, outcome)
            results.append(outcome)
        _insert_bank_rows(db, entry_rows, submission_rows, signal_rows, range(first_signal, next_signal + 1))
        _insert(db, "requests (member_id, request_id, digest, outcome, created_at)", request_rows)
        return results

    def import_batch(self, member_id: int, batch: ImportBatch, now: float) -> ImportOutcome:
        if not batch.keys:
            return ImportOutcome()
        with self._transaction() as db:
            return self._import_batch(db, member_id, batch, now)

    def _import_batch(self, db: sqlite3.Connection, member_id: int, batch: ImportBatch, now: float) -> ImportOutcome:
        # Recording the keys first tells which lines are new. Keys are digests, in random
        # order: sorted, the inserts walk the table from one end to the other.
        keys = [key[:_IMPORT_KEY_BYTES] for key in batch.keys]
        key_rows = list(zip(itertools.repeat(member_id), sorted(set(keys))))
        new = {row[0] for row in _insert(db, "import_keys (member_id, key)", key_rows, _NEW_IMPORT_KEYS)}
        done = ImportOutcome()
        if len(new) < len(keys):
            kept = []
            for line, key in enumerate(keys):
                if key in new:
                    new.discard(key)  # a repeat of it further on is present
                    kept.append(line)
                else:
                    done.present.append(line)
            batch = batch.select(kept)
        # Rows are made column by column (zip and map run in C): an import is bound by
        # the Python work per line as much as by SQLite's.
        first_entry, first_submission, first_signal = _first_free_ids(db)
        lines, submissions, signals = len(batch.keys), len(batch.sub_line), len(batch.sig_line)
        created = [now if at is None else at for at in batch.created_at]
        firsts: Sequence[int]  # each line's first submission
        if submissions == lines:
            firsts = range(lines)
            entry_rows = list(zip(range(first_entry, first_entry + lines), batch.categories, created, strict=True))
            carriers: Iterable[int] = map(operator.add, batch.sig_line, itertools.repeat(first_submission))
        else:
            firsts = [j for j, line in enumerate(batch.sub_line) if j == 0 or batch.sub_line[j - 1] != line]
            entry_rows = [(first_entry + n, batch.categories[j], created[j]) for n, j in enumerate(firsts)]
            carriers = (first_submission + firsts[line] for line in batch.sig_line)
        submission_rows = list(
            zip(
                range(first_submission, first_submission + submissions),
                map(operator.add, batch.sub_line, itertools.repeat(first_entry)),
                itertools.repeat(member_id),
                batch.categories,
                batch.legal_bases,
                batch.discovery_methods,
                batch.notice_references,
                batch.notice_received_at,
                batch.removed_at,
                created,
            )
        )
        signal_ids = range(first_signal, first_signal + signals)
        signal_rows = list(
            zip(
                signal_ids,
                map(operator.add, batch.sig_line, itertools.repeat(first_entry)),
                carriers,
                batch.types,
                batch.versions,
                batch.values,
                batch.qualities,
                batch.variants,
                strict=True,
            )
        )
        _insert_bank_rows(db, entry_rows, submission_rows, signal_rows, signal_ids)
        done.submissions = submissions
        return done

    def _known_requests(
        self, db: sqlite3.Connection, member_id: int, request_ids: list[str]
    ) -> dict[str, tuple[bytes, SubmitOutcome | None]]:
        """The stored (digest, outcome) of those request ids that were seen before; the
        outcome is None for a request of another kind than submit."""
        known: dict[str, tuple[bytes, SubmitOutcome | None]] = {}
        width = _rows_per_statement(db, 1) - 1
        query = (
            "SELECT request_id, digest, outcome FROM requests WHERE member_id = ?"
            f" AND request_id IN ({','.join('?' * width)})"
        )
        for start in range(0, len(request_ids), width):
            chunk: list[str | None] = [*request_ids[start : start + width]]
            chunk += [None] * (width - len(chunk))  # one statement for every batch size: compiled once
            for request_id, stored_digest, text in db.execute(query, (member_id, *chunk)):
                record = json.loads(text)
                outcome = SubmitOutcome(**record["outcome"]) if record.get("kind") == "submit" else None
                known[request_id] = (bytes(stored_digest), outcome)
        return known

    def retract(
        self, member_id: int, request_id: str, request_digest: bytes, entry_id: int, reason: str, now: float
    ) -> RetractOutcome:
        with self._transaction() as db:
            replay = self._replay(db, member_id, request_id, request_digest, "retract")
            if replay is not None:
                return RetractOutcome(**replay)
            submission_ids = [
                r[0]
                for r in db.execute(
                    "SELECT id FROM submissions WHERE entry_id = ? AND member_id = ? AND retracted_at IS NULL",
                    (entry_id, member_id),
                )
            ]
            if not submission_ids:
                raise NotFound(f"no active submission of yours on entry {entry_id}")
            marks = ",".join("?" * len(submission_ids))
            row_ids = [
                r[0]
                for r in db.execute(
                    f"SELECT id FROM signals WHERE entry_id = ? AND submission_id IN ({marks}) AND active = 1"
                    " ORDER BY id",
                    (entry_id, *submission_ids),
                )
            ]
            db.execute(
                f"UPDATE submissions SET retracted_at = ?, retract_reason = ? WHERE id IN ({marks})",
                (now, reason, *submission_ids),
            )
            db.execute(
                f"UPDATE signals SET active = 0 WHERE entry_id = ? AND submission_id IN ({marks})",
                (entry_id, *submission_ids),
            )
            self._append(db, SignalsRemoved(tuple(row_ids), (entry_id,)))
            active = (
                db.execute(
                    "SELECT 1 FROM submissions WHERE entry_id = ? AND retracted_at IS NULL LIMIT 1", (entry_id,)
                ).fetchone()
                is not None
            )
            outcome = RetractOutcome(entry_id, len(submission_ids), active)
            self._remember(db, member_id, request_id, request_digest, "retract", asdict(outcome), now)
            return outcome

    def _replay(
        self, db: sqlite3.Connection, member_id: int, request_id: str, digest: bytes, kind: str
    ) -> dict[str, Any] | None:
        row = db.execute(
            "SELECT digest, outcome FROM requests WHERE member_id = ? AND request_id = ?", (member_id, request_id)
        ).fetchone()
        if row is None:
            return None
        record: dict[str, Any] = json.loads(row[1])
        if row[0] != digest or record.get("kind") != kind:
            raise InvalidArgument.field("request_id", "already used for a different request")
        outcome: dict[str, Any] = record["outcome"]
        return outcome

    def _remember(
        self,
        db: sqlite3.Connection,
        member_id: int,
        request_id: str,
        digest: bytes,
        kind: str,
        outcome: dict[str, Any],
        now: float,
    ) -> None:
        record = {"kind": kind, "outcome": outcome}
        db.execute(
            "INSERT INTO requests (member_id, request_id, digest, outcome, created_at) VALUES (?, ?, ?, ?, ?)",
            (member_id, request_id, digest, json.dumps(record), now),
        )

    def _corroborations(self, db: sqlite3.Connection, entry_id: int) -> int:
        row = db.execute(
            "SELECT COUNT(DISTINCT member_id) FROM submissions WHERE entry_id = ? AND retracted_at IS NULL",
            (entry_id,),
        ).fetchone()
        return int(row[0])

    def get_entry(self, entry_id: int) -> Entry | None:
        db = self._reader()
        db.execute("BEGIN")
        try:
            entry = db.execute("SELECT category, created_at FROM entries WHERE id = ?", (entry_id,)).fetchone()
            if entry is None:
                return None
            submissions = tuple(
                Submission(
                    submission_id=r[0],
                    entry_id=entry_id,
                    member_id=r[1],
                    category=r[2],
                    legal_basis=LegalBasis(r[3]),
                    discovery_method=DiscoveryMethod(r[4]),
                    notice_reference=r[5],
                    notice_received_at=r[6],
                    removed_at=r[7],
                    created_at=r[8],
                    retracted_at=r[9],
                    retract_reason=r[10],
                )
                for r in db.execute(
                    "SELECT id, member_id, category, legal_basis, discovery_method, notice_reference,"
                    " notice_received_at, removed_at, created_at, retracted_at, retract_reason"
                    " FROM submissions WHERE entry_id = ? ORDER BY id",
                    (entry_id,),
                )
            )
            signals = tuple(
                StoredSignal(r[0], r[1], Signal(r[2], r[3], bytes(r[4]), r[5], r[6]))
                for r in db.execute(
                    "SELECT id, submission_id, type, version, value, quality, variant FROM signals"
                    " WHERE entry_id = ? ORDER BY id",
                    (entry_id,),
                )
            )
            return Entry(entry_id, entry[0], entry[1], submissions, signals)
        finally:
            db.execute("COMMIT")

    def entry_summaries(self, entry_ids: Iterable[int]) -> dict[int, EntrySummary]:
        ids = list(dict.fromkeys(entry_ids))
        summaries: dict[int, EntrySummary] = {}
        db = self._reader()
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            rows, inputs = self._summary_rows(db, f"IN ({','.join('?' * len(chunk))})", chunk)
            summaries.update((row[0], _entry_summary(row, inputs)) for row in rows)
        return summaries

    def entry_summaries_after(self, entry_id: int, limit: int) -> SummaryColumns | None:
        db = self._reader()
        high = db.execute(
            "SELECT MAX(id) FROM (SELECT id FROM entries WHERE id > ? ORDER BY id LIMIT ?)", (entry_id, limit)
        ).fetchone()[0]
        if high is None:
            return SummaryColumns([], [], [], [], {})
        rows, inputs = self._summary_rows(db, "BETWEEN ? AND ?", [entry_id + 1, high])
        rows.sort()
        entry_ids, categories, corroborations, trusted = (list(column) for column in zip(*rows, strict=True))
        others = {row[0]: _entry_summary(row, inputs) for row in rows if row[0] in inputs}
        return SummaryColumns(entry_ids, categories, corroborations, [t == 1 for t in trusted], others)

    def _summary_rows(
        self, db: sqlite3.Connection, ids: str, values: Sequence[object]
    ) -> tuple[list[tuple[int, str, int, int]], dict[int, dict[str, Any]]]:
        """(id, category, members, any trusted) of the entries whose id is ``ids`` (an SQL
        condition: "IN (?, ?)", "BETWEEN ? AND ?") with ``values`` bound, and the feedback
        and review inputs of those that have any."""
        trusted = TrustLevel.TRUSTED.value
        # One pass over each entry's active submissions gives the members behind it and
        # whether one of them is trusted (a lookup pays for this on every cold entry).
        rows = db.execute(
            "SELECT e.id, e.category, COUNT(DISTINCT s.member_id),"
            f" MAX(COALESCE(mt.trust_level, '{trusted}') = '{trusted}')"
            " FROM entries e LEFT JOIN submissions s ON s.entry_id = e.id AND s.retracted_at IS NULL"
            " LEFT JOIN member_trust mt ON mt.member_id = s.member_id"
            f" WHERE e.id {ids} GROUP BY e.id",
            values,
        ).fetchall()
        return rows, (self._opinions_and_reviews(db, ids, values) if rows else {})

    # Sightings

    def add_sighting_cells(self, cells: SightingCells) -> None:
        if not len(cells):
            return
        # Written while lookups run on other threads: in few statements (see _insert).
        with self._transaction() as db:
            _insert(
                db,
                "sighting_hours (entry_id, member_id, hour, count, first_at, last_at)",
                cells.rows(),
                " ON CONFLICT (entry_id, member_id, hour) DO UPDATE SET count = count + excluded.count,"
                " first_at = MIN(COALESCE(first_at, excluded.first_at), excluded.first_at),"
                " last_at = MAX(COALESCE(last_at, excluded.last_at), excluded.last_at)",
            )

    def sighting_stats(self, entry_id: int) -> SightingStats:
        db = self._reader()
        daily: dict[str, int] = {}
        # Days are UTC dates and hours are whole: every sighting of a cell falls on its hour's day.
        query = "SELECT hour, SUM(count) FROM sighting_hours WHERE entry_id = ? GROUP BY hour"
        for hour, count in db.execute(query, (entry_id,)):
            day = _day(hour * 3600)
            daily[day] = daily.get(day, 0) + count
        members = tuple(
            MemberSightings(r[0], r[1], r[2], r[3])
            for r in db.execute(
                "SELECT member_id, SUM(count), MIN(first_at), MAX(last_at) FROM sighting_hours WHERE entry_id = ?"
                " GROUP BY member_id ORDER BY member_id",
                (entry_id,),
            )
        )
        return SightingStats(entry_id, dict(sorted(daily.items())), members)

    # The change feed

    def _append(self, db: sqlite3.Connection, change: Change) -> None:
        db.execute("INSERT INTO changes (payload) VALUES (?)", (changes.encode(change),))

    def feed_position(self) -> str:
        row = self._reader().execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()
        return str(row[0])

    def active_signals(self) -> Iterator[IndexedSignal]:
        cursor = self._connect()
        try:
            query = "SELECT id, entry_id, type, version, value, variant FROM signals WHERE active = 1"
            for row in cursor.execute(query):
                yield IndexedSignal(row[0], row[1], row[2], row[3], bytes(row[4]), row[5])
        finally:
            cursor.close()

    def changes_since(self, position: str, limit: int = 10_000) -> tuple[list[Change], str]:
        db = self._reader()
        rows = db.execute(
            "SELECT seq, payload FROM changes WHERE seq > ? ORDER BY seq LIMIT ?", (int(position or 0), limit)
        ).fetchall()
        if not rows:
            return [], position
        found: list[Change] = []
        for _, payload in rows:
            body = json.loads(payload)
            if body["kind"] == _SIGNAL_ROWS:
                found.append(SignalsAdded(tuple(self._signal_rows(db, body["first"], body["last"]))))
            else:
                found.append(changes.from_body(body))
        return found, str(rows[-1][0])

    def _signal_rows(self, db: sqlite3.Connection, first: int, last: int) -> Iterator[IndexedSignal]:
        query = "SELECT id, entry_id, type, version, value, variant FROM signals WHERE id BETWEEN ? AND ? ORDER BY id"
        for row in db.execute(query, (first, last)):
            yield IndexedSignal(row[0], row[1], row[2], row[3], bytes(row[4]), row[5])

    # Keys

    def secret(self, name: str) -> bytes:
        key = f"secret:{name}"
        with self._transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            if row is not None:
                return bytes(row[0])
            value = secrets.token_bytes(32)
            db.execute("INSERT INTO meta VALUES (?, ?)", (key, value))
            return value

    # The member directory (issue 6)

    def set_contact_points(self, member_id: int, points: Sequence[ContactPoint], now: float) -> None:
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM members WHERE id = ?", (member_id,)).fetchone() is None:
                raise NotFound(f"no member {member_id}")
            db.execute(
                "INSERT INTO contact_points (member_id, points, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (member_id) DO UPDATE SET points = excluded.points, updated_at = excluded.updated_at",
                (member_id, codecs.contact_points_json(points), now),
            )

    def contact_points(self, member_ids: Iterable[int]) -> dict[int, tuple[ContactPoint, ...]]:
        ids = list(dict.fromkeys(member_ids))
        found: dict[int, tuple[ContactPoint, ...]] = {}
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            for member_id, points in self._reader().execute(
                f"SELECT member_id, points FROM contact_points WHERE member_id IN ({marks})", chunk
            ):
                if parsed := codecs.contact_points_from_json(points):
                    found[member_id] = parsed
        return found

    # Notices (issue 6)

    def file_notice(
        self,
        authority_id: int,
        request_id: str,
        request_digest: bytes,
        draft: NoticeDraft,
        routed_to: Sequence[ContactPoint],
        now: float,
    ) -> Notice:
        with self._transaction() as db:
            replay = self._replay(db, authority_id, request_id, request_digest, "file_notice")
            if replay is not None:
                return self._notice(db, replay["notice_id"])
            notice = Notice(0, authority_id, draft, now, tuple(routed_to))
            cursor = db.execute(
                "INSERT INTO notices (platform_id, filed_at, state, record) VALUES (?, ?, ?, ?)",
                (draft.platform_id, now, notice.state.value, codecs.notice_json(notice)),
            )
            assert cursor.lastrowid is not None
            self._remember(
                db, authority_id, request_id, request_digest, "file_notice", {"notice_id": cursor.lastrowid}, now
            )
            return Notice(cursor.lastrowid, authority_id, draft, now, tuple(routed_to))

    def answer_notice(self, notice_id: int, request_id: str, request_digest: bytes, decision: NoticeDecision) -> Notice:
        with self._transaction() as db:
            replay = self._replay(db, decision.decided_by, request_id, request_digest, "answer_notice")
            if replay is not None:
                return self._notice(db, replay["notice_id"])
            notice = self._notice(db, notice_id)
            if notice.state is not NoticeState.OPEN:
                raise FailedPrecondition(f"notice {notice_id} was already answered ({notice.state.value})")
            answered = notice.answered(decision)
            db.execute(
                "UPDATE notices SET state = ?, record = ? WHERE id = ?",
                (answered.state.value, codecs.notice_json(answered), notice_id),
            )
            self._remember(
                db,
                decision.decided_by,
                request_id,
                request_digest,
                "answer_notice",
                {"notice_id": notice_id},
                decision.decided_at,
            )
            return answered

    @staticmethod
    def _notice(db: sqlite3.Connection, notice_id: int) -> Notice:
        row = db.execute("SELECT record FROM notices WHERE id = ?", (notice_id,)).fetchone()
        if row is None:
            raise NotFound(f"no notice {notice_id}")
        return codecs.notice_from_json(notice_id, row[0])

    def get_notice(self, notice_id: int) -> Notice | None:
        row = self._reader().execute("SELECT record FROM notices WHERE id = ?", (notice_id,)).fetchone()
        return codecs.notice_from_json(notice_id, row[0]) if row else None

    def list_notices(self, after_id: int, limit: int, where: NoticeFilter) -> list[Notice]:
        clauses, values = ["id > ?"], [after_id]
        for clause, value in (
            ("platform_id = ?", where.platform_id),
            ("state = ?", where.state.value if where.state is not None else None),
            ("filed_at >= ?", where.filed_since),
            ("filed_at < ?", where.filed_until),
        ):
            if value is not None:
                clauses.append(clause)
                values.append(value)  # type: ignore[arg-type]
        rows = self._reader().execute(
            f"SELECT id, record FROM notices WHERE {' AND '.join(clauses)} ORDER BY id LIMIT ?", (*values, limit)
        )
        return [codecs.notice_from_json(r[0], r[1]) for r in rows]

    # The audit trail (issue 6)

    def append_audit(self, drafts: Sequence[AuditDraft]) -> list[AuditEvent]:
        if not drafts:
            return []
        # BEGIN IMMEDIATE holds SQLite's write lock, across processes too, so
        # the head read here is still the head at COMMIT.
        with self._transaction() as db:
            row = db.execute("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1").fetchone()
            events = audit.chain((row[0], row[1]) if row else (0, audit.GENESIS), drafts)
            db.executemany(
                "INSERT INTO audit_events (seq, at, member, roles, method, request_id, target, result, detail,"
                " previous_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        e.sequence,
                        e.draft.at,
                        e.draft.member,
                        ",".join(e.draft.roles),
                        e.draft.method,
                        e.draft.request_id,
                        e.draft.target,
                        e.draft.result,
                        e.draft.detail,
                        e.previous_hash,
                        e.hash,
                    )
                    for e in events
                ],
            )
            return events

    def list_audit(self, after_sequence: int, limit: int, where: AuditFilter | None = None) -> list[AuditEvent]:
        where = where or AuditFilter()
        clauses, values = ["seq > ?"], [after_sequence]
        for clause, value in (
            ("member = ?", where.member),
            ("method = ?", where.method),
            ("at >= ?", where.since),
            ("at < ?", where.until),
        ):
            if value is not None:
                clauses.append(clause)
                values.append(value)  # type: ignore[arg-type]
        rows = self._reader().execute(
            "SELECT seq, at, member, roles, method, request_id, target, result, detail, previous_hash, hash"
            f" FROM audit_events WHERE {' AND '.join(clauses)} ORDER BY seq LIMIT ?",
            (*values, limit),
        )
        return [
            AuditEvent(r[0], AuditDraft(r[1], r[2], tuple(x for x in r[3].split(",") if x), *r[4:9]), r[9], r[10])
            for r in rows
        ]

    # Spread analytics

    def report_actions(
        self, member_id: int, request_id: str, request_digest: bytes, actions: Sequence[ActionRecord], now: float
    ) -> int:
        with self._transaction() as db:
            replay = self._replay(db, member_id, request_id, request_digest, "report_actions")
            if replay is not None:
                return int(replay["recorded"])
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO actions (entry_id, member_id, action, acted_at, hour, item_key, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (a.entry_id, member_id, a.action.value, a.acted_at, hour_of(a.acted_at), a.item_key, now)
                    for a in actions
                ],
            )
            recorded = db.total_changes - before
            self._remember(db, member_id, request_id, request_digest, "report_actions", {"recorded": recorded}, now)
            return recorded

    @staticmethod
    def _rollup_sql(query: Rollup, table: str) -> tuple[list[str], str, list[object]]:
        """The GROUP BY expressions, the FROM ... WHERE clause and its parameters."""
        day = f"({table}.hour / 24)"
        expressions = {
            Dimension.ENTRY: f"{table}.entry_id",
            Dimension.MEMBER: f"{table}.member_id",
            Dimension.CATEGORY: "e.category",
            Dimension.HOUR: f"{table}.hour",
            Dimension.DAY: day,
            Dimension.WEEK: f"({day} - ({day} + 3) % 7)",
        }
        source = "sighting_hours" if table == "h" else "actions"
        clause = f"FROM {source} {table}"
        if query.needs_category:
            clause += f" JOIN entries e ON e.id = {table}.entry_id"
        conditions: list[str] = ["1"]
        parameters: list[object] = []
        first, after = query.hours()
        if first is not None:
            conditions.append(f"{table}.hour >= ?")
            parameters.append(first)
        if after is not None:
            conditions.append(f"{table}.hour < ?")
            parameters.append(after)
        if query.category is not None:
            conditions.append("e.category = ?")
            parameters.append(query.category)
        if query.entry_ids is not None:
            conditions.append(f"{table}.entry_id IN (SELECT value FROM json_each(?))")
            parameters.append(json.dumps(sorted(query.entry_ids)))
        return [expressions[d] for d in query.by], f"{clause} WHERE {' AND '.join(conditions)}", parameters

    def sighting_rollup(self, query: Rollup) -> dict[Key, SightingTally]:
        groups, clause, parameters = self._rollup_sql(query, "h")
        selected = ", ".join([*groups, "SUM(h.count)", "COUNT(DISTINCT h.member_id)"])
        group_by = f" GROUP BY {', '.join(groups)}" if groups else ""
        rows = self._reader().execute(f"SELECT {selected} {clause}{group_by}", parameters).fetchall()
        width = len(groups)
        return {tuple(r[:width]): SightingTally(int(r[width]), int(r[width + 1])) for r in rows if r[width]}

    def action_rollup(self, query: Rollup) -> dict[Key, ActionTally]:
        groups, clause, parameters = self._rollup_sql(query, "a")
        selected = ", ".join([*groups, "a.action", "COUNT(*)"])
        rows = self._reader().execute(
            f"SELECT {selected} {clause} GROUP BY {', '.join([*groups, 'a.action'])}", parameters
        )
        width = len(groups)
        counts: dict[Key, dict[Action, int]] = defaultdict(dict)
        for r in rows:
            counts[tuple(r[:width])][Action(r[width])] = int(r[width + 1])
        return {key: ActionTally(by_action) for key, by_action in counts.items()}

    def submission_rollup(self, start: float, end: float, by: Dimension) -> dict[int | str, SubmissionTally]:
        if by not in (Dimension.MEMBER, Dimension.CATEGORY):
            raise ValueError(f"submissions roll up by member or category, not {by}")
        group = "s.member_id" if by is Dimension.MEMBER else "s.category"
        rows = self._reader().execute(
            f"SELECT {group}, COUNT(*),"
            " SUM(EXISTS (SELECT 1 FROM submissions p"
            "  WHERE p.entry_id = s.entry_id AND p.id < s.id AND p.member_id != s.member_id)),"
            " SUM(NOT EXISTS (SELECT 1 FROM submissions p WHERE p.entry_id = s.entry_id AND p.id < s.id)),"
            " json_group_array(s.removed_at - s.notice_received_at) FILTER (WHERE s.notice_received_at IS NOT NULL)"
            " FROM submissions s"
            " WHERE s.retracted_at IS NULL AND s.removed_at >= ? AND s.removed_at < ?"
            f" GROUP BY {group}",
            (start, end),
        )
        return {
            r[0]: SubmissionTally(
                int(r[1]), int(r[2]), int(r[3]), tuple(sorted(max(0.0, d) / HOUR for d in json.loads(r[4])))
            )
            for r in rows
        }

    # Trust and safety

    def _opinions_and_reviews(
        self, db: sqlite3.Connection, ids: str, values: Sequence[object]
    ) -> dict[int, dict[str, Any]]:
        """EntrySummary's feedback and review inputs of the entries whose id is ``ids`` (as
        in ``_summaries``) that have any."""
        inputs: dict[int, dict[str, Any]] = {}
        for entry_id, opinion, submitter, count in db.execute(
            "SELECT f.entry_id, f.opinion, EXISTS (SELECT 1 FROM submissions s WHERE s.entry_id = f.entry_id"
            " AND s.member_id = f.member_id AND s.retracted_at IS NULL), COUNT(*)"
            f" FROM feedback f WHERE f.entry_id {ids} GROUP BY 1, 2, 3",
            values,
        ):
            found = inputs.setdefault(entry_id, {})
            if opinion == Opinion.DISAGREE.value:
                found["disputes"] = found.get("disputes", 0) + count
            elif not submitter:
                found["endorsers"] = found.get("endorsers", 0) + count
        for entry_id, confirmed, disabled in db.execute(
            f"SELECT entry_id, confirmed, disabled FROM entry_reviews WHERE entry_id {ids}", values
        ):
            inputs.setdefault(entry_id, {}).update(confirmed=bool(confirmed), disabled=bool(disabled))
        return inputs

    def _member_entries(self, db: sqlite3.Connection, member_id: int) -> tuple[int, ...]:
        rows = db.execute(
            "SELECT DISTINCT entry_id FROM submissions WHERE member_id = ? AND retracted_at IS NULL ORDER BY 1",
            (member_id,),
        )
        return tuple(r[0] for r in rows)

    def _member_in(self, db: sqlite3.Connection, member_id: int) -> Member:
        row = db.execute(f"SELECT {_MEMBER_COLUMNS} FROM {_MEMBER_TABLES} WHERE m.id = ?", (member_id,)).fetchone()
        if row is None:
            raise NotFound(f"no member {member_id}")
        return _member(row)

    def _upsert_trust(self, db: sqlite3.Connection, member: Member) -> None:
        db.execute(
            "INSERT INTO member_trust (member_id, trust_level, flagged_at, flag_reason) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (member_id) DO UPDATE SET trust_level = excluded.trust_level,"
            " flagged_at = excluded.flagged_at, flag_reason = excluded.flag_reason",
            (member.member_id, member.trust_level.value, member.flagged_at, member.flag_reason),
        )

    def set_trust_level(self, member_id: int, trust_level: TrustLevel) -> Member:
        with self._transaction() as db:
            member = replace(self._member_in(db, member_id), trust_level=trust_level)
            self._upsert_trust(db, member)
            entries = self._member_entries(db, member_id)
            if entries:
                self._append(db, EntryChanged(entries))
            return member

    def clear_flag(self, member_id: int) -> Member:
        with self._transaction() as db:
            member = self._member_in(db, member_id)
            if member.flagged:
                member = replace(member, flagged_at=None, flag_reason="")
                self._upsert_trust(db, member)
            return member

    def take_submit_quota(
        self, member_id: int, wanted: int, limit: int, window_seconds: float, now: float, flag_reason: str
    ) -> int:
        with self._transaction() as db:
            db.execute("DELETE FROM submit_quota WHERE member_id = ? AND at <= ?", (member_id, now - window_seconds))
            used = db.execute(
                "SELECT COALESCE(SUM(granted), 0) FROM submit_quota WHERE member_id = ?", (member_id,)
            ).fetchone()[0]
            granted = max(0, min(wanted, limit - int(used)))
            if granted:
                db.execute(
                    "INSERT INTO submit_quota (member_id, at, granted) VALUES (?, ?, ?)", (member_id, now, granted)
                )
            if granted < wanted:
                member = self._member_in(db, member_id)
                if not member.flagged:
                    self._upsert_trust(db, replace(member, flagged_at=now, flag_reason=flag_reason))
            return granted

    def give_feedback(
        self, member_id: int, request_id: str, request_digest: bytes, feedback: Feedback
    ) -> FeedbackOutcome:
        with self._transaction() as db:
            replay = self._replay(db, member_id, request_id, request_digest, "feedback")
            if replay is not None:
                return FeedbackOutcome(**replay)
            if db.execute("SELECT 1 FROM entries WHERE id = ?", (feedback.entry_id,)).fetchone() is None:
                raise NotFound(f"no entry {feedback.entry_id}")
            db.execute(
                "INSERT OR REPLACE INTO feedback (entry_id, member_id, opinion, reason, comment, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    feedback.entry_id,
                    member_id,
                    feedback.opinion.value,
                    feedback.reason.value,
                    feedback.comment,
                    feedback.created_at,
                ),
            )
            counts = dict(
                db.execute(
                    "SELECT opinion, COUNT(*) FROM feedback WHERE entry_id = ? GROUP BY opinion", (feedback.entry_id,)
                ).fetchall()
            )
            outcome = FeedbackOutcome(
                feedback.entry_id,
                counts.get(Opinion.AGREE.value, 0),
                counts.get(Opinion.DISAGREE.value, 0),
                counts.get(Opinion.SEEN_TOO.value, 0),
            )
            self._append(db, EntryChanged((feedback.entry_id,)))
            self._remember(db, member_id, request_id, request_digest, "feedback", asdict(outcome), feedback.created_at)
            return outcome

    def review_entry(self, review: Review) -> EntryTrust:
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM entries WHERE id = ?", (review.entry_id,)).fetchone() is None:
                raise NotFound(f"no entry {review.entry_id}")
            before = db.execute(
                "SELECT confirmed, disabled FROM entry_reviews WHERE entry_id = ?", (review.entry_id,)
            ).fetchone()
            confirmed, disabled = _reviewed(bool(before and before[0]), bool(before and before[1]), review.decision)
            db.execute(
                "INSERT OR REPLACE INTO entry_reviews"
                " (entry_id, decision, reason, reviewer_id, at, confirmed, disabled) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    review.entry_id,
                    review.decision.value,
                    review.reason,
                    review.reviewer_id,
                    review.at,
                    confirmed,
                    disabled,
                ),
            )
            self._append(db, EntryChanged((review.entry_id,)))
        return self.entry_trust(review.entry_id)

    def entry_trust(self, entry_id: int) -> EntryTrust:
        db = self._reader()
        feedback = tuple(
            Feedback(entry_id, r[0], Opinion(r[1]), DisputeReason(r[2]), r[3], r[4])
            for r in db.execute(
                "SELECT member_id, opinion, reason, comment, created_at FROM feedback WHERE entry_id = ?"
                " ORDER BY created_at, member_id",
                (entry_id,),
            )
        )
        row = db.execute(
            "SELECT decision, reason, reviewer_id, at, confirmed, disabled FROM entry_reviews WHERE entry_id = ?",
            (entry_id,),
        ).fetchone()
        if row is None:
            return EntryTrust(entry_id, feedback)
        review = Review(entry_id, ReviewDecision(row[0]), row[1], row[2], row[3])
        return EntryTrust(entry_id, feedback, review, bool(row[4]), bool(row[5]))

    def add_allowed(
        self,
        member_id: int,
        request_id: str,
        request_digest: bytes,
        signals: Sequence[Signal],
        label: str,
        now: float,
    ) -> AllowedItem:
        with self._transaction() as db:
            replay = self._replay(db, member_id, request_id, request_digest, "allow")
            if replay is not None:
                found = self._allowed_items(db, "i.id = ?", (replay["allow_id"],))
                if found:
                    return found[0]
                raise NotFound(f"allow-list item {replay['allow_id']} was removed since")
            cursor = db.execute(
                "INSERT INTO allowed_items (label, added_by, created_at) VALUES (?, ?, ?)", (label, member_id, now)
            )
            allow_id = cursor.lastrowid
            assert allow_id is not None
            rows = []
            for signal in signals:
                cursor = db.execute(
                    "INSERT INTO allowed_signals (allow_id, type, version, value, quality, variant)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (allow_id, signal.type, signal.version, signal.value, signal.quality, signal.variant),
                )
                assert cursor.lastrowid is not None
                rows.append(_allowed_row(cursor.lastrowid, allow_id, signal))
            self._append(db, SignalsAdded(tuple(rows)))
            self._remember(db, member_id, request_id, request_digest, "allow", {"allow_id": allow_id}, now)
            return AllowedItem(allow_id, tuple(signals), label, member_id, now)

    def remove_allowed(
        self, member_id: int, request_id: str, request_digest: bytes, allow_id: int, reason: str, now: float
    ) -> None:
        with self._transaction() as db:
            if self._replay(db, member_id, request_id, request_digest, "disallow") is not None:
                return
            updated = db.execute(
                "UPDATE allowed_items SET removed_at = ?, removed_by = ?, remove_reason = ?"
                " WHERE id = ? AND removed_at IS NULL",
                (now, member_id, reason, allow_id),
            )
            if updated.rowcount == 0:
                raise NotFound(f"no allow-list item {allow_id}")
            row_ids = [r[0] for r in db.execute("SELECT id FROM allowed_signals WHERE allow_id = ?", (allow_id,))]
            # Summaries do not depend on the allow-list (it holds matches at lookup time).
            self._append(db, SignalsRemoved(tuple(allowed_index_id(r) for r in row_ids), ()))
            self._remember(db, member_id, request_id, request_digest, "disallow", {"allow_id": allow_id}, now)

    def list_allowed(self, after: int, limit: int) -> list[AllowedItem]:
        return self._allowed_items(self._reader(), "i.id > ?", (after,), limit)

    def _allowed_items(
        self, db: sqlite3.Connection, where: str, parameters: tuple[Any, ...], limit: int = 1
    ) -> list[AllowedItem]:
        items = db.execute(
            f"SELECT i.id, i.label, i.added_by, i.created_at FROM allowed_items i WHERE {where}"
            " AND i.removed_at IS NULL ORDER BY i.id LIMIT ?",
            (*parameters, limit),
        ).fetchall()
        found = []
        for allow_id, label, added_by, created_at in items:
            signals = tuple(
                Signal(r[0], r[1], bytes(r[2]), r[3], r[4])
                for r in db.execute(
                    "SELECT type, version, value, quality, variant FROM allowed_signals WHERE allow_id = ? ORDER BY id",
                    (allow_id,),
                )
            )
            found.append(AllowedItem(allow_id, signals, label, added_by, created_at))
        return found

    def allowed_signals(self) -> Iterator[IndexedSignal]:
        rows = (
            self._reader()
            .execute(
                "SELECT s.id, s.allow_id, s.type, s.version, s.value, s.quality, s.variant FROM allowed_signals s"
                " JOIN allowed_items i ON i.id = s.allow_id WHERE i.removed_at IS NULL ORDER BY s.id"
            )
            .fetchall()
        )
        for r in rows:
            yield _allowed_row(r[0], r[1], Signal(r[2], r[3], bytes(r[4]), r[5], r[6]))

    def feedback_stats(self, start: float | None, end: float | None) -> list[MemberFeedbackStats]:
        period = "f.created_at >= ? AND f.created_at < ?"
        bounds = (float("-inf") if start is None else start, float("inf") if end is None else end)
        db = self._reader()
        given: dict[int, dict[str, int]] = {}
        for member_id, opinion, count in db.execute(
            f"SELECT f.member_id, f.opinion, COUNT(*) FROM feedback f WHERE {period} GROUP BY 1, 2", bounds
        ):
            given.setdefault(member_id, {})[opinion] = count
        received = dict(
            db.execute(
                "SELECT s.member_id, COUNT(*) FROM feedback f"
                " JOIN (SELECT DISTINCT entry_id, member_id FROM submissions) s ON s.entry_id = f.entry_id"
                f" WHERE f.opinion = ? AND f.member_id != s.member_id AND {period} GROUP BY 1",
                (Opinion.DISAGREE.value, *bounds),
            ).fetchall()
        )
        return [
            MemberFeedbackStats(
                member_id,
                given.get(member_id, {}).get(Opinion.AGREE.value, 0),
                given.get(member_id, {}).get(Opinion.DISAGREE.value, 0),
                given.get(member_id, {}).get(Opinion.SEEN_TOO.value, 0),
                received.get(member_id, 0),
            )
            for member_id in sorted(given.keys() | received.keys())
        ]


def _entry_summary(row: tuple[int, str, int, int], inputs: dict[int, dict[str, Any]]) -> EntrySummary:
    """A ``_summary_rows`` row and its entry's feedback and review inputs, as a summary."""
    entry_id, category, members, any_trusted = row
    return EntrySummary(entry_id, category, members, members > 0, trusted=bool(any_trusted), **inputs.get(entry_id, {}))


def _first_free_ids(db: sqlite3.Connection) -> tuple[int, int, int]:
    """The next entry, submission and signal ids. Under BEGIN IMMEDIATE nobody else
    writes, so ids can be handed out (as SQLite would: the largest plus one) and rows
    inserted in bulk."""
    entry, submission, signal = (
        int(db.execute(f"SELECT COALESCE(MAX(id), 0) + 1 FROM {table}").fetchone()[0])
        for table in ("entries", "submissions", "signals")
    )
    return entry, submission, signal


def _insert_bank_rows(
    db: sqlite3.Connection,
    entry_rows: Sequence[tuple[object, ...]],
    submission_rows: Sequence[tuple[object, ...]],
    signal_rows: Sequence[tuple[object, ...]],
    signal_ids: range,
) -> None:
    """New entries, submissions and signals (with their ids), and the feed row that
    names the signals by their consecutive ids instead of copying them."""
    _insert(db, "entries (id, category, created_at)", entry_rows)
    _insert(
        db,
        "submissions (id, entry_id, member_id, category, legal_basis, discovery_method,"
        " notice_reference, notice_received_at, removed_at, created_at)",
        submission_rows,
    )
    _insert(db, "signals (id, entry_id, submission_id, type, version, value, quality, variant)", signal_rows)
    if submission_rows:
        payload = {"kind": _SIGNAL_ROWS, "first": signal_ids.start, "last": signal_ids.stop - 1}
        db.execute("INSERT INTO changes (payload) VALUES (?)", (json.dumps(payload).encode(),))


_NEW_IMPORT_KEYS = " ON CONFLICT DO NOTHING RETURNING key"


def _legacy_import_key(request_id: str) -> bytes | None:
    found = _LEGACY_IMPORT_REQUEST.fullmatch(request_id)
    return bytes.fromhex(found[1][: 2 * _IMPORT_KEY_BYTES]) if found else None


def _migrate_from_2(db: sqlite3.Connection) -> None:
    """Version 2 recorded each submission of an imported line as a request
    ``imp-<the first 40 hex digits of the line's key>-<k>``, 200 bytes where import_keys
    keeps 16 for the whole line: move those into import_keys, so that importing the
    lines again still stores nothing. It also indexed signals by submission, which
    only a retraction read (it knows the entry: signals_by_entry serves it), and which
    every imported signal paid for."""
    db.execute("DROP INDEX IF EXISTS signals_by_submission")
    db.create_function("legacy_import_key", 1, _legacy_import_key, deterministic=True)
    db.execute(
        "INSERT INTO import_keys (member_id, key) SELECT member_id, key FROM"
        " (SELECT member_id, legacy_import_key(request_id) AS key FROM requests WHERE request_id LIKE 'imp-%')"
        " WHERE key IS NOT NULL ORDER BY 1, 2 ON CONFLICT DO NOTHING"
    )
    db.execute("DELETE FROM requests WHERE request_id LIKE 'imp-%' AND legacy_import_key(request_id) IS NOT NULL")


# Rows per multi-row statement, at most: enough that a batch is a handful of statements.
_MOST_ROWS_PER_STATEMENT = 4096
_FEWEST_ROWS_PER_STATEMENT = 16


def _rows_per_statement(db: sqlite3.Connection, width: int) -> int:
    return max(1, min(_MOST_ROWS_PER_STATEMENT, db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width))


def _insert(
    db: sqlite3.Connection, into: str, rows: Sequence[tuple[object, ...]], upsert: str = ""
) -> list[tuple[Any, ...]]:
    """``INSERT INTO {into}`` of ``rows``, up to thousands per statement (``upsert``: an
    ON CONFLICT clause, the rows must then have distinct keys, and a RETURNING clause;
    what it returns is returned).

    executemany steps one row at a time, letting go of the GIL around each step and
    waiting to take it back: while another thread runs Python (an import parsing its
    next batch) that wait is up to the interpreter's switch interval (5 ms) per row.
    One statement of many rows waits once. Statements have a power-of-two number of
    rows, so a few shapes are compiled once and reused (compiling costs as much as
    inserting); the last, short one is padded with NULL rows, which it skips (a row's
    first value is never NULL: an id, or an entry id)."""
    returned: list[tuple[Any, ...]] = []
    if not rows:
        return returned
    width = len(rows[0])
    size = _rows_per_statement(db, width)
    start = 0
    while start < len(rows):
        left = len(rows) - start
        while size > _FEWEST_ROWS_PER_STATEMENT and size > left:
            size //= 2
        chunk = rows[start : start + size]
        start += size
        flat = list(itertools.chain.from_iterable(chunk))
        flat.extend(itertools.repeat(None, width * (size - len(chunk))))
        values = ",".join(["(" + ",".join("?" * width) + ")"] * size)
        cursor = db.execute(
            f"INSERT INTO {into} SELECT * FROM (VALUES {values}) WHERE column1 IS NOT NULL{upsert}", flat
        )
        returned += cursor.fetchall()
    return returned


def _sightings_to_cells(db: sqlite3.Connection) -> None:
    """Schema 2 -> 3: schema 2 kept a row per sighting beside its hour cell; the cells, with
    their first and last sighting, say all that is read of them (the per-sighting verdict was
    never read). The cells are rebuilt from the rows, which then go, and the cells' index by
    hour no longer holds their counts."""
    db.execute("DROP INDEX IF EXISTS sighting_hours_by_hour")
    columns = {row[1] for row in db.execute("PRAGMA table_info(sighting_hours)")}
    if "first_at" not in columns:
        db.execute("ALTER TABLE sighting_hours ADD COLUMN first_at REAL")
        db.execute("ALTER TABLE sighting_hours ADD COLUMN last_at REAL")
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sightings'").fetchone():
        db.execute("DELETE FROM sighting_hours")
        db.execute(
            "INSERT INTO sighting_hours (entry_id, member_id, hour, count, first_at, last_at)"
            " SELECT entry_id, member_id, CAST(at / 3600 AS INTEGER), COUNT(*), MIN(at), MAX(at) FROM sightings"
            " GROUP BY 1, 2, 3"
        )
        db.execute("DROP TABLE sightings")


def _reviewed(confirmed: bool, disabled: bool, decision: ReviewDecision) -> tuple[bool, bool]:
    """(confirmed, disabled) after a decision, as EntryTrust documents."""
    if decision is ReviewDecision.CONFIRM:
        return True, False
    if decision is ReviewDecision.DISABLE:
        return False, True
    return confirmed, False


def _allowed_row(row_id: int, allow_id: int, signal: Signal) -> IndexedSignal:
    return IndexedSignal(
        allowed_index_id(row_id), allowed_index_id(allow_id), signal.type, signal.version, signal.value, signal.variant
    )


def sqlite_path_from_url(url: str) -> str:
    """``sqlite:///relative.db`` or ``sqlite:////absolute.db``, as SQLAlchemy spells them."""
    path = url.removeprefix("sqlite:///")
    return os.path.expanduser(path)
