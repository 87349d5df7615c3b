"""Text normalisation and shingling for the text/minhash signal.

Re-uploaders change a removed text just enough to slip past a naive hash:
they drop Vietnamese diacritics, switch Unicode forms, slip zero-width
characters between letters, swap in look-alike letters from other scripts,
write leetspeak, space letters out, stretch vowels, use chat abbreviations
("teencode") and pad the text with emoji and hashtags. Normaliser "n2" maps
all of these to one canonical form, so that every variant has the same
shingles as the original.

Any change here changes the signatures: bump TEXT_NORMALISATION or
TEXT_SHINGLING in signal_types, or old and new signatures would be compared
as if they were alike. tests/client/test_text.py pins the signatures of each
version on a fixed corpus to catch a change without a bump.
"""

from __future__ import annotations

import re
import unicodedata

from ._exceptions import EmptyTextError

SHINGLE_CHARS = 5

# Look-alike letters from other scripts, after case folding (NFKC has
# already mapped full-width forms to ASCII). Cyrillic and Greek letters that
# render like Latin ones.
CONFUSABLES = str.maketrans(
    {
        # Cyrillic
        "а": "a", "в": "b", "с": "c", "ԁ": "d", "е": "e", "ё": "e", "һ": "h", "і": "i", "ї": "i",
        "ј": "j", "к": "k", "ӏ": "l", "м": "m", "н": "h", "о": "o", "р": "p", "ԛ": "q", "г": "r",
        "ѕ": "s", "т": "t", "у": "y", "ү": "y", "ԝ": "w", "х": "x", "ы": "bi", "ь": "b", "п": "n",
        "и": "u", "л": "n", "д": "d", "з": "3", "ч": "4", "б": "6",
        # Greek
        "α": "a", "β": "b", "γ": "y", "δ": "d", "ε": "e", "η": "n", "ι": "i", "κ": "k", "μ": "u",
        "ν": "v", "ο": "o", "ρ": "p", "σ": "o", "ς": "c", "τ": "t", "υ": "u", "χ": "x", "ω": "w",
        "ϲ": "c", "ϳ": "j",
        # Latin letters that are not base letters plus a combining mark
        "đ": "d", "ð": "d", "ø": "o", "ł": "l", "ı": "i", "ȷ": "j", "ß": "ss", "æ": "ae", "œ": "oe",
    }
)  # fmt: skip

# Digits and symbols read as letters inside words ("ch3t", "ng@", "$ong").
LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "@": "a",
                      "$": "s", "!": "i", "|": "i", "€": "e"})  # fmt: skip
# "1", "|" and "!" stand for "l" as often as for "i", so the two letters are
# read as one, last, after abbreviations have been expanded.
LOOK_ALIKE_LETTERS = str.maketrans({"l": "i"})

# Vietnamese chat abbreviations, written in their normalised (folded) form.
# Documented in the README; extend it with a new TEXT_NORMALISATION version.
TEENCODE: dict[str, str] = {
    **dict.fromkeys(["k", "ko", "kg", "kh", "khg", "hok", "hong", "hem", "khum", "hk", "kp"], "khong"),
    **dict.fromkeys(["dc", "dk", "duoc"], "duoc"),
    **dict.fromkeys(["j", "ji"], "gi"),
    **dict.fromkeys(["ng", "ngta"], "nguoi"),
    **dict.fromkeys(["bn"], "ban"),
    **dict.fromkeys(["mk", "mik", "mh"], "minh"),
    **dict.fromkeys(["r", "oy", "roy"], "roi"),
    **dict.fromkeys(["cx", "cg"], "cung"),
    **dict.fromkeys(["vs"], "voi"),
    **dict.fromkeys(["ns"], "noi"),
    **dict.fromkeys(["trc"], "truoc"),
    **dict.fromkeys(["ntn"], "nhu the nao"),
    **dict.fromkeys(["bik", "bit", "bjt"], "biet"),
    **dict.fromkeys(["thik", "thjk"], "thich"),
    **dict.fromkeys(["iu"], "yeu"),
    **dict.fromkeys(["vk"], "vo"),
    **dict.fromkeys(["ck"], "chong"),
    **dict.fromkeys(["ms"], "moi"),
    **dict.fromkeys(["bh"], "bao gio"),
    **dict.fromkeys(["h"], "gio"),
    **dict.fromkeys(["lm"], "lam"),
    **dict.fromkeys(["v", "z", "zay", "dzay"], "vay"),
    **dict.fromkeys(["m"], "may"),
    **dict.fromkeys(["t"], "tao"),
    **dict.fromkeys(["nhiu"], "nhieu"),
}

_HASHTAG_OR_LINK = re.compile(r"(?:#|https?://|www\.)\S*")
_NOT_WORD = re.compile(r"[^\w]+|_+")
_SPACED_LETTERS = re.compile(r"\b(?:\w ){2,}\w\b")
_REPEATS = re.compile(r"(.)\1+")
_PHONETIC = (("ph", "f"), ("qu", "w"))


def _is_invisible(char: str) -> bool:
    # Format characters (zero-width space and joiners, bidi marks, soft
    # hyphen, BOM) and variation selectors are invisible but break shingles.
    return unicodedata.category(char) == "Cf" or "\ufe00" <= char <= "\ufe0f" or char in "\u034f\u3164\u115f\u1160"


def _fold_diacritics(text: str) -> str:
    # Vietnamese is often typed without tones and vowel marks; folding both
    # forms to bare letters makes them match.
    decomposed = unicodedata.normalize("NFD", text)
    return "".join(c for c in decomposed if unicodedata.category(c) != "Mn")


def _unleet(token: str) -> str:
    # Inside words, and a lone digit ("0 đây" for "ở đây"); a number stays a
    # number, and the punctuation that merely ends a word ("chết!") stays.
    if len(token) == 1:
        return token.translate(LEET)
    core = token.strip("!.,;:?\"'()[]{}")
    if not core or not any(c.isalpha() for c in core):
        return token
    return token.replace(core, core.translate(LEET))


def _teencode(text: str) -> str:
    return " ".join(TEENCODE.get(word, word) for word in text.split())


def normalise(text: str) -> str:
    """The canonical form of a text (normaliser "n2"); see the module docstring."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(c for c in text if not _is_invisible(c)).casefold()
    text = _fold_diacritics(text.translate(CONFUSABLES)).translate(CONFUSABLES)
    without_tags = _HASHTAG_OR_LINK.sub(" ", text)
    # Hashtags and links must not dominate, unless they are all there is.
    if without_tags.strip():
        text = without_tags
    text = " ".join(_unleet(token) for token in text.split())
    text = _NOT_WORD.sub(" ", text)  # punctuation, emoji and symbols
    # Stretched letters first, within words: joining spaced-out letters must
    # not merge the last letter of one word with the first of the next.
    text = _REPEATS.sub(r"\1", text)
    text = _SPACED_LETTERS.sub(lambda m: m.group(0).replace(" ", ""), text)
    text = _teencode(text)
    for spelled, spoken in _PHONETIC:
        text = text.replace(spelled, spoken)
    return text.translate(LOOK_ALIKE_LETTERS)


def shingles(normalised: str) -> set[str]:
    """Character shingles of the text with spaces removed (shingling "c5j").

    Spaces carry no meaning once letters can be spaced out or words split,
    so shingles run across them.
    """
    joined = normalised.replace(" ", "")
    if len(joined) <= SHINGLE_CHARS:
        return {joined}
    return {joined[i : i + SHINGLE_CHARS] for i in range(len(joined) - SHINGLE_CHARS + 1)}


def text_shingles(text: str) -> set[str]:
    """Normalise and shingle a text; refuse one with nothing to hash."""
    if not isinstance(text, str):
        raise TypeError(f"expected str, not {type(text).__name__}")
    normalised = normalise(text)
    if not normalised.strip():
        raise EmptyTextError("text is empty after normalisation")
    return shingles(normalised)
