"""The storage contracts run on every store: SQLite, one Redis server and a
Redis Cluster (three primaries, three replicas)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hashshare.store import open_store
from hashshare.store.base import Store


@pytest.fixture
def store_url(every_store_url: str) -> str:
    return every_store_url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    yield opened
    opened.close()
