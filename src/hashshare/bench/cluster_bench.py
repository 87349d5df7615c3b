"""Redis Cluster figures (issue 5), on loopback: a cluster of three primaries and
three replicas, and hashshare servers in their own processes.

- freshness: from an acknowledged Submit on server A to a BLOCK on server B;
- failover: SIGKILL of a primary under a stream of Submits (A) and Matches (B):
  how long Submit was unavailable, how many Matches failed, whether every
  acknowledged Submit is still there;
- restart: a server restarted against a bank of ``--entries`` signals, with
  an index snapshot and changes to replay, and without a snapshot.

    python -m hashshare.bench.cluster_bench --entries 1000000 --out var/bench/cluster.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hashshare import members
from hashshare.bench.redis_cluster import NODE_TIMEOUT_MS, Cluster, Node, cluster_ports
from hashshare.model import IndexedSignal, Role
from hashshare.store import open_store, redis_keys
from hashshare.store.redis import RedisStore
from hashshare_client import Client, Signal, signal_types

_BULK_BATCH = 20_000  # rows per pipeline while generating a large bank


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``hashshare-server serve`` in its own process."""

    def __init__(self, store: str, log: Path, *args: str) -> None:
        self.port = _free_port()
        self.target = f"127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "hashshare.cli", "serve", "--listen", self.target, "--store", store, *args]
        with open(log, "ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=out)
        self.started = time.monotonic()
        self.serving_after = _wait_serving(self.target, 120)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


def _wait_serving(target: str, timeout: float) -> float:
    started = time.monotonic()
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() - started < timeout:
            try:
                if (
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                    == health_pb2.HealthCheckResponse.SERVING
                ):
                    return time.monotonic() - started
            except grpc.RpcError:
                pass
            time.sleep(0.02)
    raise TimeoutError(f"{target} did not serve within {timeout} s")


def _exact(label: str) -> Signal:
    return Signal(signal_types.SHA256.name, signal_types.SHA256.version, hashlib.sha256(label.encode()).digest())


def _percentiles(values: list[float]) -> dict[str, float]:
    array = np.array(values) * 1000
    return {
        "n": len(values),
        "p50_ms": round(float(np.percentile(array, 50)), 1),
        "p99_ms": round(float(np.percentile(array, 99)), 1),
        "max_ms": round(float(array.max()), 1),
    }


def freshness(url: str, token: str, work: Path, count: int) -> dict[str, Any]:
    a, b = Server(url, work / "a.log"), Server(url, work / "b.log")
    delays = []
    try:
        with Client(a.target, token) as submitter, Client(b.target, token) as matcher:
            for n in range(count):
                signal_ = _exact(f"fresh {n}")
                result = submitter.submit([signal_], category="hate_speech")
                acked = time.monotonic()
                for _ in range(100_000):
                    found = matcher.match([signal_])
                    if found.verdict == "BLOCK" and found.matches[0].entry_id == result.entry_id:
                        break
                    if time.monotonic() - acked > 10:
                        raise AssertionError(f"submission {n} never matched on the other server")
                delays.append(time.monotonic() - acked)
    finally:
        a.stop()
        b.stop()
    return _percentiles(delays)


def failover(cluster: Cluster, url: str, token: str, work: Path, seconds_after: float) -> dict[str, Any]:
    a, b = Server(url, work / "fa.log"), Server(url, work / "fb.log")
    with Client(a.target, token) as client:
        lookup = _exact("failover target")
        entry = client.submit([lookup], category="hate_speech").entry_id
    victim = cluster.primary_for(redis_keys.entry(int(entry.split("_")[1])))
    acked: list[tuple[float, Signal, Any]] = []
    refused: list[float] = []
    matches: list[tuple[float, bool]] = []
    match_errors: list[str] = []
    slowest = [0.0]
    stop = threading.Event()

    def submits() -> None:
        with Client(a.target, token, timeout=15) as client:
            for n in range(1_000_000):
                if stop.is_set():
                    return
                signal_ = _exact(f"stream {n}")
                started = time.monotonic()
                try:
                    result = client.submit([signal_], category="hate_speech", request_id=f"stream-{n}")
                except Exception:
                    refused.append(time.monotonic())
                    continue
                acked.append((time.monotonic(), signal_, result))
                slowest[0] = max(slowest[0], time.monotonic() - started)

    def lookups() -> None:
        with Client(b.target, token, timeout=2) as client:
            while not stop.is_set():
                try:
                    ok = client.match([lookup]).verdict == "BLOCK"
                except Exception as error:
                    ok = False
                    match_errors.append(f"{time.monotonic() - killed_at[0]:.2f} s after the kill: {error}")
                matches.append((time.monotonic(), ok))

    threads = [threading.Thread(target=submits), threading.Thread(target=lookups)]
    for thread in threads:
        thread.start()
    killed_at = [time.monotonic() + 2]
    time.sleep(2)
    killed_at[0] = time.monotonic()
    victim.kill()
    time.sleep(seconds_after)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    victim.start()
    cluster.wait_healthy()
    lost = 0
    with Client(b.target, token) as client:
        for _, _, result in acked:
            found = client.get_entry(result.entry_id)
            lost += result.submission_id not in {s.submission_id for s in found.submissions}
    a.stop()
    b.stop()
    failed = [t for t, ok in matches if not ok]
    start = killed_at[0]
    window = [ok for t, ok in matches if start <= t <= start + NODE_TIMEOUT_MS / 1000 + 2]
    return {
        "node_timeout_ms": NODE_TIMEOUT_MS,
        "submit_unavailable_s": round(max(max(refused, default=start) - start, slowest[0]), 2),
        "submits_refused": len(refused),
        "submits_acknowledged": len(acked),
        "acknowledged_lost": lost,
        "matches": len(matches),
        "matches_during_failover": len(window),
        "matches_failed": len(failed),
        "match_errors": match_errors[:5],
    }


def _bulk_bank(store: RedisStore, client: Any, entries: int) -> None:
    """``entries`` entries of one PDQ signal each, written straight into the key layout
    (the slot hashes a load reads, and each entry's summary): generating a bank of a
    million through Submit would take hours here."""
    rng = np.random.default_rng(5)
    member = store.create_member("bulk", frozenset({Role.TRUST_SAFETY}), time.time()).member_id
    for first in range(1, entries + 1, _BULK_BATCH):
        last = min(first + _BULK_BATCH, entries + 1)
        values = rng.integers(0, 256, size=(last - first, 32), dtype=np.uint8)
        by_slot: dict[int, dict[int, str]] = {}
        with client.pipeline(transaction=False) as pipe:
            for n, entry_id in enumerate(range(first, last)):
                row = IndexedSignal(
                    entry_id, entry_id, signal_types.PDQ.name, signal_types.PDQ.version, values[n].tobytes()
                )
                record = json.dumps([row.entry_id, row.type, row.version, row.value.hex(), row.variant])
                by_slot.setdefault(redis_keys.slot_of(redis_keys.entry(entry_id)), {})[entry_id] = record
                pipe.hset(redis_keys.entry(entry_id), mapping={"category": "hate_speech", "created_at": "0.0"})
                pipe.hset(redis_keys.entry_active(entry_id), member, "[]")
            for slot, rows in by_slot.items():
                pipe.hset(redis_keys.slot_active_signals(slot), mapping=rows)
            pipe.execute()
    for key in (redis_keys.NEXT_ENTRY, redis_keys.NEXT_SUBMISSION, redis_keys.NEXT_SIGNAL):
        client.set(key, entries)


def restart(url: str, token: str, work: Path, entries: int, replay: int) -> dict[str, Any]:
    store = open_store(url)
    assert isinstance(store, RedisStore)
    started = time.monotonic()
    _bulk_bank(store, store._redis, entries)
    generated = time.monotonic() - started
    snapshot = work / "snapshot"
    flags = ("--snapshot-dir", str(snapshot), "--snapshot-seconds", "0")
    first = Server(url, work / "r1.log", *flags)  # a full load from the store, then a snapshot at stop
    full_load = first.serving_after
    first.stop()
    with Client(_start_writer(url, work).target, token) as client:
        for n in range(replay):
            client.submit([_exact(f"while down {n}")], category="hate_speech")
    second = Server(url, work / "r2.log", *flags)
    from_snapshot = second.serving_after
    with Client(second.target, token) as client:
        missing = sum(client.match([_exact(f"while down {n}")]).verdict != "BLOCK" for n in range(replay))
    second.stop()
    store.close()
    return {
        "entries": entries,
        "generate_s": round(generated, 1),
        "serving_after_full_load_s": round(full_load, 2),
        "serving_after_snapshot_and_replay_s": round(from_snapshot, 2),
        "replayed_submits": replay,
        "replayed_missing": missing,
    }


_writers: list[Server] = []


def _start_writer(url: str, work: Path) -> Server:
    writer = Server(url, work / "w.log")
    _writers.append(writer)
    return writer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000, help="bank size for the restart figure")
    parser.add_argument("--fresh", type=int, default=300, help="submissions timed for freshness")
    parser.add_argument("--replay", type=int, default=200, help="submissions made while the server is down")
    parser.add_argument("--out", type=Path, default=None, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        parser.error("redis-server and redis-cli are needed")
    work = Path(tempfile.mkdtemp(prefix="hashshare-cluster-bench-"))
    cluster = Cluster([Node(port, work / str(port), server) for port in cluster_ports(6)], cli)
    figures: dict[str, Any] = {"cpus": os.cpu_count()}
    try:
        cluster.create()
        url = cluster.url
        setup = open_store(url)
        token = members.create_member(setup, "bench", ["trust_safety", "platform"], time.time())[2]
        setup.close()
        figures["freshness"] = freshness(url, token, work, args.fresh)
        print("freshness", figures["freshness"], flush=True)
        figures["failover"] = failover(cluster, url, token, work, seconds_after=6)
        print("failover", figures["failover"], flush=True)
        figures["restart"] = restart(url, token, work, args.entries, args.replay)
        print("restart", figures["restart"], flush=True)
    finally:
        for writer in _writers:
            writer.stop()
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=1) + "\n")
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
