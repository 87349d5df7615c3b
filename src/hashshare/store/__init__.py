"""Storage backends, chosen by URL."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Store

if TYPE_CHECKING:
    from ..settings import Settings


def open_store(url: str, settings: Settings | None = None) -> Store:
    """``sqlite:///PATH`` (embedded, default), ``redis://HOST:PORT/DB`` or
    ``redis+cluster://HOST:PORT[,HOST:PORT...]``; ``settings`` tune a Redis store."""
    if url.startswith("sqlite:///"):
        from .sqlite import SqliteStore, sqlite_path_from_url

        return SqliteStore(sqlite_path_from_url(url))
    if url.startswith(("redis://", "rediss://", "unix://", "redis+cluster://")):
        from .redis import RedisOptions, RedisStore

        options = RedisOptions()
        if settings is not None:
            options = RedisOptions(
                wait_replicas=settings.redis_wait_replicas,
                wait_ms=settings.redis_wait_ms,
                feed_max_length=settings.feed_max_length,
                sweep_seconds=settings.feed_sweep_seconds,
            )
        return RedisStore.from_url(url, options)
    raise ValueError(
        f"unsupported store URL {url!r}: use sqlite:///PATH, redis://HOST:PORT/DB "
        "or redis+cluster://HOST:PORT[,HOST:PORT...]"
    )


__all__ = ["Store", "open_store"]
