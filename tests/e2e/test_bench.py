"""`make bench` runs, at a tiny size (benchmarks are not tests: no figure is checked here)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_make_bench_runs_on_a_tiny_bank(tmp_path: Path) -> None:
    done = subprocess.run(
        ["make", "bench", "SIZES=2k", "E2E_SIZES=1k", f"VAR={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    index_rows = json.loads((tmp_path / "bench" / "index.json").read_text())
    e2e_rows = json.loads((tmp_path / "bench" / "e2e.json").read_text())
    assert {row["index"].split()[0] for row in index_rows} >= {"hashshare", "numpy"}
    assert e2e_rows[0]["entries"] == 2000 and e2e_rows[0]["match"]["p99_ms"] > 0
    assert e2e_rows[0]["batch_stream_items_per_s"] > 0
    assert (tmp_path / "bench" / "latency.png").stat().st_size > 10_000


def test_the_feed_bench_runs_through_a_merge(tmp_path: Path) -> None:
    # Not in `make bench`'s kinds (minutes at 10M rows): run here at a size where the fed
    # batches still merge up into the large segment.
    from hashshare.bench import index_bench

    out = tmp_path / "feed.json"
    assert index_bench.main(["--sizes", "40k", "--kinds", "feed", "--json", str(out)]) == 0
    [row] = json.loads(out.read_text())
    assert row["n"] == 40_000 and row["max_apply_ms"] >= row["median_apply_ms"] > 0


def test_the_text_bench_measures_datasketch_on_redis_and_cleans_up(tmp_path: Path) -> None:
    import redis

    from hashshare.bench import index_bench

    out = tmp_path / "text.json"
    url = "redis://127.0.0.1:6379/0"
    assert index_bench.main(["--sizes", "2k", "--kinds", "text", "--datasketch-redis", url, "--json", str(out)]) == 0
    rows = {row["index"]: row for row in json.loads(out.read_text())}
    on_redis = rows["datasketch MinHashLSH on Redis J>=0.3"]
    assert on_redis["n"] == 2000 and on_redis["p99_ms"] > 0
    assert on_redis["bytes_per_entry"] > 1000, "its bands' keys take memory in Redis"
    assert "ours_p99_ratio" in on_redis  # beside hashshare's row of the same size
    client = redis.Redis.from_url(url)
    try:
        assert not list(client.scan_iter(match=b"hashshare-bench-*", count=10_000))
    finally:
        client.close()
