"""The gRPC services: thin translations between messages and the Bank."""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent import futures
from typing import Generic, TypeVar

import grpc

from hashshare_client import Signal
from hashshare_client.pb.hashshare.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    match_pb2,
    match_pb2_grpc,
    research_pb2,
    research_pb2_grpc,
    signal_pb2,
    submission_pb2,
    submission_pb2_grpc,
)
from hashshare_client.signal_types import SIGNAL_TYPES, view

from .. import members
from ..bank import Bank
from ..errors import FieldViolation, InvalidArgument, RateLimited
from ..matching import Thresholds
from ..model import (
    DisputeReason,
    Entry,
    IdKind,
    Member,
    Opinion,
    Principal,
    ReviewDecision,
    Role,
    SubmissionDraft,
    TrustLevel,
    format_id,
    parse_id,
)
from ..research import Research
from . import audit_events, convert, directory, notice_stats, paging, research_messages
from .rpc import rpc

# The most items one SubmitBatch call may carry (documented in submission.proto).
MAX_BATCH_ITEMS = 1000

# The most allow-list items one ListAllowList page may carry.
MAX_ALLOW_PAGE = 1000

# Items of one stream in flight at once: enough to keep every thread busy,
# few enough that a slow reader does not make the server buffer a backlog.
STREAM_WINDOW = 64
# Items of one stream looked up together at most.
STREAM_BATCH = 64
# MatchBatchStream: messages in flight at once (each up to MAX_BATCH_ITEMS items), and the
# most bytes of answers one response message carries (a client's default limit is 4 MiB;
# an item may describe up to convert.MAX_MATCHES entries).
BATCH_STREAM_WINDOW = 4
BATCH_RESPONSE_BYTES = 3 * 1024 * 1024

_Request = TypeVar("_Request")


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
        limit = convert.max_matches(request.max_matches, violations)
        if violations:
            raise InvalidArgument(violations)
        outcome = self.bank.match(principal, signals, thresholds, limit)
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
        for responses in self._answered(_StreamInbox(requests, STREAM_WINDOW), STREAM_BATCH, list, principal):
            yield from responses

    @rpc
    def MatchBatchStream(
        self, requests: Iterator[match_pb2.MatchBatchRequest], context: grpc.ServicerContext, principal: Principal
    ) -> Iterator[match_pb2.MatchBatchResponse]:
        # One message at a time: the client chose how many items it holds.
        for responses in self._answered(_StreamInbox(requests, BATCH_STREAM_WINDOW), 1, _batch_items, principal):
            yield from _response_messages(responses)

    def _answered(
        self,
        inbox: _StreamInbox[_Request],
        most: int,
        items_of: Callable[[list[_Request]], list[match_pb2.MatchRequest]],
        principal: Principal,
    ) -> Iterator[list[match_pb2.MatchResponse]]:
        """The answers to the items of up to ``most`` requests at a time off ``inbox``, in
        order: one group is looked up on the pool while the next is read and the one before
        is written. Requests that ``items_of`` refuses end the stream after the answers to
        those before them."""
        pending: deque[futures.Future[list[match_pb2.MatchResponse]]] = deque()
        try:
            while True:
                batch = inbox.take(most, wait=not pending)
                if batch:
                    try:
                        items = items_of(batch)
                    except InvalidArgument:
                        while pending:
                            yield pending.popleft().result()
                        raise
                    pending.append(self._pool.submit(self._match_batch, items, principal))
                if pending and (not batch or len(pending) > 1 or pending[0].done()):
                    yield pending.popleft().result()
                elif not batch and inbox.finished:
                    return
        finally:
            inbox.close()

    def _match_batch(
        self, requests: list[match_pb2.MatchRequest], principal: Principal
    ) -> list[match_pb2.MatchResponse]:
        responses: list[match_pb2.MatchResponse | None] = []
        lookups: list[tuple[Sequence[Signal], Mapping[str, Thresholds]]] = []
        limits: list[int | None] = []
        valid: list[match_pb2.MatchRequest] = []
        for request in requests:
            violations: list[FieldViolation] = []
            signals = convert.signals_from_proto(request.signals, self.bank.settings.max_signals_per_item, violations)
            thresholds = convert.thresholds_from_proto(request.thresholds, violations)
            limit = convert.max_matches(request.max_matches, violations)
            if violations:
                # One malformed item must not end a backfill of millions.
                error = convert.item_error(InvalidArgument(violations))
                responses.append(match_pb2.MatchResponse(item_id=request.item_id, error=error))
                continue
            responses.append(None)
            lookups.append((signals, thresholds))
            limits.append(limit)
            valid.append(request)
        outcomes = iter(self.bank.match_many(principal, lookups, limits) if lookups else [])
        requests_left = iter(valid)
        return [
            response if response is not None else convert.match_response(next(outcomes), next(requests_left).item_id)
            for response in responses
        ]

    @rpc
    def ReportAction(
        self, request: match_pb2.ReportActionRequest, context: grpc.ServicerContext, principal: Principal
    ) -> match_pb2.ReportActionResponse:
        drafts = research_messages.action_reports(request, self.bank.now(), self.research.known_entries)
        digest = convert.request_digest(request)
        recorded = self.research.report_actions(principal, request.request_id, digest, drafts)
        return match_pb2.ReportActionResponse(recorded=recorded)


def _batch_items(batch: list[match_pb2.MatchBatchRequest]) -> list[match_pb2.MatchRequest]:
    for message in batch:
        if not message.items or len(message.items) > MAX_BATCH_ITEMS:
            raise InvalidArgument.field("items", f"1 to {MAX_BATCH_ITEMS} items per message, got {len(message.items)}")
    return [item for message in batch for item in message.items]


def _response_messages(responses: list[match_pb2.MatchResponse]) -> Iterator[match_pb2.MatchBatchResponse]:
    """``responses`` in order, in messages of at most about BATCH_RESPONSE_BYTES."""
    start, size = 0, 0
    for end, response in enumerate(responses):
        length = response.ByteSize() + 6  # the item's tag and length prefix, at most
        if end > start and size + length > BATCH_RESPONSE_BYTES:
            yield match_pb2.MatchBatchResponse(items=responses[start:end])
            start, size = end, 0
        size += length
    if start < len(responses):
        yield match_pb2.MatchBatchResponse(items=responses[start:])


class _StreamInbox(Generic[_Request]):
    """The requests of a stream, read by a thread of their own into a queue of ``window``."""

    def __init__(self, requests: Iterator[_Request], window: int) -> None:
        self._queue: queue.Queue[_Request | None] = queue.Queue(maxsize=window)
        self._closed = threading.Event()
        self._failure: BaseException | None = None
        self.finished = False  # the end of the stream was taken
        self._thread = threading.Thread(target=self._read, args=(requests,), name="hashshare-stream-reader")
        self._thread.daemon = True
        self._thread.start()

    def _read(self, requests: Iterator[_Request]) -> None:
        try:
            for request in requests:
                if not self._put(request):
                    return
        except BaseException as error:  # a cancelled call or a client gone: the handler re-raises it
            self._failure = error
        self._put(None)

    def _put(self, item: _Request | None) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def take(self, most: int, wait: bool) -> list[_Request]:
        """Up to ``most`` requests that have arrived; with ``wait``, at least one unless the
        stream has ended. Raises what ended the stream if it did not end cleanly."""
        batch: list[_Request] = []
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
                if isinstance(outcome, RateLimited):
                    result = submission_pb2.SubmitBatchResult(
                        error=signal_pb2.ItemError(code=outcome.code, message=outcome.message)
                    )
                elif isinstance(outcome, InvalidArgument):
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
        _check_stored(signals, violations)
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
        if principal.has(Role.ADMIN) or principal.has(Role.AUTHORITY):
            submissions, with_signals = entry.submissions, True
        elif principal.has(Role.TRUST_SAFETY):
            submissions = tuple(s for s in entry.submissions if s.member_id == principal.member_id)
            with_signals = True
        else:
            submissions, with_signals = (), False
        message = convert.entry_message(entry, submissions, with_signals)
        return submission_pb2.GetEntryResponse(entry=self._with_trust(message, entry, principal))

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

    def _with_trust(self, message: submission_pb2.Entry, entry: Entry, principal: Principal) -> submission_pb2.Entry:
        """The Entry message with status, review, feedback counts and verdict; the
        feedback itself only the caller's own (everyone's for admins and the authority)."""
        trust = self.bank.entry_trust(entry.entry_id)
        verdict, held = self.bank.entry_verdict(entry)
        sees_all = principal.has(Role.ADMIN) or principal.has(Role.AUTHORITY)
        feedback = [f for f in trust.feedback if sees_all or f.member_id == principal.member_id]
        return convert.add_trust_fields(message, entry, trust, verdict.value, held, feedback)

    @rpc
    def GiveFeedback(
        self, request: submission_pb2.GiveFeedbackRequest, context: grpc.ServicerContext, principal: Principal
    ) -> submission_pb2.GiveFeedbackResponse:
        violations: list[FieldViolation] = []
        convert.check_request_id(request.request_id, violations)
        entry_id = convert.id_into(IdKind.ENTRY, request.entry_id, "entry_id", violations)
        opinion = convert.OPINION_OF.get(request.opinion)
        reason = convert.DISPUTE_REASON_OF.get(request.reason)
        if opinion is None:
            violations.append(
                FieldViolation("opinion", "required: OPINION_AGREE, OPINION_DISAGREE or OPINION_SEEN_TOO")
            )
        if reason is None:
            violations.append(FieldViolation("reason", f"unknown dispute reason {request.reason}"))
        elif opinion is Opinion.DISAGREE and reason is DisputeReason.NONE:
            violations.append(
                FieldViolation(
                    "reason", "required with OPINION_DISAGREE: not hateful, wrong category, lawful or bad hash"
                )
            )
        elif opinion is not None and opinion is not Opinion.DISAGREE and reason is not DisputeReason.NONE:
            violations.append(FieldViolation("reason", "only OPINION_DISAGREE takes a reason"))
        convert.reason_text(request.comment, "comment", False, violations)
        if violations:
            raise InvalidArgument(violations)
        assert opinion is not None and reason is not None
        digest = convert.request_digest(request)
        outcome = self.bank.give_feedback(
            principal, request.request_id, digest, entry_id, opinion, reason, request.comment
        )
        verdict, held = self.bank.entry_verdict(self.bank.get_entry(entry_id))
        return submission_pb2.GiveFeedbackResponse(
            entry_id=request.entry_id,
            agreements=outcome.agreements,
            disputes=outcome.disputes,
            seen_too=outcome.seen_too,
            verdict=convert.VERDICT_NUMBER[verdict.value],
            held_reasons=held,
        )

    @rpc
    def ReviewEntry(
        self, request: submission_pb2.ReviewEntryRequest, context: grpc.ServicerContext, principal: Principal
    ) -> submission_pb2.ReviewEntryResponse:
        violations: list[FieldViolation] = []
        convert.check_request_id(request.request_id, violations)
        entry_id = convert.id_into(IdKind.ENTRY, request.entry_id, "entry_id", violations)
        decision = convert.REVIEW_DECISION_OF.get(request.decision)
        if decision is None:
            violations.append(FieldViolation("decision", "required: REVIEW_DECISION_CONFIRM, _DISABLE or _ENABLE"))
        # Taking an entry out of the bank, or back in, is accounted for.
        convert.reason_text(request.reason, "reason", decision is not ReviewDecision.CONFIRM, violations)
        if violations:
            raise InvalidArgument(violations)
        assert decision is not None
        self.bank.review_entry(principal, entry_id, decision, request.reason)
        entry = self.bank.get_entry(entry_id)
        message = convert.entry_message(entry, entry.submissions, True)
        return submission_pb2.ReviewEntryResponse(entry=self._with_trust(message, entry, principal))

    @rpc
    def AddToAllowList(
        self, request: submission_pb2.AddToAllowListRequest, context: grpc.ServicerContext, principal: Principal
    ) -> submission_pb2.AddToAllowListResponse:
        violations: list[FieldViolation] = []
        convert.check_request_id(request.request_id, violations)
        signals = convert.signals_from_proto(request.signals, self.bank.settings.max_signals_per_item, violations)
        _check_stored(signals, violations)
        label = request.label.strip()
        if not label or len(label) > convert.MAX_LABEL or not label.isprintable():
            violations.append(
                FieldViolation("label", f"required: 1-{convert.MAX_LABEL} printable characters saying what it is")
            )
        if violations:
            raise InvalidArgument(violations)
        digest = convert.request_digest(request)
        item = self.bank.add_to_allow_list(principal, request.request_id, digest, signals, label)
        return submission_pb2.AddToAllowListResponse(item=convert.allowed_item_message(item))

    @rpc
    def RemoveFromAllowList(
        self, request: submission_pb2.RemoveFromAllowListRequest, context: grpc.ServicerContext, principal: Principal
    ) -> submission_pb2.RemoveFromAllowListResponse:
        violations: list[FieldViolation] = []
        convert.check_request_id(request.request_id, violations)
        allow_id = convert.id_into(IdKind.ALLOWED, request.allow_id, "allow_id", violations)
        convert.reason_text(request.reason, "reason", True, violations)
        if violations:
            raise InvalidArgument(violations)
        digest = convert.request_digest(request)
        self.bank.remove_from_allow_list(principal, request.request_id, digest, allow_id, request.reason)
        return submission_pb2.RemoveFromAllowListResponse(allow_id=request.allow_id)

    @rpc
    def ListAllowList(
        self, request: submission_pb2.ListAllowListRequest, context: grpc.ServicerContext, principal: Principal
    ) -> submission_pb2.ListAllowListResponse:
        violations: list[FieldViolation] = []
        if not 0 <= request.page_size <= MAX_ALLOW_PAGE:
            violations.append(FieldViolation("page_size", f"0 (the default, 100) to {MAX_ALLOW_PAGE}"))
        token = request.page_token
        if token and not (token.isdigit() and len(token) <= 18):
            violations.append(FieldViolation("page_token", "not a page token of this list"))
        if violations:
            raise InvalidArgument(violations)
        size = request.page_size or 100
        # One more than asked tells whether there is a next page.
        items = self.bank.store.list_allowed(int(token or 0), size + 1)
        response = submission_pb2.ListAllowListResponse(items=[convert.allowed_item_message(i) for i in items[:size]])
        if len(items) > size:
            response.next_page_token = str(items[size - 1].allow_id)
        return response


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

    @rpc
    def GetFeedbackStats(
        self, request: research_pb2.GetFeedbackStatsRequest, context: grpc.ServicerContext, principal: Principal
    ) -> research_pb2.GetFeedbackStatsResponse:
        violations: list[FieldViolation] = []
        start, end = paging.period(request.period, "start", "end", violations, path="period.")
        if violations:
            raise InvalidArgument(violations)
        minimum = self.bank.settings.research_min_count
        return research_pb2.GetFeedbackStatsResponse(
            platforms=[
                research_pb2.FeedbackStats(
                    platform=platform,
                    agreements_given=convert.count_message(stats.agreements_given, minimum),
                    disputes_given=convert.count_message(stats.disputes_given, minimum),
                    disputes_received=convert.count_message(stats.disputes_received, minimum),
                    seen_too_given=convert.count_message(stats.seen_too_given, minimum),
                )
                for platform, stats in self.bank.feedback_stats(start, end)
            ]
        )


def _member_message(member: Member) -> admin_pb2.Member:
    message = admin_pb2.Member(
        member_id=format_id(IdKind.MEMBER, member.member_id),
        name=member.name,
        roles=sorted(r.value for r in member.roles),
        created_at=convert.timestamp_of(member.created_at),
    )
    message.trust_level = convert.TRUST_LEVEL_NUMBER[member.trust_level]
    if member.flagged_at is not None:
        message.flagged = True
        message.flag_reason = member.flag_reason
        message.flagged_at.FromMicroseconds(round(member.flagged_at * 1e6))
    return message


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
        if request.trust_level == admin_pb2.TRUST_LEVEL_UNSPECIFIED:
            trust_level = self.bank.new_member_trust
        else:
            trust_level = self._trust_level(request.trust_level)
        member, token, secret = members.create_member(
            self.bank.store, request.name, request.roles, self.bank.now(), trust_level
        )
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

    def _trust_level(self, number: admin_pb2.TrustLevel.ValueType) -> TrustLevel:
        level = convert.TRUST_LEVEL_OF.get(number)
        if level is None:
            raise InvalidArgument.field("trust_level", "required: TRUST_LEVEL_PROVISIONAL or TRUST_LEVEL_TRUSTED")
        return level

    @rpc
    def SetTrustLevel(
        self, request: admin_pb2.SetTrustLevelRequest, context: grpc.ServicerContext, principal: Principal
    ) -> admin_pb2.SetTrustLevelResponse:
        violations: list[FieldViolation] = []
        convert.check_request_id(request.request_id, violations)
        member_id = convert.id_into(IdKind.MEMBER, request.member_id, "member_id", violations)
        if request.trust_level not in convert.TRUST_LEVEL_OF:
            violations.append(FieldViolation("trust_level", "required: TRUST_LEVEL_PROVISIONAL or TRUST_LEVEL_TRUSTED"))
        convert.reason_text(request.reason, "reason", False, violations)
        if violations:
            raise InvalidArgument(violations)
        member = self.bank.set_trust_level(member_id, self._trust_level(request.trust_level))
        return admin_pb2.SetTrustLevelResponse(member=_member_message(member))

    @rpc
    def ClearFlag(
        self, request: admin_pb2.ClearFlagRequest, context: grpc.ServicerContext, principal: Principal
    ) -> admin_pb2.ClearFlagResponse:
        violations: list[FieldViolation] = []
        convert.check_request_id(request.request_id, violations)
        member_id = convert.id_into(IdKind.MEMBER, request.member_id, "member_id", violations)
        convert.reason_text(request.reason, "reason", False, violations)
        if violations:
            raise InvalidArgument(violations)
        return admin_pb2.ClearFlagResponse(member=_member_message(self.bank.clear_flag(member_id)))


def _check_stored(signals: Sequence[Signal], violations: list[FieldViolation]) -> None:
    """Signals kept in the bank (submissions, the allow-list): stored views of enough detail."""
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
