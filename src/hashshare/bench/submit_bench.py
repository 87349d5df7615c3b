"""Batched submission into a prebuilt bank: SubmitBatch over gRPC, servers of several
source trees alternated in one run.

    python -m hashshare.bench.submit_bench --bank var/bank-1M.db --token-file var/bank-1M.token \\
        --tree before=/path/to/old/worktree --tree after=. --rounds 3

Each round copies the bank (and its index snapshot, made once on a first copy so
that every server starts from it in seconds) to a scratch file, since a run adds
entries, starts ``hashshare-server serve`` of each tree (its ``.venv/bin/python``) on
it with the submission quota off, and times ``e2e_bench.batched_submit``. With
``--profile DIR`` a py-spy recording of each server's submissions is written there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from hashshare.bench.e2e_bench import batched_submit, free_port, wait_serving


def _snapshot_of(bank: Path) -> Path:
    return bank.with_name(bank.name + ".snapshot")


def prepare(bank: Path, work: Path, python: str) -> Path:
    """A copy of ``bank`` with its snapshot (written by a server started and stopped on it):
    the starting point every round copies. A first server also writes the bank's
    secrets (its id, which the snapshot must match), so the snapshot is of this copy."""
    prepared = work / "prepared.db"
    if prepared.exists() and _snapshot_of(prepared).exists():
        return prepared
    work.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(bank, prepared)
    process, _ = _serve(python, prepared)
    _stop(process)
    if not _snapshot_of(prepared).exists():
        raise RuntimeError(f"no snapshot written next to {prepared}")
    return prepared


def _copy(prepared: Path, target: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    shutil.rmtree(_snapshot_of(target), ignore_errors=True)
    shutil.copyfile(prepared, target)
    shutil.copytree(_snapshot_of(prepared), _snapshot_of(target))


def _serve(python: str, db: Path, extra: list[str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    target = f"127.0.0.1:{free_port()}"
    command = [python, "-m", "hashshare.cli", "serve", "--listen", target, "--store", f"sqlite:///{db}"]
    command += ["--submit-rate-limit", "0", *(extra or [])]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_serving(target, timeout=600)
    return process, target


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(timeout=300)


def run_once(
    python: str, flags: list[str], prepared: Path, work: Path, token: str, seed: int, profile: Path | None
) -> float:
    db = work / "run.db"
    _copy(prepared, db)
    process, target = _serve(python, db, flags)
    spy = None
    try:
        if profile is not None:
            profile.parent.mkdir(parents=True, exist_ok=True)
            spy_bin = str(Path(sys.executable).with_name("py-spy"))
            command = [spy_bin, "record", "--pid", str(process.pid), "--output", str(profile)]
            command += ["--format", "raw", "--rate", "200", "--threads"]
            spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
        return batched_submit(target, token, np.random.default_rng(seed))
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=120)
        _stop(process)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank", type=Path, required=True, help="a bank built like the e2e bench's (never written)")
    parser.add_argument("--token-file", type=Path, required=True, help="a trust_safety token of that bank")
    parser.add_argument(
        "--tree", action="append", required=True, help="LABEL=DIR of a worktree with a .venv[::server flags]"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("var/submit-bench"))
    parser.add_argument("--profile", type=Path, help="write a py-spy profile of each run here")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    trees: dict[str, tuple[str, list[str]]] = {}
    for tree in args.tree:
        label, rest = tree.split("=", 1)
        path, _, flags = rest.partition("::")
        trees[label] = (str(Path(path).resolve() / ".venv/bin/python"), flags.split())
    token = args.token_file.read_text().strip()
    prepared = prepare(args.bank, args.work, next(iter(trees.values()))[0])
    results: dict[str, list[float]] = {label: [] for label in trees}
    for round_ in range(args.rounds):
        for label, (python, flags) in trees.items():
            profile = args.profile / f"{label}-{round_}.txt" if args.profile else None
            rate = run_once(python, flags, prepared, args.work, token, seed=round_, profile=profile)
            results[label].append(rate)
            print(f"round {round_} {label}: {rate:,.0f} submissions/s", flush=True)
    summary: dict[str, Any] = {
        label: {"median": statistics.median(rates), "min": min(rates), "max": max(rates), "runs": rates}
        for label, rates in results.items()
    }
    for label, row in summary.items():
        spread = f"{row['min']:,.0f}-{row['max']:,.0f}"
        print(f"{label}: median {row['median']:,.0f}/s (range {spread}, {len(row['runs'])} runs)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
