"""From query signals to verdicts: which entries match, and how strongly."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass

from hashshare_client import Signal, Verdict
from hashshare_client.signal_types import SIGNAL_TYPES, Comparison, SignalType, view

from .index import Hit, SignalIndex
from .model import EntrySummary

VERDICT_RANK = {Verdict.NONE: 0, Verdict.REVIEW: 1, Verdict.BLOCK: 2}


@dataclass(frozen=True)
class Thresholds:
    """Distances (Hamming) or similarities (MinHash) for BLOCK and REVIEW."""

    block: float
    review: float


DEFAULT_THRESHOLDS: dict[str, Thresholds] = {t.name: Thresholds(t.block, t.review) for t in SIGNAL_TYPES.values()}


@dataclass(frozen=True)
class Evidence:
    signal_type: str
    distance: int
    similarity: float
    verdict: Verdict
    # Which view of the query matched ("", "rot90", "crop10:7", ...), and
    # whether it is within the type's ``pair`` threshold: two such signals of
    # one view block together.
    variant: str = ""
    paired: bool = False

    @property
    def strength(self) -> tuple[int, float]:
        return VERDICT_RANK[self.verdict], self.similarity


@dataclass(frozen=True)
class EntryMatch:
    entry_id: int
    category: str
    corroborations: int
    verdict: Verdict
    evidence: tuple[Evidence, ...]  # strongest first
    # Why the signals alone would block but the verdict is REVIEW.
    held_reasons: tuple[str, ...] = ()


# Held reasons: what keeps an entry whose signals block at REVIEW.
DISPUTED = "disputed"  # enough distinct members disagree, and no reviewer confirmed it
AWAITING_CORROBORATION = "awaiting_corroboration"  # no trusted submitter and no second member behind it
ALLOW_LISTED = "allow_listed"  # the query also matches known-benign content at BLOCK strength


@dataclass(frozen=True)
class VerdictPolicy:
    """The settings that hold a blocking entry at REVIEW."""

    disputes_to_review: int = 2


def held_reasons(summary: EntrySummary, policy: VerdictPolicy) -> tuple[str, ...]:
    """Why an entry that its signals alone would block is held at REVIEW.

    A reviewer's confirmation overrides disputes and the lack of trust. A
    provisional member's entry is corroborated by a second distinct member:
    one that submitted the same content (``corroborations``), or one that
    agreed or saw it too (``endorsers``), whatever the second member's own
    trust level."""
    if summary.confirmed:
        return ()
    reasons = []
    if summary.disputes >= policy.disputes_to_review:
        reasons.append(DISPUTED)
    if not summary.trusted and summary.corroborations + summary.endorsers < 2:
        reasons.append(AWAITING_CORROBORATION)
    return tuple(reasons)


@dataclass(frozen=True)
class SkippedSignal:
    signal_type: str
    reason: str


@dataclass(frozen=True)
class MatchOutcome:
    verdict: Verdict  # over every matched entry, returned or not
    matches: tuple[EntryMatch, ...]  # the strongest, at most the lookup's limit
    skipped: tuple[SkippedSignal, ...]
    limited: tuple[SkippedSignal, ...] = ()
    # Every matched entry and its verdict, in no order (sightings record them all).
    seen: tuple[tuple[int, Verdict], ...] = ()

    @property
    def total_matches(self) -> int:
        return len(self.seen)


@dataclass(frozen=True)
class Candidates:
    """Per entry, the strongest evidence of each signal type in each view of the query."""

    evidence: dict[int, dict[tuple[str, str], Evidence]]
    skipped: tuple[SkippedSignal, ...]
    limited: tuple[SkippedSignal, ...] = ()


# Perceptual image signals look at the same pixels in different ways: two of
# them agreeing on one view, even weakly, is strong evidence; one weak
# agreement is not.
IMAGE_PERCEPTUAL = frozenset(t.name for t in SIGNAL_TYPES.values() if t.name.startswith("image/"))


def _similarity(signal_type: SignalType, score: float) -> float:
    if signal_type.comparison is Comparison.HAMMING:
        return 1.0 - score / signal_type.bits
    if signal_type.comparison is Comparison.MINHASH:
        return score
    return 1.0


def find_candidates(
    index: SignalIndex, signals: Sequence[Signal], thresholds: Mapping[str, Thresholds] = DEFAULT_THRESHOLDS
) -> Candidates:
    """Search every signal at its REVIEW threshold and grade each hit.

    A lookup carries a hundred or more signals, most of them for the same
    few sub-indexes (the crop windows' pHash, say): they are searched in one
    batch per sub-index.
    """
    return find_candidates_many(index, [(signals, thresholds)])[0]


def find_candidates_many(
    index: SignalIndex,
    lookups: Sequence[tuple[Sequence[Signal], Mapping[str, Thresholds]]],
    executor: Executor | None = None,
    below: Sequence[int] | None = None,
) -> list[Candidates]:
    """``find_candidates`` of each ``(signals, thresholds)`` lookup, equal to calling it on
    each, with the signals of all of them searched in one batch per sub-index: the items
    of a MatchStream share the per-search costs. With ``executor``, large batches are split
    between its threads (numpy releases the GIL while it searches). With ``below``, lookup
    ``k`` sees only entries whose ids are below ``below[k]`` (the items of one batch indexed
    together, each of which looks at those before it only)."""
    evidences: list[dict[int, dict[tuple[str, str], Evidence]]] = []
    limits: list[dict[str, SkippedSignal]] = []
    # Per sub-index and radius: (lookup number, signal, unreliable) of every signal to search.
    batches: dict[tuple[str, str, str, float], list[tuple[int, Signal, bool]]] = {}
    for number, (signals, thresholds) in enumerate(lookups):
        evidences.append({})
        limited: dict[str, SkippedSignal] = {}
        limits.append(limited)
        for signal in signals:
            signal_type = SIGNAL_TYPES[signal.type]
            reason = _unreliable(signal_type, signal.quality)
            if reason:
                limited[signal.type] = SkippedSignal(signal.type, reason)
            looked = view(signal.variant)
            assert looked is not None  # the API layer refuses unknown views
            review = thresholds.get(signal.type, DEFAULT_THRESHOLDS[signal.type]).review
            key = (signal.type, signal.version, looked.region, review)
            batches.setdefault(key, []).append((number, signal, bool(reason)))
    searched = _search_batches(index, batches, executor)
    for batch, results in zip(batches.values(), searched, strict=True):
        for (number, signal, unreliable), hits in zip(batch, results, strict=True):
            if hits and below is not None:
                hits = [hit for hit in hits if hit.entry_id < below[number]]
            if hits:
                _grade(signal, unreliable, hits, lookups[number][1], evidences[number])
    return [
        Candidates(evidence, (), tuple(limited.values())) for evidence, limited in zip(evidences, limits, strict=True)
    ]


# Fewer signals of one sub-index than this are searched in one piece: a part's fixed costs
# would outweigh what a second thread gains.
_PARALLEL_PART = 200


def _search_batches(
    index: SignalIndex,
    batches: Mapping[tuple[str, str, str, float], Sequence[tuple[int, Signal, bool]]],
    executor: Executor | None,
) -> list[list[list[Hit]]]:
    """``index.search_many`` of each batch (per sub-index and radius), in parts over ``executor``'s
    threads when there is one; the results are those of one search of each batch."""
    if executor is None or sum(len(batch) for batch in batches.values()) < 2 * _PARALLEL_PART:
        return [index.search_many(*key[:3], [s.value for _, s, _ in batch], key[3]) for key, batch in batches.items()]
    parts: list[list[Future[list[list[Hit]]]]] = []
    for (type_name, version, region, radius), batch in batches.items():
        values = [s.value for _, s, _ in batch]
        size = max(_PARALLEL_PART, -(-len(values) // 2))
        parts.append(
            [
                executor.submit(index.search_many, type_name, version, region, values[i : i + size], radius)
                for i in range(0, len(values), size)
            ]
        )
    return [[hits for part in batch_parts for hits in part.result()] for batch_parts in parts]


def _grade(
    signal: Signal,
    unreliable: bool,
    hits: Sequence[Hit],
    thresholds: Mapping[str, Thresholds],
    evidence: dict[int, dict[tuple[str, str], Evidence]],
) -> None:
    """Record, per entry, the strongest evidence of this signal's view and type."""
    signal_type = SIGNAL_TYPES[signal.type]
    limits = thresholds.get(signal.type, DEFAULT_THRESHOLDS[signal.type])
    windows = view(signal.variant).windows  # type: ignore[union-attr]
    pair = _pair_threshold(signal_type, limits)
    key = (signal.variant, signal.type)
    for hit in hits:
        strong = signal_type.within(hit.score, limits.block) and not unreliable and not windows
        paired = signal_type.within(hit.score, pair) and not unreliable
        distance = int(hit.score) if signal_type.comparison is Comparison.HAMMING else 0
        found = Evidence(
            signal.type,
            distance,
            _similarity(signal_type, hit.score),
            Verdict.BLOCK if strong else Verdict.REVIEW,
            signal.variant,
            paired,
        )
        per_view = evidence.setdefault(hit.entry_id, {})
        best = per_view.get(key)
        if best is None or found.strength > best.strength:
            per_view[key] = found


def _unreliable(signal_type: SignalType, quality: int | None) -> str:
    """Why a signal may not block on its own ("" when it may).

    An image with too little detail, or a text too short, shares its few
    features with unrelated content by chance: it may still find a copy,
    but only for review.
    """
    if signal_type.min_quality is not None:
        # A copy of a picture that was good enough to submit loses detail
        # when downscaled or recompressed; only a lookup with half the
        # submission floor is as featureless as a blank image.
        floor: int | None = signal_type.min_quality // 2
    else:
        floor = signal_type.reliable_quality
    if floor is None or quality is None or quality >= floor:
        return ""
    what = "too little detail" if signal_type.min_quality else "too short"
    return f"quality {quality} is below {floor}: {what} to block on, review at most"


def _pair_threshold(signal_type: SignalType, limits: Thresholds) -> float:
    """The type's pair threshold, never stricter than the request's block threshold."""
    pair = signal_type.pair if signal_type.pair is not None else signal_type.block
    return limits.block if signal_type.looser_than(limits.block, pair) else pair


# Where a submission belongs depends only on the evidence that can block (``blocking_entries``):
# a hit beyond both the block and the pair thresholds is review-only and changes nothing, so
# clustering searches no further (pHash and dHash at 10 bits instead of 12: a third of the probes).
CLUSTERING_THRESHOLDS: dict[str, Thresholds] = {
    t.name: Thresholds(t.block, _pair_threshold(t, DEFAULT_THRESHOLDS[t.name])) for t in SIGNAL_TYPES.values()
}


# A pair needs two image signals of one view within their pair thresholds, so all but one of the
# types whose pair threshold is looser than their block threshold (pHash and dHash) can first be
# searched out to the block threshold alone: a pair has a member among the others, found in full.
_DEFERRED = sorted(
    t.name
    for t in SIGNAL_TYPES.values()
    if t.name in IMAGE_PERCEPTUAL and t.looser_than(CLUSTERING_THRESHOLDS[t.name].review, t.block)
)[1:]
_CLUSTERING_FIRST: dict[str, Thresholds] = {
    name: Thresholds(limits.block, limits.block) if name in _DEFERRED else limits
    for name, limits in CLUSTERING_THRESHOLDS.items()
}


def find_clustering_candidates(
    index: SignalIndex, items: Sequence[Sequence[Signal]], executor: Executor | None = None
) -> list[Candidates]:
    """Candidates of each item from which ``blocking_entries`` picks exactly what it picks from
    ``find_candidates_many`` at ``CLUSTERING_THRESHOLDS``, for less: the deferred types (pHash)
    are searched out to their block threshold, and an item is searched again in full only when
    one of its entries holds evidence that a deferred type could complete into a pair. Elsewhere a
    deferred type's hit between its block and pair thresholds is review-only evidence that neither
    makes an entry block nor outranks the BLOCK evidence of one that does. (pHash at 6 bits instead
    of 10: an eighth of the probes.)"""
    found = find_candidates_many(index, [(signals, _CLUSTERING_FIRST) for signals in items], executor)
    again = [n for n, candidates in enumerate(found) if _could_pair(candidates)]
    if again:
        redone = find_candidates_many(index, [(items[n], CLUSTERING_THRESHOLDS) for n in again], executor)
        for n, candidates in zip(again, redone, strict=True):
            found[n] = candidates
    return found


def _could_pair(candidates: Candidates) -> bool:
    """Whether some entry has paired evidence (within a pair threshold, short of BLOCK) of a type
    searched in full, which a deferred type's hit of the same view would make a pair."""
    return any(
        found.paired and found.verdict is not Verdict.BLOCK and found.signal_type not in _DEFERRED
        for per_view in candidates.evidence.values()
        for found in per_view.values()
    )


def _fused_verdict(evidence: Iterable[Evidence]) -> Verdict:
    """BLOCK on one strong agreement (never from a window view alone), or on
    two image signals of one view of the query both within their pair
    thresholds."""
    by_view: dict[str, list[Evidence]] = {}
    for found in evidence:
        if found.verdict is Verdict.BLOCK:
            return Verdict.BLOCK
        by_view.setdefault(found.variant, []).append(found)
    for found_here in by_view.values():
        if len({e.signal_type for e in found_here if e.paired} & IMAGE_PERCEPTUAL) >= 2:
            return Verdict.BLOCK
    return Verdict.REVIEW


def _best_per_type(evidence: Iterable[Evidence]) -> tuple[Evidence, ...]:
    best: dict[str, Evidence] = {}
    for found in evidence:
        if found.signal_type not in best or found.strength > best[found.signal_type].strength:
            best[found.signal_type] = found
    return tuple(sorted(best.values(), key=lambda e: e.strength, reverse=True))


# (sort key, entry id, verdict, held reasons, summary) of one matched entry.
_Ranked = tuple[tuple[int, tuple[int, float], int], int, Verdict, tuple[str, ...], EntrySummary]


def _rank(ranked: _Ranked) -> tuple[int, tuple[int, float], int]:
    return ranked[0]


def decide(
    candidates: Candidates,
    summaries: Mapping[int, EntrySummary],
    policy: VerdictPolicy = VerdictPolicy(),
    limit: int | None = None,
) -> MatchOutcome:
    """One verdict per active entry, strongest entries first, and the overall verdict.

    Allow-list items (negative ids) are never matches; matching one at BLOCK
    strength holds every blocking entry at REVIEW. Disabled entries match
    nothing. With ``limit``, only that many of the strongest entries are
    described in full: an upload in a cluster of a thousand near duplicates
    must not pay for a thousand descriptions it will not read."""
    allow_listed = any(
        entry_id < 0 and _fused_verdict(per_view.values()) is Verdict.BLOCK
        for entry_id, per_view in candidates.evidence.items()
    )
    ranked: list[_Ranked] = []
    for entry_id, per_view in candidates.evidence.items():
        summary = summaries.get(entry_id) if entry_id > 0 else None
        if summary is None or not summary.active or summary.disabled:
            continue  # an allow-list item, retracted since the index was read, or disabled
        verdict = _fused_verdict(per_view.values())
        held: tuple[str, ...] = ()
        if verdict is Verdict.BLOCK:
            held = held_reasons(summary, policy) + ((ALLOW_LISTED,) if allow_listed else ())
            if held:
                verdict = Verdict.REVIEW
        strongest = max(found.strength for found in per_view.values())
        ranked.append(((VERDICT_RANK[verdict], strongest, -entry_id), entry_id, verdict, held, summary))
    if limit is None or limit >= len(ranked):
        shown = sorted(ranked, key=_rank, reverse=True)
    else:
        shown = heapq.nlargest(limit, ranked, key=_rank)
    matches = tuple(
        EntryMatch(
            entry_id,
            summary.category,
            summary.corroborations,
            verdict,
            _best_per_type(candidates.evidence[entry_id].values()),
            held,
        )
        for _, entry_id, verdict, held, summary in shown
    )
    overall = max((r[2] for r in ranked), key=VERDICT_RANK.__getitem__, default=Verdict.NONE)
    seen = tuple((entry_id, verdict) for _, entry_id, verdict, _, _ in ranked)
    return MatchOutcome(overall, matches, candidates.skipped, candidates.limited, seen)


def blocking_entries(candidates: Candidates, summaries: Mapping[int, EntrySummary]) -> list[int]:
    """Entries with an active submission that these signals match at BLOCK
    strength on the signals alone, closest first: where a submission of the
    same content belongs. Held and disabled entries count too, so a copy of
    disabled content joins the disabled entry instead of starting a new one
    that blocks, and a second member's copy corroborates a held entry."""
    found = []
    for entry_id, per_view in candidates.evidence.items():
        summary = summaries.get(entry_id) if entry_id > 0 else None
        if summary is not None and summary.active and _fused_verdict(per_view.values()) is Verdict.BLOCK:
            found.append((_best_per_type(per_view.values())[0].strength, -entry_id))
    return [-negated for _, negated in sorted(found, reverse=True)]
