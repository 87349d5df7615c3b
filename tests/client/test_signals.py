"""Signals computed by the SDK, on real photographs from scikit-image."""

from __future__ import annotations

import hashlib
from pathlib import Path

import imagehash
import numpy as np
import pdqhash
import pytest
from PIL import Image

from hashshare_client import ImageTooLargeError, InvalidImageError, Signal, signal_types, signals
from tests.conftest import encode

IMAGE_TYPES = ["image/pdq", "image/phash", "image/dhash"]


def hamming(a: Signal, b: Signal) -> int:
    return int(
        np.unpackbits(np.frombuffer(bytes(x ^ y for x, y in zip(a.value, b.value, strict=True)), dtype=np.uint8)).sum()
    )


def by_type(found: list[Signal]) -> dict[str, Signal]:
    return {s.type: s for s in found if not s.variant}


def test_path_and_bytes_give_every_image_signal_with_its_version(
    photos: dict[str, Image.Image], tmp_path: Path
) -> None:
    data = encode(photos["coffee"], "JPEG", quality=90)
    path = tmp_path / "coffee.jpg"
    path.write_bytes(data)
    from_path, from_bytes = by_type(signals.from_image(path)), by_type(signals.from_image(data))
    assert from_path == from_bytes
    assert sorted(from_path) == sorted([*IMAGE_TYPES, "exact/sha256", "exact/md5"])
    for name, signal in from_path.items():
        signal_type = signal_types.get(name)
        assert signal.version == signal_type.version
        assert len(signal.value) == signal_type.size_bytes
    assert from_path["exact/sha256"].value == hashlib.sha256(data).digest()
    assert from_path["exact/md5"].value == hashlib.md5(data).digest()
    assert from_path["image/pdq"].quality is not None and from_path["image/pdq"].quality >= 50


def test_pil_image_has_no_exact_hashes(photos: dict[str, Image.Image]) -> None:
    assert sorted(by_type(signals.from_image(photos["astronaut"]))) == sorted(IMAGE_TYPES)


def test_hex_forms_interoperate_with_imagehash_and_pdq_lists(photos: dict[str, Image.Image]) -> None:
    image = photos["chelsea"]
    found = by_type(signals.from_image(image))
    assert found["image/phash"].hex == str(imagehash.phash(image))
    assert found["image/dhash"].hex == str(imagehash.dhash(image))
    # PDQ lists (ThreatExchange, GIFCT) write the 256 bits most significant first.
    bits, _ = pdqhash.compute(np.asarray(image))
    expected = format(int("".join(str(int(b)) for b in bits), 2), "064x")
    assert found["image/pdq"].hex == expected


def test_reencoded_and_resized_copy_is_near_and_other_photos_are_far(photos: dict[str, Image.Image]) -> None:
    original = by_type(signals.from_image(photos["astronaut"]))
    copy = photos["astronaut"].resize((256, 256))
    reencoded = by_type(signals.from_image(encode(copy, "JPEG", quality=40)))
    assert hamming(original["image/pdq"], reencoded["image/pdq"]) <= signal_types.PDQ.block
    assert hamming(original["image/phash"], reencoded["image/phash"]) <= signal_types.PHASH.block
    for other in ("coffee", "rocket", "hubble_deep_field"):
        theirs = by_type(signals.from_image(photos[other]))
        assert hamming(original["image/pdq"], theirs["image/pdq"]) > signal_types.PDQ.review
        assert hamming(original["image/phash"], theirs["image/phash"]) > signal_types.PHASH.review


def test_exif_orientation_is_applied(photos: dict[str, Image.Image]) -> None:
    image = photos["coffee"]
    rotated_pixels = image.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": pixels stored as the unrotated photo
    tagged = encode(rotated_pixels.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=95, exif=exif)
    shown = by_type(signals.from_image(tagged))
    expected = by_type(
        signals.from_image(rotated_pixels.transpose(Image.Transpose.ROTATE_90).transpose(Image.Transpose.ROTATE_270))
    )
    assert hamming(shown["image/pdq"], expected["image/pdq"]) <= 16


def test_transparent_image_is_flattened_on_white(photos: dict[str, Image.Image]) -> None:
    rgba = photos["rocket"].convert("RGBA")
    assert by_type(signals.from_image(rgba))["image/phash"] == by_type(signals.from_image(encode(rgba)))["image/phash"]


@pytest.mark.parametrize(
    "data",
    [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40],
    ids=["empty", "garbage", "png-header-only"],
)
def test_unreadable_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(InvalidImageError):
        signals.from_image(data)


def test_truncated_jpeg_is_refused(photos: dict[str, Image.Image]) -> None:
    data = encode(photos["coffee"], "JPEG", quality=90)
    with pytest.raises(InvalidImageError, match=r"truncated|unreadable"):
        signals.from_image(data[: len(data) // 2])


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidImageError, match="cannot read"):
        signals.from_image(tmp_path / "absent.jpg")


def test_decompression_bomb_is_refused_before_decoding() -> None:
    # 100M pixels of one colour compress to a few kilobytes.
    bomb = encode(Image.new("1", (10_000, 10_000)), "PNG")
    assert len(bomb) < 200_000
    with pytest.raises(ImageTooLargeError, match="over the limit"):
        signals.from_image(bomb)


def test_pixel_limit_is_configurable(photos: dict[str, Image.Image]) -> None:
    with pytest.raises(ImageTooLargeError):
        signals.from_image(photos["coffee"], max_pixels=1000)


def test_from_hex_checks_type_and_length() -> None:
    signal = Signal.from_hex("exact/md5", "00" * 16)
    assert signal.version == signal_types.MD5.version and signal.value == bytes(16)
    with pytest.raises(ValueError, match="unknown signal type"):
        Signal.from_hex("image/nope", "00")
    with pytest.raises(ValueError, match="32 hex digits"):
        Signal.from_hex("exact/md5", "00" * 8)
    with pytest.raises(ValueError):
        Signal.from_hex("exact/md5", "zz" * 16)


def test_signal_type_names_are_unique_and_versions_set() -> None:
    names = [t.name for t in signal_types.SIGNAL_TYPES.values()]
    assert len(names) == len(set(names))
    for signal_type in signal_types.SIGNAL_TYPES.values():
        assert signal_type.version
        assert not signal_type.looser_than(signal_type.block, signal_type.review)
        assert not signal_type.looser_than(signal_type.review, signal_type.limit)
