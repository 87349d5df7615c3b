"""Validation of ReportAction and research requests, and the research
answers as messages (the research half of ``convert``)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

from google.protobuf import timestamp_pb2

from hashshare_client.pb.hashshare.v1 import match_pb2, research_pb2

from ..errors import FieldViolation, InvalidArgument
from ..model import IdKind, format_id, parse_id
from ..research import (
    MAX_ACTION_REPORTS,
    MAX_PERIOD_DAYS,
    ActionFigures,
    ActionReportDraft,
    ClusterFigures,
    Counted,
    DelayFigures,
    Period,
    SpreadFigures,
)
from ..store.rollups import Action
from . import convert

ACTIONS = {
    match_pb2.ACTION_BLOCKED: Action.BLOCKED,
    match_pb2.ACTION_SENT_TO_REVIEW: Action.SENT_TO_REVIEW,
    match_pb2.ACTION_ALLOWED_AFTER_REVIEW: Action.ALLOWED_AFTER_REVIEW,
    match_pb2.ACTION_REMOVED_AFTER_REVIEW: Action.REMOVED_AFTER_REVIEW,
}
MAX_ITEM_ID = 200
# Nothing was matched before the bank existed; older times are mistakes (seconds for milliseconds...).
EARLIEST = 946_684_800.0  # 2000-01-01


def _entry_id(text: str, field: str, violations: list[FieldViolation]) -> int | None:
    try:
        return parse_id(IdKind.ENTRY, text, field)
    except InvalidArgument as error:
        violations.extend(error.violations)
        return None


def action_reports(
    request: match_pb2.ReportActionRequest, now: float, known: Callable[[Iterable[int]], Collection[int]]
) -> list[ActionReportDraft]:
    """The request's reports, or InvalidArgument naming every bad field;
    ``known`` tells which of some entry ids exist."""
    violations: list[FieldViolation] = []
    convert.check_request_id(request.request_id, violations)
    if not request.actions or len(request.actions) > MAX_ACTION_REPORTS:
        violations.append(
            FieldViolation("actions", f"1 to {MAX_ACTION_REPORTS} reports per call, got {len(request.actions)}")
        )
    drafts = []
    for i, report in enumerate(request.actions):
        field = f"actions[{i}]"
        entry_id = _entry_id(report.entry_id, f"{field}.entry_id", violations)
        action = ACTIONS.get(report.action)
        if action is None:
            violations.append(
                FieldViolation(f"{field}.action", "required: blocked, sent to review, allowed or removed after review")
            )
        acted_at = _seconds(report.acted_at) if report.HasField("acted_at") else None
        if acted_at is not None and acted_at > now + convert.CLOCK_SKEW_SECONDS:
            violations.append(FieldViolation(f"{field}.acted_at", "is in the future"))
        elif acted_at is not None and acted_at < EARLIEST:
            violations.append(FieldViolation(f"{field}.acted_at", "is before 2000"))
        if len(report.item_id) > MAX_ITEM_ID:
            violations.append(FieldViolation(f"{field}.item_id", f"at most {MAX_ITEM_ID} characters"))
        if entry_id is not None and action is not None:
            drafts.append(ActionReportDraft(entry_id, action, now if acted_at is None else acted_at, report.item_id))
    ids = {i: entry_id for i, r in enumerate(request.actions) if (entry_id := _quiet_entry_id(r.entry_id)) is not None}
    existing = known(set(ids.values())) if ids else ()
    violations += [
        FieldViolation(f"actions[{i}].entry_id", f"no entry {format_id(IdKind.ENTRY, entry_id)}")
        for i, entry_id in ids.items()
        if entry_id not in existing
    ]
    if violations:
        raise InvalidArgument(sorted(violations, key=lambda v: v.field))
    return drafts


def _quiet_entry_id(text: str) -> int | None:
    try:
        return parse_id(IdKind.ENTRY, text, "entry_id")
    except InvalidArgument:
        return None


def _seconds(stamp: timestamp_pb2.Timestamp) -> float:
    return float(stamp.ToMicroseconds() / 1e6)


def period(message: research_pb2.Period, present: bool) -> Period:
    """A required, bounded period [start, end)."""
    violations: list[FieldViolation] = []
    if not present:
        raise InvalidArgument.field("period", "required: a start and an end")
    for name in ("start", "end"):
        if not message.HasField(name):
            violations.append(FieldViolation(f"period.{name}", "required"))
    if violations:
        raise InvalidArgument(violations)
    start, end = _seconds(message.start), _seconds(message.end)
    if end <= start:
        raise InvalidArgument.field("period.end", "must be after period.start")
    if end - start > MAX_PERIOD_DAYS * 86_400:
        raise InvalidArgument.field("period", f"at most {MAX_PERIOD_DAYS} days")
    return Period(start, end)


def optional_entry_id(text: str) -> int | None:
    return parse_id(IdKind.ENTRY, text, "entry_id") if text else None


def count(value: Counted) -> research_pb2.Count:
    return research_pb2.Count(value=value.value, suppressed=value.suppressed)


def actions(figures: ActionFigures) -> research_pb2.ActionCounts:
    return research_pb2.ActionCounts(
        blocked=count(figures.blocked),
        sent_to_review=count(figures.sent_to_review),
        allowed_after_review=count(figures.allowed_after_review),
        removed_after_review=count(figures.removed_after_review),
        share_blocked=figures.share_blocked,
    )


def delay(figures: DelayFigures) -> research_pb2.Delay:
    return research_pb2.Delay(
        median_hours=figures.median_hours,
        p90_hours=figures.p90_hours,
        histogram=[count(c) for c in figures.histogram],
    )


def spread_response(figures: SpreadFigures) -> research_pb2.GetSpreadResponse:
    return research_pb2.GetSpreadResponse(
        entry_id=format_id(IdKind.ENTRY, figures.entry_id),
        sightings=figures.sightings.value,
        distinct_platforms=figures.distinct_platforms.value,
        first_seen=convert.timestamp_of(figures.first_seen),
        last_seen=convert.timestamp_of(figures.last_seen),
        daily=[research_pb2.DailyCount(day=day, sightings=n.value) for day, n in figures.daily],
        platforms=[
            research_pb2.PlatformSpread(
                platform=p.platform,
                sightings=p.sightings,
                first_seen=convert.timestamp_of(p.first_seen),
                last_seen=convert.timestamp_of(p.last_seen),
            )
            for p in figures.platforms
        ],
        category=figures.category,
        first_removed_at=convert.timestamp_of(figures.first_removed_at),
        actions=actions(figures.actions),
        delay=delay(figures.delay),
    )


def cluster(figures: ClusterFigures) -> research_pb2.ClusterSpread:
    return research_pb2.ClusterSpread(
        entry_id=format_id(IdKind.ENTRY, figures.entry_id),
        category=figures.category,
        first_removed_at=convert.timestamp_of(figures.first_removed_at),
        reupload_attempts=count(figures.reupload_attempts),
        distinct_platforms=count(figures.distinct_platforms),
        actions=actions(figures.actions),
        delay=delay(figures.delay),
    )
