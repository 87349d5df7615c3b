"""ResearchService.GetNoticeStats: how fast each platform decides notices,
under pseudonyms, small counts suppressed."""

from __future__ import annotations

from hashshare_client.pb.hashshare.v1 import research_pb2

from ..bank import Bank
from ..errors import FieldViolation, InvalidArgument
from ..notices import NoticeDesk, PlatformNoticeStats
from .convert import count_message
from .paging import period


def notice_stats_message(row: PlatformNoticeStats, minimum: int) -> research_pb2.NoticeStats:
    # The share and the median describe the received notices: withheld with them.
    shown = row.received >= minimum
    return research_pb2.NoticeStats(
        platform=row.platform,
        received=count_message(row.received, minimum),
        decided=count_message(row.decided, minimum),
        decided_within_24h=count_message(row.decided_within_24h, minimum),
        share_decided_within_24h=row.share_decided_within_24h if shown else 0.0,
        median_hours_to_decision=row.median_hours_to_decision if shown else 0.0,
        removed=count_message(row.removed, minimum),
        disabled=count_message(row.disabled, minimum),
        rejected=count_message(row.rejected, minimum),
    )


def notice_stats(bank: Bank, request: research_pb2.GetNoticeStatsRequest) -> research_pb2.GetNoticeStatsResponse:
    violations: list[FieldViolation] = []
    since, until = period(request.period, "start", "end", violations)
    if violations:
        raise InvalidArgument(violations)
    minimum = bank.settings.research_min_count
    rows = NoticeDesk(bank).stats(since, until)
    return research_pb2.GetNoticeStatsResponse(platforms=[notice_stats_message(r, minimum) for r in rows])
