"""Calendar quarters in UTC: ``2026Q4`` is [2026-10-01, 2027-01-01)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

_QUARTER = re.compile(r"^(\d{4})-?Q([1-4])$", re.IGNORECASE)


@dataclass(frozen=True, order=True)
class Quarter:
    year: int
    number: int  # 1 to 4

    @classmethod
    def parse(cls, text: str) -> Quarter:
        """``2026Q4`` (or ``2026-Q4``); ValueError otherwise."""
        found = _QUARTER.match(text.strip())
        if found is None:
            raise ValueError(f"a quarter is written like 2026Q4, got {text!r}")
        return cls(int(found.group(1)), int(found.group(2)))

    def __str__(self) -> str:
        return f"{self.year}Q{self.number}"

    @property
    def start(self) -> datetime:
        return datetime(self.year, 3 * self.number - 2, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return self.next().start

    def next(self) -> Quarter:
        return Quarter(self.year + 1, 1) if self.number == 4 else Quarter(self.year, self.number + 1)

    def previous(self) -> Quarter:
        return Quarter(self.year - 1, 4) if self.number == 1 else Quarter(self.year, self.number - 1)
