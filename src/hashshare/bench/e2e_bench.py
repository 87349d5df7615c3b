"""End-to-end benchmark: a real server on loopback over a synthetic bank.

    python -m hashshare.bench.e2e_bench --sizes 100k,1M --json var/bench/e2e.json

For each size it builds a bank of N image entries (PDQ, pHash, dHash each, as
the issue's "1M images (3 signals each)") and N text entries (MinHash) in a
fresh SQLite store through the import path, starts `hashshare-server serve`
on it, and measures: import rate, time until the server reports SERVING,
the server's memory, Match latency for one client (half near-duplicates of
stored entries, half unrelated uploads), MatchStream throughput with four
client processes (and with nghttp2's h2load when it is installed), the same with
64 items a message (MatchBatchStream), and batched-submit ingest over gRPC
(SubmitBatch calls of 1,000 new images from one client, the server's submission
quota off).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hashshare import members
from hashshare.bankfile import import_signals
from hashshare.bench.index_bench import clustered_hashes, clustered_signatures, flip_bits, parse_size
from hashshare.model import TrustLevel
from hashshare.store import open_store
from hashshare_client import Client, ItemError, Removal, Signal, protocol, signal_types
from hashshare_client.pb.hashshare.v1 import match_pb2

IMAGE_TYPES = (signal_types.PDQ, signal_types.PHASH, signal_types.DHASH)
QUERIES = 2_000
STREAM_SECONDS = 10.0
STREAM_METHOD = "/hashshare.v1.MatchService/MatchStream"
BATCH_STREAM_METHOD = "/hashshare.v1.MatchService/MatchBatchStream"
STREAM_PER_MESSAGE = 64  # items a MatchBatchStream message
H2LOAD_ITEMS = 250  # items per stream h2load sends; a stream cut off by the deadline counts for nothing
SUBMIT_BATCH = 1_000
SUBMIT_BATCHES = 20  # at most; fewer when SUBMIT_SECONDS run out
SUBMIT_SECONDS = 10.0


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class SyntheticBank:
    """Clustered image hashes and text signatures, and lookups near them."""

    def __init__(self, size: int, seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        self.rng = rng
        self.size = size
        self.images = {t.name: clustered_hashes(rng, size, t.size_bytes // 8, 6) for t in IMAGE_TYPES}
        self.texts = clustered_signatures(rng, size)

    def image_signals(self, index: int) -> list[Signal]:
        return [Signal(t.name, t.version, self.images[t.name][index].tobytes(), 90) for t in IMAGE_TYPES]

    def text_signals(self, index: int) -> list[Signal]:
        value = self.texts[index].astype("<u4").tobytes()
        return [Signal(signal_types.MINHASH.name, signal_types.MINHASH.version, value, 100)]

    def lookups(self, count: int) -> list[list[Signal]]:
        """Half near duplicates of stored entries, half unrelated; images and texts alternate."""
        out = []
        for i in range(count):
            near = i % 4 < 2
            index = int(self.rng.integers(self.size))
            if i % 2 == 0:
                signals = self.image_signals(index)
                if not near:
                    signals = [Signal(s.type, s.version, self.rng.bytes(len(s.value)), 90) for s in signals]
                else:
                    signals = [_nudged(self.rng, s, 4) for s in signals]
            else:
                signals = self.text_signals(index)
                if not near:
                    random = self.rng.integers(0, 2**32, 128, dtype=np.uint64).astype("<u4").tobytes()
                    signals = [Signal(signals[0].type, signals[0].version, random, 100)]
            out.append(signals)
        return out


def _nudged(rng: np.random.Generator, signal: Signal, flips: int) -> Signal:
    values = np.frombuffer(signal.value, dtype=np.uint64).copy()[None, :]
    flip_bits(rng, values, flips)
    return Signal(signal.type, signal.version, values.tobytes(), signal.quality)


def wait_serving(target: str, timeout: float) -> float:
    started = time.monotonic()
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() - started < timeout:
            try:
                response = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return time.monotonic() - started
            except grpc.RpcError:
                pass
            time.sleep(0.05)
    raise TimeoutError(f"{target} not serving after {timeout}s")


def server_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def match_latency(
    target: str, token: str, lookups: list[list[Signal]], warmup: list[list[Signal]] | None = None
) -> dict[str, float]:
    """Match p50 and p99 over ``lookups``, one at a time, after ``warmup`` (other lookups of the
    same kinds): a server's first few thousand lookups after it starts are slower (p50 0.07-0.14
    ms more at 1M+1M, alternated twice), and an upload path runs for days."""
    with Client(target, token) as client:
        for signals in warmup if warmup is not None else lookups[:100]:
            client.match(signals)
        times = []
        for signals in lookups:
            started = time.perf_counter()
            client.match(signals)
            times.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": percentile(times, 0.5), "p99_ms": percentile(times, 0.99)}


def _stream_worker(
    target: str, token: str, lookups: list[list[Signal]], seconds: float, per_message: int, out: Any
) -> None:
    done = 0
    deadline = time.monotonic() + seconds
    with Client(target, token) as client:
        while time.monotonic() < deadline:
            items = ((str(i), s) for i, s in enumerate(lookups))
            for _ in client.match_stream(items, per_message=per_message):
                done += 1
    out.put(done)


STREAM_CONNECTIONS = 4  # connections (client processes, or h2load's) at once


def stream_throughput(
    target: str, token: str, lookups: list[list[Signal]], clients: int = STREAM_CONNECTIONS, per_message: int = 1
) -> float:
    """Items per second through MatchStream (MatchBatchStream with ``per_message`` > 1),
    several client processes at once (each one connection: with two workers, the kernel
    spreads connections, not streams)."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [
        context.Process(target=_stream_worker, args=(target, token, lookups, STREAM_SECONDS, per_message, results))
        for _ in range(clients)
    ]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    total = sum(int(results.get(timeout=STREAM_SECONDS * 10)) for _ in workers)
    for worker in workers:
        worker.join(timeout=30)
    return total / (time.monotonic() - started)


def stream_throughput_h2load(
    target: str, token: str, lookups: list[list[Signal]], pid: int, per_message: int = 1
) -> dict[str, float]:
    """Items per second through MatchStream driven by nghttp2's h2load (C), STREAM_CONNECTIONS
    connections each with one stream at a time, and the server's CPU per item: the server's capacity
    without the Python clients' own cost on the same two cores. Each stream is one request
    body of ``H2LOAD_ITEMS`` length-prefixed MatchRequests, answered item by item; with
    ``per_message`` > 1, of MatchBatchStream messages of that many items each."""
    requests = [protocol.match_request(signals, item_id=str(i)) for i, signals in enumerate(lookups[:H2LOAD_ITEMS])]
    if per_message == 1:
        messages = [request.SerializeToString() for request in requests]
    else:
        messages = [
            match_pb2.MatchBatchRequest(items=requests[i : i + per_message]).SerializeToString()
            for i in range(0, len(requests), per_message)
        ]
    method = STREAM_METHOD if per_message == 1 else BATCH_STREAM_METHOD
    body = b"".join(b"\0" + len(m).to_bytes(4, "big") + m for m in messages)
    with tempfile.NamedTemporaryFile(suffix=".grpc") as request:
        request.write(body)
        request.flush()
        before = server_cpu_seconds(pid)
        command = ["h2load", "--clients", str(STREAM_CONNECTIONS), "--threads", "1", "--max-concurrent-streams", "1",
                   "--warm-up-time", "1s", "--duration", f"{STREAM_SECONDS:.0f}s", "--data", request.name,
                   "--header", "content-type: application/grpc", "--header", "te: trailers",
                   "--header", f"authorization: Bearer {token}", f"http://{target}{method}"]  # fmt: skip
        output = subprocess.run(command, capture_output=True, text=True, timeout=STREAM_SECONDS * 10).stdout
        cpu = server_cpu_seconds(pid) - before
    found = re.search(r"(\d+) succeeded, (\d+) failed", output)
    if found is None:
        raise RuntimeError(f"h2load printed no result: {output[-2000:]}")
    streams, failed = int(found.group(1)), int(found.group(2))
    if failed:
        raise RuntimeError(f"{failed} MatchStream calls failed under h2load: {output[-2000:]}")
    items = streams * len(requests)
    # The server's CPU includes h2load's warm-up second: scale it to the measured window.
    return {
        "items_per_s": items / STREAM_SECONDS,
        "server_cpu_ms_per_item": 1000 * cpu * STREAM_SECONDS / (STREAM_SECONDS + 1) / max(items, 1),
    }


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU of a server process and its workers."""
    total = 0.0
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    for process in [pid, *map(int, children)]:
        with contextlib.suppress(FileNotFoundError):
            fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def batched_submit(target: str, token: str, rng: np.random.Generator, batch_size: int = SUBMIT_BATCH) -> float:
    """Submissions per second through SubmitBatch from one client: new images (three
    signals each, unrelated to the bank, so each is clustered and makes a new entry)."""
    batches = [
        [
            Removal([Signal(t.name, t.version, rng.bytes(t.size_bytes), 90) for t in IMAGE_TYPES], "hate_speech")
            for _ in range(batch_size)
        ]
        for _ in range(SUBMIT_BATCHES)
    ]
    stored = 0
    with Client(target, token) as client:
        client.submit_many(batches.pop()[:10])  # connected and warm
        started = time.monotonic()
        for batch in batches:
            results = client.submit_many(batch, batch_size=batch_size)
            refused = [r for r in results if isinstance(r, ItemError)]
            if refused:
                raise RuntimeError(f"SubmitBatch refused {len(refused)} items, the first: {refused[0]}")
            stored += len(results)
            if time.monotonic() - started > SUBMIT_SECONDS:
                break
        return stored / (time.monotonic() - started)


def run_size(size: int, workdir: Path) -> dict[str, Any]:
    store_url = f"sqlite:///{workdir / f'bank-{size}.db'}"
    bank = SyntheticBank(size)
    store = open_store(store_url)
    try:
        _, _, token = members.create_member(
            store, "bench", ["trust_safety", "platform"], time.time(), TrustLevel.TRUSTED
        )
        import_seconds = load_bank(store, bank)
    finally:
        store.close()
    lookups = bank.lookups(QUERIES)
    warmup = bank.lookups(QUERIES)  # drawn after ``lookups``, which stay those of earlier runs
    with serving(store_url) as (process, target, ready):
        row: dict[str, Any] = {
            "entries": 2 * size,
            "import_entries_per_s": 2 * size / import_seconds,
            "ready_after_start_s": ready,
            "server_rss_mb": server_rss(process.pid) / 1e6,
            "match": match_latency(target, token, lookups, warmup),
            "stream_items_per_s": stream_throughput(target, token, lookups),
            "batch_stream_items_per_s": stream_throughput(target, token, lookups, per_message=STREAM_PER_MESSAGE),
        }
        if shutil.which("h2load"):
            row["stream_h2load"] = stream_throughput_h2load(target, token, lookups, process.pid)
            row["batch_stream_h2load"] = stream_throughput_h2load(
                target, token, lookups, process.pid, STREAM_PER_MESSAGE
            )
        # Last: it adds entries to the bank.
        row["submit_batch_per_s"] = batched_submit(target, token, bank.rng)
    # The first server wrote an index snapshot at shutdown: the workers start from it.
    with serving(store_url, workers=2) as (process, target, ready):
        row["ready_from_snapshot_s"] = ready
        row["stream_items_per_s_2_workers"] = stream_throughput(target, token, lookups)
        row["batch_stream_items_per_s_2_workers"] = stream_throughput(
            target, token, lookups, per_message=STREAM_PER_MESSAGE
        )
        if shutil.which("h2load"):
            row["stream_h2load_2_workers"] = stream_throughput_h2load(target, token, lookups, process.pid)
            row["batch_stream_h2load_2_workers"] = stream_throughput_h2load(
                target, token, lookups, process.pid, STREAM_PER_MESSAGE
            )
    return row


@contextlib.contextmanager
def serving(store_url: str, workers: int = 1) -> Iterator[tuple[subprocess.Popen[bytes], str, float]]:
    """A `hashshare-server serve` process on a free port, SERVING; stopped afterwards."""
    target = f"127.0.0.1:{free_port()}"
    command = [sys.executable, "-m", "hashshare.cli", "serve", "--listen", target, "--store", store_url]
    command += ["--workers", str(workers), "--submit-rate-limit", "0"]  # ingest is measured, not refused
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield process, target, wait_serving(target, timeout=600)
    finally:
        process.terminate()
        process.wait(timeout=120)


def load_bank(store: Any, bank: SyntheticBank) -> float:
    """Write the bank through the import path; seconds taken by the import (the
    synthetic signals are made before the clock starts)."""
    items = [bank.image_signals(i) for i in range(bank.size)] + [bank.text_signals(i) for i in range(bank.size)]
    started = time.monotonic()
    import_signals(store, member_name="bench", items=items, category="hate_speech")
    return time.monotonic() - started


def print_row(row: dict[str, Any]) -> None:
    print(
        f"e2e {row['entries']:>9,} entries | import {row['import_entries_per_s']:>8,.0f}/s | SubmitBatch "
        f"{row['submit_batch_per_s']:>6,.0f}/s | ready "
        f"{row['ready_after_start_s']:5.1f} s | RSS {row['server_rss_mb']:7.0f} MB | Match p50 "
        f"{row['match']['p50_ms']:.2f} ms p99 {row['match']['p99_ms']:.2f} ms | MatchStream "
        f"{row['stream_items_per_s']:,.0f} items/s ({row['stream_items_per_s_2_workers']:,.0f} with 2 workers, "
        f"ready from a snapshot in {row['ready_from_snapshot_s']:.1f} s)",
        flush=True,
    )
    print(
        f"    MatchBatchStream ({STREAM_PER_MESSAGE} items a message): {row['batch_stream_items_per_s']:,.0f} "
        f"items/s ({row['batch_stream_items_per_s_2_workers']:,.0f} with 2 workers)",
        flush=True,
    )
    for key, label in (
        ("stream_h2load", "MatchStream, 1 worker"),
        ("stream_h2load_2_workers", "MatchStream, 2 workers"),
        ("batch_stream_h2load", "MatchBatchStream, 1 worker"),
        ("batch_stream_h2load_2_workers", "MatchBatchStream, 2 workers"),
    ):
        if key in row:
            print(
                f"    {label} driven by h2load: {row[key]['items_per_s']:,.0f} items/s, "
                f"server CPU {row[key]['server_cpu_ms_per_item']:.3f} ms an item",
                flush=True,
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100k,1M", help="image entries (and as many texts) per bank")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for size in (parse_size(s) for s in args.sizes.split(",")):
            row = run_size(size, Path(scratch))
            results.append(row)
            print_row(row)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
