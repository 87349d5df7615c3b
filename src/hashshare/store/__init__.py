"""Storage backends, chosen by URL."""

from __future__ import annotations

from .base import Store


def open_store(url: str) -> Store:
    """``sqlite:///PATH`` (embedded, default) or ``redis://HOST:PORT/DB``."""
    if url.startswith("sqlite:///"):
        from .sqlite import SqliteStore, sqlite_path_from_url

        return SqliteStore(sqlite_path_from_url(url))
    if url.startswith(("redis://", "rediss://", "unix://")):
        from .redis import RedisStore

        return RedisStore.from_url(url)
    raise ValueError(f"unsupported store URL {url!r}: use sqlite:///PATH or redis://HOST:PORT/DB")


__all__ = ["Store", "open_store"]
