"""The text/minhash signal: normalisation, shingling and its version."""

from __future__ import annotations

import hashlib
import unicodedata

import numpy as np
import pytest

from hashshare_client import EmptyTextError, signal_types, signals
from hashshare_client._text import normalise

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
PINNED = {"n1.c5.p128.s1.affine32": "1f7ccaf0ffc2a740", "n2.c5j.p128.s1.affine32": "434d6edc44c6d8ba"}


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


ORIGINAL = "Bọn người dân tộc đó không xứng đáng được sống ở đây, phải đuổi hết chúng đi!"

# One example of each evasion class the normaliser must undo.
EVASIONS = {
    "case change": "BỌN NGƯỜI DÂN TỘC ĐÓ KHÔNG XỨNG ĐÁNG ĐƯỢC SỐNG Ở ĐÂY, PHẢI ĐUỔI HẾT CHÚNG ĐI!",
    "diacritics removed": "Bon nguoi dan toc do khong xung dang duoc song o day, phai duoi het chung di!",
    "NFD": unicodedata.normalize("NFD", ORIGINAL),
    "zero-width characters": "\u200b".join(ORIGINAL[:30]) + "\u200d" + ORIGINAL[30:],
    "look-alike letters": "Вọn người dân tộс đó khôпg xứng đáng được ѕống ở đâу, phải đuổі hết chúng đі!",
    "full-width letters": "Ｂọｎ ｎｇườｉ dân tộc đó không xứng đáng được sống ở đây, phải đuổi hết chúng đi!",
    "leetspeak": "B0n ngu01 d4n t0c d0 kh0ng xung d4ng duoc s0ng 0 d4y, ph4i du0i h3t chung d1!",
    "spaced-out letters": "B ọ n  n g ư ờ i  d â n  t ộ c đó không xứng đáng được sống ở đây, phải đuổi hết chúng đi!",
    "repeated letters": "Bọnnn ngườiii dân tộccc đóóó khônggg xứng đáng được sốnggg ở đâyyy, phải đuổiii hết chúng đi!",
    "chat abbreviations": "Bọn ng dân tộc đó ko xứng đáng dc sống ở đây, phải đuổi hết chúng đi!",
    "emoji and hashtags": "😡😡 Bọn người dân tộc đó không xứng đáng được sống ở đây, phải đuổi hết chúng đi!!! 🤬 #vn",
}


@pytest.mark.parametrize("evasion", list(EVASIONS))
def test_normaliser_undoes_each_evasion(evasion: str) -> None:
    # Shingles run across spaces, so the letters must be the same, in order.
    assert normalise(EVASIONS[evasion]).replace(" ", "") == normalise(ORIGINAL).replace(" ", "")
    assert similarity(ORIGINAL, EVASIONS[evasion]) == 1.0


def test_normal_form_is_folded_plain_latin() -> None:
    assert normalise("Đường phố Hà Nội!!! 😀") == "duong fo ha noi"
    assert normalise("số 2026") == "so 2026"  # a number alone stays a number


def test_short_text_is_marked_unreliable() -> None:
    short = signals.from_text("đồ ngu")[0]
    long = signals.from_text(ORIGINAL)[0]
    assert short.quality is not None and short.quality < signal_types.MINHASH.reliable_quality  # type: ignore[operator]
    assert long.quality is not None and long.quality >= signal_types.MINHASH.reliable_quality  # type: ignore[operator]
