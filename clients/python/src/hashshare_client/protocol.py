"""Conversions between the SDK's records and the hashshare.v1 messages.

Shared by the sync and async clients, and by the server, so that each
mapping (verdicts, legal bases, timestamps, signals) exists once.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import grpc
from google.rpc import error_details_pb2, status_pb2

from ._exceptions import API_ERRORS, ApiError, FieldViolation
from ._models import (
    AllowedItem,
    AuditEvent,
    AuditPage,
    Category,
    ContactPoint,
    DailyCount,
    DirectoryEntry,
    DiscoveryMethod,
    DisputeReason,
    Entry,
    EntryFeedback,
    FeedbackResult,
    ItemError,
    LegalBasis,
    MatchedEntry,
    MatchResult,
    Member,
    Notice,
    NoticePage,
    NoticeState,
    Opinion,
    PlatformSpread,
    Removal,
    RetractResult,
    ReviewDecision,
    SignalMatch,
    SkippedSignal,
    Spread,
    Submission,
    SubmitResult,
    TrustLevel,
    Verdict,
)
from ._timestamps import from_timestamp, timestamp
from .pb.hashshare.v1 import admin_pb2, match_pb2, notice_pb2, research_pb2, signal_pb2, submission_pb2
from .signal_types import view
from .signals import Signal

STATUS_DETAILS_KEY = "grpc-status-details-bin"

VERDICTS: dict[signal_pb2.Verdict.ValueType, Verdict] = {
    signal_pb2.VERDICT_UNSPECIFIED: Verdict.NONE,
    signal_pb2.VERDICT_NONE: Verdict.NONE,
    signal_pb2.VERDICT_REVIEW: Verdict.REVIEW,
    signal_pb2.VERDICT_BLOCK: Verdict.BLOCK,
}
LEGAL_BASES: dict[LegalBasis, signal_pb2.LegalBasis.ValueType] = {
    LegalBasis.UNSPECIFIED: signal_pb2.LEGAL_BASIS_UNSPECIFIED,
    LegalBasis.COMMUNITY_GUIDELINES: signal_pb2.LEGAL_BASIS_COMMUNITY_GUIDELINES,
    LegalBasis.LOCAL_LAW: signal_pb2.LEGAL_BASIS_LOCAL_LAW,
    LegalBasis.COMMUNITY_GUIDELINES_AND_LOCAL_LAW: signal_pb2.LEGAL_BASIS_COMMUNITY_GUIDELINES_AND_LOCAL_LAW,
}
DISCOVERY_METHODS: dict[DiscoveryMethod, signal_pb2.DiscoveryMethod.ValueType] = {
    DiscoveryMethod.UNSPECIFIED: signal_pb2.DISCOVERY_METHOD_UNSPECIFIED,
    DiscoveryMethod.AUTHORITY_NOTICE: signal_pb2.DISCOVERY_METHOD_AUTHORITY_NOTICE,
    DiscoveryMethod.USER_REPORT: signal_pb2.DISCOVERY_METHOD_USER_REPORT,
    DiscoveryMethod.PROACTIVE: signal_pb2.DISCOVERY_METHOD_PROACTIVE,
    DiscoveryMethod.TRUSTED_FLAGGER: signal_pb2.DISCOVERY_METHOD_TRUSTED_FLAGGER,
}


@dataclass(frozen=True)
class Threshold:
    """A per-request threshold: a distance in bits, or a Jaccard similarity for text."""

    block: float | None = None
    review: float | None = None


def signal_to_proto(signal: Signal) -> signal_pb2.Signal:
    message = signal_pb2.Signal(type=signal.type, version=signal.version, raw=signal.value, variant=signal.variant)
    if signal.quality is not None:
        message.quality = signal.quality
    return message


def signal_from_proto(message: signal_pb2.Signal) -> Signal:
    value = bytes.fromhex(message.hex) if message.WhichOneof("value") == "hex" else message.raw
    quality = message.quality if message.HasField("quality") else None
    return Signal(message.type, message.version, value, quality, message.variant)


def match_request(
    signals: Sequence[Signal],
    thresholds: Mapping[str, Threshold] | None = None,
    item_id: str = "",
    max_matches: int = 0,
) -> match_pb2.MatchRequest:
    request = match_pb2.MatchRequest(
        signals=[signal_to_proto(s) for s in signals], item_id=item_id, max_matches=max_matches
    )
    for signal_type, threshold in (thresholds or {}).items():
        message = request.thresholds.add(signal_type=signal_type)
        if threshold.block is not None:
            message.block = threshold.block
        if threshold.review is not None:
            message.review = threshold.review
    return request


def match_batch_requests(
    items: Iterable[tuple[str, Sequence[Signal]]],
    thresholds: Mapping[str, Threshold] | None,
    max_matches: int,
    per_message: int,
) -> Iterator[match_pb2.MatchBatchRequest]:
    """MatchBatchStream messages of ``per_message`` ``(item_id, signals)`` items each (the
    last may hold fewer), made as ``items`` are read, for the sync and async clients."""
    if not 1 <= per_message <= MAX_BATCH_ITEMS:
        raise ValueError(f"per_message must be 1 to {MAX_BATCH_ITEMS}, got {per_message}")
    iterator = iter(items)

    def messages() -> Iterator[match_pb2.MatchBatchRequest]:
        while chunk := list(itertools.islice(iterator, per_message)):
            yield match_pb2.MatchBatchRequest(
                items=[match_request(signals, thresholds, item_id, max_matches) for item_id, signals in chunk]
            )

    return messages()


def match_result(response: match_pb2.MatchResponse) -> MatchResult:
    error = None
    if response.HasField("error"):
        error = ItemError(
            code=response.error.code,
            message=response.error.message,
            field_violations=tuple(FieldViolation(v.field, v.description) for v in response.error.field_violations),
        )
    return MatchResult(
        verdict=VERDICTS[response.verdict],
        matches=tuple(_matched_entry(m) for m in response.matches),
        item_id=response.item_id,
        skipped=tuple(SkippedSignal(s.signal_type, s.reason) for s in response.skipped),
        limited=tuple(SkippedSignal(s.signal_type, s.reason) for s in response.limited),
        error=error,
        total_matches=response.total_matches,
    )


def _matched_entry(message: match_pb2.MatchedEntry) -> MatchedEntry:
    return MatchedEntry(
        entry_id=message.entry_id,
        signal_type=message.signal_type,
        distance=message.distance,
        similarity=message.similarity,
        category=message.category,
        corroborations=message.corroborations,
        verdict=VERDICTS[message.verdict],
        evidence=tuple(
            SignalMatch(e.signal_type, e.distance, e.similarity, VERDICTS[e.verdict]) for e in message.evidence
        ),
        held_reasons=tuple(message.held_reasons),
    )


def submit_request(
    request_id: str,
    signals: Sequence[Signal],
    category: str,
    legal_basis: LegalBasis | str,
    discovery_method: DiscoveryMethod | str,
    notice_reference: str,
    notice_received_at: datetime | None,
    removed_at: datetime | None,
) -> submission_pb2.SubmitRequest:
    return submission_pb2.SubmitRequest(
        request_id=request_id,
        # Flipped and rotated copies serve lookups only; the bank keeps the stored views.
        signals=[signal_to_proto(s) for s in signals if (v := view(s.variant)) is not None and v.stored],
        category=category,
        legal_basis=LEGAL_BASES[LegalBasis(legal_basis)],
        discovery_method=DISCOVERY_METHODS[DiscoveryMethod(discovery_method)],
        notice_reference=notice_reference,
        notice_received_at=timestamp(notice_received_at),
        removed_at=timestamp(removed_at),
    )


def submit_result(response: submission_pb2.SubmitResponse) -> SubmitResult:
    return SubmitResult(
        entry_id=response.entry_id,
        submission_id=response.submission_id,
        joined_existing=response.joined_existing,
        corroborations=response.corroborations,
    )


# The most items the server takes in one SubmitBatch call.
MAX_BATCH_ITEMS = 1000


def submit_batch_requests(removals: Iterable[Removal], batch_size: int) -> list[submission_pb2.SubmitBatchRequest]:
    """SubmitBatch requests of ``batch_size`` removals each, every removal with
    its request_id (a new UUID unless given), for the sync and async clients."""
    if not 1 <= batch_size <= MAX_BATCH_ITEMS:
        raise ValueError(f"batch_size must be 1 to {MAX_BATCH_ITEMS}, got {batch_size}")
    pending = list(removals)
    return [
        submission_pb2.SubmitBatchRequest(
            items=[
                submit_request(
                    removal.request_id or str(uuid.uuid4()),
                    removal.signals,
                    removal.category,
                    removal.legal_basis,
                    removal.discovery_method,
                    removal.notice_reference,
                    removal.notice_received_at,
                    removal.removed_at,
                )
                for removal in pending[start : start + batch_size]
            ]
        )
        for start in range(0, len(pending), batch_size)
    ]


def item_error(message: signal_pb2.ItemError) -> ItemError:
    return ItemError(
        code=message.code,
        message=message.message,
        field_violations=tuple(FieldViolation(v.field, v.description) for v in message.field_violations),
    )


def submit_batch_results(response: submission_pb2.SubmitBatchResponse) -> list[SubmitResult | ItemError]:
    return [
        submit_result(r.submitted) if r.WhichOneof("result") == "submitted" else item_error(r.error)
        for r in response.results
    ]


def retract_result(response: submission_pb2.RetractResponse) -> RetractResult:
    return RetractResult(
        entry_id=response.entry_id,
        retracted_submissions=response.retracted_submissions,
        entry_active=response.entry_active,
    )


def entry_result(response: submission_pb2.GetEntryResponse) -> Entry:
    entry = response.entry
    return Entry(
        entry_id=entry.entry_id,
        category=entry.category,
        active=entry.active,
        corroborations=entry.corroborations,
        created_at=from_timestamp(entry, "created_at"),
        first_removed_at=from_timestamp(entry, "first_removed_at"),
        signals=tuple(signal_from_proto(s) for s in entry.signals),
        submissions=tuple(_submission(s) for s in entry.submissions),
        status=ENTRY_STATUSES.get(entry.status, ""),
        confirmed=entry.confirmed,
        agreements=entry.agreements,
        disputes=entry.disputes,
        seen_too=entry.seen_too,
        verdict=VERDICTS[entry.verdict],
        held_reasons=tuple(entry.held_reasons),
        feedback=tuple(_entry_feedback(f) for f in entry.feedback),
        last_review=REVIEW_DECISION_NAMES.get(entry.last_review, ""),
        last_review_reason=entry.last_review_reason,
        reviewed_at=from_timestamp(entry, "reviewed_at"),
    )


def _submission(message: submission_pb2.Submission) -> Submission:
    legal = {v: k for k, v in LEGAL_BASES.items()}
    discovery = {v: k for k, v in DISCOVERY_METHODS.items()}
    return Submission(
        submission_id=message.submission_id,
        member_id=message.member_id,
        category=message.category,
        legal_basis=legal.get(message.legal_basis, LegalBasis.UNSPECIFIED),
        discovery_method=discovery.get(message.discovery_method, DiscoveryMethod.UNSPECIFIED),
        notice_reference=message.notice_reference,
        notice_received_at=from_timestamp(message, "notice_received_at"),
        removed_at=from_timestamp(message, "removed_at"),
        created_at=from_timestamp(message, "created_at"),
        retracted_at=from_timestamp(message, "retracted_at"),
        retract_reason=message.retract_reason,
    )


def categories_result(response: submission_pb2.ListCategoriesResponse) -> list[Category]:
    return [Category(c.id, c.title, c.description) for c in response.categories]


def spread_result(response: research_pb2.GetSpreadResponse) -> Spread:
    from ._research import action_counts, delay  # _research builds on this module

    return Spread(
        entry_id=response.entry_id,
        sightings=response.sightings,
        distinct_platforms=response.distinct_platforms,
        first_seen=from_timestamp(response, "first_seen"),
        last_seen=from_timestamp(response, "last_seen"),
        daily=tuple(DailyCount(d.day, d.sightings) for d in response.daily),
        platforms=tuple(
            PlatformSpread(
                platform=p.platform,
                sightings=p.sightings,
                first_seen=from_timestamp(p, "first_seen"),
                last_seen=from_timestamp(p, "last_seen"),
            )
            for p in response.platforms
        ),
        category=response.category,
        first_removed_at=from_timestamp(response, "first_removed_at"),
        actions=action_counts(response.actions),
        delay=delay(response.delay),
    )


def api_error(
    code: grpc.StatusCode, details: str | None, trailing_metadata: Iterable[tuple[str, str | bytes]] | None
) -> ApiError:
    """The SDK exception for a failed call, with the field violations the
    server put in its google.rpc.Status details."""
    violations: list[FieldViolation] = []
    reason = ""
    for key, value in trailing_metadata or ():
        if key != STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad_request = error_details_pb2.BadRequest()
                detail.Unpack(bad_request)
                violations.extend(FieldViolation(v.field, v.description) for v in bad_request.field_violations)
            elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = info.reason
    error_type = API_ERRORS.get(code.name, ApiError)
    error = error_type(details or code.name, tuple(violations), reason)
    if error_type is ApiError:
        error.code = code.name
    return error


# Notices, the member directory and the audit trail

NOTICE_STATES: dict[NoticeState, notice_pb2.NoticeState.ValueType] = {
    NoticeState.UNSPECIFIED: notice_pb2.NOTICE_STATE_UNSPECIFIED,
    NoticeState.OPEN: notice_pb2.NOTICE_STATE_OPEN,
    NoticeState.REMOVED: notice_pb2.NOTICE_STATE_REMOVED,
    NoticeState.DISABLED: notice_pb2.NOTICE_STATE_DISABLED,
    NoticeState.REJECTED: notice_pb2.NOTICE_STATE_REJECTED,
}
_NOTICE_STATE_OF = {number: state for state, number in NOTICE_STATES.items()}
_LEGAL_BASIS_OF = {number: basis for basis, number in LEGAL_BASES.items()}


def contact_points_to_proto(points: Iterable[ContactPoint]) -> list[admin_pb2.ContactPoint]:
    return [admin_pb2.ContactPoint(name=p.name, role=p.role, email=p.email, phone=p.phone) for p in points]


def _contact_points(messages: Iterable[admin_pb2.ContactPoint]) -> tuple[ContactPoint, ...]:
    return tuple(ContactPoint(m.name, m.role, m.email, m.phone) for m in messages)


def directory_result(response: notice_pb2.ListContactPointsResponse) -> list[DirectoryEntry]:
    return [
        DirectoryEntry(m.member_id, m.name, tuple(m.roles), _contact_points(m.contact_points)) for m in response.members
    ]


def member_entry(member: admin_pb2.Member) -> DirectoryEntry:
    return DirectoryEntry(member.member_id, member.name, tuple(member.roles), _contact_points(member.contact_points))


def file_notice_request(
    request_id: str,
    platform_id: str,
    signals: Sequence[Signal],
    category: str,
    content_reference: str,
    legal_basis: LegalBasis | str,
    legal_reference: str,
    description: str,
) -> notice_pb2.FileNoticeRequest:
    return notice_pb2.FileNoticeRequest(
        request_id=request_id,
        platform_id=platform_id,
        content_reference=content_reference,
        signals=[signal_to_proto(s) for s in signals if (v := view(s.variant)) is not None and v.stored],
        category=category,
        legal_basis=LEGAL_BASES[LegalBasis(legal_basis)],
        legal_reference=legal_reference,
        description=description,
    )


def answer_notice_request(
    request_id: str, notice_id: str, decision: NoticeState | str, reason: str, removed_at: datetime | None
) -> notice_pb2.AnswerNoticeRequest:
    return notice_pb2.AnswerNoticeRequest(
        request_id=request_id,
        notice_id=notice_id,
        decision=NOTICE_STATES[NoticeState(decision)],
        reason=reason,
        removed_at=timestamp(removed_at),
    )


def notice_result(message: notice_pb2.Notice) -> Notice:
    return Notice(
        notice_id=message.notice_id,
        authority_id=message.authority_id,
        platform_id=message.platform_id,
        content_reference=message.content_reference,
        category=message.category,
        legal_basis=_LEGAL_BASIS_OF.get(message.legal_basis, LegalBasis.UNSPECIFIED),
        legal_reference=message.legal_reference,
        description=message.description,
        filed_at=from_timestamp(message, "filed_at"),
        state=_NOTICE_STATE_OF.get(message.state, NoticeState.UNSPECIFIED),
        decided_at=from_timestamp(message, "decided_at"),
        decided_by=message.decided_by,
        decision_reason=message.decision_reason,
        entry_id=message.entry_id,
        seconds_to_decision=message.seconds_to_decision,
        signals=tuple(signal_from_proto(s) for s in message.signals),
        routed_to=_contact_points(message.routed_to),
    )


def list_notices_request(
    platform_id: str,
    state: NoticeState | str | None,
    filed_since: datetime | None,
    filed_until: datetime | None,
    page_size: int,
    page_token: str,
) -> notice_pb2.ListNoticesRequest:
    return notice_pb2.ListNoticesRequest(
        page_size=page_size,
        page_token=page_token,
        platform_id=platform_id,
        state=NOTICE_STATES[NoticeState(state)] if state else notice_pb2.NOTICE_STATE_UNSPECIFIED,
        filed_since=timestamp(filed_since),
        filed_until=timestamp(filed_until),
    )


def notice_page(response: notice_pb2.ListNoticesResponse) -> NoticePage:
    return NoticePage(tuple(notice_result(n) for n in response.notices), response.next_page_token)


def audit_events_request(
    member_id: str, method: str, since: datetime | None, until: datetime | None, page_size: int, page_token: str
) -> admin_pb2.ListAuditEventsRequest:
    return admin_pb2.ListAuditEventsRequest(
        page_size=page_size,
        page_token=page_token,
        member_id=member_id,
        method=method,
        since=timestamp(since),
        until=timestamp(until),
    )


def audit_page(response: admin_pb2.ListAuditEventsResponse) -> AuditPage:
    return AuditPage(
        tuple(
            AuditEvent(
                sequence=e.sequence,
                at=from_timestamp(e, "at"),
                member_id=e.member_id,
                roles=tuple(e.roles),
                method=e.method,
                request_id=e.request_id,
                target=e.target,
                result=e.result,
                detail=e.detail,
                previous_hash=e.previous_hash,
                hash=e.hash,
            )
            for e in response.events
        ),
        response.next_page_token,
    )


# Trust and safety: feedback, review, the allow-list, trust levels.

OPINIONS: dict[Opinion, submission_pb2.Opinion.ValueType] = {
    Opinion.AGREE: submission_pb2.OPINION_AGREE,
    Opinion.DISAGREE: submission_pb2.OPINION_DISAGREE,
    Opinion.SEEN_TOO: submission_pb2.OPINION_SEEN_TOO,
}
DISPUTE_REASONS: dict[DisputeReason, submission_pb2.DisputeReason.ValueType] = {
    DisputeReason.NOT_HATEFUL: submission_pb2.DISPUTE_REASON_NOT_HATEFUL,
    DisputeReason.WRONG_CATEGORY: submission_pb2.DISPUTE_REASON_WRONG_CATEGORY,
    DisputeReason.LAWFUL: submission_pb2.DISPUTE_REASON_LAWFUL,
    DisputeReason.BAD_HASH: submission_pb2.DISPUTE_REASON_BAD_HASH,
}
REVIEW_DECISIONS: dict[ReviewDecision, submission_pb2.ReviewDecision.ValueType] = {
    ReviewDecision.CONFIRM: submission_pb2.REVIEW_DECISION_CONFIRM,
    ReviewDecision.DISABLE: submission_pb2.REVIEW_DECISION_DISABLE,
    ReviewDecision.ENABLE: submission_pb2.REVIEW_DECISION_ENABLE,
}
REVIEW_DECISION_NAMES = {number: decision.value for decision, number in REVIEW_DECISIONS.items()}
TRUST_LEVELS: dict[TrustLevel, admin_pb2.TrustLevel.ValueType] = {
    TrustLevel.PROVISIONAL: admin_pb2.TRUST_LEVEL_PROVISIONAL,
    TrustLevel.TRUSTED: admin_pb2.TRUST_LEVEL_TRUSTED,
}
ENTRY_STATUSES = {
    submission_pb2.ENTRY_STATUS_ACTIVE: "active",
    submission_pb2.ENTRY_STATUS_RETRACTED: "retracted",
    submission_pb2.ENTRY_STATUS_DISABLED: "disabled",
}


def feedback_request(
    request_id: str, entry_id: str, opinion: Opinion | str, reason: DisputeReason | str | None, comment: str
) -> submission_pb2.GiveFeedbackRequest:
    return submission_pb2.GiveFeedbackRequest(
        request_id=request_id,
        entry_id=entry_id,
        opinion=OPINIONS[Opinion(opinion)],
        reason=DISPUTE_REASONS[DisputeReason(reason)] if reason else submission_pb2.DISPUTE_REASON_UNSPECIFIED,
        comment=comment,
    )


def feedback_result(response: submission_pb2.GiveFeedbackResponse) -> FeedbackResult:
    return FeedbackResult(
        entry_id=response.entry_id,
        agreements=response.agreements,
        disputes=response.disputes,
        seen_too=response.seen_too,
        verdict=VERDICTS[response.verdict],
        held_reasons=tuple(response.held_reasons),
    )


def _entry_feedback(message: submission_pb2.Feedback) -> EntryFeedback:
    opinions = {number: opinion for opinion, number in OPINIONS.items()}
    reasons = {number: reason for reason, number in DISPUTE_REASONS.items()}
    return EntryFeedback(
        member_id=message.member_id,
        opinion=opinions[message.opinion],
        reason=reasons.get(message.reason),
        comment=message.comment,
        created_at=from_timestamp(message, "created_at"),
    )


def review_request(
    request_id: str, entry_id: str, decision: ReviewDecision | str, reason: str
) -> submission_pb2.ReviewEntryRequest:
    return submission_pb2.ReviewEntryRequest(
        request_id=request_id, entry_id=entry_id, decision=REVIEW_DECISIONS[ReviewDecision(decision)], reason=reason
    )


def allow_request(request_id: str, signals: Sequence[Signal], label: str) -> submission_pb2.AddToAllowListRequest:
    return submission_pb2.AddToAllowListRequest(
        request_id=request_id,
        # As for a submission: the bank keeps the stored views, lookups compute the others.
        signals=[signal_to_proto(s) for s in signals if (v := view(s.variant)) is not None and v.stored],
        label=label,
    )


def allowed_item(message: submission_pb2.AllowedItem) -> AllowedItem:
    return AllowedItem(
        allow_id=message.allow_id,
        signals=tuple(signal_from_proto(s) for s in message.signals),
        label=message.label,
        added_by=message.added_by,
        created_at=from_timestamp(message, "created_at"),
    )


def member_result(message: admin_pb2.Member) -> Member:
    levels = {number: level for level, number in TRUST_LEVELS.items()}
    return Member(
        member_id=message.member_id,
        name=message.name,
        roles=tuple(message.roles),
        created_at=from_timestamp(message, "created_at"),
        trust_level=levels.get(message.trust_level, TrustLevel.PROVISIONAL),
        flagged=message.flagged,
        flag_reason=message.flag_reason,
        flagged_at=from_timestamp(message, "flagged_at"),
    )
