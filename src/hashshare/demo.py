"""``hashshare-server demo-seed``: a made-up but plausible bank for trying the
quarterly review (``hashshare report``) without real data.

It writes straight into a store, like ``import``, because the history it
invents (removals, re-uploads and platform actions spread over two quarters)
cannot be replayed through the API, which stamps sightings with the time of
the call. Everything comes from one seeded random generator: the same seed
gives the same bank. Hashes are random PDQ values, not hashes of any content.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from hashshare_client import DiscoveryMethod, LegalBasis, Signal, signal_types
from hashshare_client.report.quarter import Quarter

from . import members
from .model import (
    DisputeReason,
    Feedback,
    Member,
    NoticeDecision,
    NoticeDraft,
    NoticeState,
    Opinion,
    Sighting,
    SubmissionDraft,
)
from .store.base import BatchSubmission, Store, submitted
from .store.rollups import HOUR, Action, ActionRecord

PLATFORMS = ("Demo Social", "Demo Video", "Demo Chat", "Demo Forum", "Demo Shorts", "Demo Market")
CATEGORIES = ("hate_speech", "hate_speech.ethnicity", "hate_speech.religion", "violent_extremism")
RESEARCHER = "Demo Research Lab"
AUTHORITY = "Demo Authority"
DAY = 24 * HOUR


@dataclass(frozen=True)
class DemoBank:
    researcher_token: str
    authority_token: str
    entries: int
    sightings: int
    actions: int


def _signal(rng: random.Random) -> Signal:
    return Signal(signal_types.PDQ.name, signal_types.PDQ.version, rng.randbytes(32), 90)


def _draft(rng: random.Random, signal: Signal, category: str, removed_at: float) -> SubmissionDraft:
    noticed = rng.random() < 0.6
    return SubmissionDraft(
        signals=(signal,),
        category=category,
        legal_basis=LegalBasis.LOCAL_LAW if noticed else LegalBasis.COMMUNITY_GUIDELINES,
        discovery_method=DiscoveryMethod.AUTHORITY_NOTICE if noticed else DiscoveryMethod.PROACTIVE,
        notice_reference=f"DEMO-{rng.randrange(10_000):04d}" if noticed else "",
        # Most notices are handled within a day; some take days.
        notice_received_at=removed_at - rng.choice((2, 5, 11, 20, 30, 60, 100)) * HOUR * rng.random()
        if noticed
        else None,
        removed_at=removed_at,
    )


def seed(store: Store, quarter: str, entries_per_quarter: int = 60, rng_seed: int = 2026) -> DemoBank:
    """Fill ``store`` with platforms, removals, re-uploads and actions over
    ``quarter`` (e.g. "2026Q4") and the quarter before; nothing after now."""
    rng = random.Random(rng_seed)
    now = time.time()
    reviewed = Quarter.parse(quarter)
    previous_start, end = reviewed.previous().start.timestamp(), reviewed.end.timestamp()
    last = min(end, now) - HOUR
    made = time.time()
    platforms = [members.create_member(store, name, ["trust_safety", "platform"], made)[0] for name in PLATFORMS]
    researcher = members.create_member(store, RESEARCHER, ["researcher"], made)[2]
    authority_member, _, authority = members.create_member(store, AUTHORITY, ["authority"], made)
    weights = [6, 5, 3, 2, 1, 1]  # a few large platforms and a long tail
    sightings: list[Sighting] = []
    actions: dict[int, list[ActionRecord]] = {p.member_id: [] for p in platforms}
    entries = 0
    for n in range(2 * entries_per_quarter):
        removed_at = rng.uniform(previous_start, last - DAY)
        signal, category = _signal(rng), rng.choice(CATEGORIES)
        first = rng.choices(platforms, weights)[0]
        draft = _draft(rng, signal, category, removed_at)
        batch = [BatchSubmission(f"demo-{n}", bytes(32), draft, created_at=removed_at)]
        outcome = submitted(store.submit_many(first.member_id, batch, removed_at)[0])
        assert outcome is not None
        entries += 1
        if draft.notice_received_at is not None:
            _notice(store, authority_member.member_id, first.member_id, f"demo-{n}", draft, outcome.entry_id)
        others = [p for p in platforms if p != first]
        _feedback(rng, store, others, outcome.entry_id, removed_at, last, f"demo-{n}")
        for k, other in enumerate(rng.sample(others, rng.choice((0, 0, 1, 1, 2, 3)))):
            joined_at = min(last, removed_at + rng.expovariate(1 / (2 * DAY)))
            joining = _draft(rng, signal, category, joined_at)
            join = BatchSubmission(f"demo-{n}-{k}", bytes(32), joining, outcome.entry_id, created_at=joined_at)
            store.submit_many(other.member_id, [join], joined_at)
        # Heavy-tailed spread: most entries are seen a few times, some hundreds.
        for _ in range(min(400, int(rng.paretovariate(1.2) * 3))):
            at = removed_at + rng.expovariate(1 / (5 * DAY))
            if at > last:
                continue
            seer = rng.choices(platforms, weights)[0]
            sightings.append(Sighting(outcome.entry_id, seer.member_id, at, "BLOCK"))
            _act(rng, actions[seer.member_id], outcome.entry_id, at, len(sightings))
    store.add_sightings(sightings)
    reported = 0
    for member_id, records in actions.items():
        for start in range(0, len(records), 1000):
            reported += store.report_actions(
                member_id, f"demo-actions-{start}", bytes(32), records[start : start + 1000], now
            )
    return DemoBank(researcher, authority, entries, len(sightings), reported)


def _notice(
    store: Store, authority_id: int, platform_id: int, name: str, draft: SubmissionDraft, entry_id: int
) -> None:
    """The authority's notice behind a removal, filed when the platform received it and
    decided when the content was removed."""
    assert draft.notice_received_at is not None and draft.removed_at is not None
    notice = store.file_notice(
        authority_id,
        f"{name}-notice",
        bytes(32),
        NoticeDraft(
            platform_id,
            f"https://demo.example/posts/{name}",
            draft.signals,
            draft.category,
            LegalBasis.LOCAL_LAW,
            "Decree 72/2013, Article 5",
            "demo notice",
        ),
        (),
        draft.notice_received_at,
    )
    decision = NoticeDecision(NoticeState.REMOVED, "", platform_id, draft.removed_at, entry_id)
    store.answer_notice(notice.notice_id, f"{name}-answer", bytes(32), decision)


def _feedback(
    rng: random.Random, store: Store, others: Sequence[Member], entry_id: int, after: float, last: float, name: str
) -> None:
    """Other platforms mostly agree; now and then one disputes an entry."""
    for k, member in enumerate(rng.sample(list(others), rng.choice((0, 1, 1, 2)))):
        disputes = rng.random() < 0.15
        feedback = Feedback(
            entry_id,
            member.member_id,
            Opinion.DISAGREE if disputes else rng.choice((Opinion.AGREE, Opinion.SEEN_TOO)),
            rng.choice((DisputeReason.LAWFUL, DisputeReason.NOT_HATEFUL)) if disputes else DisputeReason.NONE,
            "",
            min(last, after + rng.uniform(1, 72) * HOUR),
        )
        store.give_feedback(member.member_id, f"{name}-feedback-{k}", bytes(32), feedback)


def _act(rng: random.Random, into: list[ActionRecord], entry_id: int, at: float, item: int) -> None:
    """What a platform did with one re-upload; bigger platforms block more often."""
    roll = rng.random()
    if roll < 0.65:
        into.append(ActionRecord(entry_id, Action.BLOCKED, at, item.to_bytes(16, "big")))
    elif roll < 0.9:
        key = item.to_bytes(16, "big")
        into.append(ActionRecord(entry_id, Action.SENT_TO_REVIEW, at, key))
        later = at + rng.uniform(0.5, 30) * HOUR
        if later < time.time():
            verdict = Action.REMOVED_AFTER_REVIEW if rng.random() < 0.8 else Action.ALLOWED_AFTER_REVIEW
            into.append(ActionRecord(entry_id, verdict, later, key))


def summary(bank: DemoBank, names: Sequence[str] = PLATFORMS) -> str:
    return (
        f"seeded {bank.entries} entries from {len(names)} platforms, {bank.sightings} re-uploads "
        f"and {bank.actions} platform actions.\nresearcher token: {bank.researcher_token}\n"
        f"authority token: {bank.authority_token}"
    )
