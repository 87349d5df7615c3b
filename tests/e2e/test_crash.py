"""What Submit acknowledged survives SIGKILL of the server (SQLite, synchronous=FULL)."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

from hashshare_client import Client, Signal, SubmitResult, UnavailableError, signal_types
from tests.conftest import ServerProcess, new_member_in

WRITERS = 4
MIN_ACKED_BEFORE_KILL = 100
MAX_SECONDS = 30


def exact_signal(writer: int, n: int) -> Signal:
    digest = hashlib.sha256(f"upload {writer}-{n}".encode()).digest()
    return Signal(signal_types.SHA256.name, signal_types.SHA256.version, digest)


def test_every_acknowledged_submit_survives_sigkill(
    tmp_path: Path, server_processes: Callable[..., ServerProcess]
) -> None:
    store = f"sqlite:///{tmp_path / 'bank.db'}"
    token = new_member_in(store, "ts", "trust_safety", "platform")
    server = server_processes(store, log_path=tmp_path / "server.log").start()
    acked: list[tuple[Signal, SubmitResult]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(number: int) -> None:
        with Client(server.target, token, timeout=5) as client:
            for n in range(100_000):
                if stop.is_set():
                    return
                signal = exact_signal(number, n)
                try:
                    result = client.submit([signal], category="hate_speech", request_id=f"w{number}-{n}")
                except Exception:  # the server died mid-call: not acknowledged
                    return
                with lock:
                    acked.append((signal, result))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + MAX_SECONDS
    while len(acked) < MIN_ACKED_BEFORE_KILL and time.monotonic() < deadline:
        time.sleep(0.01)
    server.kill()  # while the writers are still submitting
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert len(acked) >= MIN_ACKED_BEFORE_KILL

    restarted = server_processes(store, port=server.port).start()
    with Client(restarted.target, token) as client:
        for _, result in acked:
            entry = client.get_entry(result.entry_id)
            assert result.submission_id in {s.submission_id for s in entry.submissions}
        sample = acked[:: max(1, len(acked) // 50)]
        for signal, result in sample:
            assert client.match([signal]).matches[0].entry_id == result.entry_id


def test_unavailable_is_reported_when_no_server_listens(tmp_path: Path) -> None:
    from tests.conftest import free_port

    with Client(f"127.0.0.1:{free_port()}", "hs_x", timeout=2) as client:
        try:
            client.match([exact_signal(0, 0)])
        except UnavailableError:
            return
        raise AssertionError("expected UnavailableError")
