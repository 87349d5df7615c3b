"""The workers benchmark runs at a tiny size (no figure is checked: benchmarks are not tests)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hashshare.bench import workers_bench


@pytest.mark.slow
def test_workers_bench_runs_and_every_call_succeeds(tmp_path: Path) -> None:
    clients = "python,h2load" if shutil.which("h2load") else "python"
    out = tmp_path / "workers.json"
    workers_bench.main(["--size", "500", "--seconds", "1", "--rounds", "1", "--kinds", "exact",
                        "--clients", clients, "--processes", "1", "--lookups", "50", "--json", str(out)])  # fmt: skip
    results = json.loads(out.read_text())["results"]
    assert [r["client"] for r in results] == clients.split(",")
    for result in results:
        assert [run["workers"] for run in result["runs"]] == [1, 2]
        for run in result["runs"]:
            assert run["calls_per_s"] > 0 and run["errors"] == 0
            assert len(run["server_cores_per_worker"]) == run["workers"]
