"""`serve --workers N`: N processes on one port, each current through the change feed,
on SQLite and on Redis; their shutdown, and what happens when one dies.

Which process answered is read from the ``hashshare-worker`` trailing metadata
each worker adds; every probe opens its own TCP connection (a local subchannel
pool: gRPC otherwise shares one connection between channels to the same
target), which the kernel hands to one of the workers."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from hashshare.api.workers import WORKER_METADATA_KEY
from hashshare_client import Client, Signal, protocol, signal_types
from hashshare_client.pb.hashshare.v1 import match_pb2_grpc
from tests.conftest import free_port, new_member_in, wait_serving

SIGNALS = [Signal(signal_types.SHA256.name, "1", hashlib.sha256(b"removed upload").digest())]
PROBES = 64  # fresh connections; the chance that 64 all land on one of two workers is 2**-63


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return sorted(int(child) for child in text.split())


def _wait_children(pid: int, count: int, exclude: tuple[int, ...] = (), timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = _children(pid)
        if len(children) == count and not set(children) & set(exclude):
            return children
        time.sleep(0.05)
    raise AssertionError(f"expected {count} workers (not {exclude}), found {_children(pid)}")


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie (exited, not yet reaped by its new parent) has stopped serving too.
    return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"


def _match_on_a_new_connection(target: str, token: str) -> tuple[str, list[str]]:
    """Match once over a connection of its own: (worker number, entry ids matched)."""
    options = [("grpc.use_local_subchannel_pool", 1)]
    with grpc.insecure_channel(target, options=options) as channel:
        stub = match_pb2_grpc.MatchServiceStub(channel)
        response, call = stub.Match.with_call(
            protocol.match_request(SIGNALS), metadata=[("authorization", f"Bearer {token}")], timeout=10
        )
    workers = [value for key, value in call.trailing_metadata() if key == WORKER_METADATA_KEY]
    assert len(workers) == 1, call.trailing_metadata()
    return str(workers[0]), [m.entry_id for m in response.matches]


def _answers_by_worker(target: str, token: str, entry_id: str, workers: int) -> dict[str, int]:
    """Probe new connections until every worker has answered; each must find the entry
    (within the feed's delay: a worker that does not yet have it is asked again)."""
    found: dict[str, int] = {}
    for _ in range(PROBES):
        deadline = time.monotonic() + 3
        while True:
            worker, entries = _match_on_a_new_connection(target, token)
            if entries == [entry_id]:
                found[worker] = found.get(worker, 0) + 1
                break
            assert time.monotonic() < deadline, f"worker {worker} never matched {entry_id}: {entries}"
            time.sleep(0.02)
        if len(found) == workers:
            break
    return found


class Workers:
    def __init__(self, store: str, workers: int, *extra: str) -> None:
        self.target = f"127.0.0.1:{free_port()}"
        command = [sys.executable, "-m", "hashshare.cli", "serve", "--listen", self.target, "--store", store,
                   "--workers", str(workers), "--feed-poll-seconds", "0.05", "--grace-seconds", "2",
                   *extra]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.fixture
def run_workers() -> Iterator[type[Workers]]:
    started: list[Workers] = []

    class Tracked(Workers):
        def __init__(self, *args: object) -> None:
            super().__init__(*args)  # type: ignore[arg-type]
            started.append(self)

    yield Tracked
    for workers in started:
        workers.stop()


@pytest.mark.slow
def test_every_worker_matches_a_submission_then_all_stop_on_sigterm(store_url: str, run_workers: type[Workers]) -> None:
    token = new_member_in(store_url, "ts", "trust_safety", "platform")
    server = run_workers(store_url, 2)
    wait_serving(server.target)
    workers = _wait_children(server.process.pid, 2)
    with Client(server.target, token) as client:
        entry_id = client.submit(SIGNALS, category="hate_speech").entry_id
    assert set(_answers_by_worker(server.target, token, entry_id, 2)) == {"0", "1"}

    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0
    assert all(_gone(pid) for pid in workers)


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_a_killed_parent_takes_the_workers_along(
    tmp_path: Path, run_workers: type[Workers]
) -> None:
    store = f"sqlite:///{tmp_path / 'bank.db'}"
    token = new_member_in(store, "ts", "trust_safety", "platform")
    server = run_workers(store, 2)
    wait_serving(server.target)
    first = _wait_children(server.process.pid, 2)
    with Client(server.target, token) as client:
        entry_id = client.submit(SIGNALS, category="hate_speech").entry_id

    os.kill(first[0], signal.SIGKILL)
    replaced = _wait_children(server.process.pid, 2, exclude=(first[0],))
    assert first[1] in replaced and server.process.poll() is None
    # While the replacement loads, new connections go to its sibling: no call
    # fails (a failed call raises here), and the replacement answers under the
    # same number once it has built its index from the store.
    assert set(_answers_by_worker(server.target, token, entry_id, 2)) == {"0", "1"}

    server.process.kill()
    server.process.wait(timeout=10)
    deadline = time.monotonic() + 20
    while not all(_gone(pid) for pid in replaced) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_gone(pid) for pid in replaced), "workers outlived their parent"


def test_a_worker_that_cannot_start_stops_the_others_and_the_parent_exits_1(
    tmp_path: Path, run_workers: type[Workers]
) -> None:
    server = run_workers(f"sqlite:///{tmp_path / 'bank.db'}", 2, "--taxonomy", str(tmp_path / "missing.json"))
    assert server.process.wait(timeout=60) == 1
    assert server.process.stdout is not None
    output = server.process.stdout.read().decode()
    assert "exited before it served" in output and "hashshare serving" not in output
    with pytest.raises(TimeoutError):  # no orphan holds the port
        wait_serving(server.target, timeout=0.5)
