"""The signal types hashshare exchanges: the one place each is defined.

Every signal type has a stable name (also its storage key: never rename one
once it has shipped), a version that changes whenever its algorithm or
parameters change, its size, how two values are compared, and the default
and loosest thresholds. Client and server both import this module, so they
can never disagree about a signal.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "DIHEDRAL",
    "TURNS",
    "VIEWS",
    "View",
    "view",
    "DHASH",
    "MD5",
    "MINHASH",
    "PDQ",
    "PHASH",
    "SHA256",
    "SIGNAL_TYPES",
    "Comparison",
    "SignalType",
    "get",
]


class Comparison(enum.Enum):
    """How two values of one signal type are compared."""

    HAMMING = "hamming"  # bits that differ; smaller is closer
    EXACT = "exact"  # equal or not
    MINHASH = "minhash"  # share of equal permutation minima; larger is closer


@dataclass(frozen=True)
class SignalType:
    """One signal type and its matching policy defaults.

    Thresholds are distances in bits for Hamming types (a match is at or
    below) and Jaccard similarities for MinHash (a match is at or above).
    ``limit`` is the loosest threshold a request may ask for: beyond it the
    signal matches unrelated content, and the index has to look too far.
    """

    name: str
    version: str
    comparison: Comparison
    size_bytes: int
    block: float  # alone, at or within this: VERDICT_BLOCK
    review: float  # alone, at or within this: VERDICT_REVIEW
    limit: float
    # Signals below this quality are refused at submission and skipped at match.
    # Two image signals of one view of the query both at or within their
    # ``pair`` threshold block together (defaults to ``block``).
    pair: float | None = None
    min_quality: int | None = None
    # Signals below this quality may match, but never at VERDICT_BLOCK alone.
    reliable_quality: int | None = None
    description: str = ""

    @property
    def bits(self) -> int:
        return self.size_bytes * 8

    def within(self, score: float, threshold: float) -> bool:
        """Whether a distance (Hamming) or similarity (MinHash) meets a threshold."""
        if self.comparison is Comparison.MINHASH:
            return score >= threshold
        return score <= threshold

    def looser_than(self, a: float, b: float) -> bool:
        """Whether threshold ``a`` admits more than threshold ``b``."""
        return a < b if self.comparison is Comparison.MINHASH else a > b


# Bump when image decoding or pre-processing changes what the hashers see.
IMAGE_PREPROCESSING = "p2"
# Bump when text normalisation or shingling changes (see hashshare_client._text).
TEXT_NORMALISATION = "n2"
TEXT_SHINGLING = "c5j"
MINHASH_PERMUTATIONS = 128
MINHASH_SEED = 1
# datasketch 2.0 changed its default scheme; naming it keeps stored
# signatures comparable across datasketch versions.
MINHASH_SCHEME = "affine32"

PDQ = SignalType(
    name="image/pdq",
    version=f"pdq1.{IMAGE_PREPROCESSING}",
    comparison=Comparison.HAMMING,
    size_bytes=32,
    # REVIEW and pair at 31 too: pHash and dHash carry the review band, and
    # a PDQ search at radius 40 costs three times one at 31 (make bench).
    block=31,
    review=31,
    limit=52,
    pair=31,
    min_quality=50,
    description="Meta's PDQ, 256 bits; the exchange standard of GIFCT, ThreatExchange and StopNCII.",
)
PHASH = SignalType(
    name="image/phash",
    version=f"phash8hf4.{IMAGE_PREPROCESSING}",
    comparison=Comparison.HAMMING,
    size_bytes=8,
    block=6,
    review=12,
    limit=16,
    pair=10,
    min_quality=50,
    description="imagehash's DCT perceptual hash, 64 bits; quality is the image's PDQ quality.",
)
DHASH = SignalType(
    name="image/dhash",
    version=f"dhash8.{IMAGE_PREPROCESSING}",
    comparison=Comparison.HAMMING,
    size_bytes=8,
    block=6,
    review=12,
    limit=16,
    pair=10,
    min_quality=50,
    description="imagehash's difference hash, 64 bits; quality is the image's PDQ quality.",
)
SHA256 = SignalType(
    name="exact/sha256",
    version="1",
    comparison=Comparison.EXACT,
    size_bytes=32,
    block=0,
    review=0,
    limit=0,
    description="SHA-256 of the file's bytes.",
)
MD5 = SignalType(
    name="exact/md5",
    version="1",
    comparison=Comparison.EXACT,
    size_bytes=16,
    block=0,
    review=0,
    limit=0,
    description="MD5 of the file's bytes, as in other programmes' hash lists.",
)
MINHASH = SignalType(
    name="text/minhash",
    version=(f"{TEXT_NORMALISATION}.{TEXT_SHINGLING}.p{MINHASH_PERMUTATIONS}.s{MINHASH_SEED}.{MINHASH_SCHEME}"),
    comparison=Comparison.MINHASH,
    size_bytes=MINHASH_PERMUTATIONS * 4,
    # Chosen on 2,092 VLSP 2013 sentences (hashshare eval): Jaccard 0.35
    # keeps 98.9% of copies with a fifth of their words deleted, and matched
    # 83 of 2.19 million pairs of distinct sentences (3.8e-5).
    block=0.35,
    review=0.3,
    limit=0.3,
    # quality: distinct shingles, up to 100; fewer than 24 (a text of about
    # five words) share too much by chance to block on.
    reliable_quality=24,
    description="datasketch MinHash of character shingles of the normalised text.",
)


def _registry(*types: SignalType) -> dict[str, SignalType]:
    registry: dict[str, SignalType] = {}
    for signal_type in types:
        if signal_type.name in registry:
            raise RuntimeError(f"signal type {signal_type.name!r} is defined twice")
        registry[signal_type.name] = signal_type
    return registry


SIGNAL_TYPES: dict[str, SignalType] = _registry(PDQ, PHASH, DHASH, SHA256, MD5, MINHASH)


def get(name: str) -> SignalType:
    """Return the signal type called ``name``; KeyError when there is none."""
    return SIGNAL_TYPES[name]


@dataclass(frozen=True)
class View:
    """A view of an image that a signal describes.

    Signals are compared only with signals of the same region, so that a
    hash of the top 85% of a picture is never compared with a whole picture.
    Stored views are computed at submission and at lookup alike; lookup-only
    views (flipped, turned and cropped windows of the upload) are never
    stored. A view tried at many positions (``windows``) matches unrelated
    content by chance more often, so there only pHash and dHash of the same
    window agreeing may block.
    """

    name: str
    region: str
    stored: bool
    windows: bool = False


def _views(*views: View) -> dict[str, View]:
    return {view.name: view for view in views}


DIHEDRAL = ("rot90", "rot180", "rot270", "flip_v", "flip_h", "rot90_flip_v", "rot90_flip_h")
TURNS = (-9, -6, -3, 3, 6, 9)  # degrees; 3 apart, so any turn up to ~11 degrees is within 1.5 of one

VIEWS: dict[str, View] = _views(
    View("", "full", True),  # the image as it is
    View("trimmed", "full", True),  # uniform borders and letterbox bars removed, when there were any
    View("top85", "top85", True),  # survives a caption bar over the bottom
    View("bottom85", "bottom85", True),  # survives a caption bar over the top
    View("center80", "center80", True),  # inside any crop of up to 10% a side
    View("center60", "center60", True),  # inside any crop of up to 20% a side
    *(View(name, "full", False) for name in DIHEDRAL),
    # The upload turned back by a few degrees, then its centre.
    *(View(f"rot{angle:+d}", "center80", False, windows=True) for angle in TURNS),
    # Windows of the upload where the original's centre would be, had it been cropped.
    View("crop10", "center80", False, windows=True),
    View("crop20", "center60", False, windows=True),
)


def view(variant: str) -> View | None:
    """The view of a signal's variant ("crop10:7" is window 7 of view crop10)."""
    return VIEWS.get(variant.partition(":")[0])
