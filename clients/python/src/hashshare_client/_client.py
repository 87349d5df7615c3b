"""The blocking client."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import grpc

from . import _research, protocol
from ._config import CHANNEL_OPTIONS, DEFAULT_TIMEOUT, auth_metadata, resolve_target
from ._models import (
    AllowedItem,
    AuditPage,
    Category,
    ContactPoint,
    DirectoryEntry,
    DiscoveryMethod,
    DisputeReason,
    Entry,
    FeedbackResult,
    ItemError,
    LegalBasis,
    MatchResult,
    Member,
    Notice,
    NoticePage,
    NoticeState,
    Opinion,
    Removal,
    RetractResult,
    ReviewDecision,
    Spread,
    SubmitResult,
    TrustLevel,
)
from ._research import (
    ActionReport,
    CategoryStats,
    ClusterSpread,
    FeedbackStats,
    NoticeStats,
    PlatformStats,
    SeriesPoint,
)
from .pb.hashshare.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    match_pb2_grpc,
    notice_pb2,
    notice_pb2_grpc,
    research_pb2,
    research_pb2_grpc,
    submission_pb2,
    submission_pb2_grpc,
)
from .protocol import Threshold
from .signals import Signal

__all__ = ["Client"]

_Response = TypeVar("_Response")


class Client:
    """A connection to a hashshare server.

    ``target`` defaults to $HASHSHARE_SERVER, then 127.0.0.1:50051; ``token``
    to $HASHSHARE_TOKEN. Unary calls carry a deadline (``timeout`` seconds)
    and are retried on UNAVAILABLE; mutating calls send a request_id so that a
    retry never applies twice.
    """

    def __init__(
        self,
        target: str | None = None,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        address = resolve_target(target)
        if credentials is None:
            self._channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        else:
            self._channel = grpc.secure_channel(address, credentials, options=CHANNEL_OPTIONS)
        self._metadata = auth_metadata(token)
        self._timeout = timeout
        self._match = match_pb2_grpc.MatchServiceStub(self._channel)
        self._submission = submission_pb2_grpc.SubmissionServiceStub(self._channel)
        self._research = research_pb2_grpc.ResearchServiceStub(self._channel)
        self._notice = notice_pb2_grpc.NoticeServiceStub(self._channel)
        self._admin = admin_pb2_grpc.AdminServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def match(
        self,
        signals: Sequence[Signal],
        *,
        thresholds: Mapping[str, Threshold] | None = None,
        item_id: str = "",
        max_matches: int = 0,
        timeout: float | None = None,
    ) -> MatchResult:
        """Look up one item's signals; ``.verdict`` is "BLOCK", "REVIEW" or "NONE"."""
        request = protocol.match_request(signals, thresholds, item_id, max_matches)
        return protocol.match_result(self._call(self._match.Match, request, timeout))

    def match_stream(
        self,
        items: Iterable[tuple[str, Sequence[Signal]]],
        *,
        thresholds: Mapping[str, Threshold] | None = None,
        max_matches: int = 0,
        per_message: int = 1,
        timeout: float | None = None,
    ) -> Iterator[MatchResult]:
        """Look up many ``(item_id, signals)`` items on one stream, in order.

        A malformed item yields a result with ``.error`` set; the others go on.
        ``per_message`` > 1 (up to 1000) sends that many items a message
        (MatchBatchStream), which a backfill wants: the server's cost of a message
        is spread over its items. An item is sent only once ``per_message`` items
        (or the last of ``items``) have been read, so a caller that waits for each
        answer before it sends the next item keeps the default, 1.
        """
        try:
            if per_message == 1:
                requests = (
                    protocol.match_request(signals, thresholds, item_id, max_matches) for item_id, signals in items
                )
                for response in self._match.MatchStream(requests, timeout=timeout, metadata=self._metadata):
                    yield protocol.match_result(response)
            else:
                messages = protocol.match_batch_requests(items, thresholds, max_matches, per_message)
                for message in self._match.MatchBatchStream(messages, timeout=timeout, metadata=self._metadata):
                    for response in message.items:
                        yield protocol.match_result(response)
        except grpc.RpcError as error:
            raise protocol.api_error(error.code(), error.details(), error.trailing_metadata()) from None

    def submit(
        self,
        signals: Sequence[Signal],
        *,
        category: str,
        legal_basis: LegalBasis | str = LegalBasis.COMMUNITY_GUIDELINES,
        discovery_method: DiscoveryMethod | str = DiscoveryMethod.UNSPECIFIED,
        notice_reference: str = "",
        notice_received_at: datetime | None = None,
        removed_at: datetime | None = None,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> SubmitResult:
        """Record a confirmed removal. Replaying a ``request_id`` returns the first result."""
        request = protocol.submit_request(
            request_id or str(uuid.uuid4()),
            signals,
            category,
            legal_basis,
            discovery_method,
            notice_reference,
            notice_received_at,
            removed_at,
        )
        return protocol.submit_result(self._call(self._submission.Submit, request, timeout))

    def submit_many(
        self, removals: Iterable[Removal], *, batch_size: int = protocol.MAX_BATCH_ITEMS, timeout: float | None = None
    ) -> list[SubmitResult | ItemError]:
        """Record many confirmed removals, ``batch_size`` (at most 1000) per SubmitBatch call.

        Returns one result per removal, in order: a SubmitResult, or an
        ItemError for a removal the server refused (the others are stored).
        Each removal's ``request_id`` (a UUID unless given) makes a retry or a
        replay store nothing twice.
        """
        results: list[SubmitResult | ItemError] = []
        for request in protocol.submit_batch_requests(removals, batch_size):
            response = self._call(self._submission.SubmitBatch, request, timeout)
            results.extend(protocol.submit_batch_results(response))
        return results

    def retract(
        self, entry_id: str, *, reason: str = "", request_id: str | None = None, timeout: float | None = None
    ) -> RetractResult:
        """Withdraw this member's submissions on an entry."""
        request = submission_pb2.RetractRequest(
            request_id=request_id or str(uuid.uuid4()), entry_id=entry_id, reason=reason
        )
        return protocol.retract_result(self._call(self._submission.Retract, request, timeout))

    def get_entry(self, entry_id: str, *, timeout: float | None = None) -> Entry:
        request = submission_pb2.GetEntryRequest(entry_id=entry_id)
        return protocol.entry_result(self._call(self._submission.GetEntry, request, timeout))

    def categories(self, *, timeout: float | None = None) -> list[Category]:
        request = submission_pb2.ListCategoriesRequest()
        return protocol.categories_result(self._call(self._submission.ListCategories, request, timeout))

    def spread(self, entry_id: str, *, timeout: float | None = None) -> Spread:
        """How an entry's content kept spreading (role "researcher")."""
        request = research_pb2.GetSpreadRequest(entry_id=entry_id)
        return protocol.spread_result(self._call(self._research.GetSpread, request, timeout))

    # Notices and the member directory (roles "authority", "trust_safety"; admins manage contact points)

    def file_notice(
        self,
        platform_id: str,
        signals: Sequence[Signal],
        *,
        category: str,
        content_reference: str,
        legal_basis: LegalBasis | str = LegalBasis.LOCAL_LAW,
        legal_reference: str = "",
        description: str = "",
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> Notice:
        """File a notice to a platform (role "authority"); routed to its contact points."""
        request = protocol.file_notice_request(
            request_id or str(uuid.uuid4()),
            platform_id,
            signals,
            category,
            content_reference,
            legal_basis,
            legal_reference,
            description,
        )
        return protocol.notice_result(self._call(self._notice.FileNotice, request, timeout).notice)

    def answer_notice(
        self,
        notice_id: str,
        decision: NoticeState | str,
        *,
        reason: str = "",
        removed_at: datetime | None = None,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> Notice:
        """Decide a notice filed to this platform: "removed", "disabled" or "rejected" (with a reason).

        A removal or disabling becomes a bank entry (``Notice.entry_id``)."""
        request = protocol.answer_notice_request(
            request_id or str(uuid.uuid4()), notice_id, decision, reason, removed_at
        )
        return protocol.notice_result(self._call(self._notice.AnswerNotice, request, timeout).notice)

    def get_notice(self, notice_id: str, *, timeout: float | None = None) -> Notice:
        request = notice_pb2.GetNoticeRequest(notice_id=notice_id)
        return protocol.notice_result(self._call(self._notice.GetNotice, request, timeout).notice)

    def list_notices(
        self,
        *,
        platform_id: str = "",
        state: NoticeState | str | None = None,
        filed_since: datetime | None = None,
        filed_until: datetime | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> NoticePage:
        """One page of notices, oldest first; pass ``next_page_token`` back for the next."""
        request = protocol.list_notices_request(platform_id, state, filed_since, filed_until, page_size, page_token)
        return protocol.notice_page(self._call(self._notice.ListNotices, request, timeout))

    def contact_points(self, *, timeout: float | None = None) -> list[DirectoryEntry]:
        """The member directory: every member's name, roles and contact points."""
        request = notice_pb2.ListContactPointsRequest()
        return protocol.directory_result(self._call(self._notice.ListContactPoints, request, timeout))

    def set_contact_points(
        self,
        member_id: str,
        contact_points: Iterable[ContactPoint],
        *,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> DirectoryEntry:
        """Replace a member's contact points (role "admin")."""
        request = admin_pb2.SetContactPointsRequest(
            request_id=request_id or str(uuid.uuid4()),
            member_id=member_id,
            contact_points=protocol.contact_points_to_proto(contact_points),
        )
        return protocol.member_entry(self._call(self._admin.SetContactPoints, request, timeout).member)

    def audit_events(
        self,
        *,
        member_id: str = "",
        method: str = "",
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> AuditPage:
        """One page of the audit trail, oldest first (roles "admin", "authority")."""
        request = protocol.audit_events_request(member_id, method, since, until, page_size, page_token)
        return protocol.audit_page(self._call(self._admin.ListAuditEvents, request, timeout))

    def report_actions(
        self, reports: Iterable[ActionReport], *, request_id: str | None = None, timeout: float | None = None
    ) -> int:
        """Tell the bank what this platform did with matched items (role "platform").

        Sent 1000 per call; returns how many reports were recorded (an item
        reported before with the same action on the same entry is not)."""
        return sum(
            self._call(self._match.ReportAction, request, timeout).recorded
            for request in _research.report_action_requests(reports, request_id)
        )

    def spread_series(
        self,
        start: datetime,
        end: datetime,
        *,
        granularity: str = "day",
        category: str = "",
        entry_id: str = "",
        timeout: float | None = None,
    ) -> list[SeriesPoint]:
        """Re-upload attempts and actions per day or week of [start, end), of the
        whole bank, one category or one entry."""
        request = research_pb2.GetSpreadSeriesRequest(
            period=_research.period(start, end),
            granularity=_research.granularity(granularity),
            category=category,
            entry_id=entry_id,
        )
        return _research.series_result(self._call(self._research.GetSpreadSeries, request, timeout))

    def top_clusters(
        self, start: datetime, end: datetime, *, category: str = "", limit: int = 10, timeout: float | None = None
    ) -> list[ClusterSpread]:
        """The entries with the most re-upload attempts in [start, end)."""
        request = research_pb2.ListTopClustersRequest(
            period=_research.period(start, end), category=category, limit=limit
        )
        return _research.clusters_result(self._call(self._research.ListTopClusters, request, timeout))

    def platform_stats(self, start: datetime, end: datetime, *, timeout: float | None = None) -> list[PlatformStats]:
        request = research_pb2.GetPlatformStatsRequest(period=_research.period(start, end))
        return _research.platforms_result(self._call(self._research.GetPlatformStats, request, timeout))

    def category_stats(self, start: datetime, end: datetime, *, timeout: float | None = None) -> list[CategoryStats]:
        request = research_pb2.GetCategoryStatsRequest(period=_research.period(start, end))
        return _research.categories_result(self._call(self._research.GetCategoryStats, request, timeout))

    def notice_stats(
        self, start: datetime | None = None, end: datetime | None = None, *, timeout: float | None = None
    ) -> list[NoticeStats]:
        """Per platform (pseudonymous), notices filed in [start, end) (all time when unset) and how fast
        they were decided."""
        request = research_pb2.GetNoticeStatsRequest(period=_research.period(start, end))
        return _research.notices_result(self._call(self._research.GetNoticeStats, request, timeout))

    def feedback_stats(
        self, start: datetime | None = None, end: datetime | None = None, *, timeout: float | None = None
    ) -> list[FeedbackStats]:
        """Feedback given and received per platform (pseudonyms), in [start, end) (all time when unset)."""
        request = research_pb2.GetFeedbackStatsRequest(period=_research.period(start, end))
        return _research.feedback_result(self._call(self._research.GetFeedbackStats, request, timeout))

    def give_feedback(
        self,
        entry_id: str,
        opinion: Opinion | str,
        *,
        reason: DisputeReason | str | None = None,
        comment: str = "",
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> FeedbackResult:
        """Record this member's opinion of an entry ("agree", "disagree" with a
        ``reason``, "seen_too"); a later one replaces it."""
        request = protocol.feedback_request(request_id or str(uuid.uuid4()), entry_id, opinion, reason, comment)
        return protocol.feedback_result(self._call(self._submission.GiveFeedback, request, timeout))

    def review_entry(
        self,
        entry_id: str,
        decision: ReviewDecision | str,
        *,
        reason: str = "",
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> Entry:
        """Confirm, disable or re-enable an entry (roles "authority", "admin"); disabling and enabling need a reason."""
        request = protocol.review_request(request_id or str(uuid.uuid4()), entry_id, decision, reason)
        reviewed = self._call(self._submission.ReviewEntry, request, timeout)
        return protocol.entry_result(submission_pb2.GetEntryResponse(entry=reviewed.entry))

    def add_to_allow_list(
        self, signals: Sequence[Signal], *, label: str, request_id: str | None = None, timeout: float | None = None
    ) -> AllowedItem:
        """Put known-benign content on the allow-list: matching it never blocks."""
        request = protocol.allow_request(request_id or str(uuid.uuid4()), signals, label)
        return protocol.allowed_item(self._call(self._submission.AddToAllowList, request, timeout).item)

    def remove_from_allow_list(
        self, allow_id: str, *, reason: str, request_id: str | None = None, timeout: float | None = None
    ) -> None:
        request = submission_pb2.RemoveFromAllowListRequest(
            request_id=request_id or str(uuid.uuid4()), allow_id=allow_id, reason=reason
        )
        self._call(self._submission.RemoveFromAllowList, request, timeout)

    def list_allow_list(self, *, page_size: int = 100, timeout: float | None = None) -> list[AllowedItem]:
        """Every item of the allow-list, oldest first (read ``page_size`` at a time)."""
        items: list[AllowedItem] = []
        token = ""
        while True:
            request = submission_pb2.ListAllowListRequest(page_size=page_size, page_token=token)
            response = self._call(self._submission.ListAllowList, request, timeout)
            items.extend(protocol.allowed_item(i) for i in response.items)
            token = response.next_page_token
            if not token:
                return items

    def set_trust_level(
        self,
        member_id: str,
        trust_level: TrustLevel | str,
        *,
        reason: str = "",
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> Member:
        """Make a member "provisional" or "trusted" (role "admin")."""
        request = admin_pb2.SetTrustLevelRequest(
            request_id=request_id or str(uuid.uuid4()),
            member_id=member_id,
            trust_level=protocol.TRUST_LEVELS[TrustLevel(trust_level)],
            reason=reason,
        )
        return protocol.member_result(self._call(self._admin.SetTrustLevel, request, timeout).member)

    def clear_flag(
        self, member_id: str, *, reason: str = "", request_id: str | None = None, timeout: float | None = None
    ) -> Member:
        """Clear the flag a member got for submitting too fast (role "admin")."""
        request = admin_pb2.ClearFlagRequest(
            request_id=request_id or str(uuid.uuid4()), member_id=member_id, reason=reason
        )
        return protocol.member_result(self._call(self._admin.ClearFlag, request, timeout).member)

    def _call(self, method: Callable[..., _Response], request: Any, timeout: float | None) -> _Response:
        try:
            return method(request, timeout=timeout or self._timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise protocol.api_error(error.code(), error.details(), error.trailing_metadata()) from None
