"""The text/minhash signal: normalisation, shingling and its version."""

from __future__ import annotations

import hashlib
import unicodedata

import numpy as np
import pytest
from hashshare_client import EmptyTextError, signal_types, signals

# Vietnamese sentences written for these tests.
SENTENCES = [
    "Bọn người đó không xứng đáng sống trên đất nước này, hãy đuổi hết chúng đi.",
    "Hôm nay trời đẹp, cả nhà cùng nhau đi dạo công viên và ăn kem.",
    "Chúng ta phải tiêu diệt tất cả những kẻ theo tôn giáo đó trước khi quá muộn.",
    "Giá xăng tuần này giảm nhẹ, người dân các thành phố lớn rất vui mừng.",
]

# Digest of the signatures of SENTENCES under each text/minhash version. A
# change to normalisation, shingling or MinHash parameters changes it: bump
# the version in signal_types, then add the new pin below.
PINNED = {"n1.c5.p128.s1.affine32": "1f7ccaf0ffc2a740"}


def similarity(a: str, b: str) -> float:
    first, second = signals.from_text(a)[0], signals.from_text(b)[0]
    return float(np.mean(np.frombuffer(first.value, "<u4") == np.frombuffer(second.value, "<u4")))


def test_signatures_are_pinned_to_their_version() -> None:
    digest = hashlib.sha256(b"".join(signals.from_text(s)[0].value for s in SENTENCES)).hexdigest()[:16]
    assert PINNED.get(signal_types.MINHASH.version) == digest, (
        "text/minhash signatures changed without a new version in signal_types"
    )


def test_version_names_every_parameter() -> None:
    version = signal_types.MINHASH.version
    for part in (signal_types.TEXT_NORMALISATION, signal_types.TEXT_SHINGLING, "p128", "s1", "affine32"):
        assert part in version


def test_signature_is_128_uint32_and_deterministic() -> None:
    first, second = signals.from_text(SENTENCES[0])[0], signals.from_text(SENTENCES[0])[0]
    assert first == second
    assert first.type == "text/minhash" and len(first.value) == 512


def test_small_edit_matches_and_unrelated_text_does_not() -> None:
    edited = SENTENCES[0].replace("hãy đuổi hết chúng đi", "hãy đuổi chúng đi ngay")
    assert similarity(SENTENCES[0], edited) >= signal_types.MINHASH.block
    for other in SENTENCES[1:]:
        assert similarity(SENTENCES[0], other) < signal_types.MINHASH.review


def test_case_whitespace_and_unicode_form_do_not_matter() -> None:
    variant = "  " + unicodedata.normalize("NFD", SENTENCES[2].upper()).replace(" ", "   \n") + "  "
    assert similarity(SENTENCES[2], variant) == 1.0


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_empty_text_is_refused(text: str) -> None:
    with pytest.raises(EmptyTextError):
        signals.from_text(text)


def test_non_text_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        signals.from_text(b"bytes")  # type: ignore[arg-type]
