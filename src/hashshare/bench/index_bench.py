"""In-process benchmark of the matching indexes against faiss, numpy, threatexchange and datasketch.

    python -m hashshare.bench.index_bench --sizes 100k,1M --json var/bench.json

Banks are synthetic but clustered like real ones: most rows are near duplicates
of a cluster centre (skewed cluster sizes), the rest uniform noise. Half the
queries are near duplicates of a stored row, half unrelated uploads (the common
case at upload time). Every query's result is checked against the numpy scan.
faiss, threatexchange and datasketch are optional: a missing one is skipped
with a note.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import math
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from hashshare.index import SignalIndex
from hashshare.index.lsh import MinHashLSHIndex, compact, scan16
from hashshare.index.mih import MIHIndex
from hashshare.index.signal_index import region_of
from hashshare.model import IndexedSignal, SignalsAdded
from hashshare_client.signal_types import DHASH, PDQ, PHASH

Row = dict[str, Any]
Built = TypeVar("Built")


def parse_size(text: str) -> int:
    text = text.strip().lower()
    factor = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text.rstrip("km")) * factor)


def rss() -> int:
    """Resident set size in bytes (Linux), 0 elsewhere."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def optional(name: str) -> Any:
    try:
        return __import__(name)
    except ImportError:
        print(f"note: {name} is not installed; its column is skipped (pip install {name})")
        return None


# Synthetic banks.


def flip_bits(rng: np.random.Generator, values: np.ndarray, max_flips: int) -> None:
    """Flip 0..max_flips random bits of each row, in place."""
    n, words = values.shape
    counts = rng.integers(0, max_flips + 1, size=n)
    rows = np.arange(n)
    for f in range(max_flips):
        bits = rng.integers(0, words * 64, size=n)
        masks = np.where(counts > f, np.uint64(1) << (bits % 64).astype(np.uint64), np.uint64(0))
        values[rows, bits // 64] ^= masks


def clustered_hashes(rng: np.random.Generator, n: int, words: int, max_flips: int) -> np.ndarray:
    """70% near duplicates of skewed clusters (mean size 5), 30% uniform noise."""
    values = rng.integers(0, 2**64, size=(n, words), dtype=np.uint64)
    members = int(n * 0.7)
    centres = max(1, members // 5)
    # Squaring a uniform draw skews cluster sizes: a few clusters are large.
    owner = (centres * rng.random(members) ** 2).astype(np.int64)
    block = values[owner]
    flip_bits(rng, block, max_flips)
    values[:members] = block
    return values[rng.permutation(n)]


def hash_queries(rng: np.random.Generator, bank: np.ndarray, count: int, radius: int) -> np.ndarray:
    near = bank[rng.integers(0, len(bank), size=count // 2)].copy()
    flip_bits(rng, near, radius)
    far = rng.integers(0, 2**64, size=(count - len(near), bank.shape[1]), dtype=np.uint64)
    return np.concatenate([near, far])[rng.permutation(count)]


def clustered_signatures(rng: np.random.Generator, n: int, permutations: int = 128) -> np.ndarray:
    """MinHash signatures: 70% in clusters (similarity to the centre 0.3..1), 30% unrelated."""
    sigs = rng.integers(0, 2**32, size=(n, permutations), dtype=np.uint32)
    members = int(n * 0.7)
    centres = max(1, members // 5)
    owner = (centres * rng.random(members) ** 2).astype(np.int64)
    keep = rng.random((members, 1)) * 0.7 + 0.3 > rng.random((members, permutations))
    sigs[:members] = np.where(keep, sigs[owner], sigs[:members])
    return sigs[rng.permutation(n)]


def signature_queries(rng: np.random.Generator, bank: np.ndarray, count: int) -> np.ndarray:
    near = bank[rng.integers(0, len(bank), size=count // 2)].copy()
    keep = rng.random((len(near), 1)) * 0.7 + 0.3 > rng.random(near.shape)
    near = np.where(keep, near, rng.integers(0, 2**32, size=near.shape, dtype=np.uint32))
    far = rng.integers(0, 2**32, size=(count - len(near), bank.shape[1]), dtype=np.uint32)
    return np.concatenate([near, far])


# Measurement.


def latencies(search: Callable[[np.ndarray], Any], queries: np.ndarray) -> tuple[float, float, list[Any]]:
    """p50 and p99 in milliseconds, and the results."""
    for query in queries[:5]:
        search(query)  # warm caches and lazily built probe tables
    times, results = [], []
    for query in queries:
        start = time.perf_counter_ns()
        results.append(search(query))
        times.append(time.perf_counter_ns() - start)
    p50, p99 = np.percentile(times, [50, 99]) / 1e6
    return float(p50), float(p99), results


def measure(
    name: str,
    n: int,
    build: Callable[[], Any],
    search: Callable[[Any, np.ndarray], Any],
    queries: np.ndarray,
    nbytes: Callable[[Any], int] | None = None,
) -> tuple[Row, list[Any]]:
    gc.collect()
    before = rss()
    start = time.perf_counter()
    index = build()
    build_s = time.perf_counter() - start
    gc.collect()
    rss_delta = rss() - before
    p50, p99, results = latencies(functools.partial(search, index), queries)
    row: Row = {
        "index": name,
        "n": n,
        "build_s": round(build_s, 2),
        "p50_ms": round(p50, 4),
        "p99_ms": round(p99, 4),
        "bytes_per_entry": round(nbytes(index) / n, 1) if nbytes else None,
        "rss_bytes_per_entry": round(rss_delta / n, 1),
    }
    del index
    gc.collect()
    return row, results


def bench_hamming(n: int, bits: int, radius: int, queries_count: int, rng: np.random.Generator) -> list[Row]:
    words = bits // 64
    label = f"{bits}-bit r={radius}"
    bank = clustered_hashes(rng, n, words, max_flips=radius // 2 + 1)
    queries = hash_queries(rng, bank, queries_count, radius)
    ids = np.arange(n, dtype=np.int64)
    rows: list[Row] = []

    def build_ours() -> MIHIndex:
        index = MIHIndex(bits // 8, design_radius=radius)
        index.add_many(ids, ids, bank)
        return index

    def search_ours(index: MIHIndex, q: np.ndarray) -> set[int]:
        return {hit.row_id for hit in index.search(q.tobytes(), radius)}

    row, ours = measure(f"hashshare MIH {label}", n, build_ours, search_ours, queries, lambda i: i.nbytes())
    rows.append(row)

    def search_numpy(index: np.ndarray, q: np.ndarray) -> set[int]:
        distances = np.bitwise_count(index ^ q).sum(axis=1, dtype=np.int32)
        return set(np.flatnonzero(distances <= radius).tolist())

    row, reference = measure(f"numpy scan {label}", n, lambda: bank, search_numpy, queries, lambda b: b.nbytes)
    rows.append(row)
    if ours != reference:
        raise AssertionError(f"{label}: MIH results differ from the numpy scan")

    faiss = optional("faiss")
    if faiss is not None:
        codes = bank.view(np.uint8)

        def build_faiss() -> Any:
            index = faiss.IndexBinaryFlat(bits)
            index.add(codes)
            return index

        def search_faiss(index: Any, q: np.ndarray) -> Any:
            return index.range_search(q.view(np.uint8)[None, :], radius + 1)  # faiss: distance < radius

        row, _ = measure(
            f"faiss IndexBinaryFlat {label}", n, build_faiss, search_faiss, queries, lambda i: i.ntotal * i.code_size
        )
        rows.append(row)
    if bits == 256 and radius == 31:
        rows.extend(bench_threatexchange(n, bank, queries))
    return rows


def bench_batch(n: int, rng: np.random.Generator, batch: int = 120, radius: int = 12, rounds: int = 30) -> list[Row]:
    """One upload's worth of 64-bit lookups (crop windows, flips) in one ``search_many`` call,
    against the same queries searched one by one; times are per batch."""
    bank = clustered_hashes(rng, n, 1, max_flips=radius // 2 + 1)
    ids = np.arange(n, dtype=np.int64)
    index = MIHIndex(8, design_radius=radius)
    index.add_many(ids, ids, bank)
    batches = [[q.tobytes() for q in hash_queries(rng, bank, batch, radius)] for _ in range(rounds)]
    rows: list[Row] = []
    many_results: list[Any] = []

    def many(values: list[bytes]) -> Any:
        return index.search_many(values, radius)

    def loop(values: list[bytes]) -> Any:
        return [index.search(v, radius) for v in values]

    for name, run in (("search_many", many), ("search-loop", loop)):
        run(batches[0])
        times, results = [], []
        for values in batches:
            start = time.perf_counter_ns()
            results.append(run(values))
            times.append(time.perf_counter_ns() - start)
        if many_results and results != many_results:
            raise AssertionError("search_many differs from searching each value")
        many_results = results
        p50, p99 = np.percentile(times, [50, 99]) / 1e6
        rows.append(
            {
                "index": f"hashshare MIH {batch}x64-bit r={radius} {name}",
                "n": n,
                "p50_ms": round(float(p50), 3),
                "p99_ms": round(float(p99), 3),
                "bytes_per_entry": round(index.nbytes() / n, 1),
            }
        )
    return rows


def bench_load(n: int, rng: np.random.Generator) -> list[Row]:
    """A server's start-up: ``SignalIndex.add_many`` over ``n`` PDQ and ``n`` pHash rows, as
    the store yields them (one IndexedSignal object each)."""
    pdq = clustered_hashes(rng, n, 4, max_flips=16)
    phash = clustered_hashes(rng, n, 1, max_flips=6)

    def rows() -> Any:
        for i, (a, b) in enumerate(zip(pdq, phash, strict=True)):
            yield IndexedSignal(2 * i, i, "image/pdq", PDQ.version, a.tobytes())
            yield IndexedSignal(2 * i + 1, i, "image/phash", PHASH.version, b.tobytes())

    # What making the rows alone costs (the store's share of a start-up), to tell it apart.
    gc.disable()
    start = time.perf_counter()
    for _ in rows():
        pass
    rows_s = time.perf_counter() - start
    gc.enable()
    gc.collect()
    before = rss()
    start = time.perf_counter()
    index = SignalIndex()
    loaded = index.add_many(rows())
    build_s = time.perf_counter() - start
    assert loaded == 2 * n and sum(index.sizes().values()) == 2 * n
    return [
        {
            "index": f"hashshare SignalIndex.add_many {n} PDQ + {n} pHash rows",
            "n": n,
            "build_s": round(build_s, 2),
            "rows_s": round(rows_s, 2),
            "rss_bytes_per_entry": round((rss() - before) / (2 * n), 1),
        }
    ]


def bench_restart(n: int, rng: np.random.Generator) -> list[Row]:
    """A restart from an index snapshot of ``n`` image entries (PDQ, pHash and dHash each):
    reading the snapshot and rebuilding the index from its arrays, which is what a server
    does before it reports SERVING (then it replays the few changes made since)."""
    import tempfile
    from pathlib import Path

    from hashshare.index import snapshot

    index = SignalIndex()
    arrays = {}
    for i, signal_type in enumerate((PDQ, PHASH, DHASH)):
        row_ids = np.arange(n, dtype=np.int64) * 3 + i + 1
        entry_ids = np.arange(n, dtype=np.int64) + 1
        values = clustered_hashes(rng, n, signal_type.size_bytes // 8, 6)
        arrays[(signal_type.name, signal_type.version, str(region_of("")))] = (row_ids, entry_ids, values)
    index.load_arrays(arrays)
    del arrays
    with tempfile.TemporaryDirectory(dir=os.environ.get("HASHSHARE_BENCH_TMP")) as scratch:
        directory = Path(scratch) / "snapshot"
        start = time.perf_counter()
        snapshot.save(index, "1", "bench", directory)
        save_s = time.perf_counter() - start
        del index
        gc.collect()
        start = time.perf_counter()
        found = snapshot.load_with_structures(directory, "bench")
        assert found is not None
        restarted = SignalIndex()
        loaded = restarted.load_arrays(found.rows, found.structures)
        ready_s = time.perf_counter() - start
    assert loaded == 3 * n
    return [
        {
            "index": f"hashshare restart from a snapshot, {n} image entries (3 hashes each)",
            "n": n,
            "build_s": round(ready_s, 2),
            "save_s": round(save_s, 2),
        }
    ]


def bench_feed(n: int, rng: np.random.Generator, batch: int = 4096, batches: int = 24) -> list[Row]:
    """The feed applying SubmitBatches' PDQ rows (``SignalIndex.apply``, ``batch`` rows each)
    to an index of ``n`` rows in one segment and ``n / 4`` less a few batches in another: the
    frozen batches merge up until the second segment is large enough to merge with the
    first. The slowest apply is the one a merge would hold up if it ran in the feed's call;
    ``settle_s``, how long the merges then take to finish in the background."""
    key = (PDQ.name, PDQ.version, str(region_of("")))
    second = max(0, n // 4 - 2 * batch)
    values = rng.integers(0, 2**64, size=(n + second + batches * batch, 4), dtype=np.uint64)
    ids = np.arange(len(values), dtype=np.int64)
    index = SignalIndex()
    index.load_arrays({key: (ids[:n], ids[:n], values[:n])})
    index.load_arrays({key: (ids[n : n + second], ids[n : n + second], values[n : n + second])})
    applies = []
    for first in range(n + second, len(values), batch):
        rows = tuple(
            IndexedSignal(i, i, PDQ.name, PDQ.version, values[i].tobytes()) for i in range(first, first + batch)
        )
        start = time.perf_counter()
        index.apply(SignalsAdded(rows))
        applies.append(time.perf_counter() - start)
    start = time.perf_counter()
    index.wait_merged()
    settle_s = time.perf_counter() - start
    assert sum(index.sizes().values()) == len(values)
    return [
        {
            "index": f"hashshare SignalIndex.apply of {batches} {batch}-row PDQ batches over {n} rows, merging",
            "n": n,
            "max_apply_ms": round(1000 * max(applies), 1),
            "median_apply_ms": round(1000 * float(np.median(applies)), 1),
            "settle_s": round(settle_s, 2),
        }
    ]


def bench_threatexchange(n: int, bank: np.ndarray, queries: np.ndarray) -> list[Row]:
    try:
        from threatexchange.signal_type.pdq.pdq_index import PDQIndex
    except ImportError:
        print("note: threatexchange is not installed; PDQIndex column skipped (pip install threatexchange)")
        return []
    # PDQ hex strings are big-endian; distances do not depend on the bit order.
    hexes = [row.tobytes().hex() for row in bank]
    query_hexes = [row.tobytes().hex() for row in queries]
    row, _ = measure(
        "threatexchange PDQIndex 256-bit r=31",
        n,
        lambda: PDQIndex([(h, i) for i, h in enumerate(hexes)]),
        lambda index, q: index.query(q),
        np.array(query_hexes, dtype=object),
    )
    return [row]


def bench_text(
    n: int,
    queries_count: int,
    rng: np.random.Generator,
    datasketch_max: int,
    datasketch_redis: str = "",
    datasketch_redis_max: int = 0,
) -> list[Row]:
    threshold = 0.3
    bank = clustered_signatures(rng, n)
    queries = signature_queries(rng, bank, queries_count)
    ids = np.arange(n, dtype=np.int64)
    rows: list[Row] = []

    def build_ours() -> MinHashLSHIndex:
        index = MinHashLSHIndex(128, min_similarity=threshold)
        index.add_many(ids, ids, compact(bank))
        return frozen(index)

    def search_ours(index: MinHashLSHIndex, q: np.ndarray) -> set[int]:
        return {hit.row_id for hit in index.search(q.astype("<u4").tobytes(), threshold)}

    row, ours = measure(
        f"hashshare LSH minhash J>={threshold}", n, build_ours, search_ours, queries, lambda i: i.nbytes()
    )
    second = build_ours()
    row["recall"] = recall(second, rng, bank)
    row["candidates"] = candidate_counts(second, queries)
    del second
    rows.append(row)
    compact_bank = compact(bank)

    def search_scan(index: np.ndarray, q: np.ndarray) -> set[int]:
        return set(scan16(index, compact(q), threshold)[0].tolist())

    row, reference = measure(
        f"numpy scan16 minhash J>={threshold}", n, lambda: compact_bank, search_scan, queries, lambda b: b.nbytes
    )
    rows.append(row)
    found = sum(len(a & b) for a, b in zip(ours, reference, strict=True))
    rows[0]["query_recall"] = round(found / max(1, sum(len(b) for b in reference)), 5)
    if any(not a <= b for a, b in zip(ours, reference, strict=True)):
        raise AssertionError("LSH returned a row the scan does not")
    rows.extend(bench_datasketch(min(n, datasketch_max), bank, queries, threshold))
    if datasketch_redis_max:
        count = min(n, datasketch_redis_max)
        rows.extend(bench_datasketch_redis(count, bank, queries, threshold, datasketch_redis))
    gc.unfreeze()
    return rows


def frozen(index: Built) -> Built:
    """``index`` after moving every object so far out of the cycle collector's passes, as
    the server does once its index is loaded: a full pass over millions of objects (as
    datasketch makes) would otherwise pause a lookup now and then."""
    gc.collect()
    gc.freeze()
    return index


def candidate_counts(index: MinHashLSHIndex, queries: np.ndarray) -> dict[str, list[int]]:
    """Rows the bands propose per query (distinct; verification reads each once): p50, p99
    and max, for the near-duplicate queries (the first half) and the unrelated ones."""
    counts = np.array([index.candidates(q.astype("<u4").tobytes())[1] for q in queries])
    half = len(queries) // 2
    return {
        kind: [int(np.percentile(part, 50)), int(np.percentile(part, 99)), int(part.max())]
        for kind, part in (("near", counts[:half]), ("unrelated", counts[half:]))
        if len(part)
    }


def recall(index: MinHashLSHIndex, rng: np.random.Generator, bank: np.ndarray) -> dict[str, float]:
    """Share of pairs at exactly similarity t (ceil(128 t) equal values) that the index finds."""
    out = {}
    for t in (0.3, 0.4, 0.5):
        equal = math.ceil(128 * t)
        targets = rng.integers(0, len(bank), size=2000)
        found = 0
        for target in targets:
            query = rng.integers(0, 2**32, size=128, dtype=np.uint32)
            same = rng.choice(128, size=equal, replace=False)
            query[same] = bank[target, same]
            found += any(h.row_id == target for h in index.search(query.tobytes(), t))
        out[str(t)] = found / len(targets)
    return out


def bench_datasketch(n: int, bank: np.ndarray, queries: np.ndarray, threshold: float) -> list[Row]:
    datasketch = optional("datasketch")
    if datasketch is None:
        return []

    def build() -> Any:
        lsh = datasketch.MinHashLSH(threshold=threshold, num_perm=128)
        with lsh.insertion_session() as session:
            for i in range(n):
                session.insert(i, datasketch.LeanMinHash(seed=1, hashvalues=bank[i], scheme="affine32"))
        return frozen(lsh)

    def search(lsh: Any, q: np.ndarray) -> Any:
        return lsh.query(
            datasketch.LeanMinHash(seed=1, hashvalues=q, scheme="affine32")
        )  # candidates only, not verified

    row, _ = measure(f"datasketch MinHashLSH J>={threshold}", n, build, search, queries)
    return [row]


def bench_datasketch_redis(n: int, bank: np.ndarray, queries: np.ndarray, threshold: float, url: str) -> list[Row]:
    """datasketch's MinHashLSH with its Redis storage (one round trip per band a query), on
    the Redis at ``url``; its bytes per signature are what Redis's used memory grew by. The
    keys go under a prefix of their own and are deleted afterwards. Skipped, with a note,
    when datasketch is missing or no Redis answers there."""
    datasketch = optional("datasketch")
    if datasketch is None:
        return []
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.RedisError as error:
        print(f"datasketch on Redis skipped: no Redis at {url} ({error})")
        return []
    basename = f"hashshare-bench-{os.getpid()}-{n}".encode()
    address = client.connection_pool.connection_kwargs
    config = {"host": address.get("host", "127.0.0.1"), "port": address.get("port", 6379), "db": address.get("db", 0)}
    used_before = int(client.info("memory")["used_memory"])

    def build() -> Any:
        lsh = datasketch.MinHashLSH(
            threshold=threshold,
            num_perm=128,
            storage_config={"type": "redis", "basename": basename, "redis": config},
        )
        with lsh.insertion_session(buffer_size=5_000) as session:
            for i in range(n):
                session.insert(i, datasketch.LeanMinHash(seed=1, hashvalues=bank[i], scheme="affine32"))
        return lsh

    def search(lsh: Any, q: np.ndarray) -> Any:
        return lsh.query(datasketch.LeanMinHash(seed=1, hashvalues=q, scheme="affine32"))

    def redis_bytes(_: Any) -> int:
        return int(client.info("memory")["used_memory"]) - used_before

    try:
        row, _ = measure(f"datasketch MinHashLSH on Redis J>={threshold}", n, build, search, queries, redis_bytes)
    finally:
        keys = list(client.scan_iter(match=basename + b"*", count=10_000))
        for start in range(0, len(keys), 10_000):
            client.delete(*keys[start : start + 10_000])
        client.close()
    return [row]


# Report.


def add_ratios(rows: list[Row]) -> None:
    """Our p99 over each baseline's, for rows of the same size and kind (the name's last two words)."""
    ours = {(r["n"], r["index"].split()[-1]): r for r in rows if r["index"].startswith("hashshare")}
    for row in rows:
        mine = ours.get((row["n"], row["index"].split()[-1]))
        if mine is not None and row is not mine and row["p99_ms"]:
            row["ours_p99_ratio"] = round(mine["p99_ms"] / row["p99_ms"], 3)


def print_table(rows: list[Row]) -> None:
    columns = [
        "index",
        "n",
        "build_s",
        "rows_s",
        "p50_ms",
        "p99_ms",
        "bytes_per_entry",
        "rss_bytes_per_entry",
        "ours_p99_ratio",
        "max_apply_ms",
        "median_apply_ms",
        "settle_s",
    ]
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        print("  ".join(str(row.get(c, "")).ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        if "recall" in row:
            print(
                f"n={row['n']}: LSH recall of pairs at similarity t: {row['recall']}; "
                f"recall of the scan's results over the queries: {row['query_recall']}; "
                f"distinct candidates per query (p50, p99, max): {row['candidates']}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100k,1M,10M", help="bank sizes, comma-separated (k, M suffixes)")
    parser.add_argument(
        "--kinds",
        default="hamming64,pdq,text,batch,load,restart",
        help="what to measure: hamming64, pdq, text, batch (search_many of 120 64-bit values), "
        "load (SignalIndex.add_many of PDQ and pHash rows), restart (from an index snapshot), "
        "feed (SignalIndex.apply of 4096-row batches that end in a large merge; not by default)",
    )
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--text-max", type=parse_size, default=parse_size("1M"), help="largest text bank")
    parser.add_argument(
        "--datasketch-max",
        type=parse_size,
        default=parse_size("200k"),
        help="largest datasketch bank (its inserts take minutes at 1M)",
    )
    parser.add_argument(
        "--datasketch-redis",
        default="redis://127.0.0.1:6379/0",
        help="Redis for datasketch's Redis storage (skipped with a note when none answers)",
    )
    parser.add_argument(
        "--datasketch-redis-max",
        type=parse_size,
        default=parse_size("20k"),
        help="largest datasketch-on-Redis bank (about 1,500 inserts a second); 0 skips it",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    kinds = set(args.kinds.split(","))
    rows: list[Row] = []
    for n in (parse_size(s) for s in args.sizes.split(",")):
        first = len(rows)
        if "hamming64" in kinds:
            rows += bench_hamming(n, 64, 10, args.queries, rng)
        if "pdq" in kinds:
            rows += bench_hamming(n, 256, 31, args.queries, rng)
        if "text" in kinds and n <= args.text_max:
            rows += bench_text(
                n, args.queries, rng, args.datasketch_max, args.datasketch_redis, args.datasketch_redis_max
            )
        if "batch" in kinds:
            rows += bench_batch(n, rng)
        if "load" in kinds:
            rows += bench_load(n, rng)
        if "restart" in kinds:
            rows += bench_restart(n, rng)
        if "feed" in kinds:
            rows += bench_feed(n, rng)
        add_ratios(rows)
        print_table(rows[first:])  # with baselines measured on fewer rows (datasketch's)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(rows, out, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
