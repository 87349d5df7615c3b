"""Text normalisation and shingling for the text/minhash signal.

Any change here changes the signatures: bump TEXT_NORMALISATION or
TEXT_SHINGLING in signal_types, or old and new signatures would be compared
as if they were alike. tests/client/test_text.py pins the output of each
version on a fixed corpus to catch a change without a bump.
"""

from __future__ import annotations

import re
import unicodedata

from ._exceptions import EmptyTextError

SHINGLE_CHARS = 5
_WHITESPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """NFC, case folding and collapsed whitespace (normaliser "n1")."""
    folded = unicodedata.normalize("NFC", text).casefold()
    return _WHITESPACE.sub(" ", folded).strip()


def shingles(normalised: str) -> set[str]:
    """Overlapping character shingles (shingling "c5"); a short text is one shingle."""
    if len(normalised) <= SHINGLE_CHARS:
        return {normalised}
    return {normalised[i : i + SHINGLE_CHARS] for i in range(len(normalised) - SHINGLE_CHARS + 1)}


def text_shingles(text: str) -> set[str]:
    """Normalise and shingle a text; refuse one with nothing to hash."""
    if not isinstance(text, str):
        raise TypeError(f"expected str, not {type(text).__name__}")
    normalised = normalise(text)
    if not normalised:
        raise EmptyTextError("text is empty after normalisation")
    return shingles(normalised)
