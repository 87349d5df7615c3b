"""The SQLite store's schema versions: a store an older version wrote is brought up to
date when it is opened, and one of an unknown version is refused."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest

from hashshare import bankfile
from hashshare.model import SubmissionDraft
from hashshare.store.sqlite import SCHEMA_VERSION, SqliteStore
from hashshare_client import DiscoveryMethod, LegalBasis

PDQ_HEX = "f8f0" * 16
FULL_MD5 = {"type": "exact/md5", "version": None, "hex": "", "quality": 0, "variant": ""}
# Lines of every shape a bank file may have: as an export writes them, with fields left
# out, with null or no submissions, several submissions, text to escape, a field import
# does not know.
LINES = [
    {
        "entry_id": "ent_1",
        "category": "hate_speech",
        "signals": [
            {"type": "image/pdq", "version": "pdq1.p2", "hex": PDQ_HEX, "quality": 92, "variant": ""},
            {
                "type": "image/phash",
                "version": "phash8hf4.p2",
                "hex": "8f3c00ff12345678",
                "quality": None,
                "variant": "top85",
            },
        ],
        "submissions": [
            {
                "legal_basis": "local_law",
                "discovery_method": "authority_notice",
                "notice_reference": 'CV-2026-117 "Điều 5" \\ \u2028',
                "notice_received_at": "2026-01-05T08:00:00Z",
                "removed_at": "2026-01-05T09:12:44.250000Z",
                "created_at": None,
            },
            {"legal_basis": "community_guidelines", "removed_at": "2026-01-06T00:00:00+07:00"},
        ],
    },
    {"category": "hate_speech.religion", "signals": [{"type": "exact/md5", "hex": "00" * 16}]},
    {"category": "hate_speech", "signals": [FULL_MD5 | {"hex": "01" * 16}], "submissions": None},
    {"category": "hate_speech", "signals": [FULL_MD5 | {"hex": "02" * 16}], "submissions": []},
    {"signals": [{"type": "exact/md5", "hex": "03" * 16, "quality": 7}], "source": "another programme"},
]
HASHES = [f"{'ab' * 32},95", "cd" * 32]
DRAFT = SubmissionDraft((), "hate_speech", LegalBasis.LOCAL_LAW, DiscoveryMethod.UNSPECIFIED, "", None, 0.0)


def version_2_key(record: dict[str, object], category: str) -> str:
    """A JSONL line's key as version 2 derived it: the digest of its canonical JSON."""
    canonical = {k: v for k, v in record.items() if k != "entry_id"} | {"category": category}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def hash_list_key(line: str, category: str) -> str:
    hex_value, _, quality = line.partition(",")
    return hashlib.sha256(f"image/pdq|pdq1.p2|{hex_value}|{quality or None}|{category}".encode()).hexdigest()


def as_version_2(path: Path, member_id: int, keys: list[tuple[str, int]]) -> None:
    """Turn a store this version wrote into what version 2 left after the same imports:
    each submission of an imported line a request named after the line's key (``keys``:
    the key and how many submissions), no import_keys, signals indexed by submission."""
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("DELETE FROM import_keys")
        for key, submissions in keys:
            for k in range(submissions):
                digest = hashlib.sha256(f"{key}/{k}".encode()).digest()
                db.execute(
                    'INSERT INTO requests VALUES (?, ?, ?, \'{"kind": "submit", "outcome": {}}\', 0)',
                    (member_id, f"imp-{key[:40]}-{k}", digest),
                )
        db.execute("CREATE INDEX signals_by_submission ON signals(submission_id)")
        db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")


def test_lines_a_version_2_store_imported_stay_imported(tmp_path: Path) -> None:
    path, bank, hashes = tmp_path / "bank.db", tmp_path / "bank.jsonl", tmp_path / "list.txt"
    bank.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in LINES))
    hashes.write_text("".join(f"{line}\n" for line in HASHES))
    store = SqliteStore(path)
    member = store.create_member("alpha", frozenset(), time.time()).member_id
    other = store.create_member("beta", frozenset(), time.time()).member_id

    def import_both() -> tuple[bankfile.ImportReport, bankfile.ImportReport]:
        return bankfile.import_file(store, bank, "alpha", category="hate_speech"), bankfile.import_file(
            store, hashes, "alpha", file_format="hashlist", signal_type="image/pdq", category="hate_speech"
        )

    try:
        assert [(r.imported, r.errors) for r in import_both()] == [(5, []), (2, [])]
        # Requests of Submits stay: whatever their id, they are not an import's.
        store.submit(other, "imp-not-an-import", b"d" * 32, DRAFT, None, 0.0)
    finally:
        store.close()
    keys = [
        (version_2_key(line, str(line.get("category", "hate_speech"))), len(line.get("submissions") or [{}]))
        for line in LINES
    ]
    keys += [(hash_list_key(line, "hate_speech"), 1) for line in HASHES]
    as_version_2(path, member, keys)

    store = SqliteStore(path)
    try:
        again_jsonl, again_list = import_both()
        assert (again_jsonl.imported, again_jsonl.already_present) == (0, 5)
        assert (again_list.imported, again_list.already_present) == (0, 2)
        db = store._reader()
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
        assert db.execute("SELECT member_id, request_id FROM requests").fetchall() == [(other, "imp-not-an-import")]
        assert db.execute("SELECT COUNT(*) FROM import_keys").fetchone() == (7,)
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'signals_by_submission'").fetchall() == []
    finally:
        store.close()


def test_a_store_of_an_unknown_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bank.db"
    SqliteStore(path).close()
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(RuntimeError, match="schema version 99"):
        SqliteStore(path)
