"""Compute signals locally: only these hashes ever leave the platform.

>>> from hashshare_client import signals
>>> signals.from_image("upload.jpg")   # image/pdq, image/phash, image/dhash, exact/*
>>> signals.from_text("nội dung bị gỡ")  # text/minhash
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import imagehash
import numpy as np
import pdqhash
import scipy.fftpack
from datasketch import MinHash
from PIL import Image

from . import _boxhash, signal_types
from ._imaging import (
    BOX_SIDE,
    CROP_WINDOWS,
    DEFAULT_MAX_PIXELS,
    MIN_SIDE,
    REGIONS,
    VIEW_SIDE,
    ImageInput,
    bounded,
    content_box,
    decode,
    region,
)
from ._text import text_shingles
from .signal_types import DIHEDRAL, TURNS, SignalType

__all__ = ["ImageInput", "Signal", "from_image", "from_text"]

# pdqhash.compute_dihedral's order after the original (signal_types.DIHEDRAL),
# in Pillow's terms (Pillow's ROTATE_n turns counter-clockwise, as pdqhash's).
_TRANSPOSES = (
    Image.Transpose.ROTATE_90,
    Image.Transpose.ROTATE_180,
    Image.Transpose.ROTATE_270,
    Image.Transpose.FLIP_TOP_BOTTOM,
    Image.Transpose.FLIP_LEFT_RIGHT,
    Image.Transpose.TRANSVERSE,
    Image.Transpose.TRANSPOSE,
)


@dataclass(frozen=True)
class Signal:
    """One hash of one item, tagged with its type and version."""

    type: str
    version: str
    value: bytes
    quality: int | None = None
    # Set on the flipped and rotated copies that from_image adds for lookup
    # ("rot90", "flip_h", ...): they find re-uploads that were flipped or
    # rotated. Submissions carry only the original orientation.
    variant: str = ""

    @property
    def hex(self) -> str:
        return self.value.hex()

    @classmethod
    def from_hex(cls, type: str, hex: str, version: str | None = None, quality: int | None = None) -> Signal:
        """A signal from a hash list's hex form; the current version unless given.

        Raises ValueError for an unknown type, bad hex or a length that does
        not fit the type.
        """
        if type not in signal_types.SIGNAL_TYPES:
            raise ValueError(f"unknown signal type {type!r}")
        signal_type = signal_types.get(type)
        value = bytes.fromhex(hex.strip())
        if len(value) != signal_type.size_bytes:
            raise ValueError(f"{type} takes {signal_type.size_bytes * 2} hex digits, got {len(value) * 2}")
        return cls(type=type, version=version or signal_type.version, value=value, quality=quality)

    def to_dict(self) -> dict[str, object]:
        """The JSON form used by the CLI and the bank's JSONL files."""
        out: dict[str, object] = {"type": self.type, "version": self.version, "hex": self.hex}
        if self.quality is not None:
            out["quality"] = self.quality
        if self.variant:
            out["variant"] = self.variant
        return out


def from_image(image: ImageInput, *, max_pixels: int = DEFAULT_MAX_PIXELS, variants: bool = True) -> list[Signal]:
    """Every image signal of a path, bytes or PIL image.

    Besides the whole image (PDQ, pHash, dHash), it hashes views that
    survive re-upload tricks (signal_types.VIEWS): the image with uniform
    borders trimmed, its top and bottom 85% (caption bars) and its centre.
    With ``variants`` it adds lookup-only views of the upload: its 7 flips
    and quarter turns, its centre turned back by a few degrees, and windows
    where the original's centre would lie had the upload been cropped.

    Perceptual signals carry the image's PDQ quality (0 for images under 32
    pixels a side): the server refuses submissions below 50, since such
    images match everything, and limits lookups below 50 to review. Hashes
    of a featureless view (a flat or smoothly shaded area) are left out.
    Exact hashes (SHA-256, MD5) are of the file's bytes, so they are only
    computed when a path or bytes are given.

    Raises InvalidImageError for unreadable or truncated input and
    ImageTooLargeError above ``max_pixels``, before decoding the pixels.
    """
    decoded = decode(image, max_pixels=max_pixels)
    full = bounded(decoded.rgb)
    hashes, pdq_quality = pdqhash.compute_dihedral(_array(full))
    quality = 0 if min(full.size) < MIN_SIDE else int(pdq_quality)
    out = [_pdq(hashes[0], quality), *_small_hashes(full, quality)]
    box = content_box(full)
    if box is not None:
        trimmed = full.crop(box)
        trimmed_bits, trimmed_quality = pdqhash.compute(_array(trimmed))
        out += [_pdq(trimmed_bits, int(trimmed_quality), "trimmed"), *_small_hashes(trimmed, quality, "trimmed")]
    gray = bounded(full, VIEW_SIDE).convert("L")
    for name in ("top85", "bottom85"):
        out += _small_hashes(region(gray, REGIONS[name]), quality, name)
    # Centre views, turns and crop windows use the fast window hashes of a
    # small grey thumbnail: the bits need no more than 32 x 32 cells.
    small = bounded(gray, BOX_SIDE)
    table = _boxhash.integral(small)
    centres = {name: [REGIONS[name]] for name in ("center80", "center60")}
    out += _window_hashes(table, small.size, centres, quality, numbered=False)
    if variants:
        out += [_pdq(bits, quality, name) for name, bits in zip(DIHEDRAL, hashes[1:], strict=True)]
        out += _dihedral_small_hashes(gray, quality)
        for angle in TURNS:
            turned = small.rotate(angle, resample=Image.Resampling.BICUBIC)
            turned_windows = {f"rot{angle:+d}": [REGIONS["center80"]]}
            out += _window_hashes(_boxhash.integral(turned), turned.size, turned_windows, quality, numbered=False)
        out += _window_hashes(table, small.size, CROP_WINDOWS, quality, numbered=True)
    if decoded.data is not None:
        out.append(_exact(signal_types.SHA256, hashlib.sha256(decoded.data).digest()))
        out.append(_exact(signal_types.MD5, hashlib.md5(decoded.data, usedforsecurity=False).digest()))
    return out


def _array(image: Image.Image) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


# Fewer than this many bits set (or unset) in a 64-bit hash: a flat or
# smoothly shaded view, which every other flat view matches.
_MIN_BALANCE = 8


def _informative(value: bytes) -> bool:
    ones = int.from_bytes(value, "big").bit_count()
    return _MIN_BALANCE <= ones <= len(value) * 8 - _MIN_BALANCE


def _small_hashes(image: Image.Image, quality: int, variant: str = "") -> list[Signal]:
    found = [
        _imagehash(signal_types.PHASH, imagehash.phash(image), quality, variant),
        _imagehash(signal_types.DHASH, imagehash.dhash(image), quality, variant),
    ]
    return [s for s in found if _informative(s.value)]


def _dihedral_small_hashes(gray: Image.Image, quality: int) -> list[Signal]:
    """pHash and dHash of the 7 flips and quarter turns, as imagehash would make
    them of the turned image, from one 32 x 32 resize instead of seven."""
    pixels32 = gray.resize((32, 32), Image.Resampling.LANCZOS)
    pixels64 = gray.resize((64, 64), Image.Resampling.LANCZOS)
    out = []
    for name, transpose in zip(DIHEDRAL, _TRANSPOSES, strict=True):
        turned = np.asarray(pixels32.transpose(transpose))
        dct = scipy.fftpack.dct(scipy.fftpack.dct(turned, axis=0), axis=1)[:8, :8]
        phash_value = np.packbits(dct > np.median(dct)).tobytes()
        nine = np.asarray(pixels64.transpose(transpose).resize((9, 8), Image.Resampling.LANCZOS), dtype=np.int16)
        dhash_value = np.packbits(nine[:, 1:] > nine[:, :-1]).tobytes()
        for signal_type, value in ((signal_types.PHASH, phash_value), (signal_types.DHASH, dhash_value)):
            if _informative(value):
                out.append(Signal(signal_type.name, signal_type.version, value, quality, name))
    return out


def _window_hashes(
    table: np.ndarray,
    size: tuple[int, int],
    views: dict[str, list[tuple[float, float, float, float]]],
    quality: int,
    numbered: bool,
) -> list[Signal]:
    """pHash and dHash of every window of every view, in one vectorised pass."""
    names = [f"{name}:{i}" if numbered else name for name, boxes in views.items() for i in range(len(boxes))]
    boxes = _boxhash.boxes_of(size, [box for boxes in views.values() for box in boxes])
    out = []
    for signal_type, values in ((signal_types.PHASH, _boxhash.phash(table, boxes)),
                                (signal_types.DHASH, _boxhash.dhash(table, boxes))):  # fmt: skip
        for name, value in zip(names, values, strict=True):
            signal = Signal(signal_type.name, signal_type.version, value.tobytes(), quality, name)
            if _informative(signal.value):
                out.append(signal)
    return out


def from_text(text: str) -> list[Signal]:
    """The text/minhash signal of a text; EmptyTextError when nothing is left to hash."""
    shingles = text_shingles(text)
    quality = min(100, len(shingles))
    sketch = MinHash(
        num_perm=signal_types.MINHASH_PERMUTATIONS,
        seed=signal_types.MINHASH_SEED,
        scheme=signal_types.MINHASH_SCHEME,
        permutations=_minhash_permutations(),
    )
    sketch.update_batch([s.encode("utf-8") for s in sorted(shingles)])
    value = np.asarray(sketch.hashvalues, dtype="<u4").tobytes()
    return [Signal(signal_types.MINHASH.name, signal_types.MINHASH.version, value, quality)]


@functools.cache
def _minhash_permutations() -> np.ndarray:
    # Generating permutations costs more than hashing a short text; they
    # depend only on the seed, so build them once.
    template = MinHash(
        num_perm=signal_types.MINHASH_PERMUTATIONS,
        seed=signal_types.MINHASH_SEED,
        scheme=signal_types.MINHASH_SCHEME,
    )
    permutations: np.ndarray = template.permutations
    return permutations


def _pdq(bits: np.ndarray, quality: int, variant: str = "") -> Signal:
    # Most significant bit first: the hex form of ThreatExchange's and GIFCT's lists.
    value = np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes()
    return Signal(signal_types.PDQ.name, signal_types.PDQ.version, value, quality, variant)


def _imagehash(signal_type: SignalType, hashed: imagehash.ImageHash, quality: int, variant: str = "") -> Signal:
    # packbits of the flattened bits, most significant first, is exactly
    # imagehash's own hex form, so values interoperate with its users.
    value = np.packbits(np.asarray(hashed.hash, dtype=np.uint8).ravel()).tobytes()
    return Signal(signal_type.name, signal_type.version, value, quality, variant)


def _exact(signal_type: SignalType, digest: bytes) -> Signal:
    return Signal(type=signal_type.name, version=signal_type.version, value=digest)
