"""The re-upload tricks the evaluation applies, one family per name.

Every transform takes a seeded random generator, so a run is repeatable.
"""

from __future__ import annotations

import io
import random
import unicodedata
from collections.abc import Callable

from PIL import Image, ImageDraw, ImageEnhance, ImageOps

ImageTransform = Callable[[Image.Image, random.Random], Image.Image]
TextTransform = Callable[[str, random.Random], str]


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as reloaded:
        return reloaded.convert("RGB")


def _window(image: Image.Image, keep: float, rng: random.Random) -> Image.Image:
    width, height = image.size
    w, h = round(width * keep), round(height * keep)
    left, top = rng.randint(0, width - w), rng.randint(0, height - h)
    return image.crop((left, top, left + w, top + h))


def _pad(image: Image.Image, rng: random.Random) -> Image.Image:
    width, height = image.size
    colour = rng.choice([(0, 0, 0), (255, 255, 255), (32, 32, 32)])
    border = (round(width * rng.uniform(0.05, 0.15)), round(height * rng.uniform(0.05, 0.15)))
    return ImageOps.expand(image, border=(border[0], border[1], border[0], border[1]), fill=colour)


def _caption_bar(image: Image.Image, rng: random.Random) -> Image.Image:
    # A meme-style bar with text over the bottom 15% of the picture.
    out = image.copy()
    width, height = out.size
    bar_top = round(height * 0.85)
    draw = ImageDraw.Draw(out)
    draw.rectangle((0, bar_top, width, height), fill=(255, 255, 255))
    words = ["chia", "se", "ngay", "truoc", "khi", "bi", "xoa", "sự", "thật", "là"]
    caption = " ".join(rng.choice(words) for _ in range(8)).upper()
    draw.text((width * 0.05, bar_top + (height - bar_top) * 0.3), caption, fill=(0, 0, 0))
    return out


IMAGE_TRANSFORMS: dict[str, ImageTransform] = {
    "jpeg_q30": lambda image, rng: _jpeg(image, 30),
    "downscale_30pct": lambda image, rng: image.resize((max(1, image.width * 3 // 10), max(1, image.height * 3 // 10))),
    "brightness_+30pct": lambda image, rng: ImageEnhance.Brightness(image).enhance(1.3),
    "grayscale": lambda image, rng: image.convert("L").convert("RGB"),
    "flip_horizontal": lambda image, rng: ImageOps.mirror(image),
    "rotate_90": lambda image, rng: image.transpose(Image.Transpose.ROTATE_90),
    "border_padding": _pad,
    "caption_bar_15pct": _caption_bar,
    "crop_10pct": lambda image, rng: _window(image, 0.9, rng),
    "rotate_5deg": lambda image, rng: image.rotate(5, resample=Image.Resampling.BICUBIC),
    "crop_20pct": lambda image, rng: _window(image, 0.8, rng),
}


# Text transforms


def _strip_diacritics(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if unicodedata.category(c) != "Mn"))


def _per_letter(text: str, rng: random.Random, table: dict[str, str], share: float) -> str:
    return "".join(table[c] if c in table and rng.random() < share else c for c in text)


def _per_word(text: str, rng: random.Random, change: Callable[[str], str], share: float) -> str:
    return " ".join(change(w) if rng.random() < share else w for w in text.split())


def _zero_width(text: str, rng: random.Random) -> str:
    invisible = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"]
    return "".join(c + rng.choice(invisible) if c.isalpha() and rng.random() < 0.4 else c for c in text)


LOOK_ALIKES = {"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "x": "х", "y": "у", "i": "і", "s": "ѕ", "B": "В"}
LEET = {"a": "4", "e": "3", "o": "0", "i": "1", "s": "5", "t": "7"}


def _stretch(word: str, rng: random.Random) -> str:
    vowels = [i for i, c in enumerate(word) if c.lower() in "aeiouyăâêôơưáàảãạéèẻẽẹíìỉĩịóòỏõọúùủũụýỳỷỹỵ"]
    if not vowels:
        return word
    i = rng.choice(vowels)
    return word[: i + 1] + word[i] * rng.randint(1, 3) + word[i + 1 :]


# Chat abbreviations as people type them (the reverse of the normaliser's list).
ABBREVIATIONS = {
    "không": "ko", "được": "dc", "gì": "j", "người": "ng", "với": "vs", "rồi": "r", "cũng": "cx",
    "biết": "bik", "mình": "mk", "bạn": "bn", "trước": "trc", "thích": "thik", "yêu": "iu",
    "nói": "ns", "mới": "ms", "làm": "lm", "vậy": "v", "nhiều": "nhiu", "quá": "wá", "phải": "fải",
}  # fmt: skip

PREFIXES = ["Mọi người xem đi:", "Chia sẻ ngay!", "Tin nóng:", "Đọc mà tức:", "Sự thật là"]
SUFFIXES = ["Share cho mọi người biết!!!", "Ai đồng ý thì like.", "#sựthật #chiase", "Quá đáng thật sự 😡", "Đọc đi."]


def _edit_words(text: str, rng: random.Random, insert: bool, vocabulary: list[str]) -> str:
    words = text.split()
    count = max(1, round(len(words) * 0.2))
    for _ in range(count):
        if insert:
            words.insert(rng.randint(0, len(words)), rng.choice(vocabulary))
        elif len(words) > 1:
            words.pop(rng.randrange(len(words)))
    return " ".join(words)


_FILLER = ["thì", "là", "mà", "nhé", "đấy", "thật", "rất", "lắm", "này", "kia", "ạ", "ơi"]

TEXT_TRANSFORMS: dict[str, TextTransform] = {
    "case_change": lambda text, rng: text.upper(),
    "diacritics_removed": lambda text, rng: _strip_diacritics(text),
    "nfd": lambda text, rng: unicodedata.normalize("NFD", text),
    "zero_width_chars": _zero_width,
    "look_alike_letters": lambda text, rng: _per_letter(text, rng, LOOK_ALIKES, 0.5),
    "leetspeak": lambda text, rng: _per_letter(text, rng, LEET, 0.5),
    "spaced_letters": lambda text, rng: _per_word(text, rng, " ".join, 0.3),
    "repeated_letters": lambda text, rng: _per_word(text, rng, lambda w: _stretch(w, rng), 0.3),
    "chat_abbreviations": lambda text, rng: " ".join(ABBREVIATIONS.get(w.lower(), w) for w in text.split()),
    "words_inserted_20pct": lambda text, rng: _edit_words(text, rng, True, _FILLER),
    "words_deleted_20pct": lambda text, rng: _edit_words(text, rng, False, _FILLER),
    "prefix_and_suffix": lambda text, rng: f"{rng.choice(PREFIXES)} {text} {rng.choice(SUFFIXES)}",
    "first_70pct": lambda text, rng: " ".join(text.split()[: max(1, round(len(text.split()) * 0.7))]),
}
