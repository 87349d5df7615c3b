"""The audit trail: every mutating call, chained by hash.

Each event's hash is the SHA-256 of the previous event's hash and the
event's canonical fields (sequence included), so that editing, deleting,
inserting or reordering a stored event breaks the chain at that point. The
store appends events inside one write transaction that reads the head of
the chain (``Store.append_audit``), so concurrent writers, also in several
processes, keep it linear and without gaps. Nothing in the API edits or
deletes an event.

Which RPCs are audited is decided here, in ``AUDITED``, next to the
permission table in ``hashshare.auth``: an RPC named here is audited by the
``@rpc`` decorator, successful or not.

Someone who can write the store can also rewrite the whole chain from the
point they edit; the chain detects edits by anyone else, and a copy of a
recent head hash kept elsewhere (``verify`` returns it) pins the past.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .model import AuditDraft, AuditEvent

if TYPE_CHECKING:
    from .store.base import Store

# The previous hash of the first event.
GENESIS = "0" * 64

# The member of `hashshare-server admin` commands, which need no token.
OFFLINE = "offline"

# Every RPC that writes: audited by hashshare.api.rpc, failures too.
AUDITED: frozenset[str] = frozenset(
    {
        "/hashshare.v1.SubmissionService/Submit",
        "/hashshare.v1.SubmissionService/SubmitBatch",
        "/hashshare.v1.SubmissionService/Retract",
        "/hashshare.v1.SubmissionService/GiveFeedback",
        "/hashshare.v1.SubmissionService/ReviewEntry",
        "/hashshare.v1.SubmissionService/AddToAllowList",
        "/hashshare.v1.SubmissionService/RemoveFromAllowList",
        "/hashshare.v1.MatchService/ReportAction",
        "/hashshare.v1.NoticeService/FileNotice",
        "/hashshare.v1.NoticeService/AnswerNotice",
        "/hashshare.v1.AdminService/CreateMember",
        "/hashshare.v1.AdminService/IssueToken",
        "/hashshare.v1.AdminService/RevokeToken",
        "/hashshare.v1.AdminService/SetTrustLevel",
        "/hashshare.v1.AdminService/SetContactPoints",
        "/hashshare.v1.AdminService/ClearFlag",
    }
)


def event_time(now: float) -> float:
    """``now`` to the microsecond: the API's timestamps then show an event's
    time exactly, so that since/until filters agree with what callers saw."""
    return round(now, 6)


def canonical(sequence: int, draft: AuditDraft) -> bytes:
    """The bytes an event's hash covers, besides the previous hash."""
    fields = {
        "sequence": sequence,
        "at": repr(float(draft.at)),  # repr round-trips a float exactly through both stores
        "member": draft.member,
        "roles": list(draft.roles),
        "method": draft.method,
        "request_id": draft.request_id,
        "target": draft.target,
        "result": draft.result,
        "detail": draft.detail,
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(previous_hash: str, sequence: int, draft: AuditDraft) -> str:
    digest = hashlib.sha256()
    digest.update(previous_hash.encode("ascii"))
    digest.update(b"\n")
    digest.update(canonical(sequence, draft))
    return digest.hexdigest()


def chain(previous: tuple[int, str], drafts: Sequence[AuditDraft]) -> list[AuditEvent]:
    """Events for ``drafts`` following the event ``(sequence, hash)`` (``(0, GENESIS)`` for none)."""
    sequence, previous_hash = previous
    events = []
    for draft in drafts:
        sequence += 1
        digest = chain_hash(previous_hash, sequence, draft)
        events.append(AuditEvent(sequence, draft, previous_hash, digest))
        previous_hash = digest
    return events


@dataclass(frozen=True)
class Verification:
    """The outcome of checking a chain: ``broken_at`` is None when it holds."""

    checked: int
    head_hash: str
    broken_at: int | None = None
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def verify(events: Iterable[AuditEvent]) -> Verification:
    """Check events read in sequence order; stop at the first broken link."""
    expected_sequence, previous_hash, checked = 1, GENESIS, 0
    for event in events:
        if event.sequence != expected_sequence:
            problem = f"expected event {expected_sequence}, found {event.sequence}: an event was removed or moved"
            return Verification(checked, previous_hash, expected_sequence, problem)
        if event.previous_hash != previous_hash:
            problem = "its previous_hash is not the hash of the event before it"
            return Verification(checked, previous_hash, event.sequence, problem)
        if chain_hash(previous_hash, event.sequence, event.draft) != event.hash:
            problem = "its fields do not match its hash: the event was edited"
            return Verification(checked, previous_hash, event.sequence, problem)
        previous_hash, expected_sequence, checked = event.hash, expected_sequence + 1, checked + 1
    return Verification(checked, previous_hash)


def all_events(store: Store, page: int = 1000) -> Iterable[AuditEvent]:
    """Every stored event, oldest first, read page by page."""
    after = 0
    while True:
        events = store.list_audit(after, page)
        yield from events
        if len(events) < page:
            return
        after = events[-1].sequence


class AuditLog:
    """Appends drafts to the store, many callers' drafts in one transaction.

    A caller waits until its event is durable. While one thread writes, the
    others queue; the next writer takes the whole queue at once, so under
    load the audit costs one commit per batch of calls, not one per call."""

    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()  # guards _pending
        self._writer = threading.Lock()  # one batch in flight per process
        self._pending: list[tuple[AuditDraft, Future[AuditEvent]]] = []

    def now(self) -> float:
        return self._clock()

    def append(self, draft: AuditDraft) -> AuditEvent:
        done: Future[AuditEvent] = Future()
        with self._lock:
            self._pending.append((draft, done))
        while not done.done():
            with self._writer:
                if done.done():  # an earlier writer took it along
                    break
                with self._lock:
                    batch, self._pending = self._pending, []
                try:
                    events = self._store.append_audit([d for d, _ in batch])
                except Exception as error:
                    for _, waiting in batch:
                        waiting.set_exception(error)
                else:
                    for (_, waiting), event in zip(batch, events, strict=True):
                        waiting.set_result(event)
        return done.result()
