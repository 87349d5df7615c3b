"""The SDK's result records: plain frozen dataclasses, no protobuf."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ._exceptions import FieldViolation
from .signals import Signal

if TYPE_CHECKING:
    from ._research import ActionCounts, Delay

__all__ = [
    "AuditEvent",
    "AuditPage",
    "AllowedItem",
    "Category",
    "ContactPoint",
    "DailyCount",
    "DirectoryEntry",
    "DiscoveryMethod",
    "DisputeReason",
    "Entry",
    "EntryFeedback",
    "FeedbackResult",
    "ItemError",
    "LegalBasis",
    "MatchResult",
    "MatchedEntry",
    "Notice",
    "NoticePage",
    "NoticeState",
    "Member",
    "Opinion",
    "PlatformSpread",
    "Removal",
    "RetractResult",
    "ReviewDecision",
    "SignalMatch",
    "SkippedSignal",
    "Spread",
    "SubmitResult",
    "Submission",
    "TrustLevel",
    "Verdict",
    "to_jsonable",
]


class Verdict(enum.StrEnum):
    """What a platform should do with an upload; compares equal to its name."""

    NONE = "NONE"
    REVIEW = "REVIEW"
    BLOCK = "BLOCK"


class LegalBasis(enum.StrEnum):
    UNSPECIFIED = "unspecified"
    COMMUNITY_GUIDELINES = "community_guidelines"
    LOCAL_LAW = "local_law"
    COMMUNITY_GUIDELINES_AND_LOCAL_LAW = "community_guidelines_and_local_law"


class DiscoveryMethod(enum.StrEnum):
    UNSPECIFIED = "unspecified"
    AUTHORITY_NOTICE = "authority_notice"
    USER_REPORT = "user_report"
    PROACTIVE = "proactive"
    TRUSTED_FLAGGER = "trusted_flagger"


@dataclass(frozen=True)
class SignalMatch:
    signal_type: str
    distance: int
    similarity: float
    verdict: Verdict


@dataclass(frozen=True)
class MatchedEntry:
    """One bank entry an item matched; ``signal_type`` is the strongest evidence."""

    entry_id: str
    signal_type: str
    distance: int
    similarity: float
    category: str
    corroborations: int
    verdict: Verdict
    evidence: tuple[SignalMatch, ...] = ()
    # Why the signals alone would block but the verdict is REVIEW: "disputed",
    # "awaiting_corroboration", "allow_listed".
    held_reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class SkippedSignal:
    signal_type: str
    reason: str


@dataclass(frozen=True)
class ItemError:
    """Why one item of a stream was refused."""

    code: str
    message: str
    field_violations: tuple[FieldViolation, ...] = ()


@dataclass(frozen=True)
class MatchResult:
    verdict: Verdict
    matches: tuple[MatchedEntry, ...] = ()
    item_id: str = ""
    skipped: tuple[SkippedSignal, ...] = ()
    error: ItemError | None = None
    limited: tuple[SkippedSignal, ...] = ()
    # How many entries matched in all; more than len(matches) when max_matches cut the list.
    total_matches: int = 0


@dataclass(frozen=True)
class SubmitResult:
    entry_id: str
    submission_id: str
    joined_existing: bool
    corroborations: int


@dataclass(frozen=True)
class Removal:
    """One confirmed removal to submit in a batch (``Client.submit_many``).

    The fields are those of ``Client.submit``; ``request_id`` defaults to a
    new UUID, so pass your own to make a replay of the batch safe."""

    signals: tuple[Signal, ...] | list[Signal]
    category: str
    legal_basis: LegalBasis | str = LegalBasis.COMMUNITY_GUIDELINES
    discovery_method: DiscoveryMethod | str = DiscoveryMethod.UNSPECIFIED
    notice_reference: str = ""
    notice_received_at: datetime | None = None
    removed_at: datetime | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class RetractResult:
    entry_id: str
    retracted_submissions: int
    entry_active: bool


@dataclass(frozen=True)
class Submission:
    submission_id: str
    member_id: str
    category: str
    legal_basis: LegalBasis
    discovery_method: DiscoveryMethod
    notice_reference: str
    notice_received_at: datetime | None
    removed_at: datetime | None
    created_at: datetime | None
    retracted_at: datetime | None
    retract_reason: str


@dataclass(frozen=True)
class Entry:
    entry_id: str
    category: str
    active: bool
    corroborations: int
    created_at: datetime | None
    first_removed_at: datetime | None
    signals: tuple[Signal, ...] = ()
    submissions: tuple[Submission, ...] = ()
    status: str = "active"  # "active", "retracted" or "disabled"
    confirmed: bool = False
    agreements: int = 0
    disputes: int = 0
    seen_too: int = 0
    # What an exact copy gets now, and why it is held at REVIEW.
    verdict: Verdict = Verdict.NONE
    held_reasons: tuple[str, ...] = ()
    feedback: tuple[EntryFeedback, ...] = ()  # the caller's own (everyone's for admins and the authority)
    last_review: str = ""  # "confirm", "disable", "enable" or "" when never reviewed
    last_review_reason: str = ""
    reviewed_at: datetime | None = None


@dataclass(frozen=True)
class Category:
    id: str
    title: str
    description: str


@dataclass(frozen=True)
class DailyCount:
    day: str
    sightings: int


@dataclass(frozen=True)
class PlatformSpread:
    platform: str
    sightings: int
    first_seen: datetime | None
    last_seen: datetime | None


@dataclass(frozen=True)
class Spread:
    entry_id: str
    sightings: int
    distinct_platforms: int
    first_seen: datetime | None
    last_seen: datetime | None
    daily: tuple[DailyCount, ...] = field(default_factory=tuple)
    platforms: tuple[PlatformSpread, ...] = field(default_factory=tuple)
    category: str = ""
    first_removed_at: datetime | None = None
    actions: ActionCounts | None = None
    delay: Delay | None = None  # from the first removal to the re-uploads


# Notices, the member directory and the audit trail


@dataclass(frozen=True)
class ContactPoint:
    """A person or desk that notices are routed to; give an email, a phone or both."""

    name: str
    role: str
    email: str = ""
    phone: str = ""


@dataclass(frozen=True)
class DirectoryEntry:
    member_id: str
    name: str
    roles: tuple[str, ...]
    contact_points: tuple[ContactPoint, ...] = ()


class NoticeState(enum.StrEnum):
    UNSPECIFIED = "unspecified"
    OPEN = "open"
    REMOVED = "removed"
    DISABLED = "disabled"  # made unavailable in the country, not deleted
    REJECTED = "rejected"


@dataclass(frozen=True)
class Notice:
    notice_id: str
    authority_id: str
    platform_id: str
    content_reference: str
    category: str
    legal_basis: LegalBasis
    legal_reference: str
    description: str
    filed_at: datetime | None
    state: NoticeState
    decided_at: datetime | None
    decided_by: str
    decision_reason: str
    entry_id: str
    seconds_to_decision: float
    signals: tuple[Signal, ...] = ()
    routed_to: tuple[ContactPoint, ...] = ()


@dataclass(frozen=True)
class NoticePage:
    notices: tuple[Notice, ...]
    next_page_token: str  # empty on the last page


@dataclass(frozen=True)
class AuditEvent:
    sequence: int
    at: datetime | None
    member_id: str
    roles: tuple[str, ...]
    method: str
    request_id: str
    target: str
    result: str
    detail: str
    previous_hash: str
    hash: str


@dataclass(frozen=True)
class AuditPage:
    events: tuple[AuditEvent, ...]
    next_page_token: str  # empty on the last page


class Opinion(enum.StrEnum):
    """A member's opinion of an entry (``Client.give_feedback``)."""

    AGREE = "agree"
    DISAGREE = "disagree"  # needs a DisputeReason
    SEEN_TOO = "seen_too"


class DisputeReason(enum.StrEnum):
    NOT_HATEFUL = "not_hateful"
    WRONG_CATEGORY = "wrong_category"
    LAWFUL = "lawful"
    BAD_HASH = "bad_hash"


class ReviewDecision(enum.StrEnum):
    CONFIRM = "confirm"
    DISABLE = "disable"
    ENABLE = "enable"


class TrustLevel(enum.StrEnum):
    PROVISIONAL = "provisional"  # its submissions alone never block
    TRUSTED = "trusted"


@dataclass(frozen=True)
class EntryFeedback:
    member_id: str
    opinion: Opinion
    reason: DisputeReason | None
    comment: str
    created_at: datetime | None


@dataclass(frozen=True)
class FeedbackResult:
    """The entry's opinion counts and verdict after a GiveFeedback."""

    entry_id: str
    agreements: int
    disputes: int
    seen_too: int
    verdict: Verdict
    held_reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class AllowedItem:
    """Known-benign content on the allow-list: matching it never blocks."""

    allow_id: str
    signals: tuple[Signal, ...]
    label: str
    added_by: str
    created_at: datetime | None


@dataclass(frozen=True)
class Member:
    member_id: str
    name: str
    roles: tuple[str, ...]
    created_at: datetime | None
    trust_level: TrustLevel
    flagged: bool = False
    flag_reason: str = ""
    flagged_at: datetime | None = None


def to_jsonable(record: Any) -> Any:
    """A result record as JSON-ready dicts and lists (for ``--json``)."""
    return _jsonable(record)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Signal):
        return value.to_dict()
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, enum.Enum):
        return value.value
    return value
