"""NoticeService, and the directory, audit and notice-statistics messages
the Admin and Research services answer with."""

from __future__ import annotations

import grpc

from hashshare_client import LegalBasis
from hashshare_client.pb.hashshare.v1 import (
    notice_pb2,
    notice_pb2_grpc,
    submission_pb2,
)
from hashshare_client.protocol import LEGAL_BASES, signal_to_proto

from ..bank import Bank
from ..errors import FieldViolation, InvalidArgument
from ..model import (
    IdKind,
    Notice,
    NoticeDraft,
    NoticeFilter,
    NoticeState,
    Principal,
    format_id,
    parse_id,
)
from ..notices import DECISIONS, NoticeDesk
from . import convert
from .directory import contact_point_messages
from .paging import page_size, page_start, page_token, period
from .rpc import rpc
from .services import SubmissionService

MAX_TEXT = 2000  # description and references of a notice

STATE_NUMBER = {
    NoticeState.OPEN: notice_pb2.NOTICE_STATE_OPEN,
    NoticeState.REMOVED: notice_pb2.NOTICE_STATE_REMOVED,
    NoticeState.DISABLED: notice_pb2.NOTICE_STATE_DISABLED,
    NoticeState.REJECTED: notice_pb2.NOTICE_STATE_REJECTED,
}
STATE_OF = {number: state for state, number in STATE_NUMBER.items()}


# Notices


def notice_message(notice: Notice) -> notice_pb2.Notice:
    draft = notice.draft
    return notice_pb2.Notice(
        notice_id=format_id(IdKind.NOTICE, notice.notice_id),
        authority_id=format_id(IdKind.MEMBER, notice.authority_id),
        platform_id=format_id(IdKind.MEMBER, draft.platform_id),
        content_reference=draft.content_reference,
        signals=[signal_to_proto(s) for s in draft.signals],
        category=draft.category,
        legal_basis=LEGAL_BASES[draft.legal_basis],
        legal_reference=draft.legal_reference,
        description=draft.description,
        filed_at=convert.timestamp_of(notice.filed_at),
        state=STATE_NUMBER[notice.state],
        decided_at=convert.timestamp_of(notice.decided_at),
        decided_by=format_id(IdKind.MEMBER, notice.decided_by) if notice.decided_by is not None else "",
        decision_reason=notice.decision_reason,
        entry_id=format_id(IdKind.ENTRY, notice.entry_id) if notice.entry_id is not None else "",
        routed_to=contact_point_messages(notice.routed_to),
        seconds_to_decision=notice.seconds_to_decision or 0.0,
    )


class NoticeService(notice_pb2_grpc.NoticeServiceServicer):
    SERVICE = "hashshare.v1.NoticeService"

    def __init__(self, bank: Bank) -> None:
        self.bank = bank
        self.desk = NoticeDesk(bank)
        # A notice's signals, category and legal basis are checked exactly as
        # a Submit's, by the same code: a removal must be storable as an entry.
        self._submit_checks = SubmissionService(bank)

    def _draft(self, request: notice_pb2.FileNoticeRequest) -> NoticeDraft:
        as_submit = submission_pb2.SubmitRequest(
            request_id=request.request_id,
            signals=request.signals,
            category=request.category,
            legal_basis=request.legal_basis,
        )
        violations: list[FieldViolation] = []
        try:
            self._submit_checks._draft(as_submit)
        except InvalidArgument as error:
            violations.extend(error.violations)
        if not request.platform_id:
            violations.append(FieldViolation("platform_id", "required: the member id (mem_N) of the platform"))
        for name in ("content_reference", "legal_reference", "description"):
            if len(getattr(request, name)) > MAX_TEXT:
                violations.append(FieldViolation(name, f"at most {MAX_TEXT} characters"))
        if not request.content_reference.strip():
            violations.append(FieldViolation("content_reference", "required: the platform's URL or id of the content"))
        if violations:
            raise InvalidArgument(violations)
        return NoticeDraft(
            platform_id=parse_id(IdKind.MEMBER, request.platform_id, "platform_id"),
            content_reference=request.content_reference.strip(),
            signals=convert.signals_from_proto(request.signals, self.bank.settings.max_signals_per_item, []),
            category=request.category,
            legal_basis=convert.LEGAL_BASIS_OF.get(request.legal_basis, LegalBasis.UNSPECIFIED),
            legal_reference=request.legal_reference.strip(),
            description=request.description.strip(),
        )

    @rpc
    def FileNotice(
        self, request: notice_pb2.FileNoticeRequest, context: grpc.ServicerContext, principal: Principal
    ) -> notice_pb2.FileNoticeResponse:
        draft = self._draft(request)
        notice = self.desk.file(principal, request.request_id, convert.request_digest(request), draft)
        return notice_pb2.FileNoticeResponse(notice=notice_message(notice))

    @rpc
    def AnswerNotice(
        self, request: notice_pb2.AnswerNoticeRequest, context: grpc.ServicerContext, principal: Principal
    ) -> notice_pb2.AnswerNoticeResponse:
        violations: list[FieldViolation] = []
        now = self.bank.now()
        convert.check_request_id(request.request_id, violations)
        state = STATE_OF.get(request.decision)
        if state not in DECISIONS:
            violations.append(FieldViolation("decision", "NOTICE_STATE_REMOVED, _DISABLED or _REJECTED"))
        if state is NoticeState.REJECTED and not request.reason.strip():
            violations.append(FieldViolation("reason", "required when rejecting a notice"))
        if len(request.reason) > convert.MAX_REASON:
            violations.append(FieldViolation("reason", f"at most {convert.MAX_REASON} characters"))
        removed_at = convert.seconds(request, "removed_at", now, violations)
        if violations:
            raise InvalidArgument(violations)
        assert state is not None
        notice_id = parse_id(IdKind.NOTICE, request.notice_id, "notice_id")
        digest = convert.request_digest(request)
        notice = self.desk.answer(
            principal, request.request_id, digest, notice_id, state, request.reason.strip(), removed_at
        )
        return notice_pb2.AnswerNoticeResponse(notice=notice_message(notice))

    @rpc
    def GetNotice(
        self, request: notice_pb2.GetNoticeRequest, context: grpc.ServicerContext, principal: Principal
    ) -> notice_pb2.GetNoticeResponse:
        notice = self.desk.get(principal, parse_id(IdKind.NOTICE, request.notice_id, "notice_id"))
        return notice_pb2.GetNoticeResponse(notice=notice_message(notice))

    @rpc
    def ListNotices(
        self, request: notice_pb2.ListNoticesRequest, context: grpc.ServicerContext, principal: Principal
    ) -> notice_pb2.ListNoticesResponse:
        violations: list[FieldViolation] = []
        after = page_start("notices", request.page_token, violations)
        limit = page_size(request.page_size, violations)
        since, until = period(request, "filed_since", "filed_until", violations)
        state = STATE_OF.get(request.state) if request.state else None
        if request.state and state is None:
            violations.append(FieldViolation("state", f"unknown value {request.state}"))
        if violations:
            raise InvalidArgument(violations)
        platform_id = parse_id(IdKind.MEMBER, request.platform_id, "platform_id") if request.platform_id else None
        notices = self.desk.list_for(principal, after, limit + 1, NoticeFilter(platform_id, state, since, until))
        response = notice_pb2.ListNoticesResponse(notices=[notice_message(n) for n in notices[:limit]])
        if len(notices) > limit:
            response.next_page_token = page_token("notices", notices[limit - 1].notice_id)
        return response

    @rpc
    def ListContactPoints(
        self, request: notice_pb2.ListContactPointsRequest, context: grpc.ServicerContext, principal: Principal
    ) -> notice_pb2.ListContactPointsResponse:
        members = self.bank.store.list_members()
        points = self.bank.store.contact_points(m.member_id for m in members)
        return notice_pb2.ListContactPointsResponse(
            members=[
                notice_pb2.DirectoryEntry(
                    member_id=format_id(IdKind.MEMBER, m.member_id),
                    name=m.name,
                    roles=sorted(r.value for r in m.roles),
                    contact_points=contact_point_messages(points.get(m.member_id, ())),
                )
                for m in members
            ]
        )
