"""The bank's records. Times are UNIX seconds (float, UTC); ids are integers
inside the server and prefixed strings ("ent_42") on the API."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass

from hashshare_client import DiscoveryMethod, LegalBasis, Signal

from .errors import InvalidArgument


class Role(enum.StrEnum):
    PLATFORM = "platform"  # looks up uploads
    TRUST_SAFETY = "trust_safety"  # submits and retracts its own removals
    RESEARCHER = "researcher"  # reads spread analytics only
    ADMIN = "admin"  # manages members and tokens
    AUTHORITY = "authority"  # files notices, reviews entries, reads the quarterly figures


class IdKind(enum.StrEnum):
    ENTRY = "ent"
    SUBMISSION = "sub"
    MEMBER = "mem"
    TOKEN = "tok"
    NOTICE = "ntc"
    ALLOWED = "alw"  # an item of the allow-list


def format_id(kind: IdKind, number: int) -> str:
    return f"{kind.value}_{number}"


def parse_id(kind: IdKind, text: str, field: str) -> int:
    """The number inside a public id; InvalidArgument naming ``field`` otherwise."""
    prefix, _, digits = text.partition("_")
    if prefix != kind.value or not digits.isdigit() or len(digits) > 18:
        raise InvalidArgument.field(field, f"not a valid id: expected {kind.value}_<number>, got {text!r}")
    return int(digits)


class TrustLevel(enum.StrEnum):
    PROVISIONAL = "provisional"  # its submissions alone never block
    TRUSTED = "trusted"  # its submissions alone block


@dataclass(frozen=True)
class Member:
    member_id: int
    name: str
    roles: frozenset[Role]
    created_at: float
    # Members stored before trust levels existed read as TRUSTED (they blocked
    # alone then); a new member gets the level it was created with.
    trust_level: TrustLevel = TrustLevel.PROVISIONAL
    # Set when it submitted faster than the rate limit; cleared by an admin.
    flagged_at: float | None = None
    flag_reason: str = ""

    @property
    def flagged(self) -> bool:
        return self.flagged_at is not None


@dataclass(frozen=True)
class Token:
    token_id: int
    member_id: int
    roles: frozenset[Role]
    created_at: float
    revoked_at: float | None = None


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one RPC."""

    member_id: int
    member_name: str
    token_id: int
    roles: frozenset[Role]

    def has(self, role: Role) -> bool:
        return role in self.roles


@dataclass(frozen=True)
class SubmissionDraft:
    """A validated Submit request, before it is stored."""

    signals: tuple[Signal, ...]
    category: str
    legal_basis: LegalBasis
    discovery_method: DiscoveryMethod
    notice_reference: str
    notice_received_at: float | None
    removed_at: float


@dataclass(frozen=True)
class Submission:
    submission_id: int
    entry_id: int
    member_id: int
    category: str
    legal_basis: LegalBasis
    discovery_method: DiscoveryMethod
    notice_reference: str
    notice_received_at: float | None
    removed_at: float
    created_at: float
    retracted_at: float | None = None
    retract_reason: str = ""

    @property
    def active(self) -> bool:
        return self.retracted_at is None


@dataclass(frozen=True)
class IndexedSignal:
    """One signal row as the in-memory index holds it."""

    row_id: int
    entry_id: int
    type: str
    version: str
    value: bytes
    variant: str = ""  # the view of the image it describes (signal_types.VIEWS)


@dataclass(frozen=True)
class StoredSignal:
    row_id: int
    submission_id: int
    signal: Signal


@dataclass(frozen=True)
class Entry:
    """A cluster of confirmed removals of the same content."""

    entry_id: int
    category: str
    created_at: float
    submissions: tuple[Submission, ...]
    signals: tuple[StoredSignal, ...]

    @property
    def active(self) -> bool:
        return any(s.active for s in self.submissions)

    @property
    def corroborations(self) -> int:
        return len({s.member_id for s in self.submissions if s.active})

    @property
    def first_removed_at(self) -> float | None:
        return min((s.removed_at for s in self.submissions), default=None)


@dataclass(frozen=True)
class EntrySummary:
    """What a Match answer needs to know about a matched entry."""

    entry_id: int
    category: str
    corroborations: int
    active: bool
    # Verdict inputs (matching.held_reasons reads them); the defaults are an
    # entry with no feedback, no review, and a trusted submitter.
    trusted: bool = True  # False only when it has active submitters and none of them is TRUSTED
    endorsers: int = 0  # members agreeing or seeing it too, other than its active submitters
    disputes: int = 0  # distinct members whose current opinion is DISAGREE
    confirmed: bool = False
    disabled: bool = False


@dataclass(frozen=True)
class SubmitOutcome:
    entry_id: int
    submission_id: int
    joined_existing: bool
    corroborations: int


@dataclass(frozen=True)
class RetractOutcome:
    entry_id: int
    retracted_submissions: int
    entry_active: bool


@dataclass(frozen=True)
class Sighting:
    """One Match hit: a member saw an entry's content again."""

    entry_id: int
    member_id: int
    at: float
    verdict: str


@dataclass(frozen=True)
class MemberSightings:
    member_id: int
    count: int
    first_seen: float
    last_seen: float


@dataclass(frozen=True)
class SightingStats:
    entry_id: int
    daily: dict[str, int]
    members: tuple[MemberSightings, ...]


# Changes, in the order the store committed them. The in-memory index of
# every process applies them; applying one twice has no further effect.


@dataclass(frozen=True)
class SignalsAdded:
    rows: tuple[IndexedSignal, ...]


@dataclass(frozen=True)
class SignalsRemoved:
    row_ids: tuple[int, ...]
    # The entries whose summaries the removal changed (a retraction's entry; none for an
    # allow-list item). None: not known (a change written before stores named them), so
    # every cached summary is suspect.
    entry_ids: tuple[int, ...] | None = None


@dataclass(frozen=True)
class TokenRevoked:
    token_hash: bytes


@dataclass(frozen=True)
class EntryChanged:
    """Something a verdict depends on changed for these entries (feedback,
    trust, disabling): every process forgets what it cached about them."""

    entry_ids: tuple[int, ...]


Change = SignalsAdded | SignalsRemoved | TokenRevoked | EntryChanged


# Notices, the member directory and the audit trail (issue 6).


@dataclass(frozen=True)
class ContactPoint:
    """A person or desk of a member that notices are routed to."""

    name: str
    role: str
    email: str = ""
    phone: str = ""


class NoticeState(enum.StrEnum):
    OPEN = "open"
    REMOVED = "removed"
    DISABLED = "disabled"  # made unavailable in the country, not deleted
    REJECTED = "rejected"


@dataclass(frozen=True)
class NoticeDraft:
    """A validated FileNotice request, before it is stored."""

    platform_id: int
    content_reference: str
    signals: tuple[Signal, ...]
    category: str
    legal_basis: LegalBasis
    legal_reference: str
    description: str


@dataclass(frozen=True)
class Notice:
    """A notice the authority filed to a platform, and the platform's answer."""

    notice_id: int
    authority_id: int
    draft: NoticeDraft
    filed_at: float
    routed_to: tuple[ContactPoint, ...]
    state: NoticeState = NoticeState.OPEN
    decided_at: float | None = None
    decided_by: int | None = None
    decision_reason: str = ""
    entry_id: int | None = None

    @property
    def platform_id(self) -> int:
        return self.draft.platform_id

    @property
    def seconds_to_decision(self) -> float | None:
        return None if self.decided_at is None else self.decided_at - self.filed_at

    def answered(self, decision: NoticeDecision) -> Notice:
        return dataclasses.replace(
            self,
            state=decision.state,
            decided_at=decision.decided_at,
            decided_by=decision.decided_by,
            decision_reason=decision.reason,
            entry_id=decision.entry_id,
        )


@dataclass(frozen=True)
class NoticeDecision:
    """A platform's answer to a notice, as the store records it."""

    state: NoticeState
    reason: str
    decided_by: int
    decided_at: float
    entry_id: int | None


@dataclass(frozen=True)
class NoticeFilter:
    """Which notices a listing returns; None means any."""

    platform_id: int | None = None
    state: NoticeState | None = None
    filed_since: float | None = None  # inclusive
    filed_until: float | None = None  # exclusive

    def admits(self, notice: Notice) -> bool:
        return (
            (self.platform_id is None or notice.platform_id == self.platform_id)
            and (self.state is None or notice.state is self.state)
            and (self.filed_since is None or notice.filed_at >= self.filed_since)
            and (self.filed_until is None or notice.filed_at < self.filed_until)
        )


@dataclass(frozen=True)
class AuditDraft:
    """One mutating call, before the store gives it its place in the chain."""

    at: float
    member: str  # "mem_3", "offline", or "" when the caller was not authenticated
    roles: tuple[str, ...]
    method: str
    request_id: str
    target: str
    result: str  # "OK" or a gRPC status code name
    detail: str  # content-free: never signals, tokens, reasons or comments


@dataclass(frozen=True)
class AuditEvent:
    """An audit record in its place: ``hash`` covers its fields and ``previous_hash``."""

    sequence: int
    draft: AuditDraft
    previous_hash: str
    hash: str


@dataclass(frozen=True)
class AuditFilter:
    member: str | None = None
    method: str | None = None
    since: float | None = None  # inclusive
    until: float | None = None  # exclusive

    def admits(self, event: AuditEvent) -> bool:
        draft = event.draft
        return (
            (self.member is None or draft.member == self.member)
            and (self.method is None or draft.method == self.method)
            and (self.since is None or draft.at >= self.since)
            and (self.until is None or draft.at < self.until)
        )


# Trust and safety: feedback, review, the allow-list and submission quotas.


class Opinion(enum.StrEnum):
    AGREE = "agree"
    DISAGREE = "disagree"
    SEEN_TOO = "seen_too"


class DisputeReason(enum.StrEnum):
    NONE = ""
    NOT_HATEFUL = "not_hateful"
    WRONG_CATEGORY = "wrong_category"
    LAWFUL = "lawful"
    BAD_HASH = "bad_hash"


class ReviewDecision(enum.StrEnum):
    CONFIRM = "confirm"
    DISABLE = "disable"
    ENABLE = "enable"


@dataclass(frozen=True)
class Feedback:
    """A member's current opinion of an entry (a later one replaces it)."""

    entry_id: int
    member_id: int
    opinion: Opinion
    reason: DisputeReason
    comment: str
    created_at: float


@dataclass(frozen=True)
class Review:
    """The latest reviewer decision on an entry."""

    entry_id: int
    decision: ReviewDecision
    reason: str
    reviewer_id: int
    at: float


@dataclass(frozen=True)
class EntryTrust:
    """Everything feedback and review say about one entry.

    CONFIRM sets ``confirmed`` (and enables); DISABLE sets ``disabled`` and
    clears ``confirmed``; ENABLE clears ``disabled``."""

    entry_id: int
    feedback: tuple[Feedback, ...] = ()
    review: Review | None = None
    confirmed: bool = False
    disabled: bool = False

    def count(self, opinion: Opinion) -> int:
        return sum(1 for f in self.feedback if f.opinion is opinion)


@dataclass(frozen=True)
class FeedbackOutcome:
    """What GiveFeedback answers: the entry's opinion counts after it."""

    entry_id: int
    agreements: int
    disputes: int
    seen_too: int


def allowed_index_id(number: int) -> int:
    """The index id of an allow-list item or of one of its signal rows.

    Allow-list signals live in the index beside the entries' under negative
    ids (entry and row ids are positive), so one search finds both and
    matching tells them apart by sign."""
    return -number


@dataclass(frozen=True)
class AllowedItem:
    """Known-benign content: matching it never blocks."""

    allow_id: int
    signals: tuple[Signal, ...]
    label: str
    added_by: int
    created_at: float


@dataclass(frozen=True)
class MemberFeedbackStats:
    """One member's feedback in a period, given and received."""

    member_id: int
    agreements_given: int
    disputes_given: int
    seen_too_given: int
    disputes_received: int
