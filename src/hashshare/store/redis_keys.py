"""Every Redis key the store uses, defined in this one place.

Layout (all keys start with ``hs:``; values are bytes, times are UNIX
seconds written with ``repr(float)`` so they read back exactly)::

    hs:schema                        STRING  layout version
    hs:next:{member,token,entry,submission,signal}
                                     STRING  last id handed out (INCR)
    hs:members:by_name               HASH    member name -> member id
    hs:{m:<member>}:member           HASH    name, roles, created_at
    hs:{m:<member>}:req:<request_id> STRING  JSON idempotency record of one write
    hs:{t:<token>}:token             HASH    member_id, token_hash, roles, created_at[, revoked_at]
    hs:token:by_hash:<sha256 hex>    STRING  token id
    hs:{e:<entry>}:entry             HASH    category, created_at
    hs:{e:<entry>}:submissions       HASH    submission id -> JSON record (retracted too)
    hs:{e:<entry>}:signals           HASH    signal row id -> JSON record (every signal ever)
    hs:{e:<entry>}:active            HASH    member id -> JSON list of its active submission ids
    hs:{e:<entry>}:sightings:daily   HASH    UTC day YYYY-MM-DD -> sightings that day
    hs:{e:<entry>}:sightings:count   ZSET    member id scored by its sightings
    hs:{e:<entry>}:sightings:first   ZSET    member id scored by its first sighting time
    hs:{e:<entry>}:sightings:last    ZSET    member id scored by its last sighting time
    hs:{e:<entry>}:sightings:hours   HASH    "<member>:<hour>" -> sightings (research)
    hs:{m:<member>}:sightings:day:<YYYY-MM-DD>
                                     HASH    "<entry>:<hour>" -> sightings (research)
    hs:{m:<member>}:actions:day:<YYYY-MM-DD>
                                     HASH    "<entry>:<hour>:<action>" -> reported actions (research)
    hs:{m:<member>}:actions:total    HASH    "<entry>:<action>" -> reported actions, all time (research)
    hs:{m:<member>}:actions:items    SET     "<item key hex>:<entry>:<action>" reported once (research)
    hs:{e:<entry>}:requests          HASH    "<member>:<request_id>" -> JSON idempotency record, written
                                             with the entry's data (the truth after a crash)
    hs:{<slot>}:signals:active       HASH    signal row id -> JSON row of every active signal of the
                                             entries of that slot
    hs:{<slot>}:outbox               HASH    item id -> JSON {change, at}: changes committed in that
                                             slot and not yet confirmed on the feed
    hs:{<slot>}:ack                  STRING  a marker written before WAIT to confirm a replayed write
    hs:feed                          STREAM  the change feed: field ``change`` = changes.encode()
    hs:secret:<name>                 STRING  32 random bytes
    hs:{m:<member>}:contacts         STRING  JSON list of the member's contact points
    hs:next:notice                   STRING  last notice id handed out (INCR, before the write)
    hs:{notices}:notice:<id>         STRING  JSON record of one notice
    hs:{notices}:ids                 ZSET    notice id scored by itself: the listing order
    hs:{notices}:req:<member>:<rid>  STRING  JSON idempotency record of a FileNotice or AnswerNotice
    hs:{audit}:head                  STRING  JSON [sequence, hash] of the newest audit event
    hs:{audit}:events                HASH    sequence -> JSON audit event (hashshare.audit)

Slots (Redis Cluster, and the same discipline on one server): every key of
one entry carries the hash tag ``{e:<id>}`` (likewise ``{m:<id>}`` for a
member, ``{t:<id>}`` for a token), so an entry's data lives in one slot and
each write to it is one MULTI/EXEC in that slot. ``{<slot>}`` is the tag
``slot_tag(n)``: a short string that hashes to slot ``n``, so the per-slot
keys (active signals, outbox, ack) of an entry sit in the entry's own slot
and are written in the same transaction. Keys without a tag (counters,
``hs:members:by_name``, ``hs:token:by_hash:*``, ``hs:feed``) are only ever
used by single-key commands. No command or transaction spans two slots.

How a write reaches the feed: the transaction records its change in its
slot's outbox; after EXEC the writer XADDs the change to ``hs:feed`` (and
WAITs for the feed's replica), then deletes the outbox item (and WAITs for
the slot's replica). A writer that dies in between leaves the item in the
outbox, and every server's sweeper publishes items older than a few seconds.
A change can thus reach the feed twice or late (after a later change of the
same entry): changes are idempotent, and followers re-check added rows
against ``:signals:active`` before indexing them, so neither matters.
Trust and safety::

    hs:{m:<member>}:member           HASH    ... trust_level, flagged_at, flag_reason (absent: TRUSTED, not flagged)
    hs:{m:<member>}:quota            ZSET    one element per granted submission, scored by its time
    hs:{e:<entry>}:feedback          HASH    member id -> JSON current opinion of the entry
    hs:{e:<entry>}:review            HASH    decision, reason, reviewer_id, at, confirmed, disabled
    hs:{e:<entry>}:req:<m>:<req id>  STRING  JSON idempotency record of a GiveFeedback
    hs:{allow}:next:item             STRING  last allow-list item id (INCR)
    hs:{allow}:next:signal           STRING  last allow-list signal row id (INCR)
    hs:{allow}:items                 HASH    item id -> JSON {label, added_by, created_at, signals}
    hs:{allow}:removed               HASH    item id -> JSON of a removed item, with removed_at/by and reason
    hs:{allow}:req:<m>:<req id>      STRING  JSON idempotency record of an allow-list add or remove

Each write of these touches one hash tag only: feedback and review the
entry's, quotas and trust the member's, the allow-list its own ``{allow}``
(the whole allow-list is small and lives in one slot).

Cluster readiness: every key of one entry carries the hash tag ``{e:<id>}``
(likewise ``{m:<id>}`` for a member, ``{t:<id>}`` for a token), so an
entry's data lives in one slot and can be read in one round trip. A submit
or retract still spans slots (counters, the feed, ``hs:signals:active``,
the request record); on one server it is a single MULTI/EXEC, and moving to
Cluster means splitting that transaction first.

The number of an entry's active members (``HLEN`` of ``:active``) is its
corroboration count, so Match never reads the submissions themselves.
"""

from __future__ import annotations

import functools

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

PREFIX = "hs:"

SCHEMA = "hs:schema"  # STRING: the layout version this server wrote; checked at open

# Counters: STRING holding the last id handed out; ids start at 1 like SQLite rowids.
NEXT_MEMBER = "hs:next:member"  # STRING: last member id
NEXT_TOKEN = "hs:next:token"  # STRING: last token id
NEXT_ENTRY = "hs:next:entry"  # STRING: last entry id
NEXT_SUBMISSION = "hs:next:submission"  # STRING: last submission id
NEXT_SIGNAL = "hs:next:signal"  # STRING: last signal row id

MEMBERS_BY_NAME = "hs:members:by_name"  # HASH: member name -> member id (enforces unique names)
FEED = "hs:feed"  # STREAM: one message per Change, field FEED_FIELD
FEED_FIELD = "change"  # the stream field holding changes.encode(change)


def member(member_id: int) -> str:
    """HASH: name, roles (comma-separated), created_at."""
    return f"hs:{{m:{member_id}}}:member"


def request(member_id: int, request_id: str) -> str:
    """STRING: JSON {kind, digest, outcome, created_at} of a committed submit or retract."""
    # The member's hash tag comes first, so a "{" inside request_id cannot move the slot.
    return f"hs:{{m:{member_id}}}:req:{request_id}"


def token(token_id: int) -> str:
    """HASH: member_id, token_hash, roles, created_at and, once revoked, revoked_at."""
    return f"hs:{{t:{token_id}}}:token"


def token_by_hash(token_hash: bytes) -> str:
    """STRING: the id of the token with this hash."""
    return f"hs:token:by_hash:{token_hash.hex()}"


def entry(entry_id: int) -> str:
    """HASH: category, created_at."""
    return f"hs:{{e:{entry_id}}}:entry"


def entry_submissions(entry_id: int) -> str:
    """HASH: submission id -> JSON record, retracted ones included."""
    return f"hs:{{e:{entry_id}}}:submissions"


def entry_signals(entry_id: int) -> str:
    """HASH: signal row id -> JSON [submission_id, type, version, value hex, quality]."""
    return f"hs:{{e:{entry_id}}}:signals"


def entry_active(entry_id: int) -> str:
    """HASH: member id -> JSON list of that member's active submission ids on the entry."""
    return f"hs:{{e:{entry_id}}}:active"


def sightings_daily(entry_id: int) -> str:
    """HASH: UTC day YYYY-MM-DD -> number of sightings that day."""
    return f"hs:{{e:{entry_id}}}:sightings:daily"


def sightings_count(entry_id: int) -> str:
    """ZSET: member id scored by how many sightings it reported."""
    return f"hs:{{e:{entry_id}}}:sightings:count"


def sightings_first(entry_id: int) -> str:
    """ZSET: member id scored by the time of its first sighting (kept with ZADD LT)."""
    return f"hs:{{e:{entry_id}}}:sightings:first"


def sightings_last(entry_id: int) -> str:
    """ZSET: member id scored by the time of its last sighting (kept with ZADD GT)."""
    return f"hs:{{e:{entry_id}}}:sightings:last"


def secret(name: str) -> str:
    """STRING: 32 random bytes, written once with SET NX."""
    return f"hs:secret:{name}"


# The member directory, notices and the audit trail (issue 6). Notices are
# few (the authority's), so all of them share one slot: filing and answering
# are single-slot transactions. The audit chain is one slot too: appending
# WATCHes its head.

NEXT_NOTICE = "hs:next:notice"  # STRING: last notice id; INCR before the transaction that stores it
NOTICE_IDS = "hs:{notices}:ids"  # ZSET: notice id scored by itself
AUDIT_HEAD = "hs:{audit}:head"  # STRING: JSON [sequence, hash] of the newest event
AUDIT_EVENTS = "hs:{audit}:events"  # HASH: sequence -> JSON event


def contact_points(member_id: int) -> str:
    """STRING: JSON list of [name, role, email, phone], in the member's slot."""
    return f"hs:{{m:{member_id}}}:contacts"


def notice(notice_id: int) -> str:
    """STRING: JSON record of one notice (hashshare.store.codecs)."""
    return f"hs:{{notices}}:notice:{notice_id}"


def notice_request(member_id: int, request_id: str) -> str:
    """STRING: JSON {kind, digest, notice_id} of a FileNotice or AnswerNotice, for replays."""
    return f"hs:{{notices}}:req:{member_id}:{request_id}"


# Spread analytics (hashshare.research; the hour cells are described in store/rollups.py).
# Sightings are kept twice: per entry for its spread, and per member and day
# for periods over the whole bank. Actions live in the reporting member's slot
# only, so that one ReportAction is one transaction with its idempotency record.


def sightings_hours(entry_id: int) -> str:
    """HASH: "<member id>:<hour>" -> sightings of the entry by that member in that hour."""
    return f"hs:{{e:{entry_id}}}:sightings:hours"


def member_sightings_day(member_id: int, day: str) -> str:
    """HASH: "<entry id>:<hour>" -> the member's sightings of the entry in that hour of UTC day YYYY-MM-DD."""
    return f"hs:{{m:{member_id}}}:sightings:day:{day}"


def member_actions_day(member_id: int, day: str) -> str:
    """HASH: "<entry id>:<hour>:<action>" -> actions the member reported for hours of UTC day YYYY-MM-DD."""
    return f"hs:{{m:{member_id}}}:actions:day:{day}"


def member_actions_total(member_id: int) -> str:
    """HASH: "<entry id>:<action>" -> every action the member ever reported on the entry."""
    return f"hs:{{m:{member_id}}}:actions:total"


def member_action_items(member_id: int) -> str:
    """SET: "<item key hex>:<entry id>:<action>" of every reported item (never the item id itself)."""
    return f"hs:{{m:{member_id}}}:actions:items"


def entry_requests(entry_id: int) -> str:
    """HASH: "<member_id>:<request_id>" -> JSON {kind, digest, outcome, created_at} of a write
    committed on this entry, in the same transaction as the write itself."""
    return f"hs:{{e:{entry_id}}}:requests"


def request_field(member_id: int, request_id: str) -> str:
    """The field of ``entry_requests`` for one member's request."""
    return f"{member_id}:{request_id}"


def slot_of(key: str) -> int:
    """The Redis Cluster slot of ``key`` (its hash tag's when it has one)."""
    return int(key_slot(key.encode()))


@functools.cache
def _slot_tags() -> tuple[str, ...]:
    # The first "s<n>" hashing to each slot; about 150k CRC16s, 0.2 s, once per process.
    tags: dict[int, str] = {}
    n = 0
    while len(tags) < REDIS_CLUSTER_HASH_SLOTS:
        tag = f"s{n}"
        tags.setdefault(int(key_slot(tag.encode())), tag)
        n += 1
    return tuple(tags[slot] for slot in range(REDIS_CLUSTER_HASH_SLOTS))


def slot_tag(slot: int) -> str:
    """A hash tag whose keys live in ``slot``."""
    return _slot_tags()[slot]


def slot_active_signals(slot: int) -> str:
    """HASH: row id -> JSON [entry_id, type, version, value hex, variant] of every active
    signal of the entries in ``slot``."""
    return f"hs:{{{slot_tag(slot)}}}:signals:active"


def outbox(slot: int) -> str:
    """HASH: item id -> JSON {"change": changes.encode() text, "at": commit time}."""
    return f"hs:{{{slot_tag(slot)}}}:outbox"


def ack(slot: int) -> str:
    """STRING: written right before a WAIT that confirms earlier writes in ``slot``."""
    return f"hs:{{{slot_tag(slot)}}}:ack"


SLOTS = REDIS_CLUSTER_HASH_SLOTS
# Trust and safety


def member_quota(member_id: int) -> str:
    """ZSET: one element per submission granted to the member, scored by its time (a sliding window)."""
    return f"hs:{{m:{member_id}}}:quota"


def entry_feedback(entry_id: int) -> str:
    """HASH: member id -> JSON {opinion, reason, comment, created_at}, its current opinion."""
    return f"hs:{{e:{entry_id}}}:feedback"


def entry_review(entry_id: int) -> str:
    """HASH: decision, reason, reviewer_id, at (the latest review), confirmed, disabled ("0"/"1")."""
    return f"hs:{{e:{entry_id}}}:review"


def entry_request(entry_id: int, member_id: int, request_id: str) -> str:
    """STRING: JSON {kind, digest, outcome, created_at} of a member's GiveFeedback on the entry.

    In the entry's slot, so that it commits with the feedback."""
    return f"hs:{{e:{entry_id}}}:req:{member_id}:{request_id}"


ALLOW_NEXT_ITEM = "hs:{allow}:next:item"  # STRING: last allow-list item id
ALLOW_NEXT_SIGNAL = "hs:{allow}:next:signal"  # STRING: last allow-list signal row id
ALLOW_ITEMS = "hs:{allow}:items"  # HASH: item id -> JSON {label, added_by, created_at, signals: [[row, ...]]}
ALLOW_REMOVED = "hs:{allow}:removed"  # HASH: item id -> JSON of the removed item, with removed_at, removed_by, reason


def allow_request(member_id: int, request_id: str) -> str:
    """STRING: JSON {kind, digest, outcome, created_at} of an allow-list add or remove."""
    return f"hs:{{allow}}:req:{member_id}:{request_id}"
