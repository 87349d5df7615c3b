"""Validation of incoming messages into domain records, and the way back.

Every check collects all the bad fields of a request before refusing it, so
that one INVALID_ARGUMENT names every problem at once.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf import timestamp_pb2
from google.protobuf.message import Message

from hashshare_client import DiscoveryMethod, LegalBasis, Signal
from hashshare_client._timestamps import timestamp
from hashshare_client.pb.hashshare.v1 import admin_pb2, match_pb2, research_pb2, signal_pb2, submission_pb2
from hashshare_client.protocol import DISCOVERY_METHODS, LEGAL_BASES, signal_to_proto
from hashshare_client.signal_types import SIGNAL_TYPES, Comparison, view

from ..errors import FieldViolation, InvalidArgument
from ..matching import DEFAULT_THRESHOLDS, MatchOutcome, Thresholds
from ..model import (
    AllowedItem,
    DisputeReason,
    Entry,
    EntryTrust,
    Feedback,
    IdKind,
    Opinion,
    ReviewDecision,
    Submission,
    TrustLevel,
    format_id,
    parse_id,
)
from ..taxonomy import Taxonomy

MAX_NOTICE_REFERENCE = 200
MAX_REASON = 1000
# Clocks of members differ; a removal a little in the future is skew, not an error.
CLOCK_SKEW_SECONDS = 300.0
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_HEX = set(string.hexdigits)

LEGAL_BASIS_OF = {number: basis for basis, number in LEGAL_BASES.items()}
DISCOVERY_METHOD_OF = {number: method for method, number in DISCOVERY_METHODS.items()}
VERDICT_NUMBER = {
    "NONE": signal_pb2.VERDICT_NONE,
    "REVIEW": signal_pb2.VERDICT_REVIEW,
    "BLOCK": signal_pb2.VERDICT_BLOCK,
}


def request_digest(request: Message) -> bytes:
    """Fingerprint of a request, to tell a replay from a reuse of its request_id."""
    return hashlib.sha256(request.SerializeToString(deterministic=True)).digest()


def check_request_id(request_id: str, violations: list[FieldViolation]) -> None:
    if not _REQUEST_ID.match(request_id):
        violations.append(FieldViolation("request_id", "required: 1-64 characters of [A-Za-z0-9_.:-]"))


def _signal(message: signal_pb2.Signal, field: str, violations: list[FieldViolation]) -> Signal | None:
    signal_type = SIGNAL_TYPES.get(message.type)
    if signal_type is None:
        known = ", ".join(SIGNAL_TYPES)
        violations.append(FieldViolation(f"{field}.type", f"unknown signal type {message.type!r} (known: {known})"))
        return None
    if message.version != signal_type.version:
        violations.append(
            FieldViolation(
                f"{field}.version",
                f"{message.type} version {message.version!r} is not comparable with this bank's "
                f"{signal_type.version!r}; recompute the signal with a current SDK",
            )
        )
        return None
    kind = message.WhichOneof("value")
    if kind == "hex":
        if not message.hex or not set(message.hex) <= _HEX or len(message.hex) % 2:
            violations.append(FieldViolation(f"{field}.hex", "not a hexadecimal string"))
            return None
        value = bytes.fromhex(message.hex)
        value_field = f"{field}.hex"
    elif kind == "raw":
        value, value_field = message.raw, f"{field}.raw"
    else:
        violations.append(FieldViolation(f"{field}.raw", "a signal needs a value (raw or hex)"))
        return None
    if len(value) != signal_type.size_bytes:
        violations.append(
            FieldViolation(value_field, f"{message.type} is {signal_type.size_bytes} bytes, got {len(value)}")
        )
        return None
    if view(message.variant) is None or (message.variant and signal_type.comparison is not Comparison.HAMMING):
        violations.append(FieldViolation(f"{field}.variant", f"unknown view {message.variant!r} for {message.type}"))
        return None
    quality = message.quality if message.HasField("quality") else None
    if quality is not None and not 0 <= quality <= 100:
        violations.append(FieldViolation(f"{field}.quality", "must be between 0 and 100"))
        return None
    return Signal(message.type, message.version, value, quality, message.variant)


def signals_from_proto(
    messages: Sequence[signal_pb2.Signal], max_count: int, violations: list[FieldViolation]
) -> tuple[Signal, ...]:
    if not messages:
        violations.append(FieldViolation("signals", "at least one signal is required"))
        return ()
    if len(messages) > max_count:
        violations.append(FieldViolation("signals", f"at most {max_count} signals per item, got {len(messages)}"))
        return ()
    parsed = [_signal(m, f"signals[{i}]", violations) for i, m in enumerate(messages)]
    return tuple(s for s in parsed if s is not None)


def thresholds_from_proto(
    messages: Sequence[match_pb2.Threshold], violations: list[FieldViolation]
) -> dict[str, Thresholds]:
    resolved = dict(DEFAULT_THRESHOLDS)
    seen: set[str] = set()
    for i, message in enumerate(messages):
        field = f"thresholds[{i}]"
        signal_type = SIGNAL_TYPES.get(message.signal_type)
        if signal_type is None:
            violations.append(FieldViolation(f"{field}.signal_type", f"unknown signal type {message.signal_type!r}"))
            continue
        if message.signal_type in seen:
            violations.append(FieldViolation(f"{field}.signal_type", "given twice"))
            continue
        seen.add(message.signal_type)
        block = message.block if message.HasField("block") else signal_type.block
        if message.HasField("review"):
            review = message.review
        else:
            review = block if signal_type.looser_than(block, signal_type.review) else signal_type.review
        for name, value in (("block", block), ("review", review)):
            if signal_type.looser_than(value, signal_type.limit):
                violations.append(
                    FieldViolation(f"{field}.{name}", f"{value} is looser than the server's limit {signal_type.limit}")
                )
        if signal_type.looser_than(block, review):
            violations.append(FieldViolation(f"{field}.review", "must be at least as loose as block"))
        resolved[message.signal_type] = Thresholds(block=block, review=review)
    return resolved


# Matched entries a response describes unless the request says otherwise, and at most.
DEFAULT_MAX_MATCHES = 100
MAX_MATCHES = 1000


def max_matches(requested: int, violations: list[FieldViolation]) -> int:
    """The request's ``max_matches``, 0 meaning the default."""
    if requested > MAX_MATCHES:
        violations.append(FieldViolation("max_matches", f"{requested} is more than {MAX_MATCHES}"))
    return requested or DEFAULT_MAX_MATCHES


def match_response(outcome: MatchOutcome, item_id: str) -> match_pb2.MatchResponse:
    response = match_pb2.MatchResponse(
        verdict=VERDICT_NUMBER[outcome.verdict.value], item_id=item_id, total_matches=outcome.total_matches
    )
    for match in outcome.matches:
        best = match.evidence[0]
        entry = response.matches.add(
            entry_id=format_id(IdKind.ENTRY, match.entry_id),
            signal_type=best.signal_type,
            distance=best.distance,
            similarity=best.similarity,
            category=match.category,
            corroborations=match.corroborations,
            verdict=VERDICT_NUMBER[match.verdict.value],
            held_reasons=match.held_reasons,
        )
        for evidence in match.evidence:
            entry.evidence.add(
                signal_type=evidence.signal_type,
                distance=evidence.distance,
                similarity=evidence.similarity,
                verdict=VERDICT_NUMBER[evidence.verdict.value],
            )
    for skipped in outcome.skipped:
        response.skipped.add(signal_type=skipped.signal_type, reason=skipped.reason)
    for limited in outcome.limited:
        response.limited.add(signal_type=limited.signal_type, reason=limited.reason)
    return response


def item_error(error: InvalidArgument) -> signal_pb2.ItemError:
    return signal_pb2.ItemError(
        code=error.code,
        message=error.message,
        field_violations=[
            signal_pb2.FieldViolation(field=v.field, description=v.description) for v in error.violations
        ],
    )


def legal_basis(number: signal_pb2.LegalBasis.ValueType, violations: list[FieldViolation]) -> LegalBasis:
    basis = LEGAL_BASIS_OF.get(number)
    if basis is None or basis is LegalBasis.UNSPECIFIED:
        violations.append(FieldViolation("legal_basis", "required: community guidelines, local law, or both"))
        return LegalBasis.UNSPECIFIED
    return basis


def discovery_method(number: signal_pb2.DiscoveryMethod.ValueType, violations: list[FieldViolation]) -> DiscoveryMethod:
    method = DISCOVERY_METHOD_OF.get(number)
    if method is None:
        violations.append(FieldViolation("discovery_method", f"unknown value {number}"))
        return DiscoveryMethod.UNSPECIFIED
    return method


def category(category_id: str, taxonomy: Taxonomy, violations: list[FieldViolation]) -> None:
    if not category_id:
        violations.append(FieldViolation("category", "required: a category id from ListCategories"))
    elif category_id not in taxonomy:
        violations.append(FieldViolation("category", f"unknown category {category_id!r}; see ListCategories"))


def seconds(message: Any, field: str, now: float, violations: list[FieldViolation]) -> float | None:
    if not message.HasField(field):
        return None
    value = getattr(message, field).ToMicroseconds() / 1e6
    if value > now + CLOCK_SKEW_SECONDS:
        violations.append(FieldViolation(field, "is in the future"))
    return float(value)


def timestamp_of(value: float | None) -> timestamp_pb2.Timestamp | None:
    return None if value is None else timestamp(datetime.fromtimestamp(value, UTC))


def submission_message(submission: Submission) -> submission_pb2.Submission:
    return submission_pb2.Submission(
        submission_id=format_id(IdKind.SUBMISSION, submission.submission_id),
        member_id=format_id(IdKind.MEMBER, submission.member_id),
        category=submission.category,
        legal_basis=LEGAL_BASES[submission.legal_basis],
        discovery_method=DISCOVERY_METHODS[submission.discovery_method],
        notice_reference=submission.notice_reference,
        notice_received_at=timestamp_of(submission.notice_received_at),
        removed_at=timestamp_of(submission.removed_at),
        created_at=timestamp_of(submission.created_at),
        retracted_at=timestamp_of(submission.retracted_at),
        retract_reason=submission.retract_reason,
    )


def entry_message(entry: Entry, submissions: Sequence[Submission], with_signals: bool) -> submission_pb2.Entry:
    message = submission_pb2.Entry(
        entry_id=format_id(IdKind.ENTRY, entry.entry_id),
        category=entry.category,
        active=entry.active,
        corroborations=entry.corroborations,
        created_at=timestamp_of(entry.created_at),
        first_removed_at=timestamp_of(entry.first_removed_at),
        submissions=[submission_message(s) for s in submissions],
    )
    if with_signals:
        active = {s.submission_id for s in entry.submissions if s.active}
        message.signals.extend(signal_to_proto(s.signal) for s in entry.signals if s.submission_id in active)
    return message


# Trust and safety

OPINION_OF: dict[submission_pb2.Opinion.ValueType, Opinion] = {
    submission_pb2.OPINION_AGREE: Opinion.AGREE,
    submission_pb2.OPINION_DISAGREE: Opinion.DISAGREE,
    submission_pb2.OPINION_SEEN_TOO: Opinion.SEEN_TOO,
}
OPINION_NUMBER = {opinion: number for number, opinion in OPINION_OF.items()}
DISPUTE_REASON_OF: dict[submission_pb2.DisputeReason.ValueType, DisputeReason] = {
    submission_pb2.DISPUTE_REASON_UNSPECIFIED: DisputeReason.NONE,
    submission_pb2.DISPUTE_REASON_NOT_HATEFUL: DisputeReason.NOT_HATEFUL,
    submission_pb2.DISPUTE_REASON_WRONG_CATEGORY: DisputeReason.WRONG_CATEGORY,
    submission_pb2.DISPUTE_REASON_LAWFUL: DisputeReason.LAWFUL,
    submission_pb2.DISPUTE_REASON_BAD_HASH: DisputeReason.BAD_HASH,
}
DISPUTE_REASON_NUMBER = {reason: number for number, reason in DISPUTE_REASON_OF.items()}
REVIEW_DECISION_OF: dict[submission_pb2.ReviewDecision.ValueType, ReviewDecision] = {
    submission_pb2.REVIEW_DECISION_CONFIRM: ReviewDecision.CONFIRM,
    submission_pb2.REVIEW_DECISION_DISABLE: ReviewDecision.DISABLE,
    submission_pb2.REVIEW_DECISION_ENABLE: ReviewDecision.ENABLE,
}
REVIEW_DECISION_NUMBER = {decision: number for number, decision in REVIEW_DECISION_OF.items()}
TRUST_LEVEL_OF: dict[admin_pb2.TrustLevel.ValueType, TrustLevel] = {
    admin_pb2.TRUST_LEVEL_PROVISIONAL: TrustLevel.PROVISIONAL,
    admin_pb2.TRUST_LEVEL_TRUSTED: TrustLevel.TRUSTED,
}
TRUST_LEVEL_NUMBER = {level: number for number, level in TRUST_LEVEL_OF.items()}
MAX_LABEL = 200


def id_into(kind: IdKind, text: str, field: str, violations: list[FieldViolation]) -> int:
    """An id parsed like parse_id, its problem added to ``violations`` (0 then)."""
    try:
        return parse_id(kind, text, field)
    except InvalidArgument as error:
        violations.extend(error.violations)
        return 0


def reason_text(text: str, field: str, required: bool, violations: list[FieldViolation]) -> None:
    if required and not text.strip():
        violations.append(FieldViolation(field, "required: say why"))
    elif len(text) > MAX_REASON:
        violations.append(FieldViolation(field, f"at most {MAX_REASON} characters"))


def feedback_message(feedback: Feedback) -> submission_pb2.Feedback:
    return submission_pb2.Feedback(
        member_id=format_id(IdKind.MEMBER, feedback.member_id),
        opinion=OPINION_NUMBER[feedback.opinion],
        reason=DISPUTE_REASON_NUMBER[feedback.reason],
        comment=feedback.comment,
        created_at=timestamp_of(feedback.created_at),
    )


def add_trust_fields(
    message: submission_pb2.Entry,
    entry: Entry,
    trust: EntryTrust,
    verdict: str,
    held: Sequence[str],
    feedback: Sequence[Feedback],
) -> submission_pb2.Entry:
    """Fill an Entry message's status, review, feedback counts, verdict and the ``feedback`` shown."""
    if trust.disabled:
        message.status = submission_pb2.ENTRY_STATUS_DISABLED
    else:
        message.status = submission_pb2.ENTRY_STATUS_ACTIVE if entry.active else submission_pb2.ENTRY_STATUS_RETRACTED
    message.confirmed = trust.confirmed
    message.agreements = trust.count(Opinion.AGREE)
    message.disputes = trust.count(Opinion.DISAGREE)
    message.seen_too = trust.count(Opinion.SEEN_TOO)
    message.verdict = VERDICT_NUMBER[verdict]
    message.held_reasons.extend(held)
    message.feedback.extend(feedback_message(f) for f in feedback)
    if trust.review is not None:
        message.last_review = REVIEW_DECISION_NUMBER[trust.review.decision]
        message.last_review_reason = trust.review.reason
        message.reviewed_at.FromMicroseconds(round(trust.review.at * 1e6))
    return message


def allowed_item_message(item: AllowedItem) -> submission_pb2.AllowedItem:
    return submission_pb2.AllowedItem(
        allow_id=format_id(IdKind.ALLOWED, item.allow_id),
        signals=[signal_to_proto(s) for s in item.signals],
        label=item.label,
        added_by=format_id(IdKind.MEMBER, item.added_by),
        created_at=timestamp_of(item.created_at),
    )


def count_message(value: int, minimum: int) -> research_pb2.Count:
    """A count, withheld (suppressed, value 0) below ``minimum`` so that small groups cannot be singled out."""
    if value < minimum:
        return research_pb2.Count(value=0, suppressed=True)
    return research_pb2.Count(value=value)
