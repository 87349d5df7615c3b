"""Safe decoding of untrusted images into the pixels the hashers see."""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from typing import Union

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
