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
from datasketch import MinHash
from PIL import Image

from . import signal_types
from ._imaging import DEFAULT_MAX_PIXELS, ImageInput, decode
from ._text import text_shingles
from .signal_types import SignalType

__all__ = ["ImageInput", "Signal", "from_image", "from_text"]


@dataclass(frozen=True)
class Signal:
    """One hash of one item, tagged with its type and version."""

    type: str
    version: str
    value: bytes
    quality: int | None = None

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
        return out


def from_image(image: ImageInput, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> list[Signal]:
    """Every image signal of a path, bytes or PIL image.

    Exact hashes (SHA-256, MD5) are of the file's bytes, so they are only
    computed when a path or bytes are given. The PDQ signal carries its
    quality; the server refuses submissions below PDQ.min_quality.

    Raises InvalidImageError for unreadable or truncated input and
    ImageTooLargeError above ``max_pixels``, before decoding the pixels.
    """
    decoded = decode(image, max_pixels=max_pixels)
    out = [_pdq(decoded.rgb), _imagehash(signal_types.PHASH, imagehash.phash(decoded.rgb))]
    out.append(_imagehash(signal_types.DHASH, imagehash.dhash(decoded.rgb)))
    if decoded.data is not None:
        out.append(_exact(signal_types.SHA256, hashlib.sha256(decoded.data).digest()))
        out.append(_exact(signal_types.MD5, hashlib.md5(decoded.data, usedforsecurity=False).digest()))
    return out


def from_text(text: str) -> list[Signal]:
    """The text/minhash signal of a text; EmptyTextError when nothing is left to hash."""
    shingles = text_shingles(text)
    sketch = MinHash(
        num_perm=signal_types.MINHASH_PERMUTATIONS,
        seed=signal_types.MINHASH_SEED,
        scheme=signal_types.MINHASH_SCHEME,
        permutations=_minhash_permutations(),
    )
    sketch.update_batch([s.encode("utf-8") for s in sorted(shingles)])
    value = np.asarray(sketch.hashvalues, dtype="<u4").tobytes()
    return [Signal(type=signal_types.MINHASH.name, version=signal_types.MINHASH.version, value=value)]


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


def _pdq(rgb: Image.Image) -> Signal:
    bits, quality = pdqhash.compute(np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)))
    value = np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes()
    return Signal(type=signal_types.PDQ.name, version=signal_types.PDQ.version, value=value, quality=int(quality))


def _imagehash(signal_type: SignalType, hashed: imagehash.ImageHash) -> Signal:
    # packbits of the flattened bits, most significant first, is exactly
    # imagehash's own hex form, so values interoperate with its users.
    value = np.packbits(np.asarray(hashed.hash, dtype=np.uint8).ravel()).tobytes()
    return Signal(type=signal_type.name, version=signal_type.version, value=value)


def _exact(signal_type: SignalType, digest: bytes) -> Signal:
    return Signal(type=signal_type.name, version=signal_type.version, value=digest)
