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
    hs:signals:active                HASH    signal row id -> JSON row of every active signal
    hs:feed                          STREAM  the change feed: field ``change`` = changes.encode()
    hs:secret:<name>                 STRING  32 random bytes

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

PREFIX = "hs:"

SCHEMA = "hs:schema"  # STRING: the layout version this server wrote; checked at open

# Counters: STRING holding the last id handed out; ids start at 1 like SQLite rowids.
NEXT_MEMBER = "hs:next:member"  # STRING: last member id
NEXT_TOKEN = "hs:next:token"  # STRING: last token id
NEXT_ENTRY = "hs:next:entry"  # STRING: last entry id
NEXT_SUBMISSION = "hs:next:submission"  # STRING: last submission id
NEXT_SIGNAL = "hs:next:signal"  # STRING: last signal row id

MEMBERS_BY_NAME = "hs:members:by_name"  # HASH: member name -> member id (enforces unique names)
ACTIVE_SIGNALS = "hs:signals:active"  # HASH: row id -> JSON [entry_id, type, version, value hex]
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
