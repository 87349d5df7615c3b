"""`serve --workers 2`: two processes on one port, each current through the change feed."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time
from pathlib import Path

from hashshare_client import Client, Signal, signal_types
from tests.conftest import free_port, new_member_in, wait_serving


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def test_two_workers_share_a_port_and_see_each_others_writes(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'bank.db'}"
    token = new_member_in(store, "ts", "trust_safety", "platform")
    port = free_port()
    command = [sys.executable, "-m", "hashshare.cli", "serve", "--listen", f"127.0.0.1:{port}", "--store", store,
               "--workers", "2", "--feed-poll-seconds", "0.05"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_serving(f"127.0.0.1:{port}")
        deadline = time.monotonic() + 30
        while len(_children(process.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(_children(process.pid)) == 2
        signals = [Signal(signal_types.SHA256.name, "1", hashlib.sha256(b"removed upload").digest())]
        with Client(f"127.0.0.1:{port}", token) as client:
            entry_id = client.submit(signals, category="hate_speech").entry_id
        # Each new channel is a new connection, which the kernel hands to either
        # worker: all of them must find the entry within a second or so.
        found = 0
        for _ in range(20):
            with Client(f"127.0.0.1:{port}", token) as fresh:
                deadline = time.monotonic() + 2
                while time.monotonic() < deadline:
                    if [m.entry_id for m in fresh.match(signals).matches] == [entry_id]:
                        found += 1
                        break
                    time.sleep(0.02)
        assert found == 20
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert process.returncode == 0
