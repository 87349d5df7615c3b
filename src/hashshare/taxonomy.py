"""The categories a submission may carry: a default taxonomy for hate speech
under the Code of Conduct, replaceable by a JSON file (``--taxonomy``)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

_ID = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")


@dataclass(frozen=True)
class Category:
    id: str
    title: str
    description: str = ""


DEFAULT_CATEGORIES: tuple[Category, ...] = (
    Category("hate_speech", "Hate speech", "Attacks people for a protected characteristic; target not specified."),
    Category(
        "hate_speech.ethnicity", "Hate speech: ethnicity", "Targets an ethnic group, including ethnic minorities."
    ),
    Category("hate_speech.religion", "Hate speech: religion", "Targets a religion or belief, or its followers."),
    Category("hate_speech.national_origin", "Hate speech: national origin", "Targets people for their nationality."),
    Category(
        "hate_speech.regional_origin", "Hate speech: regional origin", "Targets people for the region they come from."
    ),
    Category("hate_speech.gender", "Hate speech: gender", "Targets people for their sex or gender identity."),
    Category("hate_speech.sexual_orientation", "Hate speech: sexual orientation", "Targets people for who they love."),
    Category("hate_speech.disability", "Hate speech: disability", "Targets people with disabilities."),
    Category("incitement_to_violence", "Incitement to violence", "Calls for violence against people or groups."),
    Category("harassment", "Harassment", "Targeted abuse or intimidation of an individual."),
    Category("violent_extremism", "Violent extremism", "Glorifies or promotes violent extremist acts or groups."),
)


class Taxonomy:
    """An immutable set of categories, looked up by id."""

    def __init__(self, categories: tuple[Category, ...] = DEFAULT_CATEGORIES) -> None:
        if not categories:
            raise ValueError("a taxonomy needs at least one category")
        by_id: dict[str, Category] = {}
        for category in categories:
            if not _ID.match(category.id):
                raise ValueError(f"category id {category.id!r} is not lower_snake_case with dots")
            if category.id in by_id:
                raise ValueError(f"category {category.id!r} is defined twice")
            by_id[category.id] = category
        self._by_id = by_id

    @classmethod
    def from_file(cls, path: str | Path) -> Taxonomy:
        records = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(tuple(Category(r["id"], r.get("title", r["id"]), r.get("description", "")) for r in records))

    @property
    def categories(self) -> tuple[Category, ...]:
        return tuple(self._by_id.values())

    def __contains__(self, category_id: object) -> bool:
        return category_id in self._by_id
