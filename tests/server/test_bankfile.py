"""hashshare-server import/export (hashshare.bankfile) on both stores."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from hashshare import bankfile, members
from hashshare.cli import main
from hashshare.store import open_store
from hashshare_client import Client, Signal, signal_types
from tests.conftest import ServerFactory, new_member

PDQ, MD5 = signal_types.PDQ, signal_types.MD5


def pdq_hex(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def test_export_then_import_into_a_fresh_store_round_trips(store_url: str, tmp_path: Path) -> None:
    source = open_store(f"sqlite:///{tmp_path / 'source.db'}")
    target = open_store(store_url)
    try:
        now = time.time()
        alpha, _, _ = members.create_member(source, "alpha", ["trust_safety"], now)
        members.create_member(target, "importer", ["trust_safety"], now)
        lines = [
            {
                "category": "hate_speech.ethnicity",
                "signals": [
                    {"type": "image/pdq", "hex": pdq_hex("a"), "quality": 92},
                    {"type": "image/phash", "hex": "8f3c00ff12345678", "quality": 92, "variant": "top85"},
                ],
                "submissions": [
                    {
                        "legal_basis": "local_law",
                        "discovery_method": "authority_notice",
                        "notice_reference": "CV-2026-117",
                        "notice_received_at": "2026-01-05T08:00:00Z",
                        "removed_at": "2026-01-05T09:12:44.250000Z",
                        "created_at": "2026-01-05T09:13:02Z",
                    },
                    {"legal_basis": "community_guidelines", "removed_at": "2026-01-06T00:00:00Z"},
                ],
            },
            {"category": "harassment", "signals": [{"type": "exact/md5", "hex": hashlib.md5(b"x").hexdigest()}]},
        ]
        original = tmp_path / "original.jsonl"
        original.write_text("".join(json.dumps(line) + "\n" for line in lines))
        report = bankfile.import_file(source, original, "alpha")
        assert (report.imported, report.errors) == (2, [])
        assert alpha.member_id == 1

        first = tmp_path / "first.jsonl"
        with open(first, "w") as out:
            assert bankfile.export_file(source, out) == 2
        assert main(["import", str(first), "--store", store_url, "--member", "importer"]) == 0
        second = tmp_path / "second.jsonl"
        assert main(["export", str(second), "--store", store_url]) == 0

        exported = [json.loads(line) for line in first.read_text().splitlines()]
        assert exported == [json.loads(line) for line in second.read_text().splitlines()]
        assert exported[0]["submissions"][0]["removed_at"] == "2026-01-05T09:12:44.250000Z"
        assert exported[0]["signals"][1]["variant"] == "top85"
        assert len(exported[0]["submissions"]) == 2
        # Importing the same file again stores nothing twice.
        again = bankfile.import_file(target, first, "importer")
        assert (again.imported, again.already_present) == (0, 2)
    finally:
        source.close()
        target.close()


def test_hash_list_import_is_found_by_match_through_a_server(
    server_factory: ServerFactory, store_url: str, tmp_path: Path
) -> None:
    server = server_factory(store_url)
    token = new_member(server, "platform-a", "trust_safety", "platform")
    hashes = tmp_path / "list.txt"
    md5 = hashlib.md5(b"removed video").hexdigest()
    hashes.write_text(f"# from another programme\n\n{pdq_hex('listed')},95\n{pdq_hex('other')}\n")
    md5s = tmp_path / "md5.txt"
    md5s.write_text(md5.upper() + "\n")
    store_flags = ["--store", store_url, "--member", "platform-a", "--format", "hashlist", "--category", "hate_speech"]
    assert main(["import", str(hashes), *store_flags, "--type", "image/pdq"]) == 0
    assert main(["import", str(md5s), *store_flags, "--type", "exact/md5"]) == 0

    with Client(f"127.0.0.1:{server.port}", token) as client:
        deadline = time.monotonic() + 10
        # The server applies the two imports' changes when it polls: it may see the first alone.
        for listed in (Signal.from_hex(PDQ.name, pdq_hex("listed"), quality=90), Signal.from_hex(MD5.name, md5)):
            while client.match([listed]).verdict != "BLOCK":
                assert time.monotonic() < deadline, f"the running server never saw the import of {listed.type}"
                time.sleep(0.05)
        assert client.match([Signal.from_hex(PDQ.name, pdq_hex("never listed"), quality=90)]).verdict == "NONE"

    exported = tmp_path / "out.txt"
    assert main(["export", str(exported), "--store", store_url, "--format", "hashlist", "--type", "image/pdq"]) == 0
    assert sorted(exported.read_text().splitlines()[1:]) == sorted([f"{pdq_hex('listed')},95", pdq_hex("other")])


def test_malformed_lines_are_reported_with_line_numbers_and_skipped(
    store_url: str, tmp_path: Path, capsys: object
) -> None:
    store = open_store(store_url)
    try:
        members.create_member(store, "alpha", ["trust_safety"], time.time())
        path = tmp_path / "list.txt"
        path.write_text(
            "\n".join(
                [
                    "# header",
                    pdq_hex("good-1"),
                    "zz" * 32,  # line 3: bad hex
                    pdq_hex("short")[:60],  # line 4: wrong length
                    f"{pdq_hex('low')},12",  # line 5: quality below the floor
                    f"{pdq_hex('good-2')},80",
                    pdq_hex("good-1"),  # line 7: repeated: stored once
                    f"{pdq_hex('q')},high",  # line 8: bad quality
                ]
            )
        )
        strict = bankfile.import_file(
            store, path, "alpha", file_format="hashlist", signal_type="image/pdq", category="hate_speech", strict=True
        )
        assert not strict.written and [n for n, _ in strict.errors] == [3, 4, 5, 8]
        assert list(store.active_signals()) == []

        report = bankfile.import_file(
            store, path, "alpha", file_format="hashlist", signal_type="image/pdq", category="hate_speech"
        )
        assert [n for n, _ in report.errors] == [3, 4, 5, 8]
        assert "64 hex digits" in dict(report.errors)[4]
        assert (report.lines, report.imported, report.already_present) == (7, 2, 1)
        assert len(list(store.active_signals())) == 2
        assert "line 3:" in report.summary()

        jsonl = tmp_path / "bank.jsonl"
        jsonl.write_text(
            "\n".join(
                [
                    json.dumps({"category": "hate_speech", "signals": [{"type": "exact/md5", "hex": "00" * 16}]}),
                    "{not json",
                    json.dumps({"category": "spam", "signals": [{"type": "exact/md5", "hex": "01" * 16}]}),
                    json.dumps({"category": "hate_speech", "signals": [{"type": "image/photodna", "hex": "00"}]}),
                    json.dumps({"category": "hate_speech", "signals": []}),
                    json.dumps(
                        {
                            "category": "hate_speech",
                            "signals": [{"type": "exact/md5", "hex": "02" * 16}],
                            "submissions": [{"removed_at": "yesterday"}],
                        }
                    ),
                ]
            )
        )
        code = main(["import", str(jsonl), "--store", store_url, "--member", "alpha", "--json"])
        assert code == 1  # some lines were skipped
        out = json.loads(capsys.readouterr().out)  # type: ignore[attr-defined]
        assert out["imported"] == 1
        assert [e["line"] for e in out["errors"]] == [2, 3, 4, 5, 6]
        assert "signals[0]" in out["errors"][2]["error"] and "removed_at" in out["errors"][4]["error"]
    finally:
        store.close()


def test_import_signals_for_the_benchmark(store_url: str) -> None:
    store = open_store(store_url)
    try:
        members.create_member(store, "bench", ["trust_safety"], time.time())
        items = [[Signal.from_hex(PDQ.name, pdq_hex(str(n)), quality=90)] for n in range(50)]
        report = bankfile.import_signals(store, member_name="bench", items=items, category="hate_speech")
        assert (report.imported, report.errors) == (50, [])
        assert len(list(store.active_signals())) == 50
    finally:
        store.close()
