"""The gRPC services: thin translations between messages and the Bank."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent import futures

import grpc

from hashshare_client.pb.hashshare.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    match_pb2,
    match_pb2_grpc,
    research_pb2,
    research_pb2_grpc,
    submission_pb2,
    submission_pb2_grpc,
)
from hashshare_client.signal_types import SIGNAL_TYPES, view

from .. import members
from ..bank import Bank
from ..errors import FieldViolation, InvalidArgument
from ..model import IdKind, Member, Principal, Role, SubmissionDraft, format_id, parse_id
from ..research import Research
from . import audit_events, convert, directory, notice_stats, research_messages
from .rpc import rpc

# The most items one SubmitBatch call may carry (documented in submission.proto).
MAX_BATCH_ITEMS = 1000

# Items of one stream in flight at once: enough to keep every thread busy,
# few enough that a slow reader does not make the server buffer a backlog.
STREAM_WINDOW = 64


class MatchService(match_pb2_grpc.MatchServiceServicer):
    SERVICE = "hashshare.v1.MatchService"

    def __init__(self, bank: Bank) -> None:
        self.bank = bank
        self.research = Research(bank)
        # Items of a stream are looked up on a pool while the call's own
        # thread goes on reading requests and writing answers, in order.
        self._pool = futures.ThreadPoolExecutor(bank.settings.stream_threads, thread_name_prefix="hashshare-stream")

    def _match(self, request: match_pb2.MatchRequest, principal: Principal) -> match_pb2.MatchResponse:
        violations: list[FieldViolation] = []
        signals = convert.signals_from_proto(request.signals, self.bank.settings.max_signals_per_item, violations)
        thresholds = convert.thresholds_from_proto(request.thresholds, violations)
        if violations:
            raise InvalidArgument(violations)
        outcome = self.bank.match(principal, signals, thresholds)
        return convert.match_response(outcome, request.item_id)

    @rpc
    def Match(
        self, request: match_pb2.MatchRequest, context: grpc.ServicerContext, principal: Principal
    ) -> match_pb2.MatchResponse:
        return self._match(request, principal)

    @rpc
    def MatchStream(
        self, requests: Iterator[match_pb2.MatchRequest], context: grpc.ServicerContext, principal: Principal
    ) -> Iterator[match_pb2.MatchResponse]:
        pending: deque[futures.Future[match_pb2.MatchResponse]] = deque()
        for request in requests:
            pending.append(self._pool.submit(self._match_item, request, principal))
            if len(pending) >= STREAM_WINDOW:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def _match_item(self, request: match_pb2.MatchRequest, principal: Principal) -> match_pb2.MatchResponse:
        try:
            return self._match(request, principal)
        except InvalidArgument as error:
            # One malformed item must not end a backfill of millions.
            return match_pb2.MatchResponse(item_id=request.item_id, error=convert.item_error(error))

    @rpc
    def ReportAction(
        self, request: match_pb2.ReportActionRequest, context: grpc.ServicerContext, principal: Principal
    ) -> match_pb2.ReportActionResponse:
        drafts = research_messages.action_reports(request, self.bank.now(), self.research.known_entries)
        digest = convert.request_digest(request)
        recorded = self.research.report_actions(principal, request.request_id, digest, drafts)
        return match_pb2.ReportActionResponse(recorded=recorded)


class SubmissionService(submission_pb2_grpc.SubmissionServiceServicer):
    SERVICE = "hashshare.v1.SubmissionService"

    def __init__(self, bank: Bank) -> None:
        self.bank = bank

    @rpc
    def Submit(
        self, request: submission_pb2.SubmitRequest, context: grpc.ServicerContext, principal: Principal
    ) -> submission_pb2.SubmitResponse:
        draft = self._draft(request)
        outcome = self.bank.submit(principal, request.request_id, convert.request_digest(request), draft)
        return submission_pb2.SubmitResponse(
            entry_id=format_id(IdKind.ENTRY, outcome.entry_id),
            submission_id=format_id(IdKind.SUBMISSION, outcome.submission_id),
            joined_existing=outcome.joined_existing,
            corroborations=outcome.corroborations,
        )

    @rpc
    def SubmitBatch(
        self, request: submission_pb2.SubmitBatchRequest, context: grpc.ServicerContext, principal: Principal
    ) -> submission_pb2.SubmitBatchResponse:
        if not request.items or len(request.items) > MAX_BATCH_ITEMS:
            raise InvalidArgument.field("items", f"1 to {MAX_BATCH_ITEMS} items per batch, got {len(request.items)}")
        results: list[submission_pb2.SubmitBatchResult | None] = []
        valid: list[tuple[str, bytes, SubmissionDraft]] = []
        for item in request.items:
            try:
                draft = self._draft(item)
            except InvalidArgument as error:  # one bad item never fails the others
                results.append(submission_pb2.SubmitBatchResult(error=convert.item_error(error)))
                continue
            results.append(None)
            valid.append((item.request_id, convert.request_digest(item), draft))
        outcomes = iter(self.bank.submit_many(principal, valid) if valid else [])
        response = submission_pb2.SubmitBatchResponse()
        for result in results:
            if result is None:
                outcome = next(outcomes)
                if isinstance(outcome, InvalidArgument):
                    result = submission_pb2.SubmitBatchResult(error=convert.item_error(outcome))
                else:
                    result = submission_pb2.SubmitBatchResult(
                        submitted=submission_pb2.SubmitResponse(
                            entry_id=format_id(IdKind.ENTRY, outcome.entry_id),
                            submission_id=format_id(IdKind.SUBMISSION, outcome.submission_id),
                            joined_existing=outcome.joined_existing,
                            corroborations=outcome.corroborations,
                        )
                    )
            response.results.append(result)
        return response

    def _draft(self, request: submission_pb2.SubmitRequest) -> SubmissionDraft:
        violations: list[FieldViolation] = []
        now = self.bank.now()
        convert.check_request_id(request.request_id, violations)
        signals = convert.signals_from_proto(request.signals, self.bank.settings.max_signals_per_item, violations)
        for i, signal in enumerate(signals):
            if not view(signal.variant).stored:  # type: ignore[union-attr]
                violations.append(
                    FieldViolation(
                        f"signals[{i}].variant", "flipped or rotated copies are for lookups; submit the original"
                    )
                )
            floor = SIGNAL_TYPES[signal.type].min_quality
            if floor is not None and signal.quality is not None and signal.quality < floor:
                violations.append(
                    FieldViolation(
                        f"signals[{i}].quality",
                        f"{signal.type} quality {signal.quality} is below {floor}: the image has too little "
                        "detail to be matched reliably, and would match unrelated images",
                    )
                )
        convert.category(request.category, self.bank.taxonomy, violations)
        legal_basis = convert.legal_basis(request.legal_basis, violations)
        discovery_method = convert.discovery_method(request.discovery_method, violations)
        if len(request.notice_reference) > convert.MAX_NOTICE_REFERENCE:
            violations.append(FieldViolation("notice_reference", f"at most {convert.MAX_NOTICE_REFERENCE} characters"))
        notice_received_at = convert.seconds(request, "notice_received_at", now, violations)
        removed_at = convert.seconds(request, "removed_at", now, violations)
        if violations:
            raise InvalidArgument(violations)
        return SubmissionDraft(
            signals=signals,
            category=request.category,
            legal_basis=legal_basis,
            discovery_method=discovery_method,
            notice_reference=request.notice_reference,
            notice_received_at=notice_received_at,
            removed_at=removed_at if removed_at is not None else now,
        )

    @rpc
    def Retract(
        self, request: submission_pb2.RetractRequest, context: grpc.ServicerContext, principal: Principal
    ) -> submission_pb2.RetractResponse:
        violations: list[FieldViolation] = []
        convert.check_request_id(request.request_id, violations)
        if len(request.reason) > convert.MAX_REASON:
            violations.append(FieldViolation("reason", f"at most {convert.MAX_REASON} characters"))
        if violations:
            raise InvalidArgument(violations)
        entry_id = parse_id(IdKind.ENTRY, request.entry_id, "entry_id")
        digest = convert.request_digest(request)
        outcome = self.bank.retract(principal, request.request_id, digest, entry_id, request.reason)
        return submission_pb2.RetractResponse(
            entry_id=request.entry_id,
            retracted_submissions=outcome.retracted_submissions,
            entry_active=outcome.entry_active,
        )

    @rpc
    def GetEntry(
        self, request: submission_pb2.GetEntryRequest, context: grpc.ServicerContext, principal: Principal
    ) -> submission_pb2.GetEntryResponse:
        entry = self.bank.get_entry(parse_id(IdKind.ENTRY, request.entry_id, "entry_id"))
        # Platforms never learn who submitted an entry, nor its hashes.
        if principal.has(Role.ADMIN):
            submissions, with_signals = entry.submissions, True
        elif principal.has(Role.TRUST_SAFETY):
            submissions = tuple(s for s in entry.submissions if s.member_id == principal.member_id)
            with_signals = True
        else:
            submissions, with_signals = (), False
        return submission_pb2.GetEntryResponse(entry=convert.entry_message(entry, submissions, with_signals))

    @rpc
    def ListCategories(
        self, request: submission_pb2.ListCategoriesRequest, context: grpc.ServicerContext, principal: Principal
    ) -> submission_pb2.ListCategoriesResponse:
        return submission_pb2.ListCategoriesResponse(
            categories=[
                submission_pb2.Category(id=c.id, title=c.title, description=c.description)
                for c in self.bank.taxonomy.categories
            ]
        )


class ResearchService(research_pb2_grpc.ResearchServiceServicer):
    SERVICE = "hashshare.v1.ResearchService"

    def __init__(self, bank: Bank) -> None:
        self.bank = bank
        self.research = Research(bank)

    @rpc
    def GetSpread(
        self, request: research_pb2.GetSpreadRequest, context: grpc.ServicerContext, principal: Principal
    ) -> research_pb2.GetSpreadResponse:
        figures = self.research.spread(parse_id(IdKind.ENTRY, request.entry_id, "entry_id"))
        return research_messages.spread_response(figures)

    @rpc
    def GetSpreadSeries(
        self, request: research_pb2.GetSpreadSeriesRequest, context: grpc.ServicerContext, principal: Principal
    ) -> research_pb2.GetSpreadSeriesResponse:
        period = research_messages.period(request.period, request.HasField("period"))
        if request.granularity not in (
            research_pb2.GRANULARITY_UNSPECIFIED,
            research_pb2.GRANULARITY_DAY,
            research_pb2.GRANULARITY_WEEK,
        ):
            raise InvalidArgument.field("granularity", f"unknown value {request.granularity}")
        weekly = request.granularity == research_pb2.GRANULARITY_WEEK
        entry_id = research_messages.optional_entry_id(request.entry_id)
        points = self.research.series(period, weekly, request.category, entry_id)
        return research_pb2.GetSpreadSeriesResponse(
            points=[
                research_pb2.SeriesPoint(
                    start=p.start,
                    reupload_attempts=research_messages.count(p.reupload_attempts),
                    distinct_platforms=research_messages.count(p.distinct_platforms),
                    actions=research_messages.actions(p.actions),
                )
                for p in points
            ]
        )

    @rpc
    def ListTopClusters(
        self, request: research_pb2.ListTopClustersRequest, context: grpc.ServicerContext, principal: Principal
    ) -> research_pb2.ListTopClustersResponse:
        period = research_messages.period(request.period, request.HasField("period"))
        clusters = self.research.top_clusters(period, request.category, request.limit)
        return research_pb2.ListTopClustersResponse(clusters=[research_messages.cluster(c) for c in clusters])

    @rpc
    def GetPlatformStats(
        self, request: research_pb2.GetPlatformStatsRequest, context: grpc.ServicerContext, principal: Principal
    ) -> research_pb2.GetPlatformStatsResponse:
        period = research_messages.period(request.period, request.HasField("period"))
        return research_pb2.GetPlatformStatsResponse(
            platforms=[
                research_pb2.PlatformStats(
                    platform=p.platform,
                    submissions=research_messages.count(p.submissions),
                    corroborations=research_messages.count(p.corroborations),
                    reupload_attempts=research_messages.count(p.reupload_attempts),
                    actions=research_messages.actions(p.actions),
                    median_hours_to_removal=p.median_hours_to_removal,
                )
                for p in self.research.platform_stats(period)
            ]
        )

    @rpc
    def GetCategoryStats(
        self, request: research_pb2.GetCategoryStatsRequest, context: grpc.ServicerContext, principal: Principal
    ) -> research_pb2.GetCategoryStatsResponse:
        period = research_messages.period(request.period, request.HasField("period"))
        return research_pb2.GetCategoryStatsResponse(
            categories=[
                research_pb2.CategoryStats(
                    category=c.category,
                    entries=research_messages.count(c.entries),
                    submissions=research_messages.count(c.submissions),
                    reupload_attempts=research_messages.count(c.reupload_attempts),
                    distinct_platforms=research_messages.count(c.distinct_platforms),
                    actions=research_messages.actions(c.actions),
                )
                for c in self.research.category_stats(period)
            ]
        )

    @rpc
    def GetNoticeStats(
        self, request: research_pb2.GetNoticeStatsRequest, context: grpc.ServicerContext, principal: Principal
    ) -> research_pb2.GetNoticeStatsResponse:
        return notice_stats.notice_stats(self.bank, request)


def _member_message(member: Member) -> admin_pb2.Member:
    return admin_pb2.Member(
        member_id=format_id(IdKind.MEMBER, member.member_id),
        name=member.name,
        roles=sorted(r.value for r in member.roles),
        created_at=convert.timestamp_of(member.created_at),
    )


class AdminService(admin_pb2_grpc.AdminServiceServicer):
    SERVICE = "hashshare.v1.AdminService"

    def __init__(self, bank: Bank) -> None:
        self.bank = bank

    def _check_request_id(self, request_id: str) -> None:
        violations: list[FieldViolation] = []
        convert.check_request_id(request_id, violations)
        if violations:
            raise InvalidArgument(violations)

    @rpc
    def CreateMember(
        self, request: admin_pb2.CreateMemberRequest, context: grpc.ServicerContext, principal: Principal
    ) -> admin_pb2.CreateMemberResponse:
        self._check_request_id(request.request_id)
        violations: list[FieldViolation] = []
        points = directory.contact_points_from_proto(request.contact_points, "contact_points", violations)
        if violations:
            raise InvalidArgument(violations)
        member, token, secret = members.create_member(self.bank.store, request.name, request.roles, self.bank.now())
        if points:
            self.bank.store.set_contact_points(member.member_id, points, self.bank.now())
        return admin_pb2.CreateMemberResponse(
            member=directory.with_contact_points(self.bank, [_member_message(member)])[0],
            token=secret,
            token_id=format_id(IdKind.TOKEN, token.token_id),
        )

    @rpc
    def ListMembers(
        self, request: admin_pb2.ListMembersRequest, context: grpc.ServicerContext, principal: Principal
    ) -> admin_pb2.ListMembersResponse:
        listed = [_member_message(m) for m in self.bank.store.list_members()]
        return admin_pb2.ListMembersResponse(members=directory.with_contact_points(self.bank, listed))

    @rpc
    def IssueToken(
        self, request: admin_pb2.IssueTokenRequest, context: grpc.ServicerContext, principal: Principal
    ) -> admin_pb2.IssueTokenResponse:
        self._check_request_id(request.request_id)
        member_id = parse_id(IdKind.MEMBER, request.member_id, "member_id")
        token, secret = members.issue_token(self.bank.store, member_id, request.roles, self.bank.now())
        return admin_pb2.IssueTokenResponse(token=secret, token_id=format_id(IdKind.TOKEN, token.token_id))

    @rpc
    def RevokeToken(
        self, request: admin_pb2.RevokeTokenRequest, context: grpc.ServicerContext, principal: Principal
    ) -> admin_pb2.RevokeTokenResponse:
        self._check_request_id(request.request_id)
        token_id = parse_id(IdKind.TOKEN, request.token_id, "token_id")
        _, token_hash = self.bank.store.revoke_token(token_id, self.bank.now())
        self.bank.auth.forget(token_hash)
        return admin_pb2.RevokeTokenResponse(token_id=request.token_id)

    @rpc
    def SetContactPoints(
        self, request: admin_pb2.SetContactPointsRequest, context: grpc.ServicerContext, principal: Principal
    ) -> admin_pb2.SetContactPointsResponse:
        violations: list[FieldViolation] = []
        convert.check_request_id(request.request_id, violations)
        points = directory.contact_points_from_proto(request.contact_points, "contact_points", violations)
        if violations:
            raise InvalidArgument(violations)
        member_id = parse_id(IdKind.MEMBER, request.member_id, "member_id")
        self.bank.store.set_contact_points(member_id, points, self.bank.now())
        member = self.bank.store.get_member(member_id)
        assert member is not None  # members are never deleted
        return admin_pb2.SetContactPointsResponse(
            member=directory.with_contact_points(self.bank, [_member_message(member)])[0]
        )

    @rpc
    def ListAuditEvents(
        self, request: admin_pb2.ListAuditEventsRequest, context: grpc.ServicerContext, principal: Principal
    ) -> admin_pb2.ListAuditEventsResponse:
        return audit_events.list_audit_events(self.bank, request)
