"""The shared store on Redis: one server, or a Redis Cluster, with one code path.

Key discipline (``redis_keys``): each write is one optimistic transaction
(WATCH the keys it reads, read, MULTI/EXEC the writes) on the keys of ONE
slot: an entry's, a member's or a token's. Nothing spans two slots, so a
single server is just a cluster of one node. Everything that can fail is
checked before EXEC, so a failed call leaves nothing behind.

What a submit does, in order (each step in one slot):

1. read the member's request record (``hs:{m:M}:req:<id>``): a finished one
   is replayed, a pending one (a call that died half-way) is resumed with
   the ids it reserved;
2. allocate ids with INCR (a failed or raced call leaves gaps, never reuse);
3. reserve: write the pending request record (entry id, ids) under WATCH,
   so two concurrent calls with one request id agree on one plan;
4. the entry's transaction: its data, its slot's active signals, the
   request's record in the entry (``hs:{e:N}:requests``, the truth after a
   crash) and the change in the slot's outbox;
5. publish: XADD the change to ``hs:feed``, WAIT for the feed's replica,
   delete the outbox item, WAIT for the entry's replica;
6. finish the member's request record (WAIT for its replica), and answer.

A crash after 4 leaves an outbox item that a sweeper publishes; a retry
with the same request id resumes at 4 (finds the entry's record) and
publishes and confirms before answering. So an acknowledged write is on a
replica of every slot it touched and on the feed. A WAIT that times out
fails the call with UNAVAILABLE although the primary has the write: the
caller retries with the same request id and gets the one stored outcome.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import secrets
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis
import redis.exceptions as rex
from redis.backoff import ExponentialWithJitterBackoff
from redis.client import Pipeline
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from redis.typing import EncodableT, FieldT

from hashshare_client import DiscoveryMethod, LegalBasis, Signal

from .. import audit
from ..errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from ..model import (
    AllowedItem,
    AuditDraft,
    AuditEvent,
    AuditFilter,
    Change,
    ContactPoint,
    DisputeReason,
    Entry,
    EntryChanged,
    EntrySummary,
    EntryTrust,
    Feedback,
    FeedbackOutcome,
    IndexedSignal,
    Member,
    MemberFeedbackStats,
    MemberSightings,
    Notice,
    NoticeDecision,
    NoticeDraft,
    NoticeFilter,
    NoticeState,
    Opinion,
    RetractOutcome,
    Review,
    ReviewDecision,
    Role,
    SightingStats,
    SignalsAdded,
    SignalsRemoved,
    StoredSignal,
    Submission,
    SubmissionDraft,
    SubmitOutcome,
    Token,
    TokenRevoked,
    TrustLevel,
    allowed_index_id,
)
from . import changes, codecs
from . import redis_keys as keys
from .base import BatchOutcome, BatchSubmission, FeedGap, Replayed, Store, submitted
from .rollups import (
    Action,
    ActionRecord,
    ActionTally,
    Dimension,
    Key,
    Rollup,
    SightingTally,
    SubmissionFacts,
    SubmissionTally,
    day_of_hour,
    day_text,
    days_between,
    fold_actions,
    fold_sightings,
    hour_of,
    tally_submissions,
)
from .sighting_cells import SightingCells

SCHEMA_VERSION = 1

log = logging.getLogger(__name__)

# Each optimistic attempt loses only to a write that committed, so this many
# losses in a row means the store is overloaded, not that we are unlucky.
_MAX_ATTEMPTS = 100
_SCAN_BATCH = 1_000
_SLOT_BATCH = 1_024  # slots read per pipeline when visiting every slot
# How long a primary's count of connected replicas is trusted before asking again.
_REPLICA_COUNT_SECONDS = 2.0
_CLUSTER_RETRIES = 2
_FAILOVER_READ_SECONDS = 1.5  # a failover's promotion takes well under this

T = TypeVar("T")
Writes = Callable[[Pipeline], None]

# Errors that mean "this part of Redis cannot answer right now" (a node down,
# a failover under way, a stale slot map): the call fails UNAVAILABLE and the
# client retries it with the same request id.
UNREACHABLE: tuple[type[BaseException], ...] = (
    rex.ConnectionError,
    rex.TimeoutError,
    rex.ClusterError,
    rex.TryAgainError,
    rex.MovedError,
    rex.ReadOnlyError,
    rex.SlotNotCoveredError,
)


def _bytes(reply: object) -> bytes:
    """A string reply; the client runs with decode_responses=False."""
    if not isinstance(reply, bytes):
        raise TypeError(f"expected a bytes reply from Redis, got {type(reply).__name__}")
    return reply


def _text(reply: object) -> str:
    return _bytes(reply).decode()


def _float(value: float) -> str:
    # repr round-trips every float exactly, as SQLite's REAL does.
    return repr(float(value))


def _roles_text(roles: frozenset[Role]) -> str:
    return ",".join(sorted(r.value for r in roles))


def _roles(text: str) -> frozenset[Role]:
    return frozenset(Role(r) for r in text.split(",") if r)


def _hash_fields(reply: object) -> dict[str, bytes]:
    """An HGETALL reply (or a stream message's fields) with text field names."""
    if isinstance(reply, list):  # a stream message read in a cluster transaction: field, value, ...
        reply = dict(zip(reply[::2], reply[1::2], strict=True))
    if not isinstance(reply, dict):
        raise TypeError(f"expected a hash reply from Redis, got {type(reply).__name__}")
    return {_text(field): _bytes(value) for field, value in reply.items()}


def _check_signal(signal: Signal) -> None:
    # Refuse before the transaction: a write must fail whole, never half-way.
    if not (isinstance(signal.type, str) and isinstance(signal.version, str) and isinstance(signal.value, bytes)):
        raise TypeError(f"a signal needs a text type and version and a bytes value, got {signal!r}")


def _stream_id(text: str) -> tuple[int, int]:
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _parse_position(position: str) -> tuple[str, int | None]:
    """A feed position: ``"<ms>-<seq>-<n>"``, the id of the last change read and how many
    changes the stream had received up to it; ``""`` is the start; ``"<ms>-<seq>"`` (an
    older snapshot's) has no count, so only a trim past it can be detected."""
    if not position:
        return "0-0", 0
    parts = position.split("-")
    if len(parts) == 3:
        return f"{int(parts[0])}-{int(parts[1])}", int(parts[2])
    if len(parts) == 2:
        return f"{int(parts[0])}-{int(parts[1])}", None
    raise ValueError(f"not a Redis feed position: {position!r}")


@dataclass(frozen=True)
class _Pending:
    """A change in a slot's outbox, to publish once the transaction committed."""

    slot: int
    item_id: str
    change: Change


@dataclass
class _Transaction:
    slot: int | None
    outbox: list[_Pending] = field(default_factory=list)


class _Conflict(Exception):
    """Another call reserved one of our request ids meanwhile: plan again."""


def _merge(pending: Sequence[_Pending]) -> list[Change]:
    """The changes to publish, consecutive SignalsAdded as one (a batch is one change)."""
    merged: list[Change] = []
    for item in pending:
        change = item.change
        last = merged[-1] if merged else None
        if isinstance(change, SignalsAdded) and isinstance(last, SignalsAdded):
            merged[-1] = SignalsAdded(tuple(sorted((*last.rows, *change.rows), key=lambda r: r.row_id)))
        else:
            merged.append(change)
    return merged


def _unavailable_when_unreachable(cls: type[T]) -> type[T]:
    """Wrap every public method: an unreachable node becomes Unavailable."""

    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def wrapper(self: RedisStore, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except UNREACHABLE as error:
                self._refresh_slots()
                raise Unavailable(f"the store is unreachable ({type(error).__name__}: {error}); retry") from error

        return wrapper

    for name, value in list(vars(cls).items()):
        if callable(value) and not name.startswith("_") and not isinstance(value, (staticmethod, classmethod)):
            setattr(cls, name, wrap(value))
    return cls


@dataclass(frozen=True)
class RedisOptions:
    """How a Redis store confirms writes and bounds its feed (settings.py documents them)."""

    wait_replicas: int = 1
    wait_ms: int = 1_000
    feed_max_length: int = 1_000_000
    sweep_seconds: float = 5.0
    # An outbox item younger than this is left to the writer that is publishing it.
    outbox_grace_seconds: float = 2.0


def parse_cluster_url(url: str) -> list[tuple[str, int]]:
    """``redis+cluster://HOST:PORT[,HOST:PORT...]`` as (host, port) pairs."""
    rest = url.removeprefix("redis+cluster://").split("/", 1)[0].split("?", 1)[0]
    nodes = []
    for part in rest.split(","):
        parsed = urlsplit(f"//{part}")
        if not parsed.hostname or parsed.port is None:
            raise ValueError(f"{url!r}: each node must be HOST:PORT")
        nodes.append((parsed.hostname, parsed.port))
    return nodes


@dataclass
class _Plan:
    """Where one batch item goes: filled in as ids are allocated."""

    entry_id: int
    submission_id: int
    first_row: int
    resumed: bool = False


@_unavailable_when_unreachable
class RedisStore(Store):
    """The bank in one Redis database or one Redis Cluster."""

    def __init__(self, client: redis.Redis | RedisCluster, options: RedisOptions | None = None) -> None:
        self._redis: Any = client
        self._cluster = isinstance(client, RedisCluster)
        self._options = options or RedisOptions()
        self._local = threading.local()
        self._replicas: dict[str, tuple[int, float]] = {}
        self._last_sweep = 0.0
        self._check_schema_version()

    @classmethod
    def from_url(cls, url: str, options: RedisOptions | None = None) -> RedisStore:
        """``redis://HOST:PORT/DB``, ``rediss://``, ``unix://`` or
        ``redis+cluster://HOST:PORT[,HOST:PORT...]`` (any nodes of the cluster)."""
        if url.startswith("redis+cluster://"):
            nodes = [ClusterNode(host, port) for host, port in parse_cluster_url(url)]  # type: ignore[no-untyped-call]
            client: redis.Redis | RedisCluster = RedisCluster(
                startup_nodes=nodes,
                decode_responses=False,
                socket_connect_timeout=2.0,
                socket_timeout=10.0,
                # Retry briefly and then fail UNAVAILABLE (the caller retries with its request id):
                # a Match must fall back to a replica at once while a primary fails over.
                retry=Retry(ExponentialWithJitterBackoff(base=0.02, cap=0.2), _CLUSTER_RETRIES),
            )
            return cls(client, options)
        return cls(redis.Redis.from_url(url, decode_responses=False), options)

    def _check_schema_version(self) -> None:
        self._redis.set(keys.SCHEMA, SCHEMA_VERSION, nx=True)
        found = _text(self._redis.get(keys.SCHEMA))
        if int(found) != SCHEMA_VERSION:
            raise RuntimeError(f"Redis layout version {found}, this server knows {SCHEMA_VERSION}")

    def close(self) -> None:
        self._redis.close()
        if not self._cluster:
            self._redis.connection_pool.disconnect()

    # Nodes and replicas

    def _node(self, key: str) -> redis.Redis:
        """A client of the primary that holds ``key``: commands that must share one
        connection (a write, then WAIT for it) go through it."""
        if not self._cluster:
            return self._redis  # type: ignore[no-any-return]
        node = self._redis.get_node_from_key(key)
        return self._redis.get_redis_connection(node)  # type: ignore[no-any-return]

    def _refresh_slots(self) -> None:
        if self._cluster:
            with contextlib.suppress(Exception):  # best effort: the next call tries again
                self._redis.nodes_manager.initialize()

    def _wanted_replicas(self, node: redis.Redis) -> int:
        """How many replicas a write on ``node`` must reach: the setting, or fewer when
        the primary has fewer connected (no replicas at all, or one lost in a failover)."""
        if self._options.wait_replicas <= 0:
            return 0
        kwargs = node.get_connection_kwargs()
        name = f"{kwargs.get('host')}:{kwargs.get('port')}:{kwargs.get('path', '')}"
        now = time.monotonic()
        cached = self._replicas.get(name)
        if cached is None or now - cached[1] > _REPLICA_COUNT_SECONDS:
            connected = int(node.info("replication").get("connected_slaves", 0))
            cached = (connected, now)
            self._replicas[name] = cached
        return min(self._options.wait_replicas, cached[0])

    def _confirm(self, key: str, write: Callable[[Pipeline], object]) -> None:
        """Queue ``write`` (on ``key``'s primary) and WAIT until the replicas have it and,
        since replication is in order, every earlier write to that primary."""
        node = self._node(key)
        wanted = self._wanted_replicas(node)
        with node.pipeline(transaction=False) as pipe:
            write(pipe)
            if wanted:
                pipe.execute_command("WAIT", wanted, self._options.wait_ms)  # type: ignore[no-untyped-call]
            replies = pipe.execute()
        if wanted and int(replies[-1]) < wanted:
            raise Unavailable(
                f"the write is stored on the primary, but {wanted} replica(s) did not confirm it within "
                f"{self._options.wait_ms} ms; retry with the same request_id"
            )

    def _settle(self, slot: int) -> None:
        """Before a replayed write is answered: its changes are on the feed, and its
        slot's replicas have everything (the first call may have died before either)."""
        self._publish_slot(slot, min_age=0.0)
        self._confirm(keys.ack(slot), lambda pipe: pipe.set(keys.ack(slot), _float(time.time())))

    # Transactions

    def _atomically(
        self,
        watch: Sequence[str],
        plan: Callable[[Pipeline], tuple[T, Writes | None]],
        outbox: list[_Pending] | None = None,
    ) -> T:
        """Run ``plan`` under WATCH and commit the writes it returns, retrying on conflict.

        ``plan`` reads through the pipeline (immediately, while watching) and
        returns the result and a function that queues the writes, or None
        when there is nothing to write. Every key must be in the slot of
        ``watch[0]``. Changes appended with ``_append`` are published once
        EXEC succeeded, or left in ``outbox`` for the caller to publish."""
        transaction = _Transaction(keys.slot_of(watch[0]) if watch else None)
        with self._redis.pipeline(transaction=True) as pipe:
            for _ in range(_MAX_ATTEMPTS):
                transaction.outbox.clear()
                self._local.transaction = transaction
                try:
                    pipe.watch(*watch)
                    result, writes = plan(pipe)
                    if writes is None:
                        return result
                    pipe.multi()
                    writes(pipe)
                    pipe.execute()
                    break
                except redis.WatchError:
                    pipe.reset()
                finally:
                    self._local.transaction = None
            else:
                raise Unavailable(f"the store is too busy: gave up after {_MAX_ATTEMPTS} conflicting attempts")
        if outbox is None:
            self._publish(transaction.outbox)
        else:
            outbox.extend(transaction.outbox)
        return result

    @staticmethod
    def _counter(pipe: Pipeline, key: str) -> int:
        value = pipe.get(key)
        return int(_bytes(value)) if value is not None else 0

    def _append(self, pipe: Pipeline, change: Change) -> None:
        """Queue ``change`` for the feed inside the transaction ``pipe``: into the outbox
        of the transaction's slot, published after EXEC (or by the sweeper)."""
        transaction: _Transaction | None = getattr(self._local, "transaction", None)
        slot = transaction.slot if transaction is not None else None
        if slot is None:
            slot = _queued_slot(pipe)
        item = _Pending(slot, uuid.uuid4().hex, change)
        record = json.dumps({"change": changes.encode(change).decode(), "at": time.time()})
        pipe.hset(keys.outbox(slot), item.item_id, record)
        if transaction is not None:
            transaction.outbox.append(item)

    def _publish(self, pending: Sequence[_Pending]) -> None:
        """Put committed changes on the feed, then take them out of their outboxes."""
        if not pending:
            return
        feed = self._node(keys.FEED)
        wanted = self._wanted_replicas(feed)
        with feed.pipeline(transaction=False) as pipe:
            for change in _merge(pending):
                pipe.xadd(
                    keys.FEED,
                    {keys.FEED_FIELD: changes.encode(change)},
                    maxlen=self._options.feed_max_length,
                    approximate=True,
                )
            if wanted:
                pipe.execute_command("WAIT", wanted, self._options.wait_ms)  # type: ignore[no-untyped-call]
            replies = pipe.execute()
        if wanted and int(replies[-1]) < wanted:
            # The outbox keeps the items: a retry or the sweeper publishes them again.
            raise Unavailable(
                f"the change feed's replica did not confirm within {self._options.wait_ms} ms; "
                "retry with the same request_id"
            )
        by_slot: dict[int, list[str]] = defaultdict(list)
        for item in pending:
            by_slot[item.slot].append(item.item_id)
        for slot, item_ids in by_slot.items():
            self._confirm(keys.outbox(slot), lambda p, s=slot, ids=item_ids: p.hdel(keys.outbox(s), *ids))  # type: ignore[misc]

    def _publish_slot(self, slot: int, min_age: float) -> int:
        """Publish the items of one slot's outbox at least ``min_age`` seconds old."""
        return self._publish_outboxes({slot: _hash_fields(self._redis.hgetall(keys.outbox(slot)))}, min_age)

    def _publish_outboxes(self, outboxes: dict[int, dict[str, bytes]], min_age: float) -> int:
        cutoff = time.time() - min_age
        pending = []
        for slot, items in outboxes.items():
            for item_id, raw in items.items():
                record = json.loads(raw)
                if float(record["at"]) <= cutoff:
                    pending.append((float(record["at"]), _Pending(slot, item_id, changes.decode(record["change"]))))
        pending.sort(key=lambda p: p[0])
        self._publish([p for _, p in pending])
        return len(pending)

    def publish_pending(self) -> int:
        now = time.monotonic()
        if now - self._last_sweep < self._options.sweep_seconds:
            return 0
        self._last_sweep = now
        published = 0
        for first in range(0, keys.SLOTS, _SLOT_BATCH):
            slots = range(first, min(first + _SLOT_BATCH, keys.SLOTS))
            with self._redis.pipeline(transaction=False) as pipe:
                for slot in slots:
                    pipe.hgetall(keys.outbox(slot))
                replies = pipe.execute()
            found = {slot: _hash_fields(reply) for slot, reply in zip(slots, replies, strict=True) if reply}
            if found:
                published += self._publish_outboxes(found, self._options.outbox_grace_seconds)
        if published:
            log.warning("published %d changes that their writers had left in outboxes", published)
        return published

    # Members and tokens

    def create_member(
        self, name: str, roles: frozenset[Role], now: float, trust_level: TrustLevel = TrustLevel.PROVISIONAL
    ) -> Member:
        if self._redis.hexists(keys.MEMBERS_BY_NAME, name):
            raise AlreadyExists(f"a member called {name!r} exists")
        member = Member(int(self._redis.incr(keys.NEXT_MEMBER)), name, roles, now, trust_level)
        # The member's record first, its name last: a crash in between leaves an
        # unnamed record that nothing lists, never a name without a member.
        self._redis.hset(
            keys.member(member.member_id),
            mapping={
                "name": name,
                "roles": _roles_text(roles),
                "created_at": _float(now),
                "trust_level": trust_level.value,
            },
        )
        if not self._redis.hsetnx(keys.MEMBERS_BY_NAME, name, member.member_id):
            self._redis.delete(keys.member(member.member_id))
            raise AlreadyExists(f"a member called {name!r} exists")
        return member

    def get_member(self, member_id: int) -> Member | None:
        return self._member(member_id, _hash_fields(self._redis.hgetall(keys.member(member_id))))

    @staticmethod
    def _member(member_id: int, fields: dict[str, bytes]) -> Member | None:
        if not fields:
            return None
        flagged_at = fields.get("flagged_at")
        return Member(
            member_id,
            fields["name"].decode(),
            _roles(fields["roles"].decode()),
            float(fields["created_at"]),
            # Members stored before trust levels existed blocked alone: TRUSTED.
            TrustLevel(fields.get("trust_level", TrustLevel.TRUSTED.value.encode()).decode()),
            float(flagged_at) if flagged_at else None,
            fields.get("flag_reason", b"").decode(),
        )

    def list_members(self) -> list[Member]:
        ids = sorted(int(v) for v in _hash_fields(self._redis.hgetall(keys.MEMBERS_BY_NAME)).values())
        with self._redis.pipeline(transaction=False) as pipe:
            for member_id in ids:
                pipe.hgetall(keys.member(member_id))
            replies = pipe.execute()
        found = (self._member(i, _hash_fields(r)) for i, r in zip(ids, replies, strict=True))
        return [m for m in found if m is not None]

    def create_token(self, member_id: int, token_hash: bytes, roles: frozenset[Role], now: float) -> Token:
        by_hash = keys.token_by_hash(token_hash)
        if not self._redis.exists(keys.member(member_id)):
            raise NotFound(f"no member {member_id}")
        if self._redis.exists(by_hash):
            raise AlreadyExists("a token with this hash exists")
        token = Token(int(self._redis.incr(keys.NEXT_TOKEN)), member_id, roles, now)
        self._redis.hset(
            keys.token(token.token_id),
            mapping={
                "member_id": member_id,
                "token_hash": token_hash,
                "roles": _roles_text(roles),
                "created_at": _float(now),
            },
        )
        # The hash last, claimed once: the token is usable only when complete.
        if not self._redis.set(by_hash, token.token_id, nx=True):
            self._redis.delete(keys.token(token.token_id))
            raise AlreadyExists("a token with this hash exists")
        return token

    @staticmethod
    def _token(token_id: int, fields: dict[str, bytes]) -> Token:
        revoked_at = fields.get("revoked_at")
        return Token(
            token_id,
            int(fields["member_id"]),
            _roles(fields["roles"].decode()),
            float(fields["created_at"]),
            float(revoked_at) if revoked_at is not None else None,
        )

    def revoke_token(self, token_id: int, now: float) -> tuple[Token, bytes]:
        def plan(pipe: Pipeline) -> tuple[tuple[Token, bytes], Writes | None]:
            fields = _hash_fields(pipe.hgetall(keys.token(token_id)))
            if not fields:
                raise NotFound(f"no token {token_id}")
            token_hash = fields["token_hash"]
            if "revoked_at" in fields:  # revoked before: the feed already said so
                return (self._token(token_id, fields), token_hash), None

            def writes(tx: Pipeline) -> None:
                tx.hset(keys.token(token_id), "revoked_at", _float(now))
                self._append(tx, TokenRevoked(token_hash))

            return (self._token(token_id, {**fields, "revoked_at": _float(now).encode()}), token_hash), writes

        return self._atomically([keys.token(token_id)], plan)

    def find_token(self, token_hash: bytes) -> tuple[Token, Member] | None:
        token_id = self._redis.get(keys.token_by_hash(token_hash))
        if token_id is None:
            return None
        fields = _hash_fields(self._redis.hgetall(keys.token(int(_bytes(token_id)))))
        if not fields or "revoked_at" in fields:
            return None
        token = self._token(int(_bytes(token_id)), fields)
        member = self.get_member(token.member_id)
        return (token, member) if member is not None else None

    # The bank

    def submit(
        self,
        member_id: int,
        request_id: str,
        request_digest: bytes,
        draft: SubmissionDraft,
        join_entry_id: int | None,
        now: float,
    ) -> SubmitOutcome:
        outcome = self._submit_items(
            member_id, [BatchSubmission(request_id, request_digest, draft, join_entry_id)], now
        )[0]
        if isinstance(outcome, InvalidArgument):
            raise outcome
        found = submitted(outcome)
        assert found is not None
        return found

    def submit_many(self, member_id: int, items: Sequence[BatchSubmission], now: float) -> list[BatchOutcome]:
        if not items:
            return []
        return self._submit_items(member_id, items, now)

    def _submit_items(self, member_id: int, items: Sequence[BatchSubmission], now: float) -> list[BatchOutcome]:
        for item in items:
            for signal in item.draft.signals:
                _check_signal(signal)
        for _ in range(_MAX_ATTEMPTS):
            try:
                return self._try_submit_items(member_id, items, now)
            except _Conflict:
                continue
        raise Unavailable(f"the store is too busy: gave up after {_MAX_ATTEMPTS} conflicting attempts")

    def _try_submit_items(self, member_id: int, items: Sequence[BatchSubmission], now: float) -> list[BatchOutcome]:
        request_keys = [keys.request(member_id, item.request_id) for item in items]
        unique = list(dict.fromkeys(request_keys))
        stored: dict[str, dict[str, Any]] = {
            key: json.loads(_bytes(reply))
            for key, reply in zip(unique, self._redis.execute_command("MGET", *unique), strict=True)
            if reply
        }
        joins = sorted({item.join_entry_id for item in items if item.join_entry_id is not None})
        with self._redis.pipeline(transaction=False) as pipe:
            for entry_id in joins:
                pipe.exists(keys.entry(entry_id))
            existing = {entry_id for entry_id, found in zip(joins, pipe.execute(), strict=True) if found}

        # 1. What each item is: a replay, a refusal, a resumed reservation or a new one.
        results: list[BatchOutcome | None] = [None] * len(items)
        plans: dict[int, _Plan] = {}  # item index -> plan, for items written now (or resumed)
        first_of: dict[str, int] = {}
        duplicates: dict[int, int] = {}  # item index -> the earlier item it repeats
        replays: dict[int, SubmitOutcome] = {}
        new_entries = 0
        for n, item in enumerate(items):
            key = request_keys[n]
            seen = stored.get(key)
            if seen is not None and (seen["digest"] != item.request_digest.hex() or seen["kind"] != "submit"):
                results[n] = InvalidArgument.field("request_id", "already used for a different request")
                continue
            if key in first_of:
                if items[first_of[key]].request_digest != item.request_digest:
                    results[n] = InvalidArgument.field("request_id", "already used for a different request")
                else:
                    duplicates[n] = first_of[key]
                continue
            first_of[key] = n
            if seen is not None and "outcome" in seen:
                replays[n] = SubmitOutcome(**seen["outcome"])
                continue
            if seen is not None:  # a reservation left by a call that did not finish
                plans[n] = _Plan(seen["entry_id"], seen["submission_id"], seen["first_row"], resumed=True)
                continue
            target: int | None = None
            if item.join_entry_id is not None and item.join_entry_id in existing:
                target = item.join_entry_id
            elif item.join_item is not None and 0 <= item.join_item < n:
                target = self._entry_of(item.join_item, plans, replays, duplicates)
            if target is None:
                new_entries += 1
                target = -new_entries  # a new entry, numbered once ids are allocated
            plans[n] = _Plan(target, 0, 0)

        # 2. Ids for the new reservations, taken before any transaction.
        fresh = [n for n, plan in plans.items() if not plan.resumed]
        if fresh:
            signal_count = sum(len(items[n].draft.signals) for n in fresh)
            last_entry, last_submission, last_signal = self._allocate(new_entries, len(fresh), signal_count)
            next_submission, next_signal = last_submission - len(fresh), last_signal - signal_count
            for n in sorted(fresh):
                plan = plans[n]
                if plan.entry_id < 0:
                    plan.entry_id = last_entry - new_entries - plan.entry_id  # -1 -> the first new id
                next_submission += 1
                plan.submission_id = next_submission
                plan.first_row = next_signal + 1
                next_signal += len(items[n].draft.signals)

            # 3. Reserve them, so that a concurrent or later call with the same request id
            #    writes this plan or nothing.
            self._reserve(member_id, {request_keys[n]: (items[n], plans[n]) for n in fresh}, now)

        # 4. One transaction per entry, in the order the batch first names them.
        outbox: list[_Pending] = []
        by_entry: dict[int, list[int]] = defaultdict(list)
        for n in sorted(plans):
            by_entry[plans[n].entry_id].append(n)
        written: dict[int, SubmitOutcome] = {}
        settle: set[int] = set()
        for entry_id, indices in by_entry.items():
            outcomes, already = self._write_entry(
                member_id, entry_id, [(items[n], plans[n]) for n in indices], now, outbox
            )
            written.update(zip(indices, outcomes, strict=True))
            if already:
                settle.add(keys.slot_of(keys.entry(entry_id)))

        # 5. Publish, confirm, and close the request records.
        self._publish(outbox)
        for outcome in replays.values():
            settle.add(keys.slot_of(keys.entry(outcome.entry_id)))
        for slot in sorted(settle):
            self._settle(slot)
        for n, outcome in written.items():
            results[n] = outcome
        for n, outcome in replays.items():
            results[n] = Replayed(outcome)
        for n, earlier in duplicates.items():
            first = submitted(results[earlier])  # type: ignore[arg-type]
            assert first is not None
            results[n] = Replayed(first)
        records = {
            request_keys[n]: json.dumps(
                {
                    "kind": "submit",
                    "digest": items[n].request_digest.hex(),
                    "outcome": asdict(outcome),
                    "created_at": now,
                }
            )
            for n, outcome in written.items()
        }
        if records or replays:
            any_key = next(iter(records)) if records else request_keys[next(iter(replays))]

            def close(pipe: Pipeline) -> None:
                for key, record in records.items():
                    pipe.set(key, record)
                if not records:
                    pipe.set(keys.ack(keys.slot_of(any_key)), _float(time.time()))

            self._confirm(any_key, close)
        return [r for r in results if r is not None]

    @staticmethod
    def _entry_of(
        index: int, plans: dict[int, _Plan], replays: dict[int, SubmitOutcome], duplicates: dict[int, int]
    ) -> int | None:
        """The entry an earlier item of the batch stores into (None if it was refused)."""
        index = duplicates.get(index, index)
        if index in plans:
            return plans[index].entry_id
        if index in replays:
            return replays[index].entry_id
        return None

    def _allocate(self, entries: int, submissions: int, signals: int) -> tuple[int, int, int]:
        """Raise the id counters (single-key INCRBYs, outside any transaction); the last ids."""
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.incrby(keys.NEXT_ENTRY, entries) if entries else pipe.get(keys.NEXT_ENTRY)
            pipe.incrby(keys.NEXT_SUBMISSION, submissions)
            pipe.incrby(keys.NEXT_SIGNAL, signals) if signals else pipe.get(keys.NEXT_SIGNAL)
            replies = pipe.execute()
        return tuple(int(r or 0) for r in replies)  # type: ignore[return-value]

    def _reserve(self, member_id: int, reservations: dict[str, tuple[BatchSubmission, _Plan]], now: float) -> None:
        request_keys = list(reservations)

        def plan(pipe: Pipeline) -> tuple[None, Writes]:
            # MGET by name: redis-py refuses pipe.mget() in a cluster pipeline, though these keys share a slot.
            if any(reply is not None for reply in pipe.execute_command("MGET", *request_keys)):  # type: ignore[no-untyped-call]
                raise _Conflict()

            def writes(tx: Pipeline) -> None:
                for key, (item, reserved) in reservations.items():
                    record = {
                        "kind": "submit",
                        "digest": item.request_digest.hex(),
                        "entry_id": reserved.entry_id,
                        "submission_id": reserved.submission_id,
                        "first_row": reserved.first_row,
                        "created_at": now,
                    }
                    tx.set(key, json.dumps(record))

            return None, writes

        self._atomically(request_keys, plan, outbox=[])

    def _write_entry(
        self,
        member_id: int,
        entry_id: int,
        items: list[tuple[BatchSubmission, _Plan]],
        now: float,
        outbox: list[_Pending],
    ) -> tuple[list[SubmitOutcome], bool]:
        """Store the items of one entry in one transaction; their outcomes, and whether
        some had been stored before (by a call that died or a concurrent twin)."""
        fields = [keys.request_field(member_id, item.request_id) for item, _ in items]
        slot = keys.slot_of(keys.entry(entry_id))
        watch = [keys.entry(entry_id), keys.entry_active(entry_id), keys.entry_requests(entry_id)]

        def plan(pipe: Pipeline) -> tuple[tuple[list[SubmitOutcome], bool], Writes | None]:
            exists = bool(pipe.exists(keys.entry(entry_id)))
            active = {m: json.loads(v) for m, v in _hash_fields(pipe.hgetall(keys.entry_active(entry_id))).items()}
            done = pipe.hmget(keys.entry_requests(entry_id), fields)
            outcomes: list[SubmitOutcome] = []
            meta: dict[FieldT, EncodableT] | None = None
            submissions: dict[FieldT, EncodableT] = {}
            signal_records: dict[FieldT, EncodableT] = {}
            requests: dict[FieldT, EncodableT] = {}
            rows: list[IndexedSignal] = []
            already = False
            for (item, reserved), field_name, record in zip(items, fields, done, strict=True):
                if record is not None:
                    outcomes.append(SubmitOutcome(**json.loads(record)["outcome"]))
                    already = True
                    continue
                created_at = now if item.created_at is None else item.created_at
                if not exists:
                    meta = {"category": item.draft.category, "created_at": _float(created_at)}
                item_rows = [
                    IndexedSignal(reserved.first_row + i, entry_id, s.type, s.version, s.value, s.variant)
                    for i, s in enumerate(item.draft.signals)
                ]
                rows.extend(item_rows)
                signal_records.update(_signal_records(reserved.submission_id, item.draft.signals, item_rows))
                submissions[reserved.submission_id] = _submission_record(
                    member_id, item.draft, created_at, [r.row_id for r in item_rows]
                )
                mine = str(member_id)
                active[mine] = [*active.get(mine, []), reserved.submission_id]
                outcome = SubmitOutcome(entry_id, reserved.submission_id, exists, len(active))
                exists = True
                outcomes.append(outcome)
                requests[field_name] = json.dumps(
                    {
                        "kind": "submit",
                        "digest": item.request_digest.hex(),
                        "outcome": asdict(outcome),
                        "created_at": now,
                    }
                )
            if not requests:
                return (outcomes, already), None

            def writes(tx: Pipeline) -> None:
                if meta is not None:
                    tx.hset(keys.entry(entry_id), mapping=meta)
                tx.hset(keys.entry_submissions(entry_id), mapping=submissions)
                tx.hset(keys.entry_active(entry_id), str(member_id), json.dumps(active[str(member_id)]))
                if rows:
                    tx.hset(keys.entry_signals(entry_id), mapping=signal_records)
                    tx.hset(keys.slot_active_signals(slot), mapping={r.row_id: _indexed_record(r) for r in rows})
                tx.hset(keys.entry_requests(entry_id), mapping=requests)
                self._append(tx, SignalsAdded(tuple(rows)))

            return (outcomes, already), writes

        return self._atomically(watch, plan, outbox=outbox)

    def retract(
        self, member_id: int, request_id: str, request_digest: bytes, entry_id: int, reason: str, now: float
    ) -> RetractOutcome:
        request_key = keys.request(member_id, request_id)
        slot = keys.slot_of(keys.entry(entry_id))
        stored = self._redis.get(request_key)
        if stored is not None:
            record = json.loads(_bytes(stored))
            if record["digest"] != request_digest.hex() or record["kind"] != "retract":
                raise InvalidArgument.field("request_id", "already used for a different request")
            replayed = RetractOutcome(**record["outcome"])
            self._settle(keys.slot_of(keys.entry(replayed.entry_id)))
            self._confirm(request_key, lambda pipe: pipe.set(request_key, stored))
            return replayed
        field_name = keys.request_field(member_id, request_id)
        # Every change to an active submission also changes :active, so watching it covers them.
        watch = [keys.entry_active(entry_id), keys.entry_requests(entry_id)]

        def plan(pipe: Pipeline) -> tuple[tuple[RetractOutcome, bool], Writes | None]:
            done = pipe.hget(keys.entry_requests(entry_id), field_name)
            if done is not None:  # committed by a call that died before closing its record
                record = json.loads(_bytes(done))
                if record["digest"] != request_digest.hex() or record["kind"] != "retract":
                    raise InvalidArgument.field("request_id", "already used for a different request")
                return (RetractOutcome(**record["outcome"]), True), None
            active = _hash_fields(pipe.hgetall(keys.entry_active(entry_id)))
            if str(member_id) not in active:
                raise NotFound(f"no active submission of yours on entry {entry_id}")
            submission_ids: list[int] = json.loads(active[str(member_id)])
            records = [json.loads(_bytes(r)) for r in pipe.hmget(keys.entry_submissions(entry_id), submission_ids)]
            row_ids = tuple(sorted(row for record in records for row in record["signal_ids"]))
            retracted: dict[FieldT, EncodableT] = {
                sid: json.dumps({**record, "retracted_at": float(now), "retract_reason": reason})
                for sid, record in zip(submission_ids, records, strict=True)
            }
            outcome = RetractOutcome(entry_id, len(submission_ids), len(active) > 1)
            request_record = {
                "kind": "retract",
                "digest": request_digest.hex(),
                "outcome": asdict(outcome),
                "created_at": now,
            }

            def writes(tx: Pipeline) -> None:
                tx.hset(keys.entry_submissions(entry_id), mapping=retracted)
                tx.hdel(keys.entry_active(entry_id), str(member_id))
                if row_ids:
                    tx.hdel(keys.slot_active_signals(slot), *map(str, row_ids))
                tx.hset(keys.entry_requests(entry_id), field_name, json.dumps(request_record))
                self._append(tx, SignalsRemoved(row_ids, (entry_id,)))

            return (outcome, False), writes

        outbox: list[_Pending] = []
        outcome, already = self._atomically(watch, plan, outbox=outbox)
        self._publish(outbox)
        if already:
            self._settle(slot)
        record = {"kind": "retract", "digest": request_digest.hex(), "outcome": asdict(outcome), "created_at": now}
        self._confirm(request_key, lambda pipe: pipe.set(request_key, json.dumps(record)))
        return outcome

    def get_entry(self, entry_id: int) -> Entry | None:
        # MULTI/EXEC makes the three reads one snapshot.
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(keys.entry(entry_id))
            pipe.hgetall(keys.entry_submissions(entry_id))
            pipe.hgetall(keys.entry_signals(entry_id))
            meta, submissions, signals = (_hash_fields(r) for r in pipe.execute())
        if not meta:
            return None
        return Entry(
            entry_id,
            meta["category"].decode(),
            float(meta["created_at"]),
            tuple(_submission(int(sid), entry_id, json.loads(submissions[sid])) for sid in _by_id(submissions)),
            tuple(_stored_signal(int(row), json.loads(signals[row])) for row in _by_id(signals)),
        )

    def entry_summaries(self, entry_ids: Iterable[int]) -> dict[int, EntrySummary]:
        ids = list(dict.fromkeys(entry_ids))
        if not ids:
            return {}
        try:
            replies = self._summary_replies(self._redis, ids)
        except UNREACHABLE:
            if not self._cluster:
                raise
            replies = self._summary_replies_during_failover(ids)
        summaries = {}
        for entry_id, category, members in zip(
            ids, replies[: 2 * len(ids) : 2], replies[1 : 2 * len(ids) : 2], strict=True
        ):
            if category is not None:
                summaries[entry_id] = EntrySummary(entry_id, _text(category), int(members), int(members) > 0)
        inputs = self._verdict_inputs(ids, replies[2 * len(ids) :])
        return {entry_id: replace(s, **inputs.get(entry_id, {})) for entry_id, s in summaries.items()}

    @staticmethod
    def _summary_replies(client: Any, ids: Sequence[int]) -> list[Any]:
        """Each entry's category and active members, then its verdict inputs, in one round trip."""
        with client.pipeline(transaction=False) as pipe:
            for entry_id in ids:
                pipe.hget(keys.entry(entry_id), "category")
                pipe.hlen(keys.entry_active(entry_id))
            RedisStore._read_verdict_inputs(pipe, ids)
            return list(pipe.execute())

    def _summary_replies_during_failover(self, ids: Sequence[int]) -> list[Any]:
        """Match must keep answering while a primary fails over: read the replicas, and
        for the moment of the promotion itself (when a node may refuse with CLUSTERDOWN),
        try again briefly with a fresh slot map."""
        deadline = time.monotonic() + _FAILOVER_READ_SECONDS
        while True:
            try:
                return self._summary_replies_from_replicas(ids)
            except UNREACHABLE:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
                self._refresh_slots()

    def _summary_replies_from_replicas(self, ids: Sequence[int]) -> list[Any]:
        by_node: dict[str, tuple[Any, list[int]]] = {}
        for entry_id in ids:
            node = self._redis.get_node_from_key(keys.entry(entry_id), replica=True)
            by_node.setdefault(node.name, (node, []))[1].append(entry_id)
        summary: dict[int, tuple[Any, Any]] = {}
        inputs: dict[int, tuple[Any, Any, Any]] = {}
        for node, node_ids in by_node.values():
            client = self._redis.get_redis_connection(node)
            with client.pipeline(transaction=False) as pipe:
                pipe.execute_command("READONLY")  # a replica answers reads only after READONLY
                for entry_id in node_ids:
                    pipe.hget(keys.entry(entry_id), "category")
                    pipe.hlen(keys.entry_active(entry_id))
                self._read_verdict_inputs(pipe, node_ids)
                found = pipe.execute()[1:]
            rest = found[2 * len(node_ids) :]
            for n, entry_id in enumerate(node_ids):
                summary[entry_id] = (found[2 * n], found[2 * n + 1])
                inputs[entry_id] = (rest[3 * n], rest[3 * n + 1], rest[3 * n + 2])
        # The layout of _summary_replies: every summary pair, then every entry's three verdict inputs.
        return [r for entry_id in ids for r in summary[entry_id]] + [r for entry_id in ids for r in inputs[entry_id]]

    # Sightings

    def add_sighting_cells(self, cells: SightingCells) -> None:
        if not len(cells):
            return
        rows = cells.rows()
        # Fold the cells first: one command per (entry, member) and (entry, day), not per cell.
        daily: dict[tuple[int, str], int] = defaultdict(int)
        per_member: dict[tuple[int, int], tuple[int, float, float]] = {}
        for entry_id, member_id, hour, count, first_at, last_at in rows:
            daily[entry_id, day_text(day_of_hour(hour))] += count
            known = per_member.get((entry_id, member_id))
            if known is not None:
                count, first_at, last_at = known[0] + count, min(known[1], first_at), max(known[2], last_at)
            per_member[entry_id, member_id] = (count, first_at, last_at)
        # One pipeline, not one transaction: the counters of different entries live in
        # different slots, and each counter update is atomic on its own.
        with self._redis.pipeline(transaction=False) as tx:
            for (entry_id, day), count in daily.items():
                tx.hincrby(keys.sightings_daily(entry_id), day, count)
            for (entry_id, member_id), (count, first_at, last_at) in per_member.items():
                tx.zincrby(keys.sightings_count(entry_id), count, str(member_id))
                tx.zadd(keys.sightings_first(entry_id), {str(member_id): first_at}, lt=True)
                tx.zadd(keys.sightings_last(entry_id), {str(member_id): last_at}, gt=True)
            tx.execute()
        # Outside the pipeline above's counters: each command touches one slot, and a
        # lost increment costs analytics only, like a sighting lost in a crash.
        with self._redis.pipeline(transaction=False) as pipe:
            for entry_id, member_id, hour, count, _, _ in rows:
                pipe.hincrby(keys.sightings_hours(entry_id), f"{member_id}:{hour}", count)
                day = day_text(day_of_hour(hour))
                pipe.hincrby(keys.member_sightings_day(member_id, day), f"{entry_id}:{hour}", count)
            pipe.execute()

    def sighting_stats(self, entry_id: int) -> SightingStats:
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(keys.sightings_daily(entry_id))
            for key in (keys.sightings_count, keys.sightings_first, keys.sightings_last):
                pipe.zrange(key(entry_id), 0, -1, withscores=True)
            daily_reply, counts, firsts, lasts = pipe.execute()
        first = {int(m): float(t) for m, t in firsts}
        last = {int(m): float(t) for m, t in lasts}
        members = tuple(
            MemberSightings(member_id, int(count), first[member_id], last[member_id])
            for member_id, count in sorted((int(m), c) for m, c in counts)
        )
        daily = {day: int(count) for day, count in sorted(_hash_fields(daily_reply).items())}
        return SightingStats(entry_id, daily, members)

    # The change feed

    def _feed_info(self) -> dict[str, Any] | None:
        try:
            info: dict[str, Any] = self._redis.xinfo_stream(keys.FEED)
        except rex.ResponseError as error:
            if "no such key" in str(error).lower():
                return None
            raise
        return info

    def feed_position(self) -> str:
        info = self._feed_info()
        if info is None:
            # "0-0" sorts before every real stream id, so changes_since("0-0-0") is everything.
            return "0-0-0"
        return f"{_text(info['last-generated-id'])}-{int(info['entries-added'])}"

    def active_signals(self) -> Iterator[IndexedSignal]:
        # Every slot's hash, a pipeline of slots at a time (per node on a cluster).
        for first in range(0, keys.SLOTS, _SLOT_BATCH):
            slots = range(first, min(first + _SLOT_BATCH, keys.SLOTS))
            with self._redis.pipeline(transaction=False) as pipe:
                for slot in slots:
                    pipe.hgetall(keys.slot_active_signals(slot))
                replies = pipe.execute()
            for reply in replies:
                for row_id, record in reply.items():
                    entry_id, signal_type, version, value, *rest = json.loads(record)
                    yield IndexedSignal(int(row_id), entry_id, signal_type, version, bytes.fromhex(value), *rest)

    def active_row_ids(self, rows: Sequence[IndexedSignal]) -> set[int]:
        if not rows:
            return set()
        by_slot: dict[int, list[int]] = defaultdict(list)
        allowed: dict[int, list[int]] = defaultdict(list)  # allow-list item id -> its rows
        for row in rows:
            if row.entry_id < 0:  # an allow-list row (model.allowed_index_id)
                allowed[-row.entry_id].append(row.row_id)
            else:
                by_slot[keys.slot_of(keys.entry(row.entry_id))].append(row.row_id)
        with self._redis.pipeline(transaction=False) as pipe:
            for slot, row_ids in by_slot.items():
                pipe.hmget(keys.slot_active_signals(slot), row_ids)
            if allowed:
                pipe.hmget(keys.ALLOW_ITEMS, [str(item) for item in allowed])
            replies = pipe.execute()
        active = {
            row_id
            for row_ids, found in zip(by_slot.values(), replies[: len(by_slot)], strict=True)
            for row_id, record in zip(row_ids, found, strict=True)
            if record is not None
        }
        if allowed:
            for row_ids, record in zip(allowed.values(), replies[-1], strict=True):
                if record is not None:
                    active.update(row_ids)
        return active

    def changes_since(self, position: str, limit: int = 10_000) -> tuple[list[Change], str]:
        after, count = _parse_position(position)
        # The stream's counters and the page in one transaction: the counters tell
        # whether every change after our position is still there.
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.xinfo_stream(keys.FEED)
            # "(" makes the start exclusive.
            pipe.xrange(keys.FEED, min=f"({after}", count=limit)
            info, messages = pipe.execute(raise_on_error=False)
        if isinstance(info, Exception):
            if "no such key" not in str(info).lower():
                raise info
            if count:
                raise FeedGap(f"the change feed is gone, but position {position!r} had read {count} changes")
            return [], position
        if isinstance(messages, Exception):
            raise messages
        info = _stream_info(info)
        added, length = int(info["entries-added"]), int(info["length"])
        last_id = _text(info["last-generated-id"])
        if count is None:
            first = info.get("recorded-first-entry-id")
            if length < added and first is not None and _stream_id(_text(first)) > _stream_id(after):
                raise FeedGap(f"the change feed was trimmed past position {position!r}")
        elif count < added - length:
            raise FeedGap(f"the change feed was trimmed past position {position!r} (it keeps {length} changes)")
        elif not messages and count != added:
            raise FeedGap(f"the change feed holds {added} changes, not the {count} at position {position!r}")
        if not messages:
            return [], position
        decoded = [changes.decode(_hash_fields(fields)[keys.FEED_FIELD]) for _, fields in messages]
        newest = _text(messages[-1][0])
        if count is None:
            return decoded, newest if newest != last_id else f"{newest}-{added}"
        if newest == last_id and count + len(messages) != added:
            # Ids after ours but fewer or more changes than counted: a failover lost
            # changes this follower had read, and the feed went on without them.
            raise FeedGap(f"the change feed does not continue position {position!r}")
        return decoded, f"{newest}-{count + len(messages)}"

    def wait_for_changes(self, position: str, timeout: float) -> None:
        after, _ = _parse_position(position)
        # Blocks on the server until a change after ours exists: no sleep-polling.
        self._redis.xread({keys.FEED: after}, count=1, block=max(1, int(timeout * 1000)))

    # Keys

    def secret(self, name: str) -> bytes:
        key = keys.secret(name)
        # NX: when two processes race at first use, the first value wins for both.
        self._redis.set(key, secrets.token_bytes(32), nx=True)
        return _bytes(self._redis.get(key))

    # The member directory (issue 6)

    def set_contact_points(self, member_id: int, points: Sequence[ContactPoint], now: float) -> None:
        def plan(pipe: Pipeline) -> tuple[None, Writes]:
            if not pipe.exists(keys.member(member_id)):
                raise NotFound(f"no member {member_id}")

            def writes(tx: Pipeline) -> None:
                tx.set(keys.contact_points(member_id), codecs.contact_points_json(points))

            return None, writes

        self._atomically([keys.member(member_id)], plan)

    def contact_points(self, member_ids: Iterable[int]) -> dict[int, tuple[ContactPoint, ...]]:
        ids = list(dict.fromkeys(member_ids))
        with self._redis.pipeline(transaction=False) as pipe:
            for member_id in ids:
                pipe.get(keys.contact_points(member_id))
            replies = pipe.execute()
        found = {}
        for member_id, reply in zip(ids, replies, strict=True):
            if reply is not None and (points := codecs.contact_points_from_json(_bytes(reply))):
                found[member_id] = points
        return found

    # Notices (issue 6)

    def _notice_replay(self, pipe: Pipeline | redis.Redis, request_key: str, kind: str, digest: bytes) -> Notice | None:
        stored = pipe.get(request_key)
        if stored is None:
            return None
        record = json.loads(_bytes(stored))
        if record["digest"] != digest.hex() or record["kind"] != kind:
            raise InvalidArgument.field("request_id", "already used for a different request")
        notice = self._read_notice(pipe, record["notice_id"])
        if notice is None:
            raise NotFound(f"no notice {record['notice_id']}")
        return notice

    @staticmethod
    def _read_notice(pipe: Pipeline | redis.Redis, notice_id: int) -> Notice | None:
        reply = pipe.get(keys.notice(notice_id))
        return None if reply is None else codecs.notice_from_json(notice_id, _bytes(reply))

    def file_notice(
        self,
        authority_id: int,
        request_id: str,
        request_digest: bytes,
        draft: NoticeDraft,
        routed_to: Sequence[ContactPoint],
        now: float,
    ) -> Notice:
        request_key = keys.notice_request(authority_id, request_id)
        replay = self._notice_replay(self._redis, request_key, "file_notice", request_digest)
        if replay is not None:
            return replay
        # The id is taken before the transaction (a lost race wastes one).
        notice = Notice(int(self._redis.incr(keys.NEXT_NOTICE)), authority_id, draft, now, tuple(routed_to))

        def plan(pipe: Pipeline) -> tuple[Notice, Writes | None]:
            replay = self._notice_replay(pipe, request_key, "file_notice", request_digest)
            if replay is not None:
                return replay, None
            record = {"kind": "file_notice", "digest": request_digest.hex(), "notice_id": notice.notice_id}

            def writes(tx: Pipeline) -> None:
                tx.set(keys.notice(notice.notice_id), codecs.notice_json(notice))
                tx.zadd(keys.NOTICE_IDS, {str(notice.notice_id): notice.notice_id})
                tx.set(request_key, json.dumps(record))

            return notice, writes

        return self._atomically([request_key], plan)

    def answer_notice(self, notice_id: int, request_id: str, request_digest: bytes, decision: NoticeDecision) -> Notice:
        request_key = keys.notice_request(decision.decided_by, request_id)

        def plan(pipe: Pipeline) -> tuple[Notice, Writes | None]:
            replay = self._notice_replay(pipe, request_key, "answer_notice", request_digest)
            if replay is not None:
                return replay, None
            notice = self._read_notice(pipe, notice_id)
            if notice is None:
                raise NotFound(f"no notice {notice_id}")
            if notice.state is not NoticeState.OPEN:
                raise FailedPrecondition(f"notice {notice_id} was already answered ({notice.state.value})")
            answered = notice.answered(decision)
            record = {"kind": "answer_notice", "digest": request_digest.hex(), "notice_id": notice_id}

            def writes(tx: Pipeline) -> None:
                tx.set(keys.notice(notice_id), codecs.notice_json(answered))
                tx.set(request_key, json.dumps(record))

            return answered, writes

        return self._atomically([request_key, keys.notice(notice_id)], plan)

    def get_notice(self, notice_id: int) -> Notice | None:
        return self._read_notice(self._redis, notice_id)

    def list_notices(self, after_id: int, limit: int, where: NoticeFilter) -> list[Notice]:
        found: list[Notice] = []
        while len(found) < limit:
            ids = [
                int(_bytes(i))
                for i in self._redis.zrangebyscore(keys.NOTICE_IDS, f"({after_id}", "+inf", 0, _SCAN_BATCH)
            ]
            if not ids:
                break
            replies = self._redis.mget([keys.notice(i) for i in ids])
            for notice_id, reply in zip(ids, replies, strict=True):
                if reply is not None and len(found) < limit:
                    notice = codecs.notice_from_json(notice_id, _bytes(reply))
                    if where.admits(notice):
                        found.append(notice)
            after_id = ids[-1]
        return found

    # The audit trail (issue 6)

    def append_audit(self, drafts: Sequence[AuditDraft]) -> list[AuditEvent]:
        if not drafts:
            return []

        def plan(pipe: Pipeline) -> tuple[list[AuditEvent], Writes]:
            head = pipe.get(keys.AUDIT_HEAD)
            sequence, previous = json.loads(_bytes(head)) if head is not None else (0, audit.GENESIS)
            events = audit.chain((sequence, previous), drafts)

            def writes(tx: Pipeline) -> None:
                tx.hset(keys.AUDIT_EVENTS, mapping={e.sequence: codecs.audit_json(e) for e in events})
                tx.set(keys.AUDIT_HEAD, json.dumps([events[-1].sequence, events[-1].hash]))

            return events, writes

        # WATCH on the head: a concurrent append makes this one plan again on the new head.
        return self._atomically([keys.AUDIT_HEAD], plan)

    def list_audit(self, after_sequence: int, limit: int, where: AuditFilter | None = None) -> list[AuditEvent]:
        where = where or AuditFilter()
        head = self._redis.get(keys.AUDIT_HEAD)
        last = int(json.loads(_bytes(head))[0]) if head is not None else 0
        found: list[AuditEvent] = []
        sequence = after_sequence
        while len(found) < limit and sequence < last:
            wanted = list(range(sequence + 1, min(sequence + _SCAN_BATCH, last) + 1))
            for reply in self._redis.hmget(keys.AUDIT_EVENTS, wanted):
                if reply is None:  # a removed event: the caller's verify sees the gap
                    continue
                event = codecs.audit_from_json(_bytes(reply))
                if where.admits(event) and len(found) < limit:
                    found.append(event)
            sequence = wanted[-1]
        return found

    # Spread analytics

    def report_actions(
        self, member_id: int, request_id: str, request_digest: bytes, actions: Sequence[ActionRecord], now: float
    ) -> int:
        request_key = keys.request(member_id, request_id)
        items_key = keys.member_action_items(member_id)
        # Every key is in the member's slot: one transaction with the idempotency record.

        def plan(pipe: Pipeline) -> tuple[int, Writes | None]:
            replay = self._replay(pipe, request_key, "report_actions", request_digest)
            if replay is not None:
                return int(replay["recorded"]), None
            items = [f"{a.item_key.hex()}:{a.entry_id}:{a.action.value}" if a.item_key else "" for a in actions]
            named = sorted({item for item in items if item})
            flags = pipe.smismember(items_key, named) if named else []
            known = {item for item, seen in zip(named, flags, strict=True) if seen}
            recorded: list[ActionRecord] = []
            new_items: list[str] = []
            for action, item in zip(actions, items, strict=True):
                if item:
                    if item in known:
                        continue
                    known.add(item)
                    new_items.append(item)
                recorded.append(action)
            day_cells: dict[tuple[str, str], int] = defaultdict(int)
            totals: dict[str, int] = defaultdict(int)
            for a in recorded:
                hour = hour_of(a.acted_at)
                day_cells[day_text(day_of_hour(hour)), f"{a.entry_id}:{hour}:{a.action.value}"] += 1
                totals[f"{a.entry_id}:{a.action.value}"] += 1

            def writes(tx: Pipeline) -> None:
                if new_items:
                    tx.sadd(items_key, *new_items)
                for (day, cell), count in day_cells.items():
                    tx.hincrby(keys.member_actions_day(member_id, day), cell, count)
                for cell, count in totals.items():
                    tx.hincrby(keys.member_actions_total(member_id), cell, count)
                self._remember(tx, request_key, "report_actions", request_digest, {"recorded": len(recorded)}, now)

            return len(recorded), writes

        return self._atomically([request_key, items_key], plan)

    @staticmethod
    def _replay(pipe: Pipeline, request_key: str, kind: str, digest: bytes) -> dict[str, Any] | None:
        """The first outcome of a write whose request record lives in the write's own slot."""
        stored = pipe.get(request_key)
        if stored is None:
            return None
        record = json.loads(_bytes(stored))
        if record["digest"] != digest.hex() or record["kind"] != kind:
            raise InvalidArgument.field("request_id", "already used for a different request")
        outcome: dict[str, Any] = record["outcome"]
        return outcome

    @staticmethod
    def _remember(
        tx: Pipeline, request_key: str, kind: str, digest: bytes, outcome: dict[str, Any], now: float
    ) -> None:
        record = {"kind": kind, "digest": digest.hex(), "outcome": outcome, "created_at": now}
        tx.set(request_key, json.dumps(record))

    def _member_ids(self) -> list[int]:
        return sorted(int(v) for v in _hash_fields(self._redis.hgetall(keys.MEMBERS_BY_NAME)).values())

    def _read_hashes(self, names: Sequence[str]) -> list[dict[str, bytes]]:
        replies: list[dict[str, bytes]] = []
        for start in range(0, len(names), _SCAN_BATCH):
            with self._redis.pipeline(transaction=False) as pipe:
                for name in names[start : start + _SCAN_BATCH]:
                    pipe.hgetall(name)
                replies.extend(_hash_fields(r) for r in pipe.execute())
        return replies

    def _read_fields(self, names: Sequence[str], fields: Sequence[str]) -> list[dict[str, bytes]]:
        """The given fields of each hash that has them."""
        with self._redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hmget(name, fields)
            replies = pipe.execute()
        return [{f: _bytes(v) for f, v in zip(fields, reply, strict=True) if v is not None} for reply in replies]

    def _categories(self, entry_ids: Iterable[int]) -> dict[int, str]:
        ids = sorted(set(entry_ids))
        found: dict[int, str] = {}
        for start in range(0, len(ids), _SCAN_BATCH):
            with self._redis.pipeline(transaction=False) as pipe:
                for entry_id in ids[start : start + _SCAN_BATCH]:
                    pipe.hget(keys.entry(entry_id), "category")
                for entry_id, reply in zip(ids[start : start + _SCAN_BATCH], pipe.execute(), strict=True):
                    if reply is not None:
                        found[entry_id] = _text(reply)
        return found

    def _member_days(self, query: Rollup, key: Callable[[int, str], str]) -> list[tuple[int, dict[str, bytes]]]:
        """Every member's hash of every day of the query's period."""
        if query.start is None or query.end is None:
            raise ValueError("a rollup over the whole bank needs a period")
        days = [day_text(day) for day in days_between(query.start, query.end)]
        members = self._member_ids()
        names = [(member_id, key(member_id, day)) for member_id in members for day in days]
        return list(zip((m for m, _ in names), self._read_hashes([n for _, n in names]), strict=True))

    def sighting_rollup(self, query: Rollup) -> dict[Key, SightingTally]:
        cells: list[tuple[int, int, int, int]] = []
        if query.entry_ids is not None:  # an entry's own cells: no period needed, no scan
            entry_ids = sorted(query.entry_ids)
            for entry_id, fields in zip(
                entry_ids, self._read_hashes([keys.sightings_hours(e) for e in entry_ids]), strict=True
            ):
                for field, count in fields.items():
                    member, hour = field.split(":")
                    cells.append((entry_id, int(member), int(hour), int(count)))
        else:
            for member_id, fields in self._member_days(query, keys.member_sightings_day):
                for field, count in fields.items():
                    entry, hour = field.split(":")
                    cells.append((int(entry), member_id, int(hour), int(count)))
        categories = self._categories(c[0] for c in cells) if query.needs_category else {}
        return fold_sightings(query, cells, categories.get)

    def action_rollup(self, query: Rollup) -> dict[Key, ActionTally]:
        cells: list[tuple[int, int, int, Action, int]] = []
        if query.start is None and query.end is None:
            if any(d in (Dimension.HOUR, Dimension.DAY, Dimension.WEEK) for d in query.by):
                raise ValueError("actions of all time cannot be grouped by time")
            members = self._member_ids()
            if query.entry_ids is not None:  # an entry's spread: its own fields only, no scan
                totals = self._read_fields(
                    [keys.member_actions_total(m) for m in members],
                    [f"{e}:{a.value}" for e in sorted(query.entry_ids) for a in Action],
                )
            else:
                totals = self._read_hashes([keys.member_actions_total(m) for m in members])
            for member_id, fields in zip(members, totals, strict=True):
                for field, count in fields.items():
                    entry, action = field.split(":")
                    cells.append((int(entry), member_id, 0, Action(action), int(count)))
        else:
            for member_id, fields in self._member_days(query, keys.member_actions_day):
                for field, count in fields.items():
                    entry, hour, action = field.split(":")
                    cells.append((int(entry), member_id, int(hour), Action(action), int(count)))
        categories = self._categories(c[0] for c in cells) if query.needs_category else {}
        return fold_actions(query, cells, categories.get)

    def submission_rollup(self, start: float, end: float, by: Dimension) -> dict[int | str, SubmissionTally]:
        # No index by time: every entry's submissions are read, in pipelined
        # batches (about one round trip per thousand entries).
        if by not in (Dimension.MEMBER, Dimension.CATEGORY):
            raise ValueError(f"submissions roll up by member or category, not {by}")
        counter = self._redis.get(keys.NEXT_ENTRY)
        last = int(_bytes(counter)) if counter is not None else 0
        entries: list[list[SubmissionFacts]] = []
        for start_id in range(1, last + 1, _SCAN_BATCH):
            ids = range(start_id, min(start_id + _SCAN_BATCH, last + 1))
            for records in self._read_hashes([keys.entry_submissions(e) for e in ids]):
                entries.append(
                    [
                        SubmissionFacts(
                            int(sid),
                            r["member_id"],
                            r["category"],
                            r["removed_at"],
                            r["notice_received_at"],
                            r["retracted_at"] is None,
                        )
                        for sid, r in ((sid, json.loads(v)) for sid, v in records.items())
                    ]
                )
        return tally_submissions(entries, start, end, by)

    # Trust and safety

    @staticmethod
    def _read_verdict_inputs(pipe: Pipeline, ids: Sequence[int]) -> None:
        """Queue the reads ``_verdict_inputs`` takes the replies of."""
        for entry_id in ids:
            pipe.hkeys(keys.entry_active(entry_id))
            pipe.hgetall(keys.entry_feedback(entry_id))
            pipe.hmget(keys.entry_review(entry_id), ["confirmed", "disabled"])

    def _verdict_inputs(self, ids: Sequence[int], replies: Sequence[Any]) -> dict[int, dict[str, Any]]:
        """EntrySummary's verdict inputs of the entries that have any besides the defaults,
        from the replies of ``_read_verdict_inputs``; the members' trust levels take one more round trip."""
        active = {i: {int(m) for m in members} for i, members in zip(ids, replies[::3], strict=True)}
        members = sorted(set().union(*active.values()))
        levels = []
        if members:
            with self._redis.pipeline(transaction=False) as pipe:
                for member_id in members:
                    pipe.hget(keys.member(member_id), "trust_level")
                levels = pipe.execute()
        trusted = {
            m for m, level in zip(members, levels, strict=True) if level in (None, TrustLevel.TRUSTED.value.encode())
        }
        inputs: dict[int, dict[str, Any]] = {}
        for entry_id, feedback, review in zip(ids, replies[1::3], replies[2::3], strict=True):
            found: dict[str, Any] = {}
            if active[entry_id] and not active[entry_id] & trusted:
                found["trusted"] = False
            opinions = [(int(m), json.loads(v)["opinion"]) for m, v in _hash_fields(feedback).items()]
            disputes = sum(1 for _, opinion in opinions if opinion == Opinion.DISAGREE.value)
            endorsers = sum(
                1 for m, opinion in opinions if opinion != Opinion.DISAGREE.value and m not in active[entry_id]
            )
            if disputes:
                found["disputes"] = disputes
            if endorsers:
                found["endorsers"] = endorsers
            if review[0] is not None:
                found.update(confirmed=review[0] == b"1", disabled=review[1] == b"1")
            if found:
                inputs[entry_id] = found
        return inputs

    def _member_entries(self, member_id: int) -> tuple[int, ...]:
        """Entries the member has an active submission on: a scan of every entry
        (a member's entries are not indexed in its own slot, and a submit may
        not write across slots), so it costs O(entries) pipelined reads."""
        last = self._counter(self._redis, keys.NEXT_ENTRY)
        found: list[int] = []
        for start in range(1, last + 1, _SCAN_BATCH * 10):
            batch = range(start, min(last, start + _SCAN_BATCH * 10 - 1) + 1)
            with self._redis.pipeline(transaction=False) as pipe:
                for entry_id in batch:
                    pipe.hexists(keys.entry_active(entry_id), str(member_id))
                found.extend(e for e, present in zip(batch, pipe.execute(), strict=True) if present)
        return tuple(found)

    def _existing_member(self, pipe: Pipeline, member_id: int) -> Member:
        member = self._member(member_id, _hash_fields(pipe.hgetall(keys.member(member_id))))
        if member is None:
            raise NotFound(f"no member {member_id}")
        return member

    def set_trust_level(self, member_id: int, trust_level: TrustLevel) -> Member:
        entries = self._member_entries(member_id)

        def plan(pipe: Pipeline) -> tuple[Member, Writes]:
            member = replace(self._existing_member(pipe, member_id), trust_level=trust_level)

            def writes(tx: Pipeline) -> None:
                tx.hset(keys.member(member_id), "trust_level", trust_level.value)
                if entries:
                    self._append(tx, EntryChanged(entries))

            return member, writes

        return self._atomically([keys.member(member_id)], plan)

    def clear_flag(self, member_id: int) -> Member:
        def plan(pipe: Pipeline) -> tuple[Member, Writes | None]:
            member = self._existing_member(pipe, member_id)
            if not member.flagged:
                return member, None

            def writes(tx: Pipeline) -> None:
                tx.hdel(keys.member(member_id), "flagged_at", "flag_reason")

            return replace(member, flagged_at=None, flag_reason=""), writes

        return self._atomically([keys.member(member_id)], plan)

    def take_submit_quota(
        self, member_id: int, wanted: int, limit: int, window_seconds: float, now: float, flag_reason: str
    ) -> int:
        quota = keys.member_quota(member_id)
        since = now - window_seconds

        def plan(pipe: Pipeline) -> tuple[int, Writes | None]:
            member = self._existing_member(pipe, member_id)
            used = int(pipe.zcount(quota, f"({_float(since)}", "+inf"))
            granted = max(0, min(wanted, limit - used))
            flag = granted < wanted and not member.flagged
            if not granted and not flag:
                return 0, None
            stamp = secrets.token_hex(8)

            def writes(tx: Pipeline) -> None:
                tx.zremrangebyscore(quota, "-inf", _float(since))
                if granted:
                    tx.zadd(quota, {f"{stamp}:{n}": now for n in range(granted)})
                    tx.expire(quota, max(1, int(window_seconds) * 2))
                if flag:
                    tx.hset(keys.member(member_id), mapping={"flagged_at": _float(now), "flag_reason": flag_reason})

            return granted, writes

        return self._atomically([quota, keys.member(member_id)], plan)

    def give_feedback(
        self, member_id: int, request_id: str, request_digest: bytes, feedback: Feedback
    ) -> FeedbackOutcome:
        entry_id = feedback.entry_id
        request_key = keys.entry_request(entry_id, member_id, request_id)

        def plan(pipe: Pipeline) -> tuple[FeedbackOutcome, Writes | None]:
            replay = self._replay(pipe, request_key, "feedback", request_digest)
            if replay is not None:
                return FeedbackOutcome(**replay), None
            if not pipe.exists(keys.entry(entry_id)):
                raise NotFound(f"no entry {entry_id}")
            opinions = {
                m: json.loads(v)["opinion"]
                for m, v in _hash_fields(pipe.hgetall(keys.entry_feedback(entry_id))).items()
            }
            opinions[str(member_id)] = feedback.opinion.value
            counted = list(opinions.values())
            outcome = FeedbackOutcome(
                entry_id,
                counted.count(Opinion.AGREE.value),
                counted.count(Opinion.DISAGREE.value),
                counted.count(Opinion.SEEN_TOO.value),
            )
            record = {
                "opinion": feedback.opinion.value,
                "reason": feedback.reason.value,
                "comment": feedback.comment,
                "created_at": float(feedback.created_at),
            }

            def writes(tx: Pipeline) -> None:
                tx.hset(keys.entry_feedback(entry_id), str(member_id), json.dumps(record))
                self._append(tx, EntryChanged((entry_id,)))
                self._remember(tx, request_key, "feedback", request_digest, asdict(outcome), feedback.created_at)

            return outcome, writes

        return self._atomically([request_key, keys.entry_feedback(entry_id)], plan)

    def review_entry(self, review: Review) -> EntryTrust:
        entry_id = review.entry_id

        def plan(pipe: Pipeline) -> tuple[None, Writes]:
            if not pipe.exists(keys.entry(entry_id)):
                raise NotFound(f"no entry {entry_id}")
            before = pipe.hmget(keys.entry_review(entry_id), ["confirmed", "disabled"])
            confirmed, disabled = _reviewed(before[0] == b"1", before[1] == b"1", review.decision)
            state: dict[FieldT, EncodableT] = {
                "decision": review.decision.value,
                "reason": review.reason,
                "reviewer_id": review.reviewer_id,
                "at": _float(review.at),
                "confirmed": int(confirmed),
                "disabled": int(disabled),
            }

            def writes(tx: Pipeline) -> None:
                tx.hset(keys.entry_review(entry_id), mapping=state)
                self._append(tx, EntryChanged((entry_id,)))

            return None, writes

        self._atomically([keys.entry_review(entry_id)], plan)
        return self.entry_trust(entry_id)

    def entry_trust(self, entry_id: int) -> EntryTrust:
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(keys.entry_feedback(entry_id))
            pipe.hgetall(keys.entry_review(entry_id))
            feedback_reply, review_reply = (_hash_fields(r) for r in pipe.execute())
        feedback = sorted(
            (
                Feedback(
                    entry_id,
                    int(member),
                    Opinion(record["opinion"]),
                    DisputeReason(record["reason"]),
                    record["comment"],
                    record["created_at"],
                )
                for member, record in ((m, json.loads(v)) for m, v in feedback_reply.items())
            ),
            key=lambda f: (f.created_at, f.member_id),
        )
        if not review_reply:
            return EntryTrust(entry_id, tuple(feedback))
        review = Review(
            entry_id,
            ReviewDecision(review_reply["decision"].decode()),
            review_reply["reason"].decode(),
            int(review_reply["reviewer_id"]),
            float(review_reply["at"]),
        )
        return EntryTrust(
            entry_id, tuple(feedback), review, review_reply["confirmed"] == b"1", review_reply["disabled"] == b"1"
        )

    def add_allowed(
        self,
        member_id: int,
        request_id: str,
        request_digest: bytes,
        signals: Sequence[Signal],
        label: str,
        now: float,
    ) -> AllowedItem:
        for signal in signals:
            _check_signal(signal)
        request_key = keys.allow_request(member_id, request_id)
        replayed = self._allowed_replay(request_key, request_digest)
        if replayed is not None:
            return replayed
        # Ids are taken before the transaction (a conflict or a replay wastes them, harmlessly).
        allow_id = int(self._redis.incr(keys.ALLOW_NEXT_ITEM))
        first_row = int(self._redis.incrby(keys.ALLOW_NEXT_SIGNAL, len(signals))) - len(signals) + 1
        item = AllowedItem(allow_id, tuple(signals), label, member_id, now)
        record = {
            "label": label,
            "added_by": member_id,
            "created_at": float(now),
            "signals": [
                [first_row + n, s.type, s.version, s.value.hex(), s.quality, s.variant] for n, s in enumerate(signals)
            ],
        }
        rows = tuple(_allowed_row(first_row + n, allow_id, s) for n, s in enumerate(signals))

        def plan(pipe: Pipeline) -> tuple[AllowedItem | None, Writes | None]:
            if pipe.exists(request_key):  # a concurrent replay committed first
                return None, None

            def writes(tx: Pipeline) -> None:
                tx.hset(keys.ALLOW_ITEMS, str(allow_id), json.dumps(record))
                self._append(tx, SignalsAdded(rows))
                self._remember(tx, request_key, "allow", request_digest, {"allow_id": allow_id}, now)

            return item, writes

        committed = self._atomically([request_key], plan)
        if committed is None:
            replayed = self._allowed_replay(request_key, request_digest)
            assert replayed is not None
            return replayed
        return committed

    def _allowed_replay(self, request_key: str, request_digest: bytes) -> AllowedItem | None:
        replay = self._replay(self._redis, request_key, "allow", request_digest)
        if replay is None:
            return None
        record = self._redis.hget(keys.ALLOW_ITEMS, str(replay["allow_id"]))
        if record is None:
            raise NotFound(f"allow-list item {replay['allow_id']} was removed since")
        return _allowed_item(replay["allow_id"], json.loads(_bytes(record)))

    def remove_allowed(
        self, member_id: int, request_id: str, request_digest: bytes, allow_id: int, reason: str, now: float
    ) -> None:
        request_key = keys.allow_request(member_id, request_id)

        def plan(pipe: Pipeline) -> tuple[None, Writes | None]:
            if self._replay(pipe, request_key, "disallow", request_digest) is not None:
                return None, None
            stored = pipe.hget(keys.ALLOW_ITEMS, str(allow_id))
            if stored is None:
                raise NotFound(f"no allow-list item {allow_id}")
            record = json.loads(_bytes(stored))
            removed = {**record, "removed_at": float(now), "removed_by": member_id, "remove_reason": reason}
            row_ids = tuple(allowed_index_id(s[0]) for s in record["signals"])

            def writes(tx: Pipeline) -> None:
                tx.hdel(keys.ALLOW_ITEMS, str(allow_id))
                tx.hset(keys.ALLOW_REMOVED, str(allow_id), json.dumps(removed))
                # Summaries do not depend on the allow-list (it holds matches at lookup time).
                self._append(tx, SignalsRemoved(row_ids, ()))
                self._remember(tx, request_key, "disallow", request_digest, {"allow_id": allow_id}, now)

            return None, writes

        self._atomically([request_key, keys.ALLOW_ITEMS], plan)

    def _allowed_records(self) -> list[tuple[int, dict[str, Any]]]:
        items = _hash_fields(self._redis.hgetall(keys.ALLOW_ITEMS))
        return sorted((int(i), json.loads(v)) for i, v in items.items())

    def list_allowed(self, after: int, limit: int) -> list[AllowedItem]:
        return [_allowed_item(i, r) for i, r in self._allowed_records() if i > after][:limit]

    def allowed_signals(self) -> Iterator[IndexedSignal]:
        for allow_id, record in self._allowed_records():
            for row, *fields in record["signals"]:
                yield _allowed_row(row, allow_id, _allowed_signal(fields))

    def feedback_stats(self, start: float | None, end: float | None) -> list[MemberFeedbackStats]:
        low = float("-inf") if start is None else start
        high = float("inf") if end is None else end
        given: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        disputed: dict[int, list[int]] = defaultdict(list)  # entry -> members disputing it in the period
        # Research only: a scan of every entry's feedback (SCAN, never KEYS).
        for key in self._redis.scan_iter(match="hs:{e:*}:feedback", count=_SCAN_BATCH, _type="HASH"):
            entry_id = int(_text(key).split("{e:", 1)[1].split("}", 1)[0])
            for member, value in _hash_fields(self._redis.hgetall(key)).items():
                record = json.loads(value)
                if low <= record["created_at"] < high:
                    given[int(member)][record["opinion"]] += 1
                    if record["opinion"] == Opinion.DISAGREE.value:
                        disputed[entry_id].append(int(member))
        received: dict[int, int] = defaultdict(int)
        for entry_id, disputers in disputed.items():
            records = _hash_fields(self._redis.hgetall(keys.entry_submissions(entry_id))).values()
            for submitter in {json.loads(r)["member_id"] for r in records}:
                received[submitter] += sum(1 for m in disputers if m != submitter)
        return [
            MemberFeedbackStats(
                member_id,
                given[member_id][Opinion.AGREE.value] if member_id in given else 0,
                given[member_id][Opinion.DISAGREE.value] if member_id in given else 0,
                given[member_id][Opinion.SEEN_TOO.value] if member_id in given else 0,
                received.get(member_id, 0),
            )
            for member_id in sorted(given.keys() | {m for m, n in received.items() if n})
        ]


def _stream_info(reply: Any) -> dict[str, Any]:
    """XINFO STREAM's reply as a dict with text keys (a cluster transaction parses it less)."""
    items = reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2], strict=True)
    return {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in items}


def _queued_slot(pipe: Pipeline) -> int:
    """The slot of the first key queued in a transaction (for ``_append`` outside
    ``_atomically``)."""
    for queued in pipe.command_stack:
        args = queued.args if hasattr(queued, "args") else queued[0]
        if len(args) > 1 and isinstance(args[1], (str, bytes)):
            key = args[1] if isinstance(args[1], str) else args[1].decode()
            return keys.slot_of(key)
    raise RuntimeError("_append needs a transaction that already queued a write to its slot")


def _reviewed(confirmed: bool, disabled: bool, decision: ReviewDecision) -> tuple[bool, bool]:
    """(confirmed, disabled) after a decision, as EntryTrust documents."""
    if decision is ReviewDecision.CONFIRM:
        return True, False
    if decision is ReviewDecision.DISABLE:
        return False, True
    return confirmed, False


def _allowed_signal(fields: list[Any]) -> Signal:
    signal_type, version, value, quality, variant = fields
    return Signal(signal_type, version, bytes.fromhex(value), quality, variant)


def _allowed_item(allow_id: int, record: dict[str, Any]) -> AllowedItem:
    signals = tuple(_allowed_signal(fields) for _, *fields in record["signals"])
    return AllowedItem(allow_id, signals, record["label"], record["added_by"], record["created_at"])


def _allowed_row(row_id: int, allow_id: int, signal: Signal) -> IndexedSignal:
    return IndexedSignal(
        allowed_index_id(row_id), allowed_index_id(allow_id), signal.type, signal.version, signal.value, signal.variant
    )


def _by_id(records: dict[str, bytes]) -> list[str]:
    return sorted(records, key=int)


def _submission_record(member_id: int, draft: SubmissionDraft, now: float, signal_ids: list[int]) -> str:
    return json.dumps(
        {
            "member_id": member_id,
            "category": draft.category,
            "legal_basis": draft.legal_basis.value,
            "discovery_method": draft.discovery_method.value,
            "notice_reference": draft.notice_reference,
            "notice_received_at": None if draft.notice_received_at is None else float(draft.notice_received_at),
            "removed_at": float(draft.removed_at),
            "created_at": float(now),
            "retracted_at": None,
            "retract_reason": "",
            "signal_ids": signal_ids,  # what a retract withdraws from the index
        }
    )


def _submission(submission_id: int, entry_id: int, record: dict[str, Any]) -> Submission:
    return Submission(
        submission_id=submission_id,
        entry_id=entry_id,
        member_id=record["member_id"],
        category=record["category"],
        legal_basis=LegalBasis(record["legal_basis"]),
        discovery_method=DiscoveryMethod(record["discovery_method"]),
        notice_reference=record["notice_reference"],
        notice_received_at=record["notice_received_at"],
        removed_at=record["removed_at"],
        created_at=record["created_at"],
        retracted_at=record["retracted_at"],
        retract_reason=record["retract_reason"],
    )


def _signal_records(
    submission_id: int, signals: Sequence[Signal], rows: Sequence[IndexedSignal]
) -> dict[FieldT, EncodableT]:
    return {
        row.row_id: json.dumps([submission_id, s.type, s.version, s.value.hex(), s.quality, s.variant])
        for s, row in zip(signals, rows, strict=True)
    }


def _stored_signal(row_id: int, record: list[Any]) -> StoredSignal:
    submission_id, signal_type, version, value, quality, *variant = record
    return StoredSignal(row_id, submission_id, Signal(signal_type, version, bytes.fromhex(value), quality, *variant))


def _indexed_record(row: IndexedSignal) -> str:
    return json.dumps([row.entry_id, row.type, row.version, row.value.hex(), row.variant])
