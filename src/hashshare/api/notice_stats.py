"""ResearchService.GetNoticeStats: how fast each platform decides notices,
under pseudonyms, small counts suppressed."""

from __future__ import annotations

from hashshare_client.pb.hashshare.v1 import research_pb2

from ..bank import Bank
from ..errors import FieldViolation, InvalidArgument
from ..notices import NoticeDesk, PlatformNoticeStats
from .paging import period


def _count(value: int, minimum: int) -> research_pb2.Count:
    if value < minimum:
        return research_pb2.Count(value=0, suppressed=True)
    return research_pb2.Count(value=value)


def notice_stats_message(row: PlatformNoticeStats, minimum: int) -> research_pb2.NoticeStats:
    # The share and the median describe the received notices: withheld with them.
    shown = row.received >= minimum
    return research_pb2.NoticeStats(
        platform=row.platform,
        received=_count(row.received, minimum),
        decided=_count(row.decided, minimum),
        decided_within_24h=_count(row.decided_within_24h, minimum),
        share_decided_within_24h=row.share_decided_within_24h if shown else 0.0,
        median_hours_to_decision=row.median_hours_to_decision if shown else 0.0,
        removed=_count(row.removed, minimum),
        disabled=_count(row.disabled, minimum),
        rejected=_count(row.rejected, minimum),
    )


def notice_stats(bank: Bank, request: research_pb2.GetNoticeStatsRequest) -> research_pb2.GetNoticeStatsResponse:
    violations: list[FieldViolation] = []
    since, until = period(request.period, "start", "end", violations)
    if violations:
        raise InvalidArgument(violations)
    minimum = bank.settings.research_min_count
    rows = NoticeDesk(bank).stats(since, until)
    return research_pb2.GetNoticeStatsResponse(platforms=[notice_stats_message(r, minimum) for r in rows])
