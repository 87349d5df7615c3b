"""Image pre-processing and views, on real photographs: each re-upload trick
the evaluation applies is found through a real server at BLOCK."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image, ImageOps

from hashshare_client import Client, signal_types, signals
from hashshare_client._imaging import content_box
from hashshare_client.evaluation.transforms import IMAGE_TRANSFORMS
from tests.conftest import ServerFactory, encode, new_member

PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "camera"]


def test_content_box_finds_padding_and_letterbox_bars(photos: dict[str, Image.Image]) -> None:
    image = photos["coffee"]
    padded = ImageOps.expand(image, border=(40, 60, 40, 60), fill=(0, 0, 0))
    box = content_box(padded)
    assert box is not None
    left, top, right, bottom = box
    assert abs(left - 40) <= 3 and abs(top - 60) <= 3
    assert abs(right - (40 + image.width)) <= 3 and abs(bottom - (60 + image.height)) <= 3


def test_content_box_leaves_an_unpadded_photo_alone(photos: dict[str, Image.Image]) -> None:
    # (camera.png's top is a flat band of sky, which the trimmed view does remove.)
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        assert content_box(photos[name]) is None, name


def test_views_are_named_and_lookup_views_only_when_asked(photos: dict[str, Image.Image]) -> None:
    stored = signals.from_image(photos["astronaut"], variants=False)
    lookup = signals.from_image(photos["astronaut"])
    for signal in stored:
        view = signal_types.view(signal.variant)
        assert view is not None and view.stored
    lookup_only = {s.variant.partition(":")[0] for s in lookup} - {s.variant for s in stored}
    assert lookup_only == {*signal_types.DIHEDRAL, *(f"rot{a:+d}" for a in signal_types.TURNS), "crop10", "crop20"}


def test_featureless_hashes_are_left_out() -> None:
    # A smooth left-to-right ramp: every dHash bit would be 1.
    ramp = Image.fromarray(np.tile(np.linspace(0, 255, 300, dtype=np.uint8), (200, 1))).convert("RGB")
    for signal in signals.from_image(ramp):
        if signal.type in ("image/phash", "image/dhash"):
            ones = int.from_bytes(signal.value, "big").bit_count()
            assert 8 <= ones <= 56, signal


@pytest.mark.parametrize("transform", list(IMAGE_TRANSFORMS))
def test_each_transform_family_is_blocked_through_a_server(
    transform: str, server_factory: ServerFactory, photos: dict[str, Image.Image]
) -> None:
    server = server_factory()
    target = f"127.0.0.1:{server.port}"
    with (
        Client(target, new_member(server, "ts", "trust_safety")) as ts,
        Client(target, new_member(server, "p", "platform")) as platform,
    ):
        entries = {
            name: ts.submit(signals.from_image(encode(photos[name])), category="hate_speech").entry_id
            for name in PHOTOS
        }
        for name in PHOTOS:
            copy = IMAGE_TRANSFORMS[transform](photos[name], random.Random(name))
            result = platform.match(signals.from_image(encode(copy, "JPEG", quality=90)))
            verdicts = {m.entry_id: m.verdict for m in result.matches}
            assert verdicts.get(entries[name]) == "BLOCK", (name, result)
            assert all(v != "BLOCK" for e, v in verdicts.items() if e != entries[name]), (name, result)
