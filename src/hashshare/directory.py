"""The member directory: the contact points notices are routed to, and
the rules a contact point must follow."""

from __future__ import annotations

import re
from collections.abc import Sequence

from .errors import FieldViolation
from .model import ContactPoint

MAX_CONTACT_POINTS = 10
MAX_NAME = 100
MAX_EMAIL = 254  # RFC 5321's limit on a forward path
# Deliberately loose: one @, no spaces, a dot in the domain. Whether the
# mailbox exists is for the member to answer, not for a regular expression.
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s.]{2,}$")
# International form or local digits, with the usual separators.
_PHONE = re.compile(r"^\+?[0-9][0-9 ().-]{4,24}$")
_ROLE = re.compile(r"^[A-Za-z][A-Za-z0-9_ -]{0,39}$")


def check_contact_points(points: Sequence[ContactPoint], field: str, violations: list[FieldViolation]) -> None:
    """Add a violation naming ``field[i].name`` etc. for every bad contact point."""
    if len(points) > MAX_CONTACT_POINTS:
        violations.append(FieldViolation(field, f"at most {MAX_CONTACT_POINTS} contact points, got {len(points)}"))
        return
    for i, point in enumerate(points):
        where = f"{field}[{i}]"
        name = point.name.strip()
        if not name or len(name) > MAX_NAME or not name.isprintable():
            violations.append(FieldViolation(f"{where}.name", f"required: 1-{MAX_NAME} printable characters"))
        if not _ROLE.match(point.role):
            violations.append(
                FieldViolation(f"{where}.role", "required: what they answer for, e.g. trust_safety, legal, escalation")
            )
        if not point.email and not point.phone:
            violations.append(FieldViolation(f"{where}.email", "a contact point needs an email address or a phone"))
        if point.email and (len(point.email) > MAX_EMAIL or not _EMAIL.match(point.email)):
            violations.append(FieldViolation(f"{where}.email", f"not an email address: {point.email[:80]!r}"))
        if point.phone and (not _PHONE.match(point.phone) or sum(c.isdigit() for c in point.phone) < 5):
            violations.append(
                FieldViolation(f"{where}.phone", "digits, optionally a leading + and spaces, dots, dashes or ()")
            )


def normalised(points: Sequence[ContactPoint]) -> tuple[ContactPoint, ...]:
    return tuple(ContactPoint(p.name.strip(), p.role.strip(), p.email.strip(), p.phone.strip()) for p in points)
