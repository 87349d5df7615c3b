"""The evaluation's outputs: a printed table, a JSON file and PNG charts."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .. import signal_types


def _percent(value: float) -> str:
    return "   n/a" if math.isnan(value) else f"{value * 100:6.1f}%"


def table(results: dict[str, Any]) -> str:
    """Recall per transform (end to end when a server was used) and false matches."""
    lines = []
    server = results.get("server")
    signals = results["signals"]
    for kind in ("image", "text"):
        types = [t for t in signals if t.startswith(f"{kind}/")]
        if not types and not (server and server["recall"][kind]):
            continue
        header = f"{kind} transform".ljust(24)
        if server:
            header += "  BLOCK  REVIEW+"
        header += "".join(f"  {t.split('/')[1]:>7}" for t in types)
        lines += ["", header, "-" * len(header)]
        names = list(server["recall"][kind]) if server else list(signals[types[0]]["recall"]) if types else []
        for name in names:
            row = name.ljust(24)
            if server:
                measured = server["recall"][kind][name]
                row += f" {_percent(measured['block'])} {_percent(measured['review_or_block'])}"
            for type_name in types:
                row += f"  {_percent(_at_default(signals[type_name], type_name, name))}"
            lines.append(row)
        if server:
            fm = server["false_matches"][kind]
            lines.append(
                f"false matches between {fm['pairs']} pairs of distinct originals: "
                f"BLOCK {fm['block']} ({_percent(fm['block_rate']).strip()}), REVIEW {fm['review']}"
            )
        for type_name in types:
            analysis = signals[type_name]
            lines.append(
                f"  {type_name} alone at its BLOCK threshold {signal_types.get(type_name).block}: false-match rate "
                f"{_percent(_fmr_at_default(analysis, type_name)).strip()} of {analysis['pairs']} pairs"
            )
    return "\n".join(lines)


def _index_of(analysis: dict[str, Any], type_name: str) -> int:
    threshold = signal_types.get(type_name).block
    grid = analysis["thresholds"]
    return min(range(len(grid)), key=lambda i: abs(grid[i] - threshold))


def _at_default(analysis: dict[str, Any], type_name: str, transform: str) -> float:
    recall = analysis["recall"].get(transform)
    return float("nan") if recall is None else float(recall[_index_of(analysis, type_name)])


def _fmr_at_default(analysis: dict[str, Any], type_name: str) -> float:
    return float(analysis["false_match_rate"][_index_of(analysis, type_name)])


def write_json(results: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str))


def write_charts(results: dict[str, Any], directory: Path) -> list[Path]:
    """recall.png (per transform, end to end) and tradeoff.png (recall against
    false-match rate per threshold, per signal)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    server = results.get("server")
    if server:
        kinds = [k for k in ("image", "text") if server["recall"][k]]
        figure, axes = plt.subplots(1, len(kinds), figsize=(7 * len(kinds), 5), squeeze=False)
        for axis, kind in zip(axes[0], kinds, strict=True):
            names = list(server["recall"][kind])
            block = [server["recall"][kind][n]["block"] for n in names]
            review = [server["recall"][kind][n]["review_or_block"] for n in names]
            positions = range(len(names))
            axis.barh([p + 0.2 for p in positions], review, height=0.4, label="REVIEW or BLOCK", color="#9ecae1")
            axis.barh([p - 0.2 for p in positions], block, height=0.4, label="BLOCK", color="#08519c")
            axis.set_yticks(list(positions), names, fontsize=8)
            axis.set_xlim(0, 1)
            axis.axvline(0.95, color="grey", linestyle=":", linewidth=1)
            fm = server["false_matches"][kind]
            axis.set_title(f"{kind}: recall per transform ({fm['block']} false BLOCKs in {fm['pairs']} pairs)")
            axis.legend(loc="lower right", fontsize=8)
        figure.tight_layout()
        path = directory / "recall.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    signals = results["signals"]
    if signals:
        figure, axes = plt.subplots(1, len(signals), figsize=(5 * len(signals), 4.5), squeeze=False)
        for axis, (type_name, analysis) in zip(axes[0], signals.items(), strict=True):
            fmr = [max(f, 1e-7) for f in analysis["false_match_rate"]]
            for name, recall in analysis["recall"].items():
                axis.plot(fmr, recall, marker=".", linewidth=1, label=name)
            axis.set_xscale("log")
            axis.set_xlabel(f"false-match rate ({analysis['pairs']} pairs; 1e-7 = none seen)")
            axis.set_ylabel("recall")
            axis.set_title(f"{type_name}: one point per threshold")
            axis.legend(fontsize=6)
        figure.tight_layout()
        path = directory / "tradeoff.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    return written
