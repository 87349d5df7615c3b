"""AdminService.ListAuditEvents: the audit trail, page by page."""

from __future__ import annotations

from hashshare_client.pb.hashshare.v1 import admin_pb2

from ..audit import OFFLINE
from ..bank import Bank
from ..errors import FieldViolation, InvalidArgument
from ..model import AuditEvent, AuditFilter, IdKind, parse_id
from . import convert
from .paging import page_size, page_start, page_token, period


def audit_filter(request: admin_pb2.ListAuditEventsRequest, violations: list[FieldViolation]) -> AuditFilter:
    since, until = period(request, "since", "until", violations)
    if request.member_id and request.member_id != OFFLINE:
        parse_id(IdKind.MEMBER, request.member_id, "member_id")
    if request.method and not (request.method.startswith("/") and request.method.count("/") == 2):
        violations.append(FieldViolation("method", "a full method name, e.g. /hashshare.v1.SubmissionService/Submit"))
    return AuditFilter(request.member_id or None, request.method or None, since, until)


def audit_event_message(event: AuditEvent) -> admin_pb2.AuditEvent:
    draft = event.draft
    return admin_pb2.AuditEvent(
        sequence=event.sequence,
        at=convert.timestamp_of(draft.at),
        member_id=draft.member,
        roles=list(draft.roles),
        method=draft.method,
        request_id=draft.request_id,
        target=draft.target,
        result=draft.result,
        detail=draft.detail,
        previous_hash=event.previous_hash,
        hash=event.hash,
    )


def list_audit_events(bank: Bank, request: admin_pb2.ListAuditEventsRequest) -> admin_pb2.ListAuditEventsResponse:
    violations: list[FieldViolation] = []
    after = page_start("audit", request.page_token, violations)
    limit = page_size(request.page_size, violations)
    where = audit_filter(request, violations)
    if violations:
        raise InvalidArgument(violations)
    # One more than asked tells whether another page exists.
    events = bank.store.list_audit(after, limit + 1, where)
    response = admin_pb2.ListAuditEventsResponse(events=[audit_event_message(e) for e in events[:limit]])
    if len(events) > limit:
        response.next_page_token = page_token("audit", events[limit - 1].sequence)
    return response
