"""`make bench`: the index benchmark and the end-to-end benchmark in one run,
a table of each, their JSON, and a chart of latency against bank size.

    python -m hashshare.bench --sizes 100k,1M,10M --e2e-sizes 100k,1M --out var/bench
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from hashshare.bench import e2e_bench, index_bench


def chart(index_rows: list[dict[str, Any]], e2e_rows: list[dict[str, Any]], path: Path) -> None:
    """p99 latency against bank size: every index and baseline, and Match over gRPC."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # One panel per search compared with baselines; batch and load rows have their own tables.
    kinds = [k for k in ("r=10", "r=31", "J>=0.3") if any(row["index"].endswith(k) for row in index_rows)]
    figure, axes = plt.subplots(1, len(kinds) + 1, figsize=(5 * (len(kinds) + 1), 4.5), squeeze=False)
    for axis, kind in zip(axes[0], kinds, strict=False):
        by_index: dict[str, list[tuple[int, float]]] = {}
        for row in index_rows:
            if row["index"].split()[-1] == kind and row.get("p99_ms"):
                by_index.setdefault(row["index"], []).append((row["n"], row["p99_ms"]))
        for name, points in sorted(by_index.items()):
            points.sort()
            axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
        axis.set(xscale="log", yscale="log", xlabel="bank size", ylabel="p99 search (ms)", title=kind)
        axis.legend(fontsize=7)
    axis = axes[0][-1]
    if e2e_rows:
        sizes = [row["entries"] for row in e2e_rows]
        axis.plot(sizes, [row["match"]["p50_ms"] for row in e2e_rows], marker="o", label="Match p50")
        axis.plot(sizes, [row["match"]["p99_ms"] for row in e2e_rows], marker="o", label="Match p99")
        axis.legend(fontsize=7)
    axis.set(xscale="log", yscale="log", xlabel="entries (images + texts)", ylabel="ms")
    axis.set_title("Match over gRPC, one client")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100k,1M,10M", help="index benchmark bank sizes")
    parser.add_argument("--e2e-sizes", default="100k,1M", help="end-to-end bank sizes (images, and as many texts)")
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--out", type=Path, default=Path("var/bench"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    index_json, e2e_json = args.out / "index.json", args.out / "e2e.json"
    index_bench.main(["--sizes", args.sizes, "--queries", str(args.queries), "--json", str(index_json)])
    e2e_bench.main(["--sizes", args.e2e_sizes, "--json", str(e2e_json)])
    index_rows = json.loads(index_json.read_text())
    e2e_rows = json.loads(e2e_json.read_text())
    chart(index_rows, e2e_rows, args.out / "latency.png")
    print(f"wrote {index_json}, {e2e_json}, {args.out / 'latency.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
