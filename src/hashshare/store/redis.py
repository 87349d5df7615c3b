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
from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import redis
from redis.client import Pipeline
from redis.typing import EncodableT, FieldT

from hashshare_client import DiscoveryMethod, LegalBasis, Signal

from ..errors import AlreadyExists, InvalidArgument, NotFound, Unavailable
from ..model import (
    AllowedItem,
    Change,
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
    Opinion,
    RetractOutcome,
    Review,
    ReviewDecision,
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
    TrustLevel,
    allowed_index_id,
)
from . import changes
from . import redis_keys as keys
from .base import BatchOutcome, BatchSubmission, Replayed, Store, submitted

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

    def create_member(
        self, name: str, roles: frozenset[Role], now: float, trust_level: TrustLevel = TrustLevel.PROVISIONAL
    ) -> Member:
        def plan(pipe: Pipeline) -> tuple[Member, Writes]:
            if pipe.hexists(keys.MEMBERS_BY_NAME, name):
                raise AlreadyExists(f"a member called {name!r} exists")
            member = Member(self._counter(pipe, keys.NEXT_MEMBER) + 1, name, roles, now, trust_level)

            def writes(tx: Pipeline) -> None:
                tx.incr(keys.NEXT_MEMBER)
                tx.hset(
                    keys.member(member.member_id),
                    mapping={
                        "name": name,
                        "roles": _roles_text(roles),
                        "created_at": _float(now),
                        "trust_level": trust_level.value,
                    },
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
            self._read_verdict_inputs(pipe, ids)  # in the same round trip
            replies = pipe.execute()
        summaries = {}
        for entry_id, category, members in zip(
            ids, replies[: 2 * len(ids) : 2], replies[1 : 2 * len(ids) : 2], strict=True
        ):
            if category is not None:
                summaries[entry_id] = EntrySummary(entry_id, _text(category), int(members), int(members) > 0)
        inputs = self._verdict_inputs(ids, replies[2 * len(ids) :])
        return {entry_id: replace(s, **inputs.get(entry_id, {})) for entry_id, s in summaries.items()}

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
        last = self._counter(self._redis, keys.NEXT_ENTRY)  # type: ignore[arg-type]
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
        replay = self._replay(self._redis, request_key, "allow", request_digest)  # type: ignore[arg-type]
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
                self._append(tx, SignalsRemoved(row_ids))
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
