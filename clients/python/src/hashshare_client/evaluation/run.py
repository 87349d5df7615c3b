"""Running an evaluation: signals, per-signal distance analysis, and the
end-to-end check through a running server."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from .. import signal_types
from .._client import Client
from .._exceptions import SignalError
from .._text import normalise, shingles
from ..signals import Signal, from_image, from_text
from .datasets import Original, pixel_digest
from .transforms import IMAGE_TRANSFORMS, TEXT_TRANSFORMS

IMAGE_TYPES = (signal_types.PDQ, signal_types.PHASH, signal_types.DHASH)
# Two originals whose 32 x 32 grey thumbnails correlate this well, under some
# flip or quarter turn, are one picture twice (the same photo in two colour
# modes, mirror-symmetric tiles), not two originals. Judged on pixels, not on
# the hashes under test.
SAME_PICTURE_CORRELATION = 0.95
SAME_TEXT_JACCARD = 0.9


@dataclass
class Item:
    """One original or one transformed copy, with its signals."""

    kind: str  # "image" or "text"
    original: int  # index into the originals of its kind
    transform: str  # "" for the original itself
    signals: list[Signal]


@dataclass
class Prepared:
    images: list[Original]
    texts: list[Original]
    originals: dict[str, list[Item]]
    copies: list[Item]
    dropped: dict[str, list[str]] = field(default_factory=dict)


def _hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    distances: np.ndarray = np.bitwise_count(np.bitwise_xor(a, b)).sum(axis=-1)
    return distances


def _distance(a: Signal, b: Signal) -> int:
    return int(_hamming(_bits(a), _bits(b)))


def _bits(signal: Signal) -> np.ndarray:
    return np.frombuffer(signal.value, dtype=np.uint8)


def _by_type(signals: Sequence[Signal], name: str, with_variants: bool = False) -> list[Signal]:
    return [s for s in signals if s.type == name and (with_variants or not s.variant)]


def _orientations(image: Image.Image) -> list[np.ndarray]:
    """A standardised 32 x 32 grey thumbnail in its 8 flips and quarter turns."""
    pixels = np.asarray(image.convert("L").resize((32, 32), Image.Resampling.BILINEAR), dtype=np.float64)
    pixels = (pixels - pixels.mean()) / (pixels.std() + 1e-9)
    turns = [np.rot90(pixels, k) for k in range(4)]
    return turns + [t.T for t in turns]


def _dedupe_images(originals: list[Original], dropped: dict[str, list[str]]) -> tuple[list[Original], list[Item]]:
    kept: list[Original] = []
    items: list[Item] = []
    digests: set[str] = set()
    thumbs: list[list[np.ndarray]] = []
    for original in originals:
        assert original.image is not None
        try:
            found = from_image(original.image)
        except SignalError as error:
            dropped.setdefault("unreadable", []).append(f"{original.name}: {error}")
            continue
        canonical = {s.type: s for s in found if not s.variant}
        pdq = canonical[signal_types.PDQ.name]
        if pdq.quality is not None and pdq.quality < (signal_types.PDQ.min_quality or 0):
            dropped.setdefault("too little detail", []).append(original.name)
            continue
        digest = pixel_digest(original.image)
        orientations = _orientations(original.image)
        same = any(float((orientations[0] * o).mean()) >= SAME_PICTURE_CORRELATION for k in thumbs for o in k)
        if digest in digests or same:
            dropped.setdefault("duplicate picture", []).append(original.name)
            continue
        digests.add(digest)
        thumbs.append(orientations)
        items.append(Item("image", len(kept), "", found))
        kept.append(original)
    return kept, items


def _dedupe_texts(originals: list[Original], dropped: dict[str, list[str]]) -> tuple[list[Original], list[Item]]:
    kept: list[Original] = []
    items: list[Item] = []
    seen: list[set[str]] = []
    by_form: set[str] = set()
    for original in originals:
        assert original.text is not None
        form = normalise(original.text)
        grams = shingles(form)
        if form in by_form or any(len(grams & g) / len(grams | g) >= SAME_TEXT_JACCARD for g in seen):
            dropped.setdefault("duplicate text", []).append(original.name)
            continue
        try:
            found = from_text(original.text)
        except SignalError as error:
            dropped.setdefault("unreadable", []).append(f"{original.name}: {error}")
            continue
        by_form.add(form)
        seen.append(grams)
        items.append(Item("text", len(kept), "", found))
        kept.append(original)
    return kept, items


def prepare(images: list[Original], texts: list[Original], seed: int = 20261128) -> Prepared:
    """Deduplicate the originals, then compute the signals of every transformed copy."""
    dropped: dict[str, list[str]] = {}
    kept_images, image_items = _dedupe_images(images, dropped)
    kept_texts, text_items = _dedupe_texts(texts, dropped)
    copies: list[Item] = []
    for index, original in enumerate(kept_images):
        for name, transform in IMAGE_TRANSFORMS.items():
            rng = random.Random(f"{seed}:{original.name}:{name}")
            assert original.image is not None
            try:
                copies.append(Item("image", index, name, from_image(transform(original.image, rng))))
            except SignalError as error:
                dropped.setdefault("copy could not be hashed", []).append(f"{original.name}/{name}: {error}")
    for index, original in enumerate(kept_texts):
        for name, text_transform in TEXT_TRANSFORMS.items():
            rng = random.Random(f"{seed}:{original.name}:{name}")
            assert original.text is not None
            copies.append(Item("text", index, name, from_text(text_transform(original.text, rng))))
    return Prepared(kept_images, kept_texts, {"image": image_items, "text": text_items}, copies, dropped)


# Per-signal analysis: what each threshold would give


def _thresholds(signal_type: signal_types.SignalType) -> list[float]:
    if signal_type.comparison is signal_types.Comparison.MINHASH:
        return [round(x, 2) for x in np.arange(0.3, 1.0001, 0.05)]
    return list(range(0, int(signal_type.limit) + 1))


def _region(signal: Signal) -> str:
    found = signal_types.view(signal.variant)
    return found.region if found else ""


def _score(signal_type: signal_types.SignalType, queries: list[Signal], stored: list[Signal]) -> float:
    """The best distance (or similarity) of a lookup's signals to an entry's, region by region."""
    scores = [_pair_score(signal_type, q, s) for q in queries for s in stored if _region(q) == _region(s)]
    if signal_type.comparison is signal_types.Comparison.MINHASH:
        return max(scores, default=0.0)
    return min(scores, default=float(signal_type.bits))


def _pair_score(signal_type: signal_types.SignalType, a: Signal, b: Signal) -> float:
    if signal_type.comparison is signal_types.Comparison.MINHASH:
        return float(np.mean(np.frombuffer(a.value, "<u4") == np.frombuffer(b.value, "<u4")))
    return float(_distance(a, b))


def _stored(item: Item, name: str) -> list[Signal]:
    return [s for s in item.signals if s.type == name and (v := signal_types.view(s.variant)) and v.stored]


def _impostor_scores(signal_type: signal_types.SignalType, items: list[Item]) -> np.ndarray:
    """Best score of each original's lookup signals against every other original (each pair once)."""
    if signal_type.comparison is signal_types.Comparison.MINHASH:
        # One signature per text: compare each with all later ones at once.
        values = np.stack([np.frombuffer(_by_type(i.signals, signal_type.name)[0].value, "<u4") for i in items])
        return np.concatenate([(values[a + 1 :] == values[a]).mean(axis=1) for a in range(len(items) - 1)])
    scores = []
    for a, item in enumerate(items):
        queries = _by_type(item.signals, signal_type.name, with_variants=True)
        for other in items[a + 1 :]:
            scores.append(_score(signal_type, queries, _stored(other, signal_type.name)))
    return np.asarray(scores)


def analyse_signals(prepared: Prepared) -> dict[str, Any]:
    """Recall per transform and false-match rate between originals, per threshold."""
    out: dict[str, Any] = {}
    for kind, types in (("image", IMAGE_TYPES), ("text", (signal_types.MINHASH,))):
        originals = prepared.originals[kind]
        if len(originals) < 2:
            continue
        for signal_type in types:
            grid = _thresholds(signal_type)
            impostors = _impostor_scores(signal_type, originals)
            genuine: dict[str, list[float]] = {}
            for copy in (c for c in prepared.copies if c.kind == kind):
                queries = _by_type(copy.signals, signal_type.name, with_variants=True)
                stored = _stored(originals[copy.original], signal_type.name)
                if queries:
                    genuine.setdefault(copy.transform, []).append(_score(signal_type, queries, stored))
            out[signal_type.name] = {
                "thresholds": grid,
                "pairs": int(impostors.size),
                "false_match_rate": [float(np.mean([signal_type.within(s, t) for s in impostors])) for t in grid],
                "recall": {
                    name: [float(np.mean([signal_type.within(s, t) for s in scores])) for t in grid]
                    for name, scores in genuine.items()
                },
            }
    return out


# End to end, through a running server at its shipped thresholds


def _rate(hits: int, total: int) -> float:
    return hits / total if total else float("nan")


def run_server(prepared: Prepared, client: Client, category: str = "hate_speech") -> dict[str, Any]:
    """Submit the originals, look up every copy and every original, then retract."""
    entries: dict[tuple[str, int], str] = {}
    started = time.monotonic()
    try:
        for kind, items in prepared.originals.items():
            for item in items:
                result = client.submit(item.signals, category=category)
                entries[(kind, item.original)] = result.entry_id
        return _score_server(prepared, client, entries) | {"seconds": time.monotonic() - started}
    finally:
        for entry_id in set(entries.values()):
            client.retract(entry_id, reason="evaluation run")


def _score_server(prepared: Prepared, client: Client, entries: dict[tuple[str, int], str]) -> dict[str, Any]:
    recall: dict[str, dict[str, dict[str, float]]] = {"image": {}, "text": {}}
    counts: dict[tuple[str, str], list[int]] = {}
    lookups = [(f"{i}", c.signals) for i, c in enumerate(prepared.copies)]
    for copy, result in zip(prepared.copies, client.match_stream(lookups), strict=True):
        own = entries[(copy.kind, copy.original)]
        verdicts = {m.entry_id: m.verdict for m in result.matches}
        tally = counts.setdefault((copy.kind, copy.transform), [0, 0, 0])
        tally[0] += 1
        tally[1] += verdicts.get(own) == "BLOCK"
        tally[2] += verdicts.get(own) in ("BLOCK", "REVIEW")
    for (kind, name), (total, blocked, reviewed) in counts.items():
        recall[kind][name] = {"block": _rate(blocked, total), "review_or_block": _rate(reviewed, total), "n": total}
    false_matches: dict[str, Any] = {}
    for kind, items in prepared.originals.items():
        blocked_pairs: set[frozenset[str]] = set()
        reviewed_pairs: set[frozenset[str]] = set()
        # Two originals clustered into one entry at submission were matched to each other.
        by_entry: dict[str, list[int]] = {}
        for item in items:
            by_entry.setdefault(entries[(kind, item.original)], []).append(item.original)
        merged = sum(len(v) * (len(v) - 1) // 2 for v in by_entry.values())
        lookups = [(str(i.original), i.signals) for i in items]
        for item, result in zip(items, client.match_stream(lookups), strict=True):
            own = entries[(kind, item.original)]
            for match in result.matches:
                if match.entry_id != own:
                    pair = frozenset({own, match.entry_id})
                    (blocked_pairs if match.verdict == "BLOCK" else reviewed_pairs).add(pair)
        pairs = len(items) * (len(items) - 1) // 2
        false_matches[kind] = {
            "pairs": pairs,
            "block": len(blocked_pairs) + merged,
            "review": len(reviewed_pairs - blocked_pairs),
            "block_rate": _rate(len(blocked_pairs) + merged, pairs),
        }
    return {"recall": recall, "false_matches": false_matches}
