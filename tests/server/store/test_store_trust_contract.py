"""The store contract of trust and safety, on SQLite and Redis: trust levels,
submission quotas and flags, feedback, reviews, the allow-list, and the
verdict inputs entry_summaries reports."""

from __future__ import annotations

import pytest

from hashshare.errors import InvalidArgument, NotFound
from hashshare.model import (
    DisputeReason,
    EntryChanged,
    EntrySummary,
    Feedback,
    FeedbackOutcome,
    MemberFeedbackStats,
    Opinion,
    Review,
    ReviewDecision,
    SignalsAdded,
    SignalsRemoved,
    TrustLevel,
)
from hashshare.store import Store
from tests.server.store.test_store_contract import (
    DAY,
    NOW,
    T_AND_S,
    all_changes,
    digest,
    draft,
    member,
    pdq,
    retract,
    sha256,
    submit,
)


def opinion(store: Store, member_id: int, entry_id: int, kind: Opinion, at: float = NOW, request: str = "") -> None:
    reason = DisputeReason.LAWFUL if kind is Opinion.DISAGREE else DisputeReason.NONE
    request_id = request or f"fb-{member_id}-{entry_id}-{kind}-{at}"
    store.give_feedback(member_id, request_id, digest(request_id), Feedback(entry_id, member_id, kind, reason, "", at))


def summary(store: Store, entry_id: int) -> EntrySummary:
    return store.entry_summaries([entry_id])[entry_id]


def test_a_new_member_is_provisional_unless_created_trusted_and_its_level_can_change(store: Store) -> None:
    provisional = store.create_member("newcomer", T_AND_S, NOW)
    trusted = store.create_member("veteran", T_AND_S, NOW, TrustLevel.TRUSTED)

    assert provisional.trust_level is TrustLevel.PROVISIONAL and trusted.trust_level is TrustLevel.TRUSTED
    assert [m.trust_level for m in store.list_members()] == [TrustLevel.PROVISIONAL, TrustLevel.TRUSTED]
    promoted = store.set_trust_level(provisional.member_id, TrustLevel.TRUSTED)
    assert promoted.trust_level is TrustLevel.TRUSTED
    assert store.get_member(provisional.member_id) == promoted
    with pytest.raises(NotFound):
        store.set_trust_level(99, TrustLevel.TRUSTED)


def test_an_entry_of_provisional_members_only_is_untrusted_until_a_trusted_one_stands_behind_it(store: Store) -> None:
    newcomer = member(store, "newcomer", TrustLevel.PROVISIONAL)
    veteran = member(store, "veteran")
    submit(store, newcomer, "a", draft(sha256("a")))

    assert summary(store, 1) == EntrySummary(1, "violent_extremism", 1, True, trusted=False)
    submit(store, veteran, "b", draft(pdq("a")), join=1)
    assert summary(store, 1).trusted
    retract(store, veteran, "ret-b", 1)
    assert not summary(store, 1).trusted
    retract(store, newcomer, "ret-a", 1)
    assert summary(store, 1) == EntrySummary(1, "violent_extremism", 0, False)  # nobody left: nothing to hold


def test_changing_a_trust_level_tells_the_feed_which_entries_it_touches(store: Store) -> None:
    newcomer, other = member(store, "newcomer", TrustLevel.PROVISIONAL), member(store, "other")
    submit(store, newcomer, "a", draft(sha256("a")))
    submit(store, other, "b", draft(sha256("b")))
    submit(store, newcomer, "c", draft(sha256("c")))
    retract(store, newcomer, "ret-c", 3)
    before = store.feed_position()

    store.set_trust_level(newcomer, TrustLevel.TRUSTED)

    assert all_changes(store, before)[0] == [EntryChanged((1,))]  # not the retracted entry 3, not entry 2
    assert summary(store, 1).trusted


def test_the_submission_quota_is_a_sliding_window_and_going_over_flags_the_member_once(store: Store) -> None:
    alpha = member(store, "alpha")

    assert store.take_submit_quota(alpha, 2, 5, 60.0, NOW, "too fast") == 2
    assert store.take_submit_quota(alpha, 2, 5, 60.0, NOW + 10, "too fast") == 2
    assert not store.get_member(alpha).flagged  # type: ignore[union-attr]
    assert store.take_submit_quota(alpha, 3, 5, 60.0, NOW + 20, "too fast") == 1  # one left; two refused
    flagged = store.get_member(alpha)
    assert flagged is not None and (flagged.flagged_at, flagged.flag_reason) == (NOW + 20, "too fast")
    assert store.take_submit_quota(alpha, 1, 5, 60.0, NOW + 30, "again") == 0
    assert store.get_member(alpha) == flagged  # flagged once, at the first refusal
    # The first two grants leave the window 60 s after they were made.
    assert store.take_submit_quota(alpha, 5, 5, 60.0, NOW + 60, "too fast") == 2
    assert store.take_submit_quota(alpha, 1, 5, 60.0, NOW + 81, "too fast") == 1
    # Other members have their own window.
    assert store.take_submit_quota(member(store, "beta"), 5, 5, 60.0, NOW + 81, "too fast") == 5

    cleared = store.clear_flag(alpha)
    assert not cleared.flagged and cleared.flag_reason == ""
    assert store.get_member(alpha) == cleared
    assert store.clear_flag(alpha) == cleared
    with pytest.raises(NotFound):
        store.clear_flag(99)


def test_feedback_is_one_opinion_per_member_replaced_by_a_later_one(store: Store) -> None:
    alpha, beta, gamma = member(store, "alpha"), member(store, "beta"), member(store, "gamma")
    submit(store, alpha, "a", draft(sha256("a")))
    before = store.feed_position()

    first = store.give_feedback(
        beta, "fb-1", digest("fb-1"), Feedback(1, beta, Opinion.DISAGREE, DisputeReason.LAWFUL, "a news photo", NOW)
    )
    assert first == FeedbackOutcome(1, agreements=0, disputes=1, seen_too=0)
    opinion(store, gamma, 1, Opinion.SEEN_TOO)
    opinion(store, beta, 1, Opinion.AGREE, at=NOW + 5)  # replaces its dispute

    trust = store.entry_trust(1)
    assert [(f.member_id, f.opinion, f.reason) for f in trust.feedback] == [
        (gamma, Opinion.SEEN_TOO, DisputeReason.NONE),
        (beta, Opinion.AGREE, DisputeReason.NONE),
    ]
    assert (trust.count(Opinion.AGREE), trust.count(Opinion.DISAGREE), trust.count(Opinion.SEEN_TOO)) == (1, 0, 1)
    assert all_changes(store, before)[0] == [EntryChanged((1,))] * 3


def test_feedback_is_idempotent_on_its_request_id_and_refuses_unknown_entries(store: Store) -> None:
    alpha, beta = member(store, "alpha"), member(store, "beta")
    submit(store, alpha, "a", draft(sha256("a")))
    dispute = Feedback(1, beta, Opinion.DISAGREE, DisputeReason.BAD_HASH, "", NOW)
    first = store.give_feedback(beta, "fb", digest("fb"), dispute)
    opinion(store, beta, 1, Opinion.AGREE, at=NOW + 1)
    position = store.feed_position()

    # A replay answers the first outcome and changes nothing, even after a later opinion.
    assert store.give_feedback(beta, "fb", digest("fb"), dispute) == first
    assert store.feed_position() == position
    assert [f.opinion for f in store.entry_trust(1).feedback] == [Opinion.AGREE]
    with pytest.raises(InvalidArgument):
        store.give_feedback(beta, "fb", digest("something else"), dispute)
    with pytest.raises(NotFound):
        store.give_feedback(beta, "fb-2", digest("fb-2"), Feedback(7, beta, Opinion.AGREE, DisputeReason.NONE, "", NOW))
    assert store.feed_position() == position


def test_summaries_count_disputes_and_endorsers_other_than_the_submitters(store: Store) -> None:
    alpha, beta, gamma, delta = (member(store, n) for n in ("alpha", "beta", "gamma", "delta"))
    submit(store, alpha, "a", draft(sha256("a")))
    opinion(store, alpha, 1, Opinion.AGREE)  # a submitter agreeing adds nobody
    opinion(store, beta, 1, Opinion.SEEN_TOO)
    opinion(store, gamma, 1, Opinion.DISAGREE)
    opinion(store, delta, 1, Opinion.DISAGREE)

    found = summary(store, 1)
    assert (found.endorsers, found.disputes) == (1, 2)
    submit(store, beta, "b", draft(pdq("a")), join=1)  # beta now stands behind it as a submitter
    assert summary(store, 1).endorsers == 0


def test_reviews_confirm_disable_and_enable_an_entry(store: Store) -> None:
    alpha, reviewer = member(store, "alpha"), member(store, "authority")
    submit(store, alpha, "a", draft(sha256("a")))
    before = store.feed_position()

    confirmed = store.review_entry(Review(1, ReviewDecision.CONFIRM, "", reviewer, NOW))
    assert (confirmed.confirmed, confirmed.disabled) == (True, False)
    assert (summary(store, 1).confirmed, summary(store, 1).disabled) == (True, False)
    disabled = store.review_entry(Review(1, ReviewDecision.DISABLE, "lawful satire", reviewer, NOW + 1))
    assert (disabled.confirmed, disabled.disabled) == (False, True)
    assert disabled.review == Review(1, ReviewDecision.DISABLE, "lawful satire", reviewer, NOW + 1)
    assert (summary(store, 1).confirmed, summary(store, 1).disabled) == (False, True)
    enabled = store.review_entry(Review(1, ReviewDecision.ENABLE, "appeal upheld", reviewer, NOW + 2))
    assert (enabled.confirmed, enabled.disabled) == (False, False)
    assert store.entry_trust(1) == enabled
    assert all_changes(store, before)[0] == [EntryChanged((1,))] * 3
    with pytest.raises(NotFound):
        store.review_entry(Review(9, ReviewDecision.CONFIRM, "", reviewer, NOW))


def test_the_allow_list_reaches_the_feed_under_negative_ids(store: Store) -> None:
    admin = member(store, "admin")
    before = store.feed_position()

    flag = store.add_allowed(admin, "al-1", digest("al-1"), [pdq("flag"), sha256("flag")], "national flag", NOW)
    meme = store.add_allowed(admin, "al-2", digest("al-2"), [pdq("meme")], "common meme", NOW + 1)

    assert (flag.allow_id, flag.label, flag.added_by, flag.created_at) == (1, "national flag", admin, NOW)
    assert flag.signals == (pdq("flag"), sha256("flag"))
    added = all_changes(store, before)[0]
    assert [type(c) for c in added] == [SignalsAdded, SignalsAdded]
    rows = [r for c in added if isinstance(c, SignalsAdded) for r in c.rows]
    assert [r.entry_id for r in rows] == [-1, -1, -2]
    assert all(r.row_id < 0 for r in rows) and len({r.row_id for r in rows}) == 3
    assert sorted(store.allowed_signals(), key=lambda r: -r.row_id) == rows
    assert list(store.active_signals()) == []  # the entries' rows only
    assert store.list_allowed(0, 10) == [flag, meme]
    assert store.list_allowed(1, 10) == [meme] and store.list_allowed(0, 1) == [flag]

    position = store.feed_position()
    store.remove_allowed(admin, "rm-1", digest("rm-1"), 1, "flag redesigned", NOW + 2)
    # No entry's summary depends on the allow-list: the removal names none.
    assert all_changes(store, position)[0] == [SignalsRemoved(tuple(r.row_id for r in rows[:2]), ())]
    assert store.list_allowed(0, 10) == [meme]
    assert [r.entry_id for r in store.allowed_signals()] == [-2]
    store.remove_allowed(admin, "rm-1", digest("rm-1"), 1, "flag redesigned", NOW + 2)  # a replay
    with pytest.raises(NotFound):
        store.remove_allowed(admin, "rm-2", digest("rm-2"), 1, "again", NOW + 3)


def test_adding_to_the_allow_list_is_idempotent_on_its_request_id(store: Store) -> None:
    admin = member(store, "admin")
    first = store.add_allowed(admin, "al", digest("al"), [pdq("flag")], "national flag", NOW)
    position = store.feed_position()

    assert store.add_allowed(admin, "al", digest("al"), [pdq("flag")], "national flag", NOW + 5) == first
    assert store.feed_position() == position and store.list_allowed(0, 10) == [first]
    with pytest.raises(InvalidArgument):
        store.add_allowed(admin, "al", digest("another"), [pdq("other")], "other", NOW)


def test_feedback_stats_count_per_member_in_a_period(store: Store) -> None:
    alpha, beta, gamma = member(store, "alpha"), member(store, "beta"), member(store, "gamma")
    submit(store, alpha, "a", draft(sha256("a")))
    submit(store, beta, "b", draft(sha256("b")))
    opinion(store, beta, 1, Opinion.DISAGREE, at=NOW)
    opinion(store, gamma, 1, Opinion.DISAGREE, at=NOW + DAY)
    opinion(store, gamma, 2, Opinion.SEEN_TOO, at=NOW)
    opinion(store, alpha, 2, Opinion.AGREE, at=NOW + 2 * DAY)
    opinion(store, alpha, 1, Opinion.DISAGREE, at=NOW)  # its own entry: not a dispute received from others

    assert store.feedback_stats(None, None) == [
        MemberFeedbackStats(alpha, agreements_given=1, disputes_given=1, seen_too_given=0, disputes_received=2),
        MemberFeedbackStats(beta, agreements_given=0, disputes_given=1, seen_too_given=0, disputes_received=0),
        MemberFeedbackStats(gamma, agreements_given=0, disputes_given=1, seen_too_given=1, disputes_received=0),
    ]
    assert store.feedback_stats(NOW, NOW + DAY) == [
        MemberFeedbackStats(alpha, 0, 1, 0, 1),
        MemberFeedbackStats(beta, 0, 1, 0, 0),
        MemberFeedbackStats(gamma, 0, 0, 1, 0),
    ]
