"""Notices under the Code of Conduct, independent of gRPC: the authority
files them to a platform, routed to the platform's contact points; the
platform's trust-and-safety team decides them; a removal becomes a bank
entry as the platform's own Submit would; the research figures count how
fast platforms decide."""

from __future__ import annotations

import hashlib
import statistics
import threading
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

from hashshare_client import DiscoveryMethod

from .bank import Bank
from .errors import InvalidArgument, NotFound, PermissionDenied
from .model import (
    IdKind,
    Notice,
    NoticeDecision,
    NoticeDraft,
    NoticeFilter,
    NoticeState,
    Principal,
    Role,
    SubmissionDraft,
    format_id,
)

DAY_SECONDS = 86_400.0
DECISIONS = frozenset({NoticeState.REMOVED, NoticeState.DISABLED, NoticeState.REJECTED})
# A removal or disabling takes the content down: the bank keeps its hashes.
TAKEN_DOWN = frozenset({NoticeState.REMOVED, NoticeState.DISABLED})
# Roles a notice may be addressed to: a platform's pipeline or its trust-and-safety team.
ADDRESSABLE = frozenset({Role.PLATFORM, Role.TRUST_SAFETY})


@dataclass(frozen=True)
class PlatformNoticeStats:
    """Raw figures of one platform; the API suppresses the small ones."""

    platform: str  # a pseudonym (Bank.pseudonym), never a name or id
    received: int
    decided: int
    decided_within_24h: int
    removed: int
    disabled: int
    rejected: int
    median_hours_to_decision: float  # over decided notices; 0 when none

    @property
    def share_decided_within_24h(self) -> float:
        return self.decided_within_24h / self.received if self.received else 0.0


def sees_every_notice(principal: Principal) -> bool:
    return principal.has(Role.AUTHORITY) or principal.has(Role.ADMIN)


class NoticeDesk:
    def __init__(self, bank: Bank) -> None:
        self.bank = bank
        # Two answers to one notice racing in this process must not both
        # store an entry before one of them is refused. (Across processes the
        # store still refuses the second answer; its entry would remain.)
        self._answering = threading.Lock()

    def file(self, principal: Principal, request_id: str, request_digest: bytes, draft: NoticeDraft) -> Notice:
        store = self.bank.store
        platform = store.get_member(draft.platform_id)
        if platform is None:
            raise NotFound(f"no member {format_id(IdKind.MEMBER, draft.platform_id)}")
        if not platform.roles & ADDRESSABLE:
            raise InvalidArgument.field("platform_id", "notices go to a member with the platform or trust_safety role")
        # Copied now: the routing a notice had stays on record if the directory changes.
        routed_to = store.contact_points([platform.member_id]).get(platform.member_id, ())
        return store.file_notice(principal.member_id, request_id, request_digest, draft, routed_to, self.bank.now())

    def answer(
        self,
        principal: Principal,
        request_id: str,
        request_digest: bytes,
        notice_id: int,
        state: NoticeState,
        reason: str,
        removed_at: float | None,
    ) -> Notice:
        with self._answering:
            return self._answer(principal, request_id, request_digest, notice_id, state, reason, removed_at)

    def _answer(
        self,
        principal: Principal,
        request_id: str,
        request_digest: bytes,
        notice_id: int,
        state: NoticeState,
        reason: str,
        removed_at: float | None,
    ) -> Notice:
        notice = self.get(principal, notice_id)
        if notice.platform_id != principal.member_id:
            raise PermissionDenied("only the platform a notice was filed to may answer it")
        now = self.bank.now()
        entry_id = None
        if notice.state is NoticeState.OPEN and state in TAKEN_DOWN:
            # The platform's own submission, under a request id of the notice:
            # a retried answer joins the same entry instead of adding one.
            outcome = self.bank.submit(
                principal,
                f"{format_id(IdKind.NOTICE, notice_id)}:takedown",
                hashlib.sha256(f"notice {notice_id}".encode()).digest(),
                SubmissionDraft(
                    signals=notice.draft.signals,
                    category=notice.draft.category,
                    legal_basis=notice.draft.legal_basis,
                    discovery_method=DiscoveryMethod.AUTHORITY_NOTICE,
                    notice_reference=format_id(IdKind.NOTICE, notice_id),
                    notice_received_at=notice.filed_at,
                    removed_at=removed_at if removed_at is not None else now,
                ),
            )
            entry_id = outcome.entry_id
        decision = NoticeDecision(state, reason, principal.member_id, now, entry_id)
        return self.bank.store.answer_notice(notice_id, request_id, request_digest, decision)

    def get(self, principal: Principal, notice_id: int) -> Notice:
        notice = self.bank.store.get_notice(notice_id)
        if notice is None:
            raise NotFound(f"no notice {format_id(IdKind.NOTICE, notice_id)}")
        if not sees_every_notice(principal) and notice.platform_id != principal.member_id:
            raise PermissionDenied("a platform sees only the notices filed to it")
        return notice

    def list_for(self, principal: Principal, after_id: int, limit: int, where: NoticeFilter) -> list[Notice]:
        if not sees_every_notice(principal):
            if where.platform_id not in (None, principal.member_id):
                raise PermissionDenied("a platform sees only the notices filed to it")
            where = NoticeFilter(principal.member_id, where.state, where.filed_since, where.filed_until)
        return self.bank.store.list_notices(after_id, limit, where)

    def _all(self, where: NoticeFilter) -> Iterator[Notice]:
        after = 0
        while page := self.bank.store.list_notices(after, 1000, where):
            yield from page
            after = page[-1].notice_id

    def stats(self, filed_since: float | None, filed_until: float | None) -> list[PlatformNoticeStats]:
        """Per platform, the notices filed in [filed_since, filed_until) and how fast they were decided."""
        by_platform: dict[int, list[Notice]] = defaultdict(list)
        for notice in self._all(NoticeFilter(filed_since=filed_since, filed_until=filed_until)):
            by_platform[notice.platform_id].append(notice)
        rows = []
        for platform_id, notices in by_platform.items():
            delays = [
                n.seconds_to_decision for n in notices if n.state in DECISIONS and n.seconds_to_decision is not None
            ]
            states = [n.state for n in notices]
            rows.append(
                PlatformNoticeStats(
                    platform=self.bank.pseudonym(platform_id),
                    received=len(notices),
                    decided=len(delays),
                    decided_within_24h=sum(1 for d in delays if d <= DAY_SECONDS),
                    removed=states.count(NoticeState.REMOVED),
                    disabled=states.count(NoticeState.DISABLED),
                    rejected=states.count(NoticeState.REJECTED),
                    median_hours_to_decision=statistics.median(delays) / 3600 if delays else 0.0,
                )
            )
        return sorted(rows, key=lambda r: r.platform)
