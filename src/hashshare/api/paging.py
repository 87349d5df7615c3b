"""Paging (AIP-158) and periods, shared by the listings of the API."""

from __future__ import annotations

import base64
import binascii

from ..errors import FieldViolation

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


# The token is opaque to callers; inside, the listing's name and the last id served.


def page_token(kind: str, after: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{after}".encode()).decode().rstrip("=")


def page_start(kind: str, token: str, violations: list[FieldViolation]) -> int:
    if not token:
        return 0
    try:
        prefix, _, number = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        prefix, number = "", ""
    if prefix != kind or not number.isdigit() or len(number) > 18:
        violations.append(FieldViolation("page_token", "not a page token of this listing"))
        return 0
    return int(number)


def page_size(requested: int, violations: list[FieldViolation]) -> int:
    if requested < 0:
        violations.append(FieldViolation("page_size", "must not be negative"))
    return min(requested, MAX_PAGE_SIZE) if requested > 0 else DEFAULT_PAGE_SIZE


def period(
    message: object, start: str, end: str, violations: list[FieldViolation], path: str = ""
) -> tuple[float | None, float | None]:
    """The [start, end) times of a message's two Timestamp fields; either may be unset.
    ``path`` prefixes the field names a violation gives (``"period."``)."""
    since = getattr(message, start).ToMicroseconds() / 1e6 if message.HasField(start) else None  # type: ignore[attr-defined]
    until = getattr(message, end).ToMicroseconds() / 1e6 if message.HasField(end) else None  # type: ignore[attr-defined]
    if since is not None and until is not None and until <= since:
        violations.append(FieldViolation(f"{path}{end}", f"must be after {path}{start}"))
    return since, until
