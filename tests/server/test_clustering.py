"""Submissions are clustered by a search that stops at the loosest threshold that can
block: it must pick exactly the entries the full (review-radius) search would."""

from __future__ import annotations

import numpy as np
from PIL import Image

from hashshare.index import SignalIndex
from hashshare.matching import (
    CLUSTERING_THRESHOLDS,
    DEFAULT_THRESHOLDS,
    blocking_entries,
    find_candidates,
    find_candidates_many,
    find_clustering_candidates,
)
from hashshare.model import EntrySummary, IndexedSignal
from hashshare_client import Signal, signals
from tests.conftest import encode

TEXTS = [
    "Bọn người dân tộc đó là lũ ăn bám, không xứng đáng sống trên đất nước này.",
    "Hãy đuổi hết chúng về rừng, đừng để chúng lấy việc làm của chúng ta.",
    "Chiều nay đội bóng của trường sẽ thi đấu giao hữu với đội bạn ở sân vận động.",
]


def _flipped(rng: np.random.Generator, signal: Signal, flips: int) -> Signal:
    bits = np.unpackbits(np.frombuffer(signal.value, dtype=np.uint8))
    bits[rng.choice(len(bits), size=min(flips, len(bits)), replace=False)] ^= 1
    return Signal(signal.type, signal.version, np.packbits(bits).tobytes(), signal.quality, signal.variant)


def test_clustering_search_finds_the_same_blocking_entries(photos: dict[str, Image.Image]) -> None:
    rng = np.random.default_rng(11)
    uploads = [signals.from_image(encode(photo)) for photo in list(photos.values())[:4]]
    uploads += [signals.from_text(text) for text in TEXTS]
    index = SignalIndex()
    summaries: dict[int, EntrySummary] = {}
    row = 0
    # Each upload's copies drift further and further (PDQ far past 31 once the 64-bit hashes
    # pass their block threshold): some still block, some only reach review.
    for upload in uploads:
        for flips in range(0, 16, 1):
            entry_id = len(summaries) + 1
            summaries[entry_id] = EntrySummary(entry_id, "hate_speech", 1, True)
            for signal in upload:
                if signal.type.startswith("text/"):
                    copy = signal if flips < 8 else _flipped(rng, signal, flips)
                elif signal.type == "image/pdq":
                    copy = _flipped(rng, signal, flips if flips <= 6 else 70)
                else:
                    copy = _flipped(rng, signal, flips)
                row += 1
                index.add(IndexedSignal(row, entry_id, copy.type, copy.version, copy.value, copy.variant))
    review_only = blocking = 0
    for upload in uploads:
        full = find_candidates(index, upload, DEFAULT_THRESHOLDS)
        narrow = find_candidates(index, upload, CLUSTERING_THRESHOLDS)
        expected = blocking_entries(full, summaries)
        assert blocking_entries(narrow, summaries) == expected
        blocking += len(expected)
        review_only += len(full.entries() - narrow.entries())
    assert blocking > len(uploads), "copies within the thresholds block"
    assert review_only > 0, "the full search saw entries the clustering search skipped"


def test_clustering_defers_one_64_bit_type_yet_finds_every_pair(photos: dict[str, Image.Image]) -> None:
    # Stored copies of each photo with pHash and dHash drifted apart by every pair of distances
    # around their block (6) and pair (10) thresholds, and PDQ near (blocks alone) or far: the
    # entries that block through a pair alone, through one signal, or not at all.
    rng = np.random.default_rng(5)
    uploads = [signals.from_image(encode(photo)) for photo in list(photos.values())[:3]]
    index = SignalIndex()
    threaded = SignalIndex(search_threads=2)  # SubmitBatch's searches, split between threads
    summaries: dict[int, EntrySummary] = {}
    row = 0
    for upload in uploads:
        for phash_flips in (0, 5, 6, 7, 9, 10, 11, 14):
            for dhash_flips in (0, 6, 7, 8, 10, 11):
                for pdq_flips in (4, 70):
                    entry_id = len(summaries) + 1
                    summaries[entry_id] = EntrySummary(entry_id, "hate_speech", 1, True)
                    # The file's exact hashes differ: a copy is not the same file.
                    flips = {"image/phash": phash_flips, "image/dhash": dhash_flips, "image/pdq": pdq_flips}
                    for signal in upload:
                        copy = _flipped(rng, signal, flips.get(signal.type, 8))
                        row += 1
                        for target in (index, threaded):
                            target.add(IndexedSignal(row, entry_id, copy.type, copy.version, copy.value, copy.variant))
    # Items of one batch: each photo as uploaded, then each with its PDQ far from every copy.
    items = [*uploads]
    for upload in uploads:
        items.append([_flipped(rng, s, 90) if s.type == "image/pdq" else s for s in upload])
    full = find_candidates_many(index, [(item, CLUSTERING_THRESHOLDS) for item in items])
    deferred = find_clustering_candidates(index, items)
    assert find_clustering_candidates(threaded, items) == deferred
    assert find_candidates_many(threaded, [(item, CLUSTERING_THRESHOLDS) for item in items]) == full
    pairs_only = 0
    for item, expected, found in zip(items, full, deferred, strict=True):
        assert blocking_entries(found, summaries) == blocking_entries(expected, summaries)
        review = find_candidates(index, item, DEFAULT_THRESHOLDS)
        assert blocking_entries(found, summaries) == blocking_entries(review, summaries)
        pairs_only += len(set(blocking_entries(found, summaries)) - set(found.entry_ids[found.strong].tolist()))
    assert pairs_only > 0, "some entries block through a pair alone"
