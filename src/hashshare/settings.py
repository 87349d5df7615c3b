"""Every server setting, defined once: default, help, and environment variable.

The ``hashshare-server serve`` flags are generated from these fields, each
also read from ``HASHSHARE_<NAME>``; tests/server/test_settings.py fails when
one is not documented in the README.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

ENV_PREFIX = "HASHSHARE_"


def _setting(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Settings:
    listen: str = _setting("127.0.0.1:50051", "Address to listen on, HOST:PORT (port 0 picks a free one).")
    store: str = _setting(
        "sqlite:///hashshare.db",
        "Where the bank lives: sqlite:///PATH (embedded, the default), redis://HOST:PORT/DB, "
        "or redis+cluster://HOST:PORT[,HOST:PORT...] (any nodes of a Redis Cluster).",
    )
    taxonomy: str = _setting("", "JSON file of categories [{id, title, description}]; empty for the built-in one.")
    threads: int = _setting(16, "gRPC worker threads of the process.")
    workers: int = _setting(
        1,
        "Processes serving the one port (SO_REUSEPORT), each with its own index kept current by the change feed.",
    )
    max_concurrent_rpcs: int = _setting(
        256, "Calls in flight beyond which the server answers RESOURCE_EXHAUSTED instead of queueing."
    )
    stream_threads: int = _setting(
        1,
        "Threads that look up MatchStream items (those that have arrived, together) while the call's "
        "threads read and write the stream. More than one contends for the GIL.",
    )
    max_signals_per_item: int = _setting(320, "Most signals one Match or Submit item may carry.")
    feed_poll_seconds: float = _setting(
        0.05, "How often the in-memory index polls the store for writes made by other processes."
    )
    sighting_flush_seconds: float = _setting(
        0.5, "Sightings are written in batches at most this old; a crash can lose this much spread data."
    )
    token_cache_seconds: float = _setting(
        30.0, "How long a verified token is trusted without asking the store; revocations are applied at once."
    )
    grace_seconds: float = _setting(5.0, "On SIGTERM, how long calls in flight may take to finish.")
    snapshot_dir: str = _setting(
        "",
        "Directory of the index snapshot a restart loads instead of reading every row; empty: "
        "PATH.snapshot next to a sqlite:///PATH store, none for Redis.",
    )
    snapshot_seconds: float = _setting(
        300.0, "How often the index snapshot is rewritten if the bank changed (also at shutdown); 0: only at shutdown."
    )
    research_min_count: int = _setting(
        5, "Research answers withhold (suppress) any count below this, so that small groups cannot be singled out."
    )
    redis_wait_replicas: int = _setting(
        1,
        "Redis: a write is acknowledged once this many replicas of each primary it touched have it (WAIT); "
        "fewer when a primary has fewer connected; 0: do not wait.",
    )
    redis_wait_ms: int = _setting(
        1000,
        "Redis: how long a write waits for its replicas; past it the call fails UNAVAILABLE (the primary has "
        "the write, and a retry with the same request_id returns it once replicated).",
    )
    feed_max_length: int = _setting(
        1_000_000,
        "Redis: changes the feed stream keeps (XADD MAXLEN ~); a server cut off for longer rebuilds its index.",
    )
    feed_sweep_seconds: float = _setting(
        5.0, "Redis: how often each server publishes changes whose writer died before putting them on the feed."
    )
    dev_admin_token_file: str = _setting(
        "", "Development only: create an admin member if the bank has none and write its token to this file."
    )
    new_member_trust: str = _setting(
        "provisional",
        "Trust level of a member created without one: provisional (its submissions alone never block) or trusted.",
    )
    disputes_to_review: int = _setting(
        2, "Distinct members disputing an entry that hold it at REVIEW until a reviewer confirms it."
    )
    submit_rate_limit: int = _setting(
        3000,
        "Submissions (Submit calls and SubmitBatch items) one member may make per minute, counted in the store "
        "across processes; more are refused with RESOURCE_EXHAUSTED and flag the member. 0: no limit.",
    )
    search_threads: int = _setting(
        2,
        "Threads that search the index beside a request's own while no other request is searching: a "
        "SubmitBatch's items are split between them (numpy releases the GIL in its large gathers); one "
        "upload's searches stay on its request's thread, where they are faster; 0: the request's own thread only.",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one ``--flag`` per setting, defaulting to $HASHSHARE_<NAME> or the built-in default."""
    for f in fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        env = ENV_PREFIX + f.name.upper()
        kind = type(f.default) if f.default is not MISSING else str
        default = kind(os.environ[env]) if env in os.environ else f.default
        parser.add_argument(flag, type=kind, default=default, help=f"{f.metadata['help']} [env {env}]")


def from_arguments(namespace: argparse.Namespace) -> Settings:
    return Settings(**{f.name: getattr(namespace, f.name) for f in fields(Settings)})
