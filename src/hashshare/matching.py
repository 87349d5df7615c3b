"""From query signals to verdicts: which entries match, and how strongly."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from hashshare_client import Signal, Verdict
from hashshare_client.signal_types import SIGNAL_TYPES, Comparison, SignalType, view

from .index import SignalIndex
from .model import EntrySummary
from .summaries import EntryFacts

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


# An entry that its signals alone would block is held at REVIEW (decide(), over whole arrays):
# - DISPUTED: at least ``disputes_to_review`` distinct members disagree;
# - AWAITING_CORROBORATION: no trusted submitter, and no second distinct member behind it,
#   one that submitted the same content (corroborations) or agreed or saw it too
#   (endorsers), whatever that member's own trust level;
# - ALLOW_LISTED: the query also matches known-benign content at BLOCK strength.
# A reviewer's confirmation overrides the first two.


_NO_IDS = np.zeros(0, dtype=np.int64)
_NO_FLOATS = np.zeros(0, dtype=np.float64)
_NO_FLAGS = np.zeros(0, dtype=bool)


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
    # Every matched entry and the rank of its verdict (VERDICT_RANK), in no order:
    # sightings record them all.
    seen_entries: np.ndarray = field(default_factory=lambda: _NO_IDS)
    seen_ranks: np.ndarray = field(default_factory=lambda: _NO_IDS)

    @property
    def total_matches(self) -> int:
        return len(self.seen_entries)


# Signal types by number, in the registry's order: candidates carry the number.
_TYPES: tuple[SignalType, ...] = tuple(SIGNAL_TYPES.values())
_TYPE_NUMBER = {t.name: n for n, t in enumerate(_TYPES)}
_VERDICTS = (Verdict.NONE, Verdict.REVIEW, Verdict.BLOCK)  # by VERDICT_RANK


@dataclass(frozen=True, eq=False)
class Candidates:
    """Every hit of one lookup, graded: a row per (query signal, stored signal) within the
    REVIEW threshold, as columns (a lookup near a cluster has thousands of rows).

    ``strong``: BLOCK on its own; ``paired``: within the type's pair threshold (two image
    types paired in one view block together). ``variants`` numbers ``variant_names``."""

    entry_ids: np.ndarray = field(default_factory=lambda: _NO_IDS)
    types: np.ndarray = field(default_factory=lambda: _NO_IDS)
    variants: np.ndarray = field(default_factory=lambda: _NO_IDS)
    scores: np.ndarray = field(default_factory=lambda: _NO_FLOATS)
    similarities: np.ndarray = field(default_factory=lambda: _NO_FLOATS)
    strong: np.ndarray = field(default_factory=lambda: _NO_FLAGS)
    paired: np.ndarray = field(default_factory=lambda: _NO_FLAGS)
    variant_names: Sequence[str] = ()
    skipped: tuple[SkippedSignal, ...] = ()
    limited: tuple[SkippedSignal, ...] = ()

    def where(self, keep: np.ndarray) -> Candidates:
        """The rows ``keep`` (a bool mask) selects."""
        return replace(
            self,
            entry_ids=self.entry_ids[keep],
            types=self.types[keep],
            variants=self.variants[keep],
            scores=self.scores[keep],
            similarities=self.similarities[keep],
            strong=self.strong[keep],
            paired=self.paired[keep],
        )

    def graded(self) -> list[tuple[int, str, str, float, bool, bool]]:
        """The rows as (entry, type, variant, score, strong, paired), sorted: what equality
        compares (batched and single searches may order rows and number variants differently)."""
        return sorted(
            zip(
                self.entry_ids.tolist(),
                [_TYPES[n].name for n in self.types.tolist()],
                [self.variant_names[n] for n in self.variants.tolist()],
                self.scores.tolist(),
                self.strong.tolist(),
                self.paired.tolist(),
                strict=True,
            )
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Candidates):
            return NotImplemented
        return (self.skipped, self.limited) == (other.skipped, other.limited) and self.graded() == other.graded()

    __hash__ = None  # type: ignore[assignment]

    def entries(self) -> set[int]:
        """The matched entries (negative ids are allow-list items)."""
        return set(np.unique(self.entry_ids).tolist())

    @property
    def strength(self) -> np.ndarray:
        """Each row's ``Evidence.strength`` as one number that sorts alike: verdict rank
        twice over, plus the similarity (at most 1)."""
        strength: np.ndarray = np.where(self.strong, 2.0 * VERDICT_RANK[Verdict.BLOCK], 2.0) + self.similarities
        return strength


def _similarities(signal_type: SignalType, scores: np.ndarray) -> np.ndarray:
    if signal_type.comparison is Comparison.HAMMING:
        similarity: np.ndarray = 1.0 - scores / signal_type.bits
        return similarity
    if signal_type.comparison is Comparison.MINHASH:
        return scores.astype(np.float64)
    return np.ones(len(scores))


def _within(signal_type: SignalType, scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """``SignalType.within`` of whole arrays."""
    within: np.ndarray = scores >= thresholds if signal_type.comparison is Comparison.MINHASH else scores <= thresholds
    return within


# Perceptual image signals look at the same pixels in different ways: two of
# them agreeing on one view, even weakly, is strong evidence; one weak
# agreement is not.
IMAGE_PERCEPTUAL = frozenset(t.name for t in SIGNAL_TYPES.values() if t.name.startswith("image/"))
_IMAGE = np.array([t.name in IMAGE_PERCEPTUAL for t in _TYPES])


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
    below: Sequence[int] | None = None,
) -> list[Candidates]:
    """``find_candidates`` of each ``(signals, thresholds)`` lookup, equal to calling it on
    each, with the signals of all of them searched in one batch per sub-index: the items
    of a MatchStream share the per-search costs. With ``below``, lookup ``k`` sees only
    entries whose ids are below ``below[k]`` (the items of one batch indexed together, each
    of which looks at those before it only)."""
    limits: list[dict[str, SkippedSignal]] = []
    variant_numbers: dict[str, int] = {}
    # Per sub-index and radius, per signal to search: lookup number, value, variant number,
    # whether it is unreliable or a window, and its block and pair thresholds.
    batches: dict[tuple[str, str, str, float], list[tuple[int, bytes, int, bool, bool, float, float]]] = {}
    pairs: dict[tuple[str, Thresholds], float] = {}  # _pair_threshold, once per type and thresholds
    for number, (signals, thresholds) in enumerate(lookups):
        limited: dict[str, SkippedSignal] = {}
        limits.append(limited)
        for signal in signals:
            signal_type = SIGNAL_TYPES[signal.type]
            reason = _unreliable(signal_type, signal.quality)
            if reason:
                limited[signal.type] = SkippedSignal(signal.type, reason)
            looked = view(signal.variant)
            assert looked is not None  # the API layer refuses unknown views
            limit = thresholds.get(signal.type, DEFAULT_THRESHOLDS[signal.type])
            pair = pairs.get((signal.type, limit))
            if pair is None:
                pair = pairs[(signal.type, limit)] = _pair_threshold(signal_type, limit)
            variant = variant_numbers.setdefault(signal.variant, len(variant_numbers))
            key = (signal.type, signal.version, looked.region, limit.review)
            batches.setdefault(key, []).append(
                (
                    number,
                    signal.value,
                    variant,
                    bool(reason),
                    looked.windows,
                    limit.block,
                    pair,
                )
            )
    searches = [
        (t, version, region, [item[1] for item in batch], review)
        for (t, version, region, review), batch in batches.items()
    ]
    columns: list[tuple[np.ndarray, ...]] = [
        _grade(SIGNAL_TYPES[search[0]], batch, found.queries, found.entry_ids, found.scores)
        for search, batch, found in zip(searches, batches.values(), index.search_arrays_together(searches), strict=True)
        if len(found.queries)
    ]
    names = tuple(variant_numbers)
    if not columns:
        return [Candidates(variant_names=names, limited=tuple(limited.values())) for limited in limits]
    owners, entry_ids, types, variants, scores, similarities, strong, paired = (
        np.concatenate(c) if len(c) > 1 else c[0] for c in zip(*columns, strict=True)
    )
    if below is not None:
        seen = entry_ids < np.asarray(below, dtype=np.int64)[owners]
        owners, entry_ids, types, variants, scores, similarities, strong, paired = (
            column[seen] for column in (owners, entry_ids, types, variants, scores, similarities, strong, paired)
        )
    parts: list[np.ndarray | slice | None] = [slice(None)]  # one lookup: every row is its own
    if len(lookups) > 1:
        order = np.argsort(owners, kind="stable")
        bounds = np.searchsorted(owners[order], np.arange(len(lookups) + 1)).tolist()
        # None for a lookup without rows (most of a SubmitBatch's): no columns to slice.
        parts = [order[bounds[n] : bounds[n + 1]] if bounds[n] < bounds[n + 1] else None for n in range(len(lookups))]
    out = []
    for rows, limited in zip(parts, limits, strict=True):
        if rows is None:
            out.append(Candidates(variant_names=names, limited=tuple(limited.values())))
            continue
        out.append(
            Candidates(
                entry_ids[rows],
                types[rows],
                variants[rows],
                scores[rows],
                similarities[rows],
                strong[rows],
                paired[rows],
                names,
                limited=tuple(limited.values()),
            )
        )
    return out


def _grade(
    signal_type: SignalType,
    batch: Sequence[tuple[int, bytes, int, bool, bool, float, float]],
    queries: np.ndarray,
    entry_ids: np.ndarray,
    scores: np.ndarray,
) -> tuple[np.ndarray, ...]:
    """The hits of one sub-index's batch as candidate columns (lookup number first)."""
    lookup, _, variant, unreliable, windows, block, pair = (np.array(c)[queries] for c in zip(*batch, strict=True))
    strong = _within(signal_type, scores, block) & ~unreliable & ~windows
    paired = _within(signal_type, scores, pair) & ~unreliable
    types = np.full(len(queries), _TYPE_NUMBER[signal_type.name], dtype=np.int64)
    scores = scores.astype(np.float64)
    return lookup, entry_ids, types, variant, scores, _similarities(signal_type, scores), strong, paired


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
_DEFERRED_NUMBERS = np.array([t.name in _DEFERRED for t in _TYPES])
_CLUSTERING_FIRST: dict[str, Thresholds] = {
    name: Thresholds(limits.block, limits.block) if name in _DEFERRED else limits
    for name, limits in CLUSTERING_THRESHOLDS.items()
}


def find_clustering_candidates(index: SignalIndex, items: Sequence[Sequence[Signal]]) -> list[Candidates]:
    """Candidates of each item from which ``blocking_entries`` picks exactly what it picks from
    ``find_candidates_many`` at ``CLUSTERING_THRESHOLDS``, for less: the deferred types (pHash)
    are searched out to their block threshold, and an item is searched again in full only when
    one of its entries holds evidence that a deferred type could complete into a pair. Elsewhere a
    deferred type's hit between its block and pair thresholds is review-only evidence that neither
    makes an entry block nor outranks the BLOCK evidence of one that does. (pHash at 6 bits instead
    of 10: an eighth of the probes.)"""
    found = find_candidates_many(index, [(signals, _CLUSTERING_FIRST) for signals in items])
    again = [n for n, candidates in enumerate(found) if _could_pair(candidates)]
    if again:
        redone = find_candidates_many(index, [(items[n], CLUSTERING_THRESHOLDS) for n in again])
        for n, candidates in zip(again, redone, strict=True):
            found[n] = candidates
    return found


def _could_pair(candidates: Candidates) -> bool:
    """Whether some entry has paired evidence (within a pair threshold, short of BLOCK) of a type
    searched in full, which a deferred type's hit of the same view would make a pair."""
    if not len(candidates.types):
        return False
    return bool(np.any(candidates.paired & ~candidates.strong & ~_DEFERRED_NUMBERS[candidates.types]))


@dataclass(frozen=True)
class _Fused:
    """A lookup's candidate rows grouped by entry (ascending ids), each entry's rows by signal
    type, strongest first. Per entry: whether its signals alone block, its strongest
    evidence's strength, and where its rows start in ``order``; ``best`` marks the strongest
    row of each (entry, type) (its place in ``order``) and ``best_entry`` that row's entry."""

    entries: np.ndarray
    blocks: np.ndarray
    strongest: np.ndarray
    order: np.ndarray
    best_rows: np.ndarray
    best_entry: np.ndarray


def _fuse(candidates: Candidates) -> _Fused:
    """BLOCK on one strong agreement (never from a window view alone), or on two image
    signals of one view of the query both within their pair thresholds."""
    strength = candidates.strength
    # One sort; ties keep the order found (lexsort is stable).
    order = np.lexsort((-strength, candidates.types, candidates.entry_ids))
    entry_ids, types = candidates.entry_ids[order], candidates.types[order]
    new_entry = np.empty(len(order), dtype=bool)
    new_entry[0] = True
    np.not_equal(entry_ids[1:], entry_ids[:-1], out=new_entry[1:])
    best = new_entry.copy()
    best[1:] |= types[1:] != types[:-1]
    starts = np.flatnonzero(new_entry)
    blocks = np.logical_or.reduceat(candidates.strong[order], starts)
    paired = candidates.paired & _IMAGE[candidates.types]
    if paired.any():
        # Distinct (entry, view, type) triples, then the (entry, view) pairs with two types.
        entries = entry_ids[starts]
        place = np.searchsorted(entries, candidates.entry_ids[paired])
        views = max(len(candidates.variant_names), 1)
        triples = np.unique((place * views + candidates.variants[paired]) * len(_TYPES) + candidates.types[paired])
        pairs, counts = np.unique(triples // len(_TYPES), return_counts=True)
        blocks[pairs[counts >= 2] // views] = True
    strongest = np.maximum.reduceat(strength[order], starts)
    best_rows = np.flatnonzero(best)
    best_entry = np.cumsum(new_entry)[best_rows] - 1
    return _Fused(entry_ids[starts], blocks, strongest, order, best_rows, best_entry)


def _facts(entries: np.ndarray, summaries: Mapping[int, EntrySummary] | EntryFacts) -> EntryFacts:
    """Facts over exactly ``entries``: ``summaries`` if it is (the caller's word), else read
    from the summary objects."""
    return summaries if isinstance(summaries, EntryFacts) else EntryFacts.of(entries, summaries)


def decide(
    candidates: Candidates,
    summaries: Mapping[int, EntrySummary] | EntryFacts,
    policy: VerdictPolicy = VerdictPolicy(),
    limit: int | None = None,
) -> MatchOutcome:
    """One verdict per active entry, strongest entries first, and the overall verdict.

    ``summaries``: of the matched entries, or their facts (``EntryFacts`` over exactly the
    positive ids among ``candidates.entry_ids``, ascending). Allow-list items (negative ids)
    are never matches; matching one at BLOCK strength holds every blocking entry at REVIEW.
    Disabled entries match nothing. With ``limit``, only that many of the strongest entries
    are described in full: an upload in a cluster of a thousand near duplicates must not
    pay for a thousand descriptions it will not read."""
    if not len(candidates.entry_ids):
        return MatchOutcome(Verdict.NONE, (), candidates.skipped, candidates.limited)
    fused = _fuse(candidates)
    first = int(np.searchsorted(fused.entries, 1))  # the positive ids (entries) follow the others
    allow_listed = bool(fused.blocks[:first].any())
    facts = _facts(fused.entries[first:], summaries)
    live = np.flatnonzero(facts.found & facts.active & ~facts.disabled)
    if not len(live):
        return MatchOutcome(Verdict.NONE, (), candidates.skipped, candidates.limited)
    blocks = fused.blocks[first:][live]
    open_to_doubt = blocks & ~facts.confirmed[live]
    disputed = open_to_doubt & (facts.disputes[live] >= policy.disputes_to_review)
    support = facts.corroborations[live] + facts.endorsers[live]
    awaiting = open_to_doubt & ~facts.trusted[live] & (support < 2)
    held = disputed | awaiting | (blocks & allow_listed)
    ranks = np.where(blocks & ~held, VERDICT_RANK[Verdict.BLOCK], VERDICT_RANK[Verdict.REVIEW])
    ids = fused.entries[first:][live]
    # Strongest first: verdict, then evidence, then the older entry.
    order = np.lexsort((ids, -fused.strongest[first:][live], -ranks))
    shown = order if limit is None else order[:limit]
    evidence = _best_per_type(candidates, fused, first + live[shown])
    matches = tuple(
        EntryMatch(
            entry_id,
            facts.category_names[code],
            corroborations,
            _VERDICTS[rank],
            found,
            ((DISPUTED,) if is_disputed else ())
            + ((AWAITING_CORROBORATION,) if is_awaiting else ())
            + ((ALLOW_LISTED,) if is_blocking and allow_listed else ()),
        )
        for entry_id, code, corroborations, rank, found, is_disputed, is_awaiting, is_blocking in zip(
            ids[shown].tolist(),
            facts.category_codes[live[shown]].tolist(),
            facts.corroborations[live[shown]].tolist(),
            ranks[shown].tolist(),
            evidence,
            disputed[shown].tolist(),
            awaiting[shown].tolist(),
            blocks[shown].tolist(),
            strict=True,
        )
    )
    return MatchOutcome(_VERDICTS[int(ranks.max())], matches, candidates.skipped, candidates.limited, ids, ranks)


def _best_per_type(candidates: Candidates, fused: _Fused, entries: np.ndarray) -> list[tuple[Evidence, ...]]:
    """For each of ``entries`` (places in ``fused.entries``), the strongest evidence of each
    signal type, strongest first."""
    wanted = np.full(len(fused.entries), -1, dtype=np.int64)
    wanted[entries] = np.arange(len(entries))
    owners = wanted[fused.best_entry]
    chosen = owners >= 0
    rows = fused.order[fused.best_rows[chosen]]
    out: list[list[Evidence]] = [[] for _ in entries]
    for owner, number, score, similarity, strong, variant, paired in zip(
        owners[chosen].tolist(),
        candidates.types[rows].tolist(),
        candidates.scores[rows].tolist(),
        candidates.similarities[rows].tolist(),
        candidates.strong[rows].tolist(),
        candidates.variants[rows].tolist(),
        candidates.paired[rows].tolist(),
        strict=True,
    ):
        signal_type = _TYPES[number]
        out[owner].append(
            Evidence(
                signal_type.name,
                int(score) if signal_type.comparison is Comparison.HAMMING else 0,
                similarity,
                Verdict.BLOCK if strong else Verdict.REVIEW,
                candidates.variant_names[variant],
                paired,
            )
        )
    return [tuple(sorted(found, key=lambda e: e.strength, reverse=True)) for found in out]


def blocking_entries(candidates: Candidates, summaries: Mapping[int, EntrySummary] | EntryFacts) -> list[int]:
    """Entries with an active submission that these signals match at BLOCK
    strength on the signals alone, closest first: where a submission of the
    same content belongs. Held and disabled entries count too, so a copy of
    disabled content joins the disabled entry instead of starting a new one
    that blocks, and a second member's copy corroborates a held entry."""
    if not len(candidates.entry_ids):
        return []
    fused = _fuse(candidates)
    first = int(np.searchsorted(fused.entries, 1))
    facts = _facts(fused.entries[first:], summaries)
    chosen = np.flatnonzero(facts.found & facts.active & fused.blocks[first:])
    ids = fused.entries[first:][chosen]
    order = np.lexsort((ids, -fused.strongest[first:][chosen]))
    return [int(i) for i in ids[order]]
