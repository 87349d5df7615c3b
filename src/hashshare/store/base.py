"""The storage interface. Every implementation passes the same contract
suite (tests/server/store/test_store_contract.py).

A store is the bank's source of truth and its change feed: every write that
changes what matches is committed together with a Change, and every
process's in-memory index replays the feed from its position. Writes are
atomic: a failed call leaves nothing behind.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from hashshare_client import DiscoveryMethod, LegalBasis, Signal

from ..errors import InvalidArgument
from ..model import (
    AllowedItem,
    AuditDraft,
    AuditEvent,
    AuditFilter,
    Change,
    ContactPoint,
    Entry,
    EntrySummary,
    EntryTrust,
    Feedback,
    FeedbackOutcome,
    IndexedSignal,
    Member,
    MemberFeedbackStats,
    Notice,
    NoticeDecision,
    NoticeDraft,
    NoticeFilter,
    RetractOutcome,
    Review,
    Role,
    Sighting,
    SightingStats,
    SubmissionDraft,
    SubmitOutcome,
    Token,
    TrustLevel,
)
from .rollups import ActionRecord, ActionTally, Dimension, Key, Rollup, SightingTally, SubmissionTally
from .sighting_cells import SightingCells, fold_objects


@dataclass(frozen=True)
class BatchSubmission:
    """One item of ``Store.submit_many``.

    It joins ``join_entry_id`` (when that entry exists), else the entry of the
    earlier item ``join_item`` of the same batch (its index), else a new
    entry. ``created_at`` overrides the batch's ``now`` for this submission
    (and its new entry): imports keep the times of the bank they came from.
    """

    request_id: str
    request_digest: bytes
    draft: SubmissionDraft
    join_entry_id: int | None = None
    join_item: int | None = None
    created_at: float | None = None


@dataclass(frozen=True)
class Replayed:
    """A batch item whose (member, request_id) was stored before: its first outcome."""

    outcome: SubmitOutcome


# What submit_many answers for each item: its outcome, the first outcome of a
# replay, or why it was refused.
BatchOutcome = SubmitOutcome | Replayed | InvalidArgument


def submitted(outcome: BatchOutcome) -> SubmitOutcome | None:
    """The outcome of a stored or replayed item; None for a refused one."""
    if isinstance(outcome, Replayed):
        return outcome.outcome
    return outcome if isinstance(outcome, SubmitOutcome) else None


# An import line's submission as ImportBatch.add takes it: (category, legal_basis,
# discovery_method, notice_reference, notice_received_at, removed_at, created_at), the
# enums as their values and created_at None for the batch's time; and a signal: (type,
# version, value, quality, variant).
ImportedSubmission = tuple[str, str, str, str, float | None, float, float | None]
ImportedSignal = tuple[str, str, bytes, int | None, str]


@dataclass
class ImportBatch:
    """Lines of a bank file for ``Store.import_batch``, as columns: an import reads
    millions of lines, and objects for each would cost more than storing it.

    Line ``n`` is identified by ``keys[n]``, a digest of its content (32 bytes): a line
    imported before by the same member stores nothing. Its submissions are those whose
    ``sub_line`` is ``n``, in order; they make one new entry (the category and time of
    the first), and the first carries the line's signals, those whose ``sig_line`` is
    ``n``. Lines are added in order, so both columns of line numbers are sorted."""

    keys: list[bytes] = field(default_factory=list)
    # per submission
    sub_line: list[int] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    legal_bases: list[str] = field(default_factory=list)
    discovery_methods: list[str] = field(default_factory=list)
    notice_references: list[str] = field(default_factory=list)
    notice_received_at: list[float | None] = field(default_factory=list)
    removed_at: list[float] = field(default_factory=list)
    created_at: list[float | None] = field(default_factory=list)
    # per signal
    sig_line: list[int] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)
    qualities: list[int | None] = field(default_factory=list)
    variants: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, key: bytes, submissions: Iterable[ImportedSubmission], signals: Iterable[ImportedSignal]) -> None:
        """Append a line: at least one submission, the first carrying ``signals``."""
        line = len(self.keys)
        self.keys.append(key)
        for (
            category,
            legal_basis,
            discovery_method,
            reference,
            notice_received_at,
            removed_at,
            created_at,
        ) in submissions:
            self.sub_line.append(line)
            self.categories.append(category)
            self.legal_bases.append(legal_basis)
            self.discovery_methods.append(discovery_method)
            self.notice_references.append(reference)
            self.notice_received_at.append(notice_received_at)
            self.removed_at.append(removed_at)
            self.created_at.append(created_at)
        for signal_type, version, value, quality, variant in signals:
            self.sig_line.append(line)
            self.types.append(signal_type)
            self.versions.append(version)
            self.values.append(value)
            self.qualities.append(quality)
            self.variants.append(variant)

    def submissions(self) -> list[ImportedSubmission]:
        return list(
            zip(
                self.categories,
                self.legal_bases,
                self.discovery_methods,
                self.notice_references,
                self.notice_received_at,
                self.removed_at,
                self.created_at,
                strict=True,
            )
        )

    def signals(self) -> list[ImportedSignal]:
        return list(zip(self.types, self.versions, self.values, self.qualities, self.variants, strict=True))

    def line_ranges(self) -> Iterator[tuple[range, range]]:
        """Each line's submissions and signals, as ranges of their indexes."""
        sub = sig = 0
        for line in range(len(self.keys)):
            sub_start, sig_start = sub, sig
            while sub < len(self.sub_line) and self.sub_line[sub] == line:
                sub += 1
            while sig < len(self.sig_line) and self.sig_line[sig] == line:
                sig += 1
            yield range(sub_start, sub), range(sig_start, sig)

    def select(self, lines: Iterable[int]) -> ImportBatch:
        """A batch of these lines only (in the order given), numbered from 0."""
        ranges, submissions, signals = list(self.line_ranges()), self.submissions(), self.signals()
        picked = ImportBatch()
        for line in lines:
            subs, sigs = ranges[line]
            picked.add(self.keys[line], submissions[subs.start : subs.stop], signals[sigs.start : sigs.stop])
        return picked


@dataclass
class ImportOutcome:
    """What ``Store.import_batch`` did with a batch's lines: every line not named here
    was stored."""

    present: list[int] = field(default_factory=list)  # lines imported before: nothing written
    refused: list[tuple[int, str]] = field(default_factory=list)  # (line, why): nothing written
    submissions: int = 0  # submissions stored


def import_request(key: bytes, k: int) -> tuple[str, bytes]:
    """The request id and digest of the ``k``-th submission of an import line with this
    key, for stores that keep an import's lines as requests."""
    text = key.hex()
    return f"imp-{text[:40]}-{k}", hashlib.sha256(f"{text}/{k}".encode()).digest()


class FeedGap(Exception):
    """The feed no longer holds every change after a follower's position (trimmed, or
    rolled back by a failover): the follower must rebuild from ``active_signals``."""


@dataclass(frozen=True)
class SummaryColumns:
    """Entries' summaries as columns, by entry id: the common fields of every entry, and
    the feedback and review inputs of the few that have any."""

    entry_ids: list[int]
    categories: list[str]
    corroborations: list[int]
    trusted: list[bool]
    others: dict[int, EntrySummary]  # entries with feedback or a review, whole

    def __len__(self) -> int:
        return len(self.entry_ids)


class Store(abc.ABC):
    """Members, tokens, entries, sightings and the change feed."""

    # Members and tokens

    @abc.abstractmethod
    def create_member(
        self, name: str, roles: frozenset[Role], now: float, trust_level: TrustLevel = TrustLevel.PROVISIONAL
    ) -> Member:
        """A new member; AlreadyExists when the name is taken."""

    @abc.abstractmethod
    def get_member(self, member_id: int) -> Member | None: ...

    @abc.abstractmethod
    def list_members(self) -> list[Member]: ...

    @abc.abstractmethod
    def create_token(self, member_id: int, token_hash: bytes, roles: frozenset[Role], now: float) -> Token:
        """Store a token's hash; NotFound for an unknown member."""

    @abc.abstractmethod
    def revoke_token(self, token_id: int, now: float) -> tuple[Token, bytes]:
        """Revoke a token, returning it and its hash; NotFound when unknown.

        Appends TokenRevoked to the feed so every process forgets it."""

    @abc.abstractmethod
    def find_token(self, token_hash: bytes) -> tuple[Token, Member] | None:
        """The live token with this hash and its member; None if unknown or revoked."""

    # The bank

    @abc.abstractmethod
    def submit(
        self,
        member_id: int,
        request_id: str,
        request_digest: bytes,
        draft: SubmissionDraft,
        join_entry_id: int | None,
        now: float,
    ) -> SubmitOutcome:
        """Store a submission, in a new entry or joining ``join_entry_id``.

        A replayed (member_id, request_id) returns the first outcome and
        stores nothing; with another request_digest it is InvalidArgument."""

    @abc.abstractmethod
    def submit_many(self, member_id: int, items: Sequence[BatchSubmission], now: float) -> list[BatchOutcome]:
        """Store a batch of submissions of one member in one transaction.

        Each item behaves as ``submit`` would, in order: a replayed
        (member_id, request_id), also one repeated inside the batch, returns
        the first outcome (as Replayed) and stores nothing; a request_id reused with
        another digest gets InvalidArgument in its place and stores nothing,
        while the other items are stored. Any other failure (an unstorable
        signal) raises and leaves nothing of the batch behind. The batch's
        new signals reach the feed as one SignalsAdded change."""

    def import_batch(self, member_id: int, batch: ImportBatch, now: float) -> ImportOutcome:
        """Store the lines of a bank file for one member in one transaction (an import).

        Each line stores its submissions in one new entry, not clustered with existing
        ones; a line whose key the member imported before, or that repeats an earlier
        line of the batch, stores nothing and is ``present``. The batch's new signals
        reach the feed as one SignalsAdded change. Stores may override this for speed;
        here each submission is a ``submit_many`` item whose request id derives from the
        line's key (so a line is also refused when another request took that id)."""
        items: list[BatchSubmission] = []
        firsts: list[int] = []  # per line: its first item
        submissions, all_signals = batch.submissions(), batch.signals()
        for (subs, sigs), key in zip(batch.line_ranges(), batch.keys, strict=True):
            firsts.append(len(items))
            signals = tuple(Signal(*signal) for signal in all_signals[sigs.start : sigs.stop])
            for k, submission in enumerate(submissions[subs.start : subs.stop]):
                category, legal_basis, method, reference, notice_received_at, removed_at, created_at = submission
                draft = SubmissionDraft(
                    signals if k == 0 else (),
                    category,
                    LegalBasis(legal_basis),
                    DiscoveryMethod(method),
                    reference,
                    notice_received_at,
                    removed_at,
                )
                request_id, digest = import_request(key, k)
                items.append(BatchSubmission(request_id, digest, draft, None, firsts[-1] if k else None, created_at))
        outcomes = self.submit_many(member_id, items, now) if items else []
        done = ImportOutcome()
        for line, first in enumerate(firsts):
            outcome = outcomes[first]
            if isinstance(outcome, InvalidArgument):  # the same content imported before with other details
                done.refused.append((line, outcome.message))
            elif isinstance(outcome, Replayed):
                done.present.append(line)
        done.submissions = sum(1 for o in outcomes if isinstance(o, SubmitOutcome))
        return done

    @contextlib.contextmanager
    def bulk_writes(self) -> Iterator[None]:
        """A stretch of many batch writes (an import), made durable together at its end.

        Inside, a store may trade each write's own durability for speed: a power
        loss may take back writes of the stretch (whole transactions, never part
        of one, and never corrupting the store), a crash of the process takes back
        nothing. Everything written inside is durable once the block has exited
        without an error. Stores that write durably anyway need not override it."""
        yield

    @abc.abstractmethod
    def retract(
        self, member_id: int, request_id: str, request_digest: bytes, entry_id: int, reason: str, now: float
    ) -> RetractOutcome:
        """Withdraw the member's active submissions on an entry (NotFound if none).

        Idempotent on (member_id, request_id) like submit."""

    @abc.abstractmethod
    def get_entry(self, entry_id: int) -> Entry | None: ...

    @abc.abstractmethod
    def entry_summaries(self, entry_ids: Iterable[int]) -> dict[int, EntrySummary]: ...

    def entry_summaries_after(self, entry_id: int, limit: int) -> SummaryColumns | None:
        """The summaries of up to ``limit`` entries with ids above ``entry_id``, by id, as
        columns (the in-memory summary table reads a whole bank so); None when this store
        cannot list them cheaply, and Match then reads summaries entry by entry."""
        return None

    # Sightings

    def add_sightings(self, sightings: Sequence[Sighting]) -> None:
        self.add_sighting_cells(fold_objects(sightings))

    @abc.abstractmethod
    def add_sighting_cells(self, cells: SightingCells) -> None:
        """Add each cell's count to the store's cell of its entry, member and hour, and
        widen its first and last sighting to the cell's."""

    @abc.abstractmethod
    def sighting_stats(self, entry_id: int) -> SightingStats: ...

    # The change feed

    @abc.abstractmethod
    def feed_position(self) -> str:
        """The position of the newest change (an opaque string)."""

    @abc.abstractmethod
    def active_signals(self) -> Iterator[IndexedSignal]:
        """Every signal of an active submission.

        Read ``feed_position()`` first, then this, then replay the feed from
        that position: changes are idempotent, so the overlap is harmless."""

    @abc.abstractmethod
    def changes_since(self, position: str, limit: int = 10_000) -> tuple[list[Change], str]:
        """Changes after ``position``, oldest first, and the position of the last one.

        FeedGap when the feed no longer holds every change after ``position``."""

    # Keys

    @abc.abstractmethod
    def secret(self, name: str) -> bytes:
        """A random 32-byte secret, created at first use and then stable forever."""

    @abc.abstractmethod
    def close(self) -> None: ...

    # The member directory (issue 6)

    @abc.abstractmethod
    def set_contact_points(self, member_id: int, points: Sequence[ContactPoint], now: float) -> None:
        """Replace a member's contact points; NotFound for an unknown member."""

    @abc.abstractmethod
    def contact_points(self, member_ids: Iterable[int]) -> dict[int, tuple[ContactPoint, ...]]:
        """The contact points of each of these members that has any."""

    # Notices (issue 6)

    @abc.abstractmethod
    def file_notice(
        self,
        authority_id: int,
        request_id: str,
        request_digest: bytes,
        draft: NoticeDraft,
        routed_to: Sequence[ContactPoint],
        now: float,
    ) -> Notice:
        """Store an open notice filed at ``now``.

        A replayed (authority_id, request_id) returns the notice it filed
        (as it is now) and stores nothing; with another digest it is
        InvalidArgument."""

    @abc.abstractmethod
    def answer_notice(self, notice_id: int, request_id: str, request_digest: bytes, decision: NoticeDecision) -> Notice:
        """Record the decision on an open notice.

        NotFound for an unknown notice, FailedPrecondition when it was
        decided before. A replayed (decision.decided_by, request_id) returns
        the notice and stores nothing; with another digest it is
        InvalidArgument."""

    @abc.abstractmethod
    def get_notice(self, notice_id: int) -> Notice | None: ...

    @abc.abstractmethod
    def list_notices(self, after_id: int, limit: int, where: NoticeFilter) -> list[Notice]:
        """Notices with ids above ``after_id`` that pass ``where``, at most ``limit``, by id."""

    # The audit trail (issue 6)

    @abc.abstractmethod
    def append_audit(self, drafts: Sequence[AuditDraft]) -> list[AuditEvent]:
        """Append events to the chain in one transaction (hashshare.audit.chain),
        linear and without gaps even when several processes append at once."""

    @abc.abstractmethod
    def list_audit(self, after_sequence: int, limit: int, where: AuditFilter | None = None) -> list[AuditEvent]:
        """Events with sequence numbers above ``after_sequence`` that pass
        ``where``, at most ``limit``, oldest first, exactly as stored."""

    # Spread analytics (hashshare.research; the cells are described in rollups)

    @abc.abstractmethod
    def report_actions(
        self, member_id: int, request_id: str, request_digest: bytes, actions: Sequence[ActionRecord], now: float
    ) -> int:
        """Store what a platform did with matched items; how many were recorded.

        All or nothing. A replayed (member_id, request_id) returns the first
        answer and stores nothing; with another digest it is InvalidArgument.
        A report whose non-empty item_key, entry and action this member
        reported before is not recorded again. Entries are not checked here."""

    @abc.abstractmethod
    def sighting_rollup(self, query: Rollup) -> dict[Key, SightingTally]:
        """Sightings (hour cells) the query selects, grouped by ``query.by``;
        groups without sightings are absent."""

    @abc.abstractmethod
    def action_rollup(self, query: Rollup) -> dict[Key, ActionTally]:
        """Reported actions (hour cells by acted_at) the query selects, grouped
        by ``query.by``. A query without a period may not group by time."""

    @abc.abstractmethod
    def submission_rollup(self, start: float, end: float, by: Dimension) -> dict[int | str, SubmissionTally]:
        """Active submissions removed in [start, end) per member or per
        category (the submission's own), as SubmissionTally describes."""

    # Following the feed (defaults fit a store whose feed is written in the same
    # transaction as the data, in commit order)

    def wait_for_changes(self, position: str, timeout: float) -> None:
        """Return once there may be changes after ``position``, or after ``timeout`` seconds."""
        time.sleep(timeout)

    def active_row_ids(self, rows: Sequence[IndexedSignal]) -> set[int]:
        """Which of ``rows`` are active now. A store whose feed can deliver an added row
        after its removal (published late) answers from its data; followers index only these."""
        return {row.row_id for row in rows}

    def publish_pending(self) -> int:
        """Publish changes committed but not yet on the feed (a writer died in between);
        how many. Every follower calls it now and then; it throttles itself."""
        return 0

    # Trust and safety: trust levels, submission quotas, feedback, review, the allow-list.
    #
    # Every write here that changes a verdict input appends EntryChanged for
    # the entries concerned, so that every process forgets what it cached.
    # entry_summaries fills EntrySummary's verdict inputs (trusted, endorsers,
    # disputes, confirmed, disabled). Members stored before trust levels
    # existed read as TRUSTED: their submissions blocked alone then.

    @abc.abstractmethod
    def set_trust_level(self, member_id: int, trust_level: TrustLevel) -> Member:
        """Change a member's trust level (NotFound when unknown), with
        EntryChanged for every entry it has an active submission on."""

    @abc.abstractmethod
    def clear_flag(self, member_id: int) -> Member:
        """Clear the member's rate flag (NotFound when unknown); no-op when not flagged."""

    @abc.abstractmethod
    def take_submit_quota(
        self, member_id: int, wanted: int, limit: int, window_seconds: float, now: float, flag_reason: str
    ) -> int:
        """Grant up to ``wanted`` submissions so that the member's grants in the
        last ``window_seconds`` stay within ``limit``; how many were granted.
        Granting fewer than wanted flags the member (flagged_at = now, with
        ``flag_reason``) unless it already is. Atomic across processes."""

    @abc.abstractmethod
    def give_feedback(
        self, member_id: int, request_id: str, request_digest: bytes, feedback: Feedback
    ) -> FeedbackOutcome:
        """Record the member's opinion of an entry, replacing its previous one
        (NotFound for an unknown entry). Idempotent on (member_id, request_id)
        like submit."""

    @abc.abstractmethod
    def review_entry(self, review: Review) -> EntryTrust:
        """Apply a reviewer's decision (see EntryTrust); NotFound for an unknown entry."""

    @abc.abstractmethod
    def entry_trust(self, entry_id: int) -> EntryTrust:
        """The entry's current feedback (oldest first) and review state."""

    @abc.abstractmethod
    def add_allowed(
        self,
        member_id: int,
        request_id: str,
        request_digest: bytes,
        signals: Sequence[Signal],
        label: str,
        now: float,
    ) -> AllowedItem:
        """A new allow-list item; its signals reach the feed as SignalsAdded
        rows under negative ids (model.allowed_index_id). Idempotent on
        (member_id, request_id)."""

    @abc.abstractmethod
    def remove_allowed(
        self, member_id: int, request_id: str, request_digest: bytes, allow_id: int, reason: str, now: float
    ) -> None:
        """Withdraw an allow-list item (NotFound when unknown or removed), with
        SignalsRemoved of its rows. Idempotent on (member_id, request_id)."""

    @abc.abstractmethod
    def list_allowed(self, after: int, limit: int) -> list[AllowedItem]:
        """Live allow-list items with ids above ``after``, by id, at most ``limit``."""

    @abc.abstractmethod
    def allowed_signals(self) -> Iterator[IndexedSignal]:
        """The index rows of every live allow-list item (negative ids), for loading the index."""

    @abc.abstractmethod
    def feedback_stats(self, start: float | None, end: float | None) -> list[MemberFeedbackStats]:
        """Per member with any: current opinions given in [start, end), and
        disputes others gave in it on entries the member submitted."""
