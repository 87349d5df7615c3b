"""The shared store: one Redis server that every hashshare process uses.

Each write is one optimistic transaction: WATCH the keys it reads, read,
then MULTI/EXEC the writes, the feed message and the idempotency record
together; when a watched key changed meanwhile, EXEC does nothing and the
whole write is planned again. Everything that can fail is computed before
EXEC, so a failed call leaves nothing behind. Ids come from counter keys
raised with INCR inside the same EXEC, so a failed write does not use one.

The key layout is documented in ``redis_keys``. Durability is Redis's: run
it with ``appendonly yes`` and ``appendfsync always`` for the guarantees
the SQLite store gives.
"""

from __future__ import annotations

import json
import secrets
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, TypeVar

import redis
from redis.client import Pipeline
from redis.typing import EncodableT, FieldT

from hashshare_client import DiscoveryMethod, LegalBasis, Signal

from .. import audit
from ..errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from ..model import (
    AuditDraft,
    AuditEvent,
    AuditFilter,
    Change,
    ContactPoint,
    Entry,
    EntrySummary,
    IndexedSignal,
    Member,
    MemberSightings,
    Notice,
    NoticeDecision,
    NoticeDraft,
    NoticeFilter,
    NoticeState,
    RetractOutcome,
    Role,
    Sighting,
    SightingStats,
    SignalsAdded,
    SignalsRemoved,
    StoredSignal,
    Submission,
    SubmissionDraft,
    SubmitOutcome,
    Token,
    TokenRevoked,
)
from . import changes, codecs
from . import redis_keys as keys
from .base import BatchOutcome, BatchSubmission, Replayed, Store, submitted
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

SCHEMA_VERSION = 1

# Each optimistic attempt loses only to a write that committed, so this many
# losses in a row means the store is overloaded, not that we are unlucky.
_MAX_ATTEMPTS = 100
_SCAN_BATCH = 1_000

T = TypeVar("T")
Writes = Callable[[Pipeline], None]


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


def _day(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d")


def _hash_fields(reply: object) -> dict[str, bytes]:
    """An HGETALL reply with text field names."""
    if not isinstance(reply, dict):
        raise TypeError(f"expected a hash reply from Redis, got {type(reply).__name__}")
    return {_text(field): _bytes(value) for field, value in reply.items()}


def _check_signal(signal: Signal) -> None:
    # Refuse before the transaction: a write must fail whole, never half-way.
    if not (isinstance(signal.type, str) and isinstance(signal.version, str) and isinstance(signal.value, bytes)):
        raise TypeError(f"a signal needs a text type and version and a bytes value, got {signal!r}")


class RedisStore(Store):
    """The bank in one Redis database."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._check_schema_version()

    @classmethod
    def from_url(cls, url: str) -> RedisStore:
        """``redis://HOST:PORT/DB``, ``rediss://`` or ``unix://``."""
        return cls(redis.Redis.from_url(url, decode_responses=False))

    def _check_schema_version(self) -> None:
        self._redis.set(keys.SCHEMA, SCHEMA_VERSION, nx=True)
        found = _text(self._redis.get(keys.SCHEMA))
        if int(found) != SCHEMA_VERSION:
            raise RuntimeError(f"Redis layout version {found}, this server knows {SCHEMA_VERSION}")

    def close(self) -> None:
        self._redis.close()
        self._redis.connection_pool.disconnect()

    # Transactions

    def _atomically(self, watch: Sequence[str], plan: Callable[[Pipeline], tuple[T, Writes | None]]) -> T:
        """Run ``plan`` under WATCH and commit the writes it returns, retrying on conflict.

        ``plan`` reads through the pipeline (immediately, while watching) and
        returns the result and a function that queues the writes, or None
        when there is nothing to write."""
        with self._redis.pipeline(transaction=True) as pipe:
            for _ in range(_MAX_ATTEMPTS):
                try:
                    pipe.watch(*watch)  # type: ignore[no-untyped-call]  # redis-py leaves watch() unannotated
                    result, writes = plan(pipe)
                    if writes is None:
                        return result
                    pipe.multi()
                    writes(pipe)
                    pipe.execute()
                    return result
                except redis.WatchError:
                    pipe.reset()
        raise Unavailable(f"the store is too busy: gave up after {_MAX_ATTEMPTS} conflicting attempts")

    @staticmethod
    def _counter(pipe: Pipeline, key: str) -> int:
        value = pipe.get(key)
        return int(_bytes(value)) if value is not None else 0

    @staticmethod
    def _append(pipe: Pipeline, change: Change) -> None:
        pipe.xadd(keys.FEED, {keys.FEED_FIELD: changes.encode(change)})

    # Members and tokens

    def create_member(self, name: str, roles: frozenset[Role], now: float) -> Member:
        def plan(pipe: Pipeline) -> tuple[Member, Writes]:
            if pipe.hexists(keys.MEMBERS_BY_NAME, name):
                raise AlreadyExists(f"a member called {name!r} exists")
            member = Member(self._counter(pipe, keys.NEXT_MEMBER) + 1, name, roles, now)

            def writes(tx: Pipeline) -> None:
                tx.incr(keys.NEXT_MEMBER)
                tx.hset(
                    keys.member(member.member_id),
                    mapping={"name": name, "roles": _roles_text(roles), "created_at": _float(now)},
                )
                tx.hset(keys.MEMBERS_BY_NAME, name, member.member_id)

            return member, writes

        return self._atomically([keys.MEMBERS_BY_NAME, keys.NEXT_MEMBER], plan)

    def get_member(self, member_id: int) -> Member | None:
        return self._member(member_id, _hash_fields(self._redis.hgetall(keys.member(member_id))))

    @staticmethod
    def _member(member_id: int, fields: dict[str, bytes]) -> Member | None:
        if not fields:
            return None
        return Member(member_id, fields["name"].decode(), _roles(fields["roles"].decode()), float(fields["created_at"]))

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

        def plan(pipe: Pipeline) -> tuple[Token, Writes]:
            if not pipe.exists(keys.member(member_id)):
                raise NotFound(f"no member {member_id}")
            if pipe.exists(by_hash):
                raise AlreadyExists("a token with this hash exists")
            token = Token(self._counter(pipe, keys.NEXT_TOKEN) + 1, member_id, roles, now)

            def writes(tx: Pipeline) -> None:
                tx.incr(keys.NEXT_TOKEN)
                tx.hset(
                    keys.token(token.token_id),
                    mapping={
                        "member_id": member_id,
                        "token_hash": token_hash,
                        "roles": _roles_text(roles),
                        "created_at": _float(now),
                    },
                )
                tx.set(by_hash, token.token_id)

            return token, writes

        return self._atomically([keys.member(member_id), keys.NEXT_TOKEN, by_hash], plan)

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
        for signal in draft.signals:
            _check_signal(signal)
        request_key = keys.request(member_id, request_id)
        watch = [request_key, keys.NEXT_ENTRY, keys.NEXT_SUBMISSION, keys.NEXT_SIGNAL]
        if join_entry_id is not None:
            watch += [keys.entry(join_entry_id), keys.entry_active(join_entry_id)]

        def plan(pipe: Pipeline) -> tuple[SubmitOutcome, Writes | None]:
            replay = self._replay(pipe, request_key, "submit", request_digest)
            if replay is not None:
                return SubmitOutcome(**replay), None
            entry_id, joined = self._entry_for(pipe, join_entry_id)
            submission_id = self._counter(pipe, keys.NEXT_SUBMISSION) + 1
            first_row = self._counter(pipe, keys.NEXT_SIGNAL) + 1
            rows = tuple(
                IndexedSignal(first_row + i, entry_id, s.type, s.version, s.value, s.variant)
                for i, s in enumerate(draft.signals)
            )
            active = _hash_fields(pipe.hgetall(keys.entry_active(entry_id))) if joined else {}
            mine: list[int] = json.loads(active.get(str(member_id), b"[]"))
            outcome = SubmitOutcome(entry_id, submission_id, joined, len(active) + (0 if mine else 1))
            record = _submission_record(member_id, draft, now, [r.row_id for r in rows])

            def writes(tx: Pipeline) -> None:
                if not joined:
                    tx.incr(keys.NEXT_ENTRY)
                    tx.hset(keys.entry(entry_id), mapping={"category": draft.category, "created_at": _float(now)})
                tx.incr(keys.NEXT_SUBMISSION)
                tx.hset(keys.entry_submissions(entry_id), submission_id, record)
                tx.hset(keys.entry_active(entry_id), member_id, json.dumps([*mine, submission_id]))
                if rows:
                    tx.incrby(keys.NEXT_SIGNAL, len(rows))
                    tx.hset(keys.entry_signals(entry_id), mapping=_signal_records(submission_id, draft.signals, rows))
                    tx.hset(keys.ACTIVE_SIGNALS, mapping={r.row_id: _indexed_record(r) for r in rows})
                self._append(tx, SignalsAdded(rows))
                self._remember(tx, request_key, "submit", request_digest, asdict(outcome), now)

            return outcome, writes

        return self._atomically(watch, plan)

    def submit_many(self, member_id: int, items: Sequence[BatchSubmission], now: float) -> list[BatchOutcome]:
        if not items:
            return []
        for item in items:
            for signal in item.draft.signals:
                _check_signal(signal)
        request_keys = list(dict.fromkeys(keys.request(member_id, item.request_id) for item in items))
        joins = {item.join_entry_id for item in items if item.join_entry_id is not None}
        watch = [*request_keys, keys.NEXT_ENTRY, keys.NEXT_SUBMISSION, keys.NEXT_SIGNAL]
        for entry_id in sorted(joins):
            watch += [keys.entry(entry_id), keys.entry_active(entry_id)]

        def plan(pipe: Pipeline) -> tuple[list[BatchOutcome], Writes | None]:
            known: dict[str, dict[str, Any]] = {
                key: json.loads(_bytes(reply))
                for key, reply in zip(request_keys, pipe.mget(request_keys), strict=True)
                if reply is not None
            }
            next_entry = self._counter(pipe, keys.NEXT_ENTRY)
            next_submission = self._counter(pipe, keys.NEXT_SUBMISSION)
            next_signal = self._counter(pipe, keys.NEXT_SIGNAL)
            # Per touched entry: its active members' submission ids, as they will be after the batch.
            active: dict[int, dict[str, list[int]]] = {}

            def active_of(entry_id: int) -> dict[str, list[int]] | None:
                found = active.get(entry_id)
                if found is None:
                    if entry_id not in joins:  # reached through an earlier item's replayed outcome
                        pipe.watch(keys.entry(entry_id), keys.entry_active(entry_id))  # type: ignore[no-untyped-call]
                    if not pipe.exists(keys.entry(entry_id)):
                        return None
                    fields = _hash_fields(pipe.hgetall(keys.entry_active(entry_id)))
                    found = {m: json.loads(v) for m, v in fields.items()}
                    active[entry_id] = found
                return found

            results: list[BatchOutcome] = []
            new_entries: dict[int, dict[FieldT, EncodableT]] = {}
            submissions: dict[int, dict[FieldT, EncodableT]] = defaultdict(dict)
            signal_records: dict[int, dict[FieldT, EncodableT]] = defaultdict(dict)
            touched: set[int] = set()
            requests: dict[str, str] = {}
            rows: list[IndexedSignal] = []
            for item in items:
                request_key = keys.request(member_id, item.request_id)
                seen = known.get(request_key)
                if seen is not None:
                    if seen["digest"] != item.request_digest.hex() or seen["kind"] != "submit":
                        results.append(InvalidArgument.field("request_id", "already used for a different request"))
                    else:
                        results.append(Replayed(SubmitOutcome(**seen["outcome"])))
                    continue
                created_at = now if item.created_at is None else item.created_at
                target: int | None = None
                if item.join_entry_id is not None and active_of(item.join_entry_id) is not None:
                    target = item.join_entry_id
                elif item.join_item is not None and 0 <= item.join_item < len(results):
                    earlier = submitted(results[item.join_item])
                    if earlier is not None and active_of(earlier.entry_id) is not None:
                        target = earlier.entry_id
                if target is None:
                    next_entry += 1
                    entry_id, joined = next_entry, False
                    new_entries[entry_id] = {"category": item.draft.category, "created_at": _float(created_at)}
                    active[entry_id] = {}
                else:
                    entry_id, joined = target, True
                next_submission += 1
                item_rows = []
                for signal in item.draft.signals:
                    next_signal += 1
                    item_rows.append(
                        IndexedSignal(next_signal, entry_id, signal.type, signal.version, signal.value, signal.variant)
                    )
                rows.extend(item_rows)
                signal_records[entry_id].update(_signal_records(next_submission, item.draft.signals, item_rows))
                submissions[entry_id][next_submission] = _submission_record(
                    member_id, item.draft, created_at, [r.row_id for r in item_rows]
                )
                members = active[entry_id]
                members[str(member_id)] = [*members.get(str(member_id), []), next_submission]
                touched.add(entry_id)
                outcome = SubmitOutcome(entry_id, next_submission, joined, len(members))
                record = {
                    "kind": "submit",
                    "digest": item.request_digest.hex(),
                    "outcome": asdict(outcome),
                    "created_at": now,
                }
                known[request_key] = record
                requests[request_key] = json.dumps(record)
                results.append(outcome)
            if not requests:
                return results, None
            counts = (len(new_entries), len(requests), len(rows))

            def writes(tx: Pipeline) -> None:
                for key, count in zip((keys.NEXT_ENTRY, keys.NEXT_SUBMISSION, keys.NEXT_SIGNAL), counts, strict=True):
                    if count:
                        tx.incrby(key, count)
                for entry_id, meta in new_entries.items():
                    tx.hset(keys.entry(entry_id), mapping=meta)
                for entry_id in sorted(touched):
                    tx.hset(keys.entry_submissions(entry_id), mapping=submissions[entry_id])
                    tx.hset(keys.entry_active(entry_id), str(member_id), json.dumps(active[entry_id][str(member_id)]))
                    if signal_records[entry_id]:
                        tx.hset(keys.entry_signals(entry_id), mapping=signal_records[entry_id])
                if rows:
                    tx.hset(keys.ACTIVE_SIGNALS, mapping={r.row_id: _indexed_record(r) for r in rows})
                self._append(tx, SignalsAdded(tuple(rows)))
                tx.mset(requests)

            return results, writes

        return self._atomically(watch, plan)

    def _entry_for(self, pipe: Pipeline, join_entry_id: int | None) -> tuple[int, bool]:
        """The entry to store into and whether it exists; a new entry's id is not taken until EXEC."""
        if join_entry_id is not None and pipe.exists(keys.entry(join_entry_id)):
            return join_entry_id, True
        return self._counter(pipe, keys.NEXT_ENTRY) + 1, False

    def retract(
        self, member_id: int, request_id: str, request_digest: bytes, entry_id: int, reason: str, now: float
    ) -> RetractOutcome:
        request_key = keys.request(member_id, request_id)
        # Every change to an active submission also changes :active, so watching it covers them.
        watch = [request_key, keys.entry_active(entry_id)]

        def plan(pipe: Pipeline) -> tuple[RetractOutcome, Writes | None]:
            replay = self._replay(pipe, request_key, "retract", request_digest)
            if replay is not None:
                return RetractOutcome(**replay), None
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

            def writes(tx: Pipeline) -> None:
                tx.hset(keys.entry_submissions(entry_id), mapping=retracted)
                tx.hdel(keys.entry_active(entry_id), str(member_id))
                if row_ids:
                    tx.hdel(keys.ACTIVE_SIGNALS, *map(str, row_ids))
                self._append(tx, SignalsRemoved(row_ids))
                self._remember(tx, request_key, "retract", request_digest, asdict(outcome), now)

            return outcome, writes

        return self._atomically(watch, plan)

    @staticmethod
    def _replay(pipe: Pipeline, request_key: str, kind: str, digest: bytes) -> dict[str, Any] | None:
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
        with self._redis.pipeline(transaction=False) as pipe:
            for entry_id in ids:
                pipe.hget(keys.entry(entry_id), "category")
                pipe.hlen(keys.entry_active(entry_id))
            replies = pipe.execute()
        summaries = {}
        for entry_id, category, members in zip(ids, replies[::2], replies[1::2], strict=True):
            if category is not None:
                summaries[entry_id] = EntrySummary(entry_id, _text(category), int(members), int(members) > 0)
        return summaries

    # Sightings

    def add_sightings(self, sightings: Sequence[Sighting]) -> None:
        if not sightings:
            return
        # Fold the batch first: one command per (entry, member) and (entry, day), not per sighting.
        daily: dict[tuple[int, str], int] = defaultdict(int)
        per_member: dict[tuple[int, int], list[float]] = defaultdict(list)
        for s in sightings:
            daily[s.entry_id, _day(s.at)] += 1
            per_member[s.entry_id, s.member_id].append(s.at)
        with self._redis.pipeline(transaction=True) as tx:
            for (entry_id, day), count in daily.items():
                tx.hincrby(keys.sightings_daily(entry_id), day, count)
            for (entry_id, member_id), times in per_member.items():
                tx.zincrby(keys.sightings_count(entry_id), len(times), str(member_id))
                tx.zadd(keys.sightings_first(entry_id), {str(member_id): min(times)}, lt=True)
                tx.zadd(keys.sightings_last(entry_id), {str(member_id): max(times)}, gt=True)
            tx.execute()
        self._add_sighting_cells(sightings)

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

    def feed_position(self) -> str:
        newest = self._redis.xrevrange(keys.FEED, count=1)
        # "0-0" sorts before every real stream id, so changes_since("0-0") is everything.
        return _text(newest[0][0]) if newest else "0-0"

    def active_signals(self) -> Iterator[IndexedSignal]:
        for row_id, record in self._redis.hscan_iter(keys.ACTIVE_SIGNALS, count=_SCAN_BATCH):
            entry_id, signal_type, version, value, *rest = json.loads(record)
            yield IndexedSignal(int(row_id), entry_id, signal_type, version, bytes.fromhex(value), *rest)

    def changes_since(self, position: str, limit: int = 10_000) -> tuple[list[Change], str]:
        # "(" makes the start exclusive; an empty position (a new follower) means from the start.
        start = f"({position}" if position else "-"
        messages = self._redis.xrange(keys.FEED, min=start, count=limit) or []
        if not messages:
            return [], position
        decoded = [changes.decode(_hash_fields(fields)[keys.FEED_FIELD]) for _, fields in messages]
        return decoded, _text(messages[-1][0])

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

    def _add_sighting_cells(self, sightings: Sequence[Sighting]) -> None:
        # Outside the transaction above: each command touches one slot, and a
        # lost increment costs analytics only, like a sighting lost in a crash.
        cells: dict[tuple[int, int, int], int] = defaultdict(int)
        for s in sightings:
            cells[s.entry_id, s.member_id, hour_of(s.at)] += 1
        with self._redis.pipeline(transaction=False) as pipe:
            for (entry_id, member_id, hour), count in cells.items():
                pipe.hincrby(keys.sightings_hours(entry_id), f"{member_id}:{hour}", count)
                day = day_text(day_of_hour(hour))
                pipe.hincrby(keys.member_sightings_day(member_id, day), f"{entry_id}:{hour}", count)
            pipe.execute()

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
