"""Match throughput of `serve --workers 2` against `--workers 1`, in the same run.

    python -m hashshare.bench.workers_bench --size 20k --seconds 6 --rounds 2 --json var/bench/workers.json

It builds one synthetic bank (e2e_bench's clustered image and text hashes,
through the import path), then alternates servers with 1 and 2 workers on it
(1, 2, 1, 2, ...: both see the same machine load) and drives each with the
same closed-loop load on loopback, for each kind of lookup (``mixed``:
e2e_bench's image and text lookups; ``exact``: one SHA-256, the cheapest
Match) and each load generator:

- ``python``: client processes of grpcio (its C core, Python threads), with
  requests serialised once before the run and responses left unparsed;
- ``h2load`` (nghttp2's C load generator, `apt-get install nghttp2-client`),
  used when it is installed: on 2 cores the client competes with the server
  for the CPU, and a Python client costs about half a Match's server time.

For each run it reads the CPU time of the server's processes (/proc), of the
client processes, and of the whole machine (others' work shows there), so
each ratio can be judged against where the cores went.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc

from hashshare import members
from hashshare.bench.e2e_bench import SyntheticBank, free_port, load_bank, wait_serving
from hashshare.bench.index_bench import parse_size
from hashshare.store import open_store
from hashshare_client import Signal, protocol, signal_types

MATCH_METHOD = "/hashshare.v1.MatchService/Match"
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Run:
    kind: str
    client: str
    workers: int
    calls_per_s: float
    server_cpu_s_per_call_ms: float  # server CPU milliseconds per Match
    server_cores: float  # server CPU seconds per wall second
    server_cores_per_worker: list[float]
    client_cores: float
    machine_cores: float  # every process on the machine, others' included
    others_cores: float  # what neither the server nor the clients used: other work on the machine
    errors: int


def process_cpu_seconds(pid: int) -> float:
    """User and system CPU time of one process (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def machine_busy_seconds() -> float:
    """CPU seconds every core spent not idle since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle and iowait
    return (sum(values[:8]) - idle) / _TICKS


def server_processes(pid: int) -> list[int]:
    """The serving processes: the workers, or the process itself when it has none."""
    children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return children or [pid]


def _client(
    target: str, token: str, requests: list[bytes], connections: int, threads: int, start_at: float, stop_at: float
) -> dict[str, Any]:
    """One load-generating process: ``threads`` closed loops over ``connections`` connections."""
    # A local subchannel pool gives each channel its own TCP connection, which
    # the kernel hands to one of the workers (SO_REUSEPORT balances connections).
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.insecure_channel(target, options=options) for _ in range(connections)]
    calls = [channel.unary_unary(MATCH_METHOD) for channel in channels]  # bytes in, bytes out
    metadata = (("authorization", f"Bearer {token}"),)
    for call in calls:
        call(requests[0], metadata=metadata, timeout=30)
    done = [0] * threads
    errors = [0] * threads

    def loop(number: int) -> None:
        call = calls[number % len(calls)]
        position = number
        while time.monotonic() < stop_at:
            try:
                call(requests[position % len(requests)], metadata=metadata, timeout=30)
                done[number] += 1
            except grpc.RpcError:
                errors[number] += 1
            position += threads

    time.sleep(max(0.0, start_at - time.monotonic()))
    cpu_before = sum(os.times()[:2])
    workers = [threading.Thread(target=loop, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=stop_at - time.monotonic() + 60)
    cpu = sum(os.times()[:2]) - cpu_before
    for channel in channels:
        channel.close()
    return {"calls": sum(done), "errors": sum(errors), "cpu_s": cpu}


def _client_process(queue: Any, *args: Any) -> None:
    queue.put(_client(*args))


class PythonLoad:
    """Client processes of grpcio (C core, Python threads): the SDK's own stack, minus protobuf."""

    name = "python"

    def __init__(self, args: argparse.Namespace) -> None:
        self._args = args
        self._context = multiprocessing.get_context("spawn")  # never fork a process that holds gRPC objects
        self._queue: Any = None
        self._processes: list[Any] = []

    def start(self, target: str, token: str, requests: list[bytes], start_at: float, stop_at: float) -> None:
        self._queue = self._context.Queue()
        args = self._args
        self._processes = [
            self._context.Process(
                target=_client_process,
                args=(self._queue, target, token, requests, args.connections, args.threads, start_at, stop_at),
            )
            for _ in range(args.processes)
        ]
        for process in self._processes:
            process.start()

    def results(self, timeout: float) -> dict[str, Any]:
        results = [self._queue.get(timeout=timeout) for _ in self._processes]
        for process in self._processes:
            process.join(timeout=30)
        return {
            "calls": sum(r["calls"] for r in results),
            "errors": sum(r["errors"] for r in results),
            "client_cpu_s": sum(r["cpu_s"] for r in results),
        }


class H2Load:
    """nghttp2's h2load, a C HTTP/2 load generator, speaking gRPC's wire format.

    One process per distinct request (h2load sends one body), ``--connections``
    connections each with one call in flight. h2load sees HTTP statuses, not
    gRPC ones: every request is first checked with grpcio, and an answer
    without a message (an error's trailers-only response) is counted as an error."""

    name = "h2load"
    _REQUESTS = 4  # e2e_bench's mix: near image, near text, unrelated image, unrelated text

    def __init__(self, args: argparse.Namespace) -> None:
        self._args = args
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self._processes: list[subprocess.Popen[str]] = []
        self._seconds = self._warm_up = self._cpu_before = 0.0

    def start(self, target: str, token: str, requests: list[bytes], start_at: float, stop_at: float) -> None:
        metadata = (("authorization", f"Bearer {token}"),)
        with grpc.insecure_channel(target) as channel:
            for request in requests[: self._REQUESTS]:
                channel.unary_unary(MATCH_METHOD)(request, metadata=metadata, timeout=30)
        warm_up = self._warm_up = max(0.5, start_at - time.monotonic())
        self._seconds = stop_at - start_at
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        self._cpu_before = usage.ru_utime + usage.ru_stime
        self._processes = []
        self._scratch = tempfile.TemporaryDirectory()
        for number, request in enumerate(requests[: self._REQUESTS]):
            body = Path(self._scratch.name) / f"request-{number}"
            body.write_bytes(b"\0" + len(request).to_bytes(4, "big") + request)  # gRPC's length-prefixed message
            command = ["h2load", "--clients", str(self._args.connections), "--threads", "1",
                       "--max-concurrent-streams", "1", "--warm-up-time", f"{warm_up * 1000:.0f}ms",
                       "--duration", f"{self._seconds * 1000:.0f}ms", "--data", str(body),
                       "--header", "content-type: application/grpc", "--header", "te: trailers",
                       "--header", f"authorization: Bearer {token}", f"http://{target}{MATCH_METHOD}"]  # fmt: skip
            self._processes.append(
                subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            )

    def results(self, timeout: float) -> dict[str, Any]:
        calls = errors = 0
        for process in self._processes:
            output, _ = process.communicate(timeout=timeout)
            succeeded, failed, data = (
                int(_find(pattern, output)) for pattern in (r"(\d+) succeeded", r"(\d+) failed", r"\((\d+)\) data")
            )
            calls += succeeded
            # Every successful answer carries a message of at least its 5-byte prefix.
            errors += failed + max(0, succeeded - data // 5)
        if self._scratch is not None:
            self._scratch.cleanup()
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = usage.ru_utime + usage.ru_stime - self._cpu_before
        # h2load's CPU includes its warm-up: scale it to the measured window.
        return {"calls": calls, "errors": errors, "client_cpu_s": cpu * self._seconds / (self._seconds + self._warm_up)}


def _find(pattern: str, text: str) -> str:
    found = re.search(pattern, text)
    if found is None:
        raise RuntimeError(f"h2load printed no {pattern!r}: {text[-2000:]}")
    return found.group(1)


LOADS = {"python": PythonLoad, "h2load": H2Load}


def measure(target: str, pid: int, token: str, requests: list[bytes], load: Any, seconds: float) -> dict[str, Any]:
    """Drive a serving server for ``seconds``; calls, errors, and the CPU each side used."""
    # Clients start together, once all have connected and warmed up (spawning takes a second or two).
    start_at = time.monotonic() + 3.0
    stop_at = start_at + seconds
    load.start(target, token, requests, start_at, stop_at)
    serving = server_processes(pid)
    time.sleep(max(0.0, start_at - time.monotonic()))
    server_before = [process_cpu_seconds(p) for p in serving]
    machine_before = machine_busy_seconds()
    time.sleep(max(0.0, stop_at - time.monotonic()))
    server_after = [process_cpu_seconds(p) for p in serving]
    machine_after = machine_busy_seconds()
    return {
        **load.results(timeout=seconds + 120),
        "server_cpu_s": [after - before for before, after in zip(server_before, server_after, strict=True)],
        "machine_cpu_s": machine_after - machine_before,
    }


def run_once(
    store_url: str, workers: int, token: str, requests: list[bytes], load: Any, kind: str, args: argparse.Namespace
) -> Run:
    target = f"127.0.0.1:{free_port()}"
    command = [sys.executable, "-m", "hashshare.cli", "serve", "--listen", target, "--store", store_url,
               "--workers", str(workers), "--threads", str(args.server_threads)]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        # `serve` prints its line once every worker serves (health answers as soon as one does).
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line.startswith("hashshare serving"):
            raise RuntimeError(f"the server did not start: {line!r}")
        wait_serving(target, timeout=60)
        raw = measure(target, server.pid, token, requests, load, args.seconds)
    finally:
        server.terminate()
        server.wait(timeout=60)
        if server.stdout is not None:
            server.stdout.close()
    seconds = args.seconds
    server_cpu = sum(raw["server_cpu_s"])
    return Run(
        kind=kind,
        workers=workers,
        calls_per_s=raw["calls"] / seconds,
        server_cpu_s_per_call_ms=1000 * server_cpu / max(1, raw["calls"]),
        server_cores=server_cpu / seconds,
        server_cores_per_worker=[cpu / seconds for cpu in raw["server_cpu_s"]],
        client_cores=raw["client_cpu_s"] / seconds,
        client=load.name,
        machine_cores=raw["machine_cpu_s"] / seconds,
        others_cores=(raw["machine_cpu_s"] - server_cpu - raw["client_cpu_s"]) / seconds,
        errors=raw["errors"],
    )


def build_bank(store_url: str, size: int) -> tuple[str, SyntheticBank]:
    """A synthetic bank written through the import path, and a platform's token."""
    bank = SyntheticBank(size)
    store = open_store(store_url)
    try:
        _, _, token = members.create_member(store, "bench", ["platform"], time.time())
        load_bank(store, bank)
    finally:
        store.close()
    return token, bank


def match_requests(bank: SyntheticBank, kind: str, count: int) -> list[bytes]:
    """Serialised MatchRequests: ``mixed`` (e2e_bench's lookups, 3 image signals or a text,
    half near duplicates of stored entries, half unrelated) or ``exact`` (one SHA-256 that
    matches nothing: the cheapest Match, mostly gRPC's own cost)."""
    if kind == "exact":
        sha256 = signal_types.SHA256
        batches = [[Signal(sha256.name, sha256.version, bank.rng.bytes(32))] for _ in range(count)]
    else:
        batches = bank.lookups(count)
    return [protocol.match_request(signals).SerializeToString() for signals in batches]


def print_run(run: Run) -> None:
    per_worker = ", ".join(f"{c:.2f}" for c in run.server_cores_per_worker)
    print(
        f"{run.kind} {run.client} workers {run.workers} | {run.calls_per_s:8,.0f} Match/s | "
        f"server {run.server_cores:.2f} cores "
        f"({per_worker}), {run.server_cpu_s_per_call_ms:.3f} ms CPU per call | clients {run.client_cores:.2f} "
        f"cores | machine {run.machine_cores:.2f} cores (others {run.others_cores:.2f}) | errors {run.errors}",
        flush=True,
    )


def summary(runs: list[Run]) -> dict[str, Any]:
    by_workers: dict[int, list[Run]] = {}
    for run in runs:
        by_workers.setdefault(run.workers, []).append(run)
    medians = {w: statistics.median(r.calls_per_s for r in rs) for w, rs in by_workers.items()}
    one, many = min(medians), max(medians)
    return {
        "kind": runs[0].kind,
        "client": runs[0].client,
        "median_calls_per_s": {str(w): m for w, m in medians.items()},
        "ratio": medians[many] / medians[one],
        "runs": [asdict(run) for run in runs],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="20k", help="image entries (and as many texts) in the bank")
    parser.add_argument("--workers", type=int, default=2, help="compared with 1 worker")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each, alternating")
    parser.add_argument("--seconds", type=float, default=6.0, help="measured seconds per run")
    parser.add_argument("--kinds", default="mixed,exact", help="what the requests look up: mixed, exact")
    parser.add_argument(
        "--clients", default="auto", help="load generators: python, h2load; auto: both if h2load is here"
    )
    parser.add_argument("--processes", type=int, default=2, help="python client processes")
    parser.add_argument("--connections", type=int, default=8, help="connections per client process")
    parser.add_argument("--threads", type=int, default=8, help="calls in flight per python client process")
    parser.add_argument("--server-threads", type=int, default=16, help="serve --threads")
    parser.add_argument("--lookups", type=int, default=2000, help="distinct requests, cycled")
    parser.add_argument("--json", type=Path, help="write the runs and the ratios here")
    args = parser.parse_args(argv)
    clients = args.clients.split(",") if args.clients != "auto" else ["python"]
    if args.clients == "auto" and shutil.which("h2load"):
        clients.append("h2load")
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        store_url = f"sqlite:///{Path(scratch) / 'bank.db'}"
        token, bank = build_bank(store_url, parse_size(args.size))
        for kind in args.kinds.split(","):
            requests = match_requests(bank, kind, args.lookups)
            for client in clients:
                load = LOADS[client](args)
                runs = []
                for _ in range(args.rounds):
                    for workers in (1, args.workers):
                        runs.append(run_once(store_url, workers, token, requests, load, kind, args))
                        print_run(runs[-1])
                results.append(summary(runs))
                print(
                    f"{kind} lookups, {client} client: {args.workers} workers against 1: "
                    f"{results[-1]['ratio']:.2f}x Match throughput",
                    flush=True,
                )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        settings = {k: str(v) for k, v in vars(args).items() if k != "json"}
        args.json.write_text(json.dumps({"settings": settings, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
