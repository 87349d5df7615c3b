"""Index snapshots: a restart loads them instead of every row, replays the change feed
after them, and falls back to a full load when one is foreign, corrupt or ahead."""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hashshare.api.server import RunningServer
from hashshare.feed import FeedFollower
from hashshare.index import SignalIndex, snapshot
from hashshare.model import IndexedSignal
from hashshare.store.sqlite import SqliteStore
from hashshare_client import Client, signals
from hashshare_client.signal_types import MD5, MINHASH, PDQ, PHASH
from tests.conftest import ServerFactory, encode, new_member
from tests.server.test_index import as_set, clustered, random_rows, signature_bank


def test_round_trip_equals_the_original_index(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    rows = random_rows(rng, 800)
    original = SignalIndex()
    original.add_many(rows)
    for row in rows[:2000:7]:  # tombstones in the segments, and rows in the delta
        original.remove(row.row_id)
    for row in rows[:40:3]:
        original.add(row)
    assert snapshot.save(original, "42", "bank-a", tmp_path / "snap") == sum(original.sizes().values())
    assert not list(tmp_path.glob("snap.*"))  # no temporary directory left behind

    found = snapshot.load(tmp_path / "snap", "bank-a")
    assert found is not None
    position, arrays = found
    assert position == "42"
    loaded = SignalIndex()
    assert loaded.load_arrays(arrays) == sum(original.sizes().values())
    assert loaded.sizes() == original.sizes()
    for key, (row_ids, entry_ids, values) in original.export().items():
        again = loaded.export()[key]
        assert np.array_equal(row_ids, again[0]) and np.array_equal(entry_ids, again[1])
        assert np.array_equal(values, again[2])
    for type_name, version, threshold in (
        ("image/pdq", PDQ.version, 40),
        ("image/phash", PHASH.version, 12),
        ("text/minhash", MINHASH.version, 0.3),
        ("exact/md5", MD5.version, 0),
    ):
        values = [r.value for r in rows if r.type == type_name][:60]
        for region in ("full", "center80", "top85"):
            for value in values:
                expected = original.search(type_name, version, region, value, threshold)
                assert as_set(loaded.search(type_name, version, region, value, threshold)) == as_set(expected)

    # A snapshot replaces the previous one at the same place.
    snapshot.save(SignalIndex(), "43", "bank-a", tmp_path / "snap")
    found = snapshot.load(tmp_path / "snap", "bank-a")
    assert found is not None and found[0] == "43" and found[1] == {}


def test_missing_foreign_old_and_corrupt_snapshots_are_refused(tmp_path: Path) -> None:
    index = SignalIndex()
    index.add_many(random_rows(np.random.default_rng(4), 50))
    assert snapshot.load(tmp_path / "none", "bank-a") is None
    snapshot.save(index, "7", "bank-a", tmp_path / "snap")
    assert snapshot.load(tmp_path / "snap", "bank-b") is None
    manifest_path = tmp_path / "snap" / snapshot.MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "format": 0}))
    assert snapshot.load(tmp_path / "snap", "bank-a") is None
    manifest_path.write_text(json.dumps(manifest))
    assert snapshot.load(tmp_path / "snap", "bank-a") is not None
    first = tmp_path / "snap" / manifest["indexes"][0]["files"]["values"]
    first.write_bytes(first.read_bytes()[:100])
    assert snapshot.load(tmp_path / "snap", "bank-a") is None


def test_a_snapshot_ahead_of_the_store_is_ignored(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "bank.db"))
    try:
        follower = FeedFollower(store, SignalIndex(), 1.0)
        snapshot.save(SignalIndex(), "999", follower.bank_id(), tmp_path / "snap")
        follower.load(tmp_path / "snap")
        assert follower.snapshot_position is None and follower.position == store.feed_position()
    finally:
        store.close()


_names = itertools.count()


class Bank:
    def __init__(self, server: RunningServer) -> None:
        target = f"127.0.0.1:{server.port}"
        self.server = server
        self.ts = Client(target, new_member(server, f"ts-{next(_names)}", "trust_safety", "platform"))
        self.platform = Client(target, new_member(server, f"platform-{next(_names)}", "platform"))

    def verdict(self, image: Image.Image) -> str:
        return str(self.platform.match(signals.from_image(encode(image))).verdict)

    def close(self) -> None:
        self.ts.close()
        self.platform.close()


def no_full_load(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: SqliteStore) -> None:
        raise AssertionError("the index was read from the store, not the snapshot")

    monkeypatch.setattr(SqliteStore, "active_signals", refuse)


def test_restart_loads_the_snapshot_then_replays_later_changes(
    server_factory: ServerFactory, tmp_path: Path, photos: dict[str, Image.Image], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = f"sqlite:///{tmp_path / 'bank.db'}"
    first = Bank(server_factory(store, snapshot_dir=str(tmp_path / "at-stop")))
    kept = first.ts.submit(signals.from_image(encode(photos["astronaut"])), category="hate_speech")
    retracted = first.ts.submit(signals.from_image(encode(photos["coffee"])), category="hate_speech")
    position = first.server.bank.feed.save_snapshot(tmp_path / "mid")
    # After the snapshot: one entry retracted, another submitted.
    first.ts.retract(retracted.entry_id, reason="mistake")
    added = first.ts.submit(signals.from_image(encode(photos["rocket"])), category="hate_speech")
    assert [first.verdict(photos[n]) for n in ("astronaut", "coffee", "rocket")] == ["BLOCK", "NONE", "BLOCK"]
    first.close()
    first.server.stop(grace=0)
    assert (tmp_path / "at-stop" / snapshot.MANIFEST).exists()  # written at the graceful stop

    no_full_load(monkeypatch)
    second = Bank(server_factory(store, snapshot_dir=str(tmp_path / "mid")))
    try:
        feed = second.server.bank.feed
        assert feed.snapshot_position == position and int(feed.position) > int(position)
        assert [second.verdict(photos[n]) for n in ("astronaut", "coffee", "rocket")] == ["BLOCK", "NONE", "BLOCK"]
        result = second.platform.match(signals.from_image(encode(photos["rocket"])))
        assert [m.entry_id for m in result.matches] == [added.entry_id]
        result = second.platform.match(signals.from_image(encode(photos["astronaut"])))
        assert [m.entry_id for m in result.matches] == [kept.entry_id]
    finally:
        second.close()


def test_default_snapshot_next_to_the_sqlite_file(
    server_factory: ServerFactory, tmp_path: Path, photos: dict[str, Image.Image], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = Bank(server_factory())
    first.ts.submit(signals.from_image(encode(photos["astronaut"])), category="hate_speech")
    first.close()
    first.server.stop(grace=0)
    assert (tmp_path / "bank.db.snapshot" / snapshot.MANIFEST).exists()
    no_full_load(monkeypatch)
    second = Bank(server_factory())
    try:
        assert second.verdict(photos["astronaut"]) == "BLOCK"
    finally:
        second.close()


def test_another_banks_snapshot_is_ignored(
    server_factory: ServerFactory,
    tmp_path: Path,
    photos: dict[str, Image.Image],
    caplog: pytest.LogCaptureFixture,
) -> None:
    other = Bank(server_factory(f"sqlite:///{tmp_path / 'other.db'}", snapshot_dir=str(tmp_path / "snap")))
    other.ts.submit(signals.from_image(encode(photos["coffee"])), category="hate_speech")
    other.close()
    other.server.stop(grace=0)

    ours = Bank(server_factory(f"sqlite:///{tmp_path / 'ours.db'}", snapshot_dir=str(tmp_path / "x")))
    ours.ts.submit(signals.from_image(encode(photos["astronaut"])), category="hate_speech")
    ours.close()
    ours.server.stop(grace=0)

    with caplog.at_level(logging.INFO):
        bank = Bank(server_factory(f"sqlite:///{tmp_path / 'ours.db'}", snapshot_dir=str(tmp_path / "snap")))
    try:
        assert "belongs to another bank" in caplog.text
        assert bank.server.bank.feed.snapshot_position is None
        assert bank.verdict(photos["astronaut"]) == "BLOCK"  # from the full load
        assert bank.verdict(photos["coffee"]) == "NONE"  # the other bank's entry
    finally:
        bank.close()


def test_a_corrupt_snapshot_is_ignored_for_a_full_load(
    server_factory: ServerFactory,
    tmp_path: Path,
    photos: dict[str, Image.Image],
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = f"sqlite:///{tmp_path / 'bank.db'}"
    first = Bank(server_factory(store, snapshot_dir=str(tmp_path / "snap")))
    first.ts.submit(signals.from_image(encode(photos["astronaut"])), category="hate_speech")
    first.close()
    first.server.stop(grace=0)
    for path in (tmp_path / "snap").glob("*-values.npy"):
        path.write_bytes(b"not an array")

    with caplog.at_level(logging.INFO):
        bank = Bank(server_factory(store, snapshot_dir=str(tmp_path / "snap")))
    try:
        assert "unreadable" in caplog.text and "loaded from the store" in caplog.text
        assert bank.server.bank.feed.snapshot_position is None
        assert bank.verdict(photos["astronaut"]) == "BLOCK"
    finally:
        bank.close()


def _whole_image_rows(n: int) -> list[IndexedSignal]:
    rng = np.random.default_rng(17)
    pdq = clustered(rng, n, 4, max_flips=20)
    phash = clustered(rng, n, 1, max_flips=8)
    text = signature_bank(rng, n)
    rows = []
    for i in range(n):
        rows.append(IndexedSignal(3 * i + 1, i, "image/pdq", PDQ.version, pdq[i].tobytes()))
        rows.append(IndexedSignal(3 * i + 2, i, "image/phash", PHASH.version, phash[i].tobytes()))
        rows.append(IndexedSignal(3 * i + 3, i, "text/minhash", MINHASH.version, text[i].astype("<u4").tobytes()))
    return rows


def _searches_agree(original: SignalIndex, loaded: SignalIndex, rows: list[IndexedSignal]) -> int:
    found = 0
    thresholds = {"image/pdq": 31, "image/phash": 12, "text/minhash": 0.3}
    for row in rows[:900:7]:
        expected = original.search(row.type, row.version, "full", row.value, thresholds[row.type])
        assert as_set(loaded.search(row.type, row.version, "full", row.value, thresholds[row.type])) == as_set(expected)
        found += len(expected)
    return found


def test_a_restart_reuses_the_saved_search_structures(tmp_path: Path) -> None:
    rows = _whole_image_rows(20_000)
    original = SignalIndex()
    original.add_many(rows)
    snapshot.save(original, "5", "bank-a", tmp_path / "snap")
    manifest = json.loads((tmp_path / "snap" / snapshot.MANIFEST).read_text())
    assert {p["key"][0] for p in manifest["indexes"] if "structure" in p} == {
        "image/pdq",
        "image/phash",
        "text/minhash",
    }

    found = snapshot.load_with_structures(tmp_path / "snap", "bank-a")
    assert found is not None
    position, arrays, structures = found.position, found.rows, found.structures
    assert position == "5"
    loaded = SignalIndex()
    assert loaded.load_arrays(arrays, structures) == len(rows)
    for key, sub in loaded._indexes.items():  # the very tables that were saved, not rebuilt ones
        saved = structures[key]
        tables = sub._state.segments[0].structure.buckets  # type: ignore[attr-defined]
        # PDQ's tables are compact (bit-packed), the 64-bit and text ones plain.
        layout = "packed_positions" if key[0] == "image/pdq" else "plain_positions"
        positions = tables.positions if layout == "plain_positions" else tables.positions.data
        assert np.shares_memory(positions, saved[layout])
    assert _searches_agree(original, loaded, rows) > len(rows[:900:7])  # near duplicates found too

    # Tables that do not fit their rows are not used: the index is built again.
    key = next(k for k in structures if k[0] == "image/pdq")
    structures[key]["packed_positions"] = structures[key]["packed_positions"][:-1]
    rebuilt = SignalIndex()
    assert rebuilt.load_arrays(arrays, structures) == len(rows)
    assert not np.shares_memory(
        rebuilt._indexes[key]._state.segments[0].structure.buckets.positions.data,  # type: ignore[attr-defined]
        structures[key]["packed_positions"],
    )
    _searches_agree(original, rebuilt, rows)

    # Tables of the layout before bit packing (uint32 positions, int32 offsets): rebuilt too.
    for key, saved in structures.items():
        rows_here = len(arrays[key][0])
        tables = len(saved["bases"])
        structures[key] = {
            **{name: array for name, array in saved.items() if name in ("widths", "bits", "bases")},
            "positions": np.zeros(rows_here * tables, dtype=np.uint32),
            "offsets": np.zeros(tables, dtype=np.int32),
        }
    old = SignalIndex()
    assert old.load_arrays(arrays, structures) == len(rows)
    assert _searches_agree(original, old, rows) > len(rows[:900:7])
