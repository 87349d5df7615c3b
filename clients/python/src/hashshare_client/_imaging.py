"""Safe decoding of untrusted images into the pixels the hashers see."""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from typing import Union

import numpy as np
from PIL import Image, ImageOps

from ._exceptions import ImageTooLargeError, InvalidImageError

# Uploads larger than this are decompression bombs or not worth hashing whole.
# Pillow only warns between ~89M and ~179M pixels, so we check ourselves,
# before any pixel is decoded.
DEFAULT_MAX_PIXELS = 64_000_000
DEFAULT_MAX_FILE_BYTES = 128 * 1024 * 1024

ImageInput = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, Image.Image]


@dataclass(frozen=True)
class DecodedImage:
    """An image ready for hashing: RGB pixels with EXIF orientation applied,
    and the file's bytes when the input was a file (for exact hashes)."""

    rgb: Image.Image
    data: bytes | None


def decode(image: ImageInput, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode a path, bytes or PIL image; refuse anything unsafe or unreadable."""
    if isinstance(image, Image.Image):
        _check_pixels(image.size, max_pixels)
        return DecodedImage(rgb=_to_rgb(image), data=None)
    data = _read_bytes(image)
    try:
        with warnings.catch_warnings():
            # Opening reads only the header; our own pixel check follows.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(str(exc)) from exc
    except Exception as exc:  # Pillow raises many types for hostile input
        raise InvalidImageError(f"not a readable image: {exc}") from exc
    _check_pixels(opened.size, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened.load()
            rgb = _to_rgb(opened)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(str(exc)) from exc
    except Exception as exc:
        raise InvalidImageError(f"unreadable or truncated image: {exc}") from exc
    return DecodedImage(rgb=rgb, data=data)


def _read_bytes(image: ImageInput) -> bytes:
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
    elif isinstance(image, (str, os.PathLike)):
        try:
            size = os.path.getsize(image)
            if size > DEFAULT_MAX_FILE_BYTES:
                raise ImageTooLargeError(f"{os.fspath(image)}: file of {size} bytes is over the limit")
            with open(image, "rb") as file:
                data = file.read()
        except OSError as exc:
            raise InvalidImageError(f"cannot read {os.fspath(image)}: {exc.strerror or exc}") from exc
    else:
        raise TypeError(f"expected a path, bytes or PIL image, not {type(image).__name__}")
    if not data:
        raise InvalidImageError("empty image file")
    if len(data) > DEFAULT_MAX_FILE_BYTES:
        raise ImageTooLargeError(f"file of {len(data)} bytes is over the limit")
    return data


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise InvalidImageError(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageTooLargeError(f"image of {width}x{height} pixels is over the limit of {max_pixels} pixels")


def _to_rgb(image: Image.Image) -> Image.Image:
    # Hash what a viewer sees: phones store rotation in EXIF, and a
    # re-upload often has the rotation baked into the pixels instead.
    oriented = ImageOps.exif_transpose(image) or image
    if oriented.mode in ("RGBA", "LA", "PA") or (oriented.mode == "P" and "transparency" in oriented.info):
        rgba = oriented.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return oriented.convert("RGB")


# Pre-processing "p2" (signal_types.IMAGE_PREPROCESSING): what the hashers see.
HASH_MAX_SIDE = 1024  # PDQ's cost grows with pixels; above this the hash barely changes
VIEW_SIDE = 256  # region and flip views are hashed from a thumbnail: 64-bit hashes need no more
BOX_SIDE = 128  # centre, turn and crop-window views: enough for 32 x 32 cells
MIN_SIDE = 32  # smaller images carry too little to match reliably
_TRIM_TOLERANCE = 10  # per channel: padding is flat, even after JPEG
_TRIM_UNIFORM_SHARE = 0.99
_TRIM_MIN_SHARE = 0.02  # thinner bands are noise, not padding
_TRIM_MAX_SHARE = 0.45  # never trim more than this from one side

# Fractions of the image (left, top, right, bottom) of each stored region view.
REGIONS = {
    "top85": (0.0, 0.0, 1.0, 0.85),
    "bottom85": (0.0, 0.15, 1.0, 1.0),
    "center80": (0.1, 0.1, 0.9, 0.9),
    "center60": (0.2, 0.2, 0.8, 0.8),
}


def windows(size: float, steps: int) -> list[tuple[float, float, float, float]]:
    """Square-grid positions of a window of ``size`` (a fraction of each side)."""
    offsets = [i * (1 - size) / (steps - 1) for i in range(steps)]
    return [(x, y, x + size, y + size) for y in offsets for x in offsets]


# Where the original's centre80 lies in an upload cropped by 10% a side
# (0.8 / 0.9 of it, anywhere), and its centre60 in one cropped by 20%.
CROP_WINDOWS = {"crop10": windows(0.8 / 0.9, 6), "crop20": windows(0.6 / 0.8, 8)}


def bounded(rgb: Image.Image, side: int = HASH_MAX_SIDE) -> Image.Image:
    """The image scaled down to at most ``side`` pixels a side (never up)."""
    if max(rgb.size) <= side:
        return rgb
    smaller = rgb.copy()
    smaller.thumbnail((side, side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return smaller


def region(image: Image.Image, fractions: tuple[float, float, float, float]) -> Image.Image:
    width, height = image.size
    left, top, right, bottom = fractions
    return image.crop((round(left * width), round(top * height), round(right * width), round(bottom * height)))


def content_box(rgb: Image.Image) -> tuple[int, int, int, int] | None:
    """The box inside uniform bands (padding, letterbox bars), or None when there are none."""
    width, height = rgb.size
    small = bounded(rgb, BOX_SIDE)
    pixels = np.asarray(small, dtype=np.int16)
    rows, cols = pixels.shape[:2]
    bands = [
        _uniform_lines(pixels),
        _uniform_lines(pixels[::-1]),
        _uniform_lines(pixels.transpose(1, 0, 2)),
        _uniform_lines(pixels.transpose(1, 0, 2)[::-1]),
    ]
    top, bottom, left, right = (
        band if band >= size * _TRIM_MIN_SHARE else 0
        for band, size in zip(bands, (rows, rows, cols, cols), strict=True)
    )
    if not any((top, bottom, left, right)) or top + bottom >= rows * 0.8 or left + right >= cols * 0.8:
        return None
    scale_x, scale_y = width / cols, height / rows
    # Round inwards so that no border pixel survives at the edge.
    return (
        int(np.ceil(left * scale_x)),
        int(np.ceil(top * scale_y)),
        int(np.floor(width - right * scale_x)),
        int(np.floor(height - bottom * scale_y)),
    )


def _uniform_lines(pixels: np.ndarray) -> int:
    """How many leading rows are of the first row's colour."""
    limit = int(pixels.shape[0] * _TRIM_MAX_SHARE)
    reference = np.median(pixels[0], axis=0)
    close = np.abs(pixels[:limit] - reference).max(axis=2) <= _TRIM_TOLERANCE
    uniform = close.mean(axis=1) >= _TRIM_UNIFORM_SHARE
    if not uniform.any() or not uniform[0]:
        return 0
    return int(np.argmin(uniform)) if not uniform.all() else limit
