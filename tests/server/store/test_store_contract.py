"""The storage contract (hashshare.store.base): every test runs against the
SQLite store and a real Redis server, through ``open_store`` as the server
opens them."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from datetime import UTC, datetime

import pytest

from hashshare.errors import AlreadyExists, InvalidArgument, NotFound
from hashshare.model import (
    Change,
    Entry,
    EntrySummary,
    IndexedSignal,
    Member,
    MemberSightings,
    RetractOutcome,
    Role,
    Sighting,
    SightingStats,
    SignalsAdded,
    SignalsRemoved,
    StoredSignal,
    Submission,
    SubmissionDraft,
    SubmitOutcome,
    Token,
    TokenRevoked,
    TrustLevel,
)
from hashshare.store import Store, open_store
from hashshare.store.base import (
    BatchSubmission,
    ImportBatch,
    ImportedSignal,
    ImportedSubmission,
    ImportOutcome,
    Replayed,
    submitted,
)
from hashshare_client import DiscoveryMethod, LegalBasis, Signal, signal_types

NOW = datetime(2024, 3, 1, 9, 30, tzinfo=UTC).timestamp() + 0.125  # a fraction, to catch lossy floats
DAY = 86_400.0
T_AND_S = frozenset({Role.TRUST_SAFETY})

# How each store refuses a signal without a value; the contract fixes the
# rollback, not the exception.
UNSTORABLE = (sqlite3.IntegrityError, TypeError)


def sha256(text: str) -> Signal:
    return Signal(signal_types.SHA256.name, signal_types.SHA256.version, hashlib.sha256(text.encode()).digest())


def pdq(text: str, quality: int = 90) -> Signal:
    value = hashlib.sha256(f"pdq:{text}".encode()).digest()
    return Signal(signal_types.PDQ.name, signal_types.PDQ.version, value, quality)


def draft(*signals: Signal, category: str = "violent_extremism", removed_at: float = NOW - 3600) -> SubmissionDraft:
    return SubmissionDraft(
        signals=signals,
        category=category,
        legal_basis=LegalBasis.COMMUNITY_GUIDELINES,
        discovery_method=DiscoveryMethod.USER_REPORT,
        notice_reference="case-17",
        notice_received_at=None,
        removed_at=removed_at,
    )


def member(store: Store, name: str, trust_level: TrustLevel = TrustLevel.TRUSTED) -> int:
    return store.create_member(name, T_AND_S, NOW, trust_level).member_id


def digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def submit(
    store: Store, member_id: int, request_id: str, new_draft: SubmissionDraft, join: int | None = None
) -> SubmitOutcome:
    """A submit whose digest is derived from its request_id: one id, one request."""
    return store.submit(member_id, request_id, digest(request_id), new_draft, join, NOW)


def retract(store: Store, member_id: int, request_id: str, entry_id: int, at: float = NOW) -> RetractOutcome:
    return store.retract(member_id, request_id, digest(request_id), entry_id, "mistaken removal", at)


def all_changes(store: Store, position: str = "", limit: int = 10_000) -> tuple[list[Change], str]:
    """Every change after ``position``, read in pages of ``limit``."""
    found: list[Change] = []
    for _ in range(1_000):
        page, position = store.changes_since(position, limit)
        if not page:
            return found, position
        found.extend(page)
    raise AssertionError("the feed never ran dry")


def active(store: Store) -> list[IndexedSignal]:
    return sorted(store.active_signals(), key=lambda row: row.row_id)


# Members and tokens


def test_members_get_ids_in_order_and_read_back(store: Store) -> None:
    first = store.create_member("alpha", frozenset({Role.PLATFORM, Role.TRUST_SAFETY}), NOW)
    second = store.create_member("beta", frozenset(), NOW + 1)

    assert first == Member(1, "alpha", frozenset({Role.PLATFORM, Role.TRUST_SAFETY}), NOW)
    assert second == Member(2, "beta", frozenset(), NOW + 1)
    assert store.get_member(1) == first
    assert store.get_member(3) is None
    assert store.list_members() == [first, second]


def test_a_taken_member_name_is_already_exists_and_stores_nothing(store: Store) -> None:
    original = store.create_member("alpha", T_AND_S, NOW)

    with pytest.raises(AlreadyExists):
        store.create_member("alpha", frozenset({Role.ADMIN}), NOW + 1)

    assert store.list_members() == [original]
    assert store.create_member("beta", T_AND_S, NOW).member_id == 2


def test_tokens_are_found_by_hash_with_their_member(store: Store) -> None:
    owner = store.create_member("alpha", T_AND_S, NOW)
    token = store.create_token(owner.member_id, digest("secret"), frozenset({Role.PLATFORM}), NOW)

    assert token == Token(1, owner.member_id, frozenset({Role.PLATFORM}), NOW)
    assert store.find_token(digest("secret")) == (token, owner)
    assert store.find_token(digest("another secret")) is None


def test_a_token_for_an_unknown_member_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.create_token(7, digest("secret"), T_AND_S, NOW)
    owner = member(store, "alpha")
    assert store.create_token(owner, digest("secret"), T_AND_S, NOW).token_id == 1


def test_revoking_a_token_hides_it_and_tells_the_feed_once(store: Store) -> None:
    owner = member(store, "alpha")
    token = store.create_token(owner, digest("secret"), T_AND_S, NOW)
    kept = store.create_token(owner, digest("kept"), T_AND_S, NOW)
    before = store.feed_position()

    revoked, token_hash = store.revoke_token(token.token_id, NOW + 5)
    again, hash_again = store.revoke_token(token.token_id, NOW + 9)

    assert revoked == Token(token.token_id, owner, T_AND_S, NOW, revoked_at=NOW + 5)
    assert (again, hash_again) == (revoked, token_hash) == (revoked, digest("secret"))
    assert store.find_token(digest("secret")) is None
    assert store.find_token(digest("kept")) is not None
    assert all_changes(store, before)[0] == [TokenRevoked(digest("secret"))]
    assert kept.token_id == 2


def test_revoking_an_unknown_token_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.revoke_token(1, NOW)


# Submissions


def test_a_first_submission_creates_an_entry(store: Store) -> None:
    alpha = member(store, "alpha")
    new_draft = draft(sha256("a"), pdq("a"))

    outcome = submit(store, alpha, "req-1", new_draft, join=None)

    assert outcome == SubmitOutcome(entry_id=1, submission_id=1, joined_existing=False, corroborations=1)
    assert store.get_entry(1) == Entry(
        entry_id=1,
        category="violent_extremism",
        created_at=NOW,
        submissions=(
            Submission(
                submission_id=1,
                entry_id=1,
                member_id=alpha,
                category="violent_extremism",
                legal_basis=LegalBasis.COMMUNITY_GUIDELINES,
                discovery_method=DiscoveryMethod.USER_REPORT,
                notice_reference="case-17",
                notice_received_at=None,
                removed_at=NOW - 3600,
                created_at=NOW,
            ),
        ),
        signals=(StoredSignal(1, 1, sha256("a")), StoredSignal(2, 1, pdq("a"))),
    )
    assert store.get_entry(2) is None


def test_submission_details_read_back_exactly(store: Store) -> None:
    alpha = member(store, "alpha")
    detailed = SubmissionDraft(
        signals=(pdq("a", quality=51),),
        category="hate_speech.incitement",
        legal_basis=LegalBasis.LOCAL_LAW,
        discovery_method=DiscoveryMethod.AUTHORITY_NOTICE,
        notice_reference="BKA-2024/113",
        notice_received_at=NOW - 7200.5,
        removed_at=NOW - 3600.25,
    )

    submit(store, alpha, "req-1", detailed)

    entry = store.get_entry(1)
    assert entry is not None
    (stored,) = entry.submissions
    assert (stored.category, stored.legal_basis, stored.discovery_method) == (
        "hate_speech.incitement",
        LegalBasis.LOCAL_LAW,
        DiscoveryMethod.AUTHORITY_NOTICE,
    )
    assert (stored.notice_reference, stored.notice_received_at, stored.removed_at) == (
        "BKA-2024/113",
        NOW - 7200.5,
        NOW - 3600.25,
    )
    assert entry.signals == (StoredSignal(1, 1, pdq("a", quality=51)),)


def test_joining_an_entry_adds_a_corroboration(store: Store) -> None:
    alpha, beta = member(store, "alpha"), member(store, "beta")
    submit(store, alpha, "req-a", draft(sha256("a")))

    joined = submit(store, beta, "req-b", draft(pdq("a"), category="terrorism"), join=1)

    assert joined == SubmitOutcome(entry_id=1, submission_id=2, joined_existing=True, corroborations=2)
    entry = store.get_entry(1)
    assert entry is not None
    assert entry.category == "violent_extremism"  # the entry keeps its first category
    assert [(s.submission_id, s.member_id, s.category) for s in entry.submissions] == [
        (1, alpha, "violent_extremism"),
        (2, beta, "terrorism"),
    ]
    assert entry.signals == (StoredSignal(1, 1, sha256("a")), StoredSignal(2, 2, pdq("a")))
    assert store.entry_summaries([1]) == {1: EntrySummary(1, "violent_extremism", 2, True)}


def test_the_same_member_twice_is_one_corroboration(store: Store) -> None:
    alpha = member(store, "alpha")
    submit(store, alpha, "req-1", draft(sha256("a")))

    again = submit(store, alpha, "req-2", draft(pdq("a")), join=1)

    assert again == SubmitOutcome(entry_id=1, submission_id=2, joined_existing=True, corroborations=1)


def test_joining_an_unknown_entry_creates_a_new_one(store: Store) -> None:
    alpha = member(store, "alpha")
    submit(store, alpha, "req-1", draft(sha256("a")))

    outcome = submit(store, alpha, "req-2", draft(sha256("b")), join=42)

    assert outcome == SubmitOutcome(entry_id=2, submission_id=2, joined_existing=False, corroborations=1)
    assert store.get_entry(42) is None
    entry = store.get_entry(2)
    assert entry is not None
    assert entry.signals == (StoredSignal(2, 2, sha256("b")),)


def test_a_submission_without_signals_is_stored(store: Store) -> None:
    alpha = member(store, "alpha")
    before = store.feed_position()

    outcome = submit(store, alpha, "req-1", draft())

    assert outcome == SubmitOutcome(1, 1, False, 1)
    assert all_changes(store, before)[0] == [SignalsAdded(())]
    entry = store.get_entry(1)
    assert entry is not None
    assert (len(entry.submissions), entry.signals) == (1, ())


# Idempotency


def test_a_replayed_submit_returns_the_first_outcome_and_writes_nothing(store: Store) -> None:
    alpha, beta = member(store, "alpha"), member(store, "beta")
    first = submit(store, alpha, "req-1", draft(sha256("a")))
    submit(store, beta, "req-b", draft(sha256("a")), join=1)  # corroborations is 2 from here on
    position = store.feed_position()
    entry = store.get_entry(1)

    replayed = store.submit(alpha, "req-1", digest("req-1"), draft(sha256("other")), None, NOW + 60)

    assert replayed == first == SubmitOutcome(1, 1, False, 1)
    assert store.feed_position() == position
    assert store.changes_since(position) == ([], position)
    assert store.get_entry(1) == entry
    assert store.get_entry(2) is None
    assert submit(store, alpha, "req-2", draft(sha256("c"))) == SubmitOutcome(2, 3, False, 1)


def test_a_reused_request_id_with_another_digest_is_invalid(store: Store) -> None:
    alpha = member(store, "alpha")
    submit(store, alpha, "req-1", draft(sha256("a")))
    position = store.feed_position()

    with pytest.raises(InvalidArgument) as raised:
        store.submit(alpha, "req-1", digest("something else"), draft(sha256("b")), None, NOW)

    assert [v.field for v in raised.value.violations] == ["request_id"]
    assert store.feed_position() == position
    assert store.get_entry(2) is None
    assert [row.entry_id for row in active(store)] == [1]


def test_request_ids_belong_to_their_member(store: Store) -> None:
    alpha, beta = member(store, "alpha"), member(store, "beta")
    submit(store, alpha, "req-1", draft(sha256("a")))

    theirs = store.submit(beta, "req-1", digest("beta's own request"), draft(sha256("b")), None, NOW)

    assert theirs == SubmitOutcome(2, 2, False, 1)


def test_a_replayed_retract_returns_the_first_outcome_and_writes_nothing(store: Store) -> None:
    alpha, beta = member(store, "alpha"), member(store, "beta")
    submit(store, alpha, "req-a", draft(sha256("a")))
    submit(store, beta, "req-b", draft(sha256("a")), join=1)
    first = retract(store, alpha, "ret-1", 1)
    retract(store, beta, "ret-2", 1)
    position = store.feed_position()

    replayed = retract(store, alpha, "ret-1", 1, at=NOW + 60)

    assert replayed == first == RetractOutcome(entry_id=1, retracted_submissions=1, entry_active=True)
    assert store.feed_position() == position
    with pytest.raises(InvalidArgument):
        store.retract(alpha, "ret-1", digest("another retract"), 1, "reason", NOW)
    entry = store.get_entry(1)
    assert entry is not None
    assert [s.retracted_at for s in entry.submissions] == [NOW, NOW]


# Retraction


def test_retracting_withdraws_a_member_and_reports_what_is_left(store: Store) -> None:
    alpha, beta = member(store, "alpha"), member(store, "beta")
    submit(store, alpha, "req-a", draft(sha256("a")))
    submit(store, beta, "req-b", draft(pdq("a")), join=1)

    first = retract(store, alpha, "ret-a", 1, at=NOW + 10)

    assert first == RetractOutcome(entry_id=1, retracted_submissions=1, entry_active=True)
    assert store.entry_summaries([1]) == {1: EntrySummary(1, "violent_extremism", 1, True)}
    entry = store.get_entry(1)
    assert entry is not None
    assert [(s.member_id, s.retracted_at, s.retract_reason) for s in entry.submissions] == [
        (alpha, NOW + 10, "mistaken removal"),
        (beta, None, ""),
    ]
    assert (entry.active, entry.corroborations) == (True, 1)

    last = retract(store, beta, "ret-b", 1)

    assert last == RetractOutcome(entry_id=1, retracted_submissions=1, entry_active=False)
    assert store.entry_summaries([1]) == {1: EntrySummary(1, "violent_extremism", 0, False)}
    entry = store.get_entry(1)
    assert entry is not None
    assert len(entry.signals) == 2  # retracted signals stay on record


def test_retracting_withdraws_every_active_submission_of_the_member(store: Store) -> None:
    alpha = member(store, "alpha")
    submit(store, alpha, "req-1", draft(sha256("a"), pdq("a")))
    submit(store, alpha, "req-2", draft(sha256("a2")), join=1)
    before = store.feed_position()

    outcome = retract(store, alpha, "ret", 1)

    assert outcome == RetractOutcome(entry_id=1, retracted_submissions=2, entry_active=False)
    assert all_changes(store, before)[0] == [SignalsRemoved((1, 2, 3), (1,))]  # and the entry they leave
    with pytest.raises(NotFound):
        retract(store, alpha, "ret-again", 1)


def test_retracting_without_an_own_active_submission_is_not_found_and_stores_nothing(store: Store) -> None:
    alpha, beta = member(store, "alpha"), member(store, "beta")
    submit(store, alpha, "req-a", draft(sha256("a")))
    position = store.feed_position()

    with pytest.raises(NotFound):
        retract(store, beta, "ret-b", 1)
    with pytest.raises(NotFound):
        retract(store, alpha, "ret-a", 99)

    assert store.feed_position() == position
    assert store.entry_summaries([1]) == {1: EntrySummary(1, "violent_extremism", 1, True)}
    # The failed call did not use up its request_id: the same id now works for another request.
    submit(store, beta, "req-b", draft(sha256("a")), join=1)
    other = store.retract(beta, "ret-b", digest("a later retract"), 1, "", NOW)
    assert other == RetractOutcome(1, 1, True)


# Reads


def test_entry_summaries_cover_known_entries_only(store: Store) -> None:
    alpha, beta = member(store, "alpha"), member(store, "beta")
    submit(store, alpha, "req-1", draft(sha256("a")))
    submit(store, alpha, "req-2", draft(sha256("b"), category="terrorism"))
    submit(store, beta, "req-3", draft(sha256("b")), join=2)

    summaries = store.entry_summaries(iter([2, 1, 99, 2]))

    assert summaries == {
        1: EntrySummary(1, "violent_extremism", 1, True),
        2: EntrySummary(2, "terrorism", 2, True),
    }
    assert store.entry_summaries([]) == {}


def test_active_signals_are_those_of_active_submissions(store: Store) -> None:
    alpha, beta = member(store, "alpha"), member(store, "beta")
    assert active(store) == []
    submit(store, alpha, "req-a", draft(sha256("a"), pdq("a")))
    submit(store, beta, "req-b", draft(sha256("b")), join=1)
    submit(store, alpha, "req-c", draft(sha256("c")))

    retract(store, alpha, "ret", 1)

    assert active(store) == [
        IndexedSignal(3, 1, sha256("b").type, sha256("b").version, sha256("b").value),
        IndexedSignal(4, 2, sha256("c").type, sha256("c").version, sha256("c").value),
    ]


def test_active_signals_returns_every_row_of_a_large_bank(store: Store) -> None:
    alpha = member(store, "alpha")
    for batch in range(5):  # more rows than one scan batch of the Redis store
        signals = tuple(sha256(f"{batch}/{n}") for n in range(600))
        submit(store, alpha, f"req-{batch}", draft(*signals))
    retract(store, alpha, "ret", 3)

    rows = active(store)

    assert [row.row_id for row in rows] == [*range(1, 1201), *range(1801, 3001)]
    assert rows[0] == IndexedSignal(1, 1, sha256("0/0").type, sha256("0/0").version, sha256("0/0").value)


# The change feed


def test_an_empty_feed_has_no_changes(store: Store) -> None:
    position = store.feed_position()

    assert store.changes_since(position) == ([], position)
    assert store.changes_since("") == ([], "")


def test_the_feed_holds_exactly_the_changes_of_each_write_in_order(store: Store) -> None:
    start = store.feed_position()
    alpha, beta = member(store, "alpha"), member(store, "beta")
    token = store.create_token(alpha, digest("secret"), T_AND_S, NOW)
    assert store.feed_position() == start  # members and tokens do not change what matches

    submit(store, alpha, "req-a", draft(sha256("a"), pdq("a")))
    submit(store, beta, "req-b", draft(sha256("b")), join=1)
    retract(store, alpha, "ret-a", 1)
    store.revoke_token(token.token_id, NOW)

    expected: list[Change] = [
        SignalsAdded(
            (
                IndexedSignal(1, 1, sha256("a").type, sha256("a").version, sha256("a").value),
                IndexedSignal(2, 1, pdq("a").type, pdq("a").version, pdq("a").value),
            )
        ),
        SignalsAdded((IndexedSignal(3, 1, sha256("b").type, sha256("b").version, sha256("b").value),)),
        SignalsRemoved((1, 2), (1,)),
        TokenRevoked(digest("secret")),
    ]
    changes, end = all_changes(store, start)
    assert changes == expected
    assert end == store.feed_position() != start
    assert all_changes(store, "") == (expected, end)  # a new follower starts at ""


def test_the_feed_replays_from_any_old_position_and_pages_by_limit(store: Store) -> None:
    alpha = member(store, "alpha")
    positions = [store.feed_position()]
    for n in range(5):
        submit(store, alpha, f"req-{n}", draft(sha256(str(n))))
        positions.append(store.feed_position())

    assert len(set(positions)) == 6
    for n, position in enumerate(positions):
        changes, last = store.changes_since(position)
        assert [c.rows[0].row_id for c in changes if isinstance(c, SignalsAdded)] == list(range(n + 1, 6))
        assert last == positions[-1]
    page, after_two = store.changes_since(positions[0], limit=2)
    assert (len(page), after_two) == (2, positions[2])
    paged, end = all_changes(store, positions[0], limit=2)
    assert (paged, end) == (all_changes(store, positions[0])[0], positions[-1])


# Sightings


def test_sighting_stats_count_per_day_and_per_member(store: Store) -> None:
    alpha, beta = member(store, "alpha"), member(store, "beta")
    submit(store, alpha, "req-1", draft(sha256("a")))
    submit(store, alpha, "req-2", draft(sha256("b")))
    midnight = datetime(2024, 3, 2, tzinfo=UTC).timestamp()

    store.add_sightings(
        [
            Sighting(1, beta, midnight - 0.5, "block"),
            Sighting(1, alpha, midnight + 10.25, "review"),
            Sighting(2, beta, midnight, "block"),  # another entry: not counted for entry 1
        ]
    )
    store.add_sightings([])
    store.add_sightings([Sighting(1, beta, midnight - DAY, "block"), Sighting(1, beta, midnight + DAY, "block")])

    assert store.sighting_stats(1) == SightingStats(
        entry_id=1,
        daily={"2024-03-01": 2, "2024-03-02": 1, "2024-03-03": 1},
        members=(
            MemberSightings(alpha, 1, midnight + 10.25, midnight + 10.25),
            MemberSightings(beta, 3, midnight - DAY, midnight + DAY),
        ),
    )
    assert store.sighting_stats(2) == SightingStats(
        2, {"2024-03-02": 1}, (MemberSightings(beta, 1, midnight, midnight),)
    )


def test_an_entry_without_sightings_has_empty_stats(store: Store) -> None:
    assert store.sighting_stats(1) == SightingStats(1, {}, ())


# Secrets


def test_a_secret_is_created_once_and_survives_reopening(store_url: str) -> None:
    first = open_store(store_url)
    try:
        key = first.secret("pseudonyms")
        assert len(key) == 32
        assert first.secret("pseudonyms") == key
        assert first.secret("other") != key
    finally:
        first.close()
    reopened = open_store(store_url)
    try:
        assert reopened.secret("pseudonyms") == key
    finally:
        reopened.close()


def test_members_and_entries_survive_reopening(store_url: str) -> None:
    first = open_store(store_url)
    try:
        alpha = member(first, "alpha")
        submit(first, alpha, "req-1", draft(sha256("a")))
        entry = first.get_entry(1)
        position = first.feed_position()
    finally:
        first.close()
    reopened = open_store(store_url)
    try:
        assert reopened.get_entry(1) == entry
        assert reopened.feed_position() == position
        assert submit(reopened, alpha, "req-1", draft(sha256("a"))) == SubmitOutcome(1, 1, False, 1)
    finally:
        reopened.close()


# Atomicity


def test_a_submit_that_fails_half_way_leaves_nothing_behind(store: Store) -> None:
    alpha = member(store, "alpha")
    position = store.feed_position()
    valueless = Signal(signal_types.SHA256.name, signal_types.SHA256.version, None)  # type: ignore[arg-type]

    with pytest.raises(UNSTORABLE):
        submit(store, alpha, "req-1", draft(sha256("a"), valueless))

    assert store.feed_position() == position
    assert store.get_entry(1) is None
    assert active(store) == []
    # Nothing was used up: not the request_id, not an id.
    outcome = store.submit(alpha, "req-1", digest("the corrected request"), draft(sha256("a")), None, NOW)
    assert outcome == SubmitOutcome(1, 1, False, 1)
    assert [row.row_id for row in active(store)] == [1]


def test_a_failed_join_leaves_the_entry_as_it_was(store: Store) -> None:
    alpha, beta = member(store, "alpha"), member(store, "beta")
    submit(store, alpha, "req-a", draft(sha256("a")))
    entry = store.get_entry(1)
    position = store.feed_position()
    valueless = Signal(signal_types.PDQ.name, signal_types.PDQ.version, None, 80)  # type: ignore[arg-type]

    with pytest.raises(UNSTORABLE):
        submit(store, beta, "req-b", draft(pdq("a"), valueless), join=1)

    assert store.get_entry(1) == entry
    assert store.entry_summaries([1]) == {1: EntrySummary(1, "violent_extremism", 1, True)}
    assert store.feed_position() == position


# Concurrency


def test_concurrent_writers_through_separate_connections_lose_nothing(store_url: str) -> None:
    setup = open_store(store_url)
    members = [member(setup, f"member-{n}") for n in range(4)]
    submit(setup, members[0], "seed", draft(sha256("seed")))
    errors: list[BaseException] = []

    def write(member_id: int) -> None:
        own = open_store(store_url)
        try:
            for n in range(10):
                submit(own, member_id, f"req-{n}", draft(sha256(f"{member_id}/{n}")), join=1)
        except BaseException as error:  # reported by the main thread
            errors.append(error)
        finally:
            own.close()

    threads = [threading.Thread(target=write, args=(m,)) for m in members]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(t.is_alive() for t in threads)
        assert errors == []
        entry = setup.get_entry(1)
        assert entry is not None
        assert sorted(s.submission_id for s in entry.submissions) == list(range(1, 42))
        assert sorted(s.row_id for s in entry.signals) == list(range(1, 42))
        assert store_corroborations(setup) == 4
        changes, _ = all_changes(setup, "")
        assert sorted(c.rows[0].row_id for c in changes if isinstance(c, SignalsAdded)) == list(range(1, 42))
    finally:
        setup.close()


def store_corroborations(store: Store) -> int:
    return store.entry_summaries([1])[1].corroborations


# Batches (submit_many)


def batch_item(request_id: str, new_draft: SubmissionDraft, **fields: object) -> BatchSubmission:
    return BatchSubmission(request_id, digest(request_id), new_draft, **fields)  # type: ignore[arg-type]


def test_a_batch_stores_every_item_with_one_feed_change(store: Store) -> None:
    alpha, beta = member(store, "alpha"), member(store, "beta")
    submit(store, beta, "seed", draft(sha256("seed")))
    position = store.feed_position()

    outcomes = store.submit_many(
        alpha,
        [
            batch_item("b-1", draft(sha256("a"), pdq("a"))),
            batch_item("b-2", draft(sha256("b")), join_entry_id=1),  # beta's entry
            batch_item("b-3", draft(pdq("a2")), join_item=0),  # the entry the first item makes
            batch_item("b-4", draft(sha256("c")), join_entry_id=99),  # unknown: a new entry
        ],
        NOW,
    )

    assert outcomes == [
        SubmitOutcome(2, 2, False, 1),
        SubmitOutcome(1, 3, True, 2),
        SubmitOutcome(2, 4, True, 1),
        SubmitOutcome(3, 5, False, 1),
    ]
    changes, _ = all_changes(store, position)
    assert len(changes) == 1 and isinstance(changes[0], SignalsAdded)
    assert [(r.row_id, r.entry_id) for r in changes[0].rows] == [(2, 2), (3, 2), (4, 1), (5, 2), (6, 3)]
    entry = store.get_entry(2)
    assert entry is not None and [s.submission_id for s in entry.submissions] == [2, 4]
    assert entry.submissions[0].created_at == NOW and entry.created_at == NOW
    assert [s.signal for s in entry.signals] == [sha256("a"), pdq("a"), pdq("a2")]
    assert store.entry_summaries([1])[1].corroborations == 2
    assert [row.row_id for row in active(store)] == [1, 2, 3, 4, 5, 6]


def test_replays_inside_and_across_batches_store_nothing_twice(store: Store) -> None:
    alpha = member(store, "alpha")
    first = submit(store, alpha, "single", draft(sha256("a")))

    outcomes = store.submit_many(
        alpha,
        [
            batch_item("single", draft(sha256("a"))),  # sent before through submit
            batch_item("b-1", draft(sha256("b"))),
            batch_item("b-1", draft(sha256("b"))),  # repeated inside the batch
        ],
        NOW,
    )
    assert outcomes == [Replayed(first), SubmitOutcome(2, 2, False, 1), Replayed(SubmitOutcome(2, 2, False, 1))]
    position = store.feed_position()

    again = store.submit_many(alpha, [batch_item("b-1", draft(sha256("b"))), batch_item("single", draft())], NOW)

    assert again == [Replayed(SubmitOutcome(2, 2, False, 1)), Replayed(first)]
    assert store.feed_position() == position
    assert store.get_entry(3) is None
    # The batch's records serve a later single submit too.
    assert submit(store, alpha, "b-1", draft(sha256("b"))) == SubmitOutcome(2, 2, False, 1)


def test_a_reused_request_id_fails_only_its_item(store: Store) -> None:
    alpha = member(store, "alpha")
    submit(store, alpha, "taken", draft(sha256("a")))

    outcomes = store.submit_many(
        alpha,
        [
            BatchSubmission("taken", digest("another request"), draft(sha256("x"))),
            batch_item("fresh", draft(sha256("b"))),
            BatchSubmission("fresh", digest("yet another"), draft(sha256("y"))),
            batch_item("joins-the-refused", draft(sha256("c")), join_item=0),
        ],
        NOW,
    )

    assert isinstance(outcomes[0], InvalidArgument) and outcomes[0].violations[0].field == "request_id"
    assert outcomes[1] == SubmitOutcome(2, 2, False, 1)
    assert isinstance(outcomes[2], InvalidArgument)
    assert outcomes[3] == SubmitOutcome(3, 3, False, 1)
    assert [row.value for row in active(store)] == [sha256(t).value for t in "abc"]


def test_a_batch_with_an_unstorable_item_leaves_nothing_behind(store: Store) -> None:
    alpha = member(store, "alpha")
    submit(store, alpha, "seed", draft(sha256("seed")))
    entry = store.get_entry(1)
    position = store.feed_position()
    valueless = Signal(signal_types.SHA256.name, signal_types.SHA256.version, None)  # type: ignore[arg-type]

    with pytest.raises(UNSTORABLE):
        store.submit_many(
            alpha,
            [
                batch_item("ok", draft(sha256("a"))),
                batch_item("joins", draft(sha256("b")), join_entry_id=1),
                batch_item("bad", draft(valueless)),
            ],
            NOW,
        )

    assert store.feed_position() == position
    assert store.get_entry(1) == entry and store.get_entry(2) is None
    assert [row.row_id for row in active(store)] == [1]
    # Nothing was used up: not the request ids, not an id.
    assert store.submit_many(alpha, [batch_item("ok", draft(sha256("a")))], NOW) == [SubmitOutcome(2, 2, False, 1)]


def test_a_batch_keeps_given_creation_times(store: Store) -> None:
    alpha = member(store, "alpha")
    outcomes = store.submit_many(
        alpha,
        [batch_item("old", draft(sha256("a")), created_at=NOW - DAY), batch_item("more", draft(), join_item=0)],
        NOW,
    )
    assert submitted(outcomes[1]) == SubmitOutcome(1, 2, True, 1)
    entry = store.get_entry(1)
    assert entry is not None and entry.created_at == NOW - DAY
    assert [s.created_at for s in entry.submissions] == [NOW - DAY, NOW]
    assert store.submit_many(alpha, [], NOW) == []


# Imports (import_batch)


def import_key(text: str) -> bytes:
    return hashlib.sha256(f"line:{text}".encode()).digest()


def imported(category: str = "hate_speech", created_at: float | None = None) -> ImportedSubmission:
    return (category, "local_law", "user_report", "case-9", NOW - DAY, NOW - 3600, created_at)


def as_imported(signal: Signal) -> ImportedSignal:
    return (signal.type, signal.version, signal.value, signal.quality, signal.variant)


def test_an_import_stores_each_line_as_a_new_entry_with_one_feed_change(store: Store) -> None:
    alpha, beta = member(store, "alpha"), member(store, "beta")
    submit(store, beta, "seed", draft(sha256("a")))  # the same content: an import does not cluster
    position = store.feed_position()
    batch = ImportBatch()
    batch.add(import_key("one"), [imported()], [as_imported(sha256("a")), as_imported(pdq("a"))])
    batch.add(import_key("two"), [imported(created_at=NOW - DAY), imported("harassment")], [as_imported(pdq("b"))])

    outcome = store.import_batch(alpha, batch, NOW)

    assert outcome == ImportOutcome(present=[], refused=[], submissions=3)
    changes, _ = all_changes(store, position)
    assert len(changes) == 1 and isinstance(changes[0], SignalsAdded)
    assert [(r.entry_id, r.value) for r in changes[0].rows] == [
        (2, sha256("a").value),
        (2, pdq("a").value),
        (3, pdq("b").value),
    ]
    first, second = store.get_entry(2), store.get_entry(3)
    assert first is not None and second is not None
    assert (first.category, first.created_at, [s.signal for s in first.signals]) == (
        "hate_speech",
        NOW,
        [sha256("a"), pdq("a")],
    )
    submission = first.submissions[0]
    assert (submission.member_id, submission.legal_basis, submission.discovery_method) == (
        alpha,
        LegalBasis.LOCAL_LAW,
        DiscoveryMethod.USER_REPORT,
    )
    assert (submission.notice_reference, submission.notice_received_at, submission.removed_at) == (
        "case-9",
        NOW - DAY,
        NOW - 3600,
    )
    # A line's submissions make one entry: its category and time are the first's, and
    # the first carries the signals.
    assert (second.category, second.created_at) == ("hate_speech", NOW - DAY)
    assert [(s.category, s.created_at) for s in second.submissions] == [("hate_speech", NOW - DAY), ("harassment", NOW)]
    assert {s.submission_id for s in second.signals} == {second.submissions[0].submission_id}
    assert store.entry_summaries([2])[2].corroborations == 1


def test_lines_imported_before_or_repeated_store_nothing(store: Store) -> None:
    alpha, beta = member(store, "alpha"), member(store, "beta")
    first = ImportBatch()
    first.add(import_key("one"), [imported()], [as_imported(sha256("a"))])
    assert store.import_batch(alpha, first, NOW).present == []
    position = store.feed_position()

    again = ImportBatch()
    again.add(import_key("one"), [imported()], [as_imported(sha256("a"))])
    again.add(import_key("two"), [imported(), imported()], [as_imported(sha256("b"))])
    again.add(import_key("two"), [imported(), imported()], [as_imported(sha256("b"))])  # repeated in the batch
    again.add(import_key("three"), [imported()], [as_imported(sha256("c"))])
    outcome = store.import_batch(alpha, again, NOW)

    assert outcome == ImportOutcome(present=[0, 2], refused=[], submissions=3)
    assert [(r.entry_id, r.value) for r in active(store)] == [(1, sha256(t).value) for t in "a"] + [
        (2, sha256("b").value),
        (3, sha256("c").value),
    ]
    assert store.import_batch(alpha, again, NOW) == ImportOutcome(present=[0, 1, 2, 3], refused=[], submissions=0)
    changes, _ = all_changes(store, position)
    assert len(changes) == 1
    # Lines are the member's: another member's import of the same line stores it.
    assert store.import_batch(beta, first, NOW) == ImportOutcome(present=[], refused=[], submissions=1)
    assert store.import_batch(alpha, ImportBatch(), NOW) == ImportOutcome()
