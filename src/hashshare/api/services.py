"""The gRPC services: thin translations between messages and the Bank."""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent import futures

import grpc

from hashshare_client import Signal
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
from ..matching import Thresholds
from ..model import IdKind, Member, Principal, Role, SubmissionDraft, format_id, parse_id
from . import convert
from .rpc import rpc

# The most items one SubmitBatch call may carry (documented in submission.proto).
MAX_BATCH_ITEMS = 1000

# Items of one stream in flight at once: enough to keep every thread busy,
# few enough that a slow reader does not make the server buffer a backlog.
STREAM_WINDOW = 64
# Items of one stream looked up together at most.
STREAM_BATCH = 64


class MatchService(match_pb2_grpc.MatchServiceServicer):
    SERVICE = "hashshare.v1.MatchService"

    def __init__(self, bank: Bank) -> None:
        self.bank = bank
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
        # Items that have arrived are looked up together (one search per sub-index for
        # all of them: numpy's per-call costs, not the hashes, dominate a single lookup).
        # A reader thread takes requests off the stream so that the batch is whatever
        # is waiting; answers go out in order, and a client that waits for an answer
        # before it sends more is never kept waiting for a batch to fill.
        inbox = _StreamInbox(requests)
        pending: deque[futures.Future[list[match_pb2.MatchResponse]]] = deque()
        try:
            while True:
                batch = inbox.take(STREAM_BATCH, wait=not pending)
                if batch:
                    pending.append(self._pool.submit(self._match_batch, batch, principal))
                if pending and (not batch or len(pending) > 1 or pending[0].done()):
                    yield from pending.popleft().result()
                elif not batch and inbox.finished:
                    return
        finally:
            inbox.close()

    def _match_batch(
        self, requests: list[match_pb2.MatchRequest], principal: Principal
    ) -> list[match_pb2.MatchResponse]:
        responses: list[match_pb2.MatchResponse | None] = []
        lookups: list[tuple[Sequence[Signal], Mapping[str, Thresholds]]] = []
        valid: list[match_pb2.MatchRequest] = []
        for request in requests:
            violations: list[FieldViolation] = []
            signals = convert.signals_from_proto(request.signals, self.bank.settings.max_signals_per_item, violations)
            thresholds = convert.thresholds_from_proto(request.thresholds, violations)
            if violations:
                # One malformed item must not end a backfill of millions.
                error = convert.item_error(InvalidArgument(violations))
                responses.append(match_pb2.MatchResponse(item_id=request.item_id, error=error))
                continue
            responses.append(None)
            lookups.append((signals, thresholds))
            valid.append(request)
        outcomes = iter(self.bank.match_many(principal, lookups) if lookups else [])
        requests_left = iter(valid)
        return [
            response if response is not None else convert.match_response(next(outcomes), next(requests_left).item_id)
            for response in responses
        ]


class _StreamInbox:
    """The requests of a stream, read by a thread of their own into a bounded queue."""

    def __init__(self, requests: Iterator[match_pb2.MatchRequest]) -> None:
        self._queue: queue.Queue[match_pb2.MatchRequest | None] = queue.Queue(maxsize=STREAM_WINDOW)
        self._closed = threading.Event()
        self._failure: BaseException | None = None
        self.finished = False  # the end of the stream was taken
        self._thread = threading.Thread(target=self._read, args=(requests,), name="hashshare-stream-reader")
        self._thread.daemon = True
        self._thread.start()

    def _read(self, requests: Iterator[match_pb2.MatchRequest]) -> None:
        try:
            for request in requests:
                if not self._put(request):
                    return
        except BaseException as error:  # a cancelled call or a client gone: the handler re-raises it
            self._failure = error
        self._put(None)

    def _put(self, item: match_pb2.MatchRequest | None) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def take(self, most: int, wait: bool) -> list[match_pb2.MatchRequest]:
        """Up to ``most`` requests that have arrived; with ``wait``, at least one unless the
        stream has ended. Raises what ended the stream if it did not end cleanly."""
        batch: list[match_pb2.MatchRequest] = []
        if self.finished:
            return batch
        try:
            item = self._queue.get() if wait else self._queue.get_nowait()
            while True:
                if item is None:
                    self.finished = True
                    if self._failure is not None:
                        raise self._failure
                    break
                batch.append(item)
                if len(batch) >= most:
                    break
                item = self._queue.get_nowait()
        except queue.Empty:
            pass
        return batch

    def close(self) -> None:
        self._closed.set()


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

    @rpc
    def GetSpread(
        self, request: research_pb2.GetSpreadRequest, context: grpc.ServicerContext, principal: Principal
    ) -> research_pb2.GetSpreadResponse:
        spread = self.bank.spread(parse_id(IdKind.ENTRY, request.entry_id, "entry_id"))
        return research_pb2.GetSpreadResponse(
            entry_id=request.entry_id,
            sightings=spread.sightings,
            distinct_platforms=len(spread.platforms),
            first_seen=convert.timestamp_of(spread.first_seen),
            last_seen=convert.timestamp_of(spread.last_seen),
            daily=[research_pb2.DailyCount(day=day, sightings=count) for day, count in spread.daily],
            platforms=[
                research_pb2.PlatformSpread(
                    platform=p.platform,
                    sightings=p.sightings,
                    first_seen=convert.timestamp_of(p.first_seen),
                    last_seen=convert.timestamp_of(p.last_seen),
                )
                for p in spread.platforms
            ],
        )


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
        member, token, secret = members.create_member(self.bank.store, request.name, request.roles, self.bank.now())
        return admin_pb2.CreateMemberResponse(
            member=_member_message(member), token=secret, token_id=format_id(IdKind.TOKEN, token.token_id)
        )

    @rpc
    def ListMembers(
        self, request: admin_pb2.ListMembersRequest, context: grpc.ServicerContext, principal: Principal
    ) -> admin_pb2.ListMembersResponse:
        return admin_pb2.ListMembersResponse(members=[_member_message(m) for m in self.bank.store.list_members()])

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
