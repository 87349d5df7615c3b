"""The storage contract of spread analytics (Store.report_actions and the
rollups), run on SQLite and a real Redis server like test_store_contract."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from hashshare.errors import InvalidArgument
from hashshare.model import Sighting, SubmissionDraft
from hashshare.store import Store, open_store
from hashshare.store.rollups import (
    HOUR,
    Action,
    ActionRecord,
    ActionTally,
    Dimension,
    Rollup,
    SightingTally,
    SubmissionTally,
    day_number,
    hour_of,
    week_of_day,
)
from tests.server.store.test_store_contract import DAY, NOW, digest, draft, member, retract, sha256, submit

# NOW is 2024-03-01 09:30 UTC, a Friday.
MIDNIGHT = NOW - 9.5 * HOUR - 0.125
TODAY = int(MIDNIGHT // DAY)


def two_entries(store: Store) -> tuple[int, int, int, int]:
    """Members alpha and beta; entry 1 (violent_extremism) and 2 (hate_speech)."""
    alpha, beta = member(store, "alpha"), member(store, "beta")
    first = submit(store, alpha, "r1", draft(sha256("a"))).entry_id
    second = submit(store, alpha, "r2", draft(sha256("b"), category="hate_speech")).entry_id
    return alpha, beta, first, second


def report(store: Store, member_id: int, request_id: str, *actions: ActionRecord) -> int:
    return store.report_actions(member_id, request_id, digest(request_id), actions, NOW)


def test_the_week_of_a_day_is_its_monday() -> None:
    assert week_of_day(TODAY) == TODAY - 4  # Friday 2024-03-01 -> Monday 2024-02-26
    assert week_of_day(TODAY - 4) == TODAY - 4
    assert week_of_day(TODAY + 2) == TODAY - 4  # the Sunday after
    assert week_of_day(TODAY + 3) == TODAY + 3
    from datetime import date

    assert day_number(date(2024, 2, 26)) == TODAY - 4


def test_sightings_roll_up_by_entry_member_category_and_time(store: Store) -> None:
    alpha, beta, first, second = two_entries(store)
    store.add_sightings(
        [
            Sighting(first, alpha, MIDNIGHT + 10, "block"),
            Sighting(first, alpha, MIDNIGHT + 20, "block"),
            Sighting(first, beta, MIDNIGHT + HOUR + 5, "review"),
            Sighting(second, beta, MIDNIGHT - 1, "block"),  # the day before
        ]
    )
    store.add_sightings([Sighting(first, beta, MIDNIGHT + 3 * DAY, "block")])  # Monday: the next week
    period = Rollup(start=MIDNIGHT - DAY, end=MIDNIGHT + 7 * DAY)

    def rollup(*by: Dimension, **options: object) -> dict[tuple[int | str, ...], SightingTally]:
        query = Rollup(by=by, start=period.start, end=period.end)
        return store.sighting_rollup(dataclasses.replace(query, **options))  # type: ignore[arg-type]

    assert rollup() == {(): SightingTally(5, 2)}
    assert rollup(Dimension.ENTRY) == {(first,): SightingTally(4, 2), (second,): SightingTally(1, 1)}
    assert rollup(Dimension.MEMBER) == {(alpha,): SightingTally(2, 1), (beta,): SightingTally(3, 1)}
    assert rollup(Dimension.CATEGORY) == {
        ("violent_extremism",): SightingTally(4, 2),
        ("hate_speech",): SightingTally(1, 1),
    }
    assert rollup(Dimension.DAY) == {
        (TODAY - 1,): SightingTally(1, 1),
        (TODAY,): SightingTally(3, 2),
        (TODAY + 3,): SightingTally(1, 1),
    }
    assert rollup(Dimension.WEEK) == {(TODAY - 4,): SightingTally(4, 2), (TODAY + 3,): SightingTally(1, 1)}
    assert rollup(Dimension.ENTRY, Dimension.HOUR, category="violent_extremism") == {
        (first, hour_of(MIDNIGHT)): SightingTally(2, 1),
        (first, hour_of(MIDNIGHT) + 1): SightingTally(1, 1),
        (first, hour_of(MIDNIGHT) + 72): SightingTally(1, 1),
    }
    # A period counts the hours that start inside it.
    assert rollup(start=MIDNIGHT, end=MIDNIGHT + HOUR) == {(): SightingTally(2, 1)}
    assert rollup(start=MIDNIGHT + 1, end=MIDNIGHT + 2 * HOUR) == {(): SightingTally(1, 1)}
    assert rollup(start=MIDNIGHT + 4 * DAY, end=MIDNIGHT + 5 * DAY) == {}
    # An entry's own cells need no period.
    assert store.sighting_rollup(Rollup(by=(Dimension.MEMBER,), entry_ids=frozenset({second}))) == {
        (beta,): SightingTally(1, 1)
    }


def test_reported_actions_roll_up_and_are_stored_once(store: Store) -> None:
    alpha, beta, first, second = two_entries(store)
    at = MIDNIGHT + 2 * HOUR
    recorded = report(
        store,
        beta,
        "a1",
        ActionRecord(first, Action.BLOCKED, at, digest("item-1")[:16]),
        ActionRecord(first, Action.BLOCKED, at + 60, digest("item-1")[:16]),  # the same item again
        ActionRecord(first, Action.SENT_TO_REVIEW, at, digest("item-2")[:16]),
        ActionRecord(first, Action.REMOVED_AFTER_REVIEW, at + DAY, digest("item-2")[:16]),
        ActionRecord(second, Action.ALLOWED_AFTER_REVIEW, at),
        ActionRecord(second, Action.ALLOWED_AFTER_REVIEW, at),  # no item id: both count
    )
    assert recorded == 5
    # A replay answers the first count and stores nothing; another request with the same item is not counted.
    assert store.report_actions(beta, "a1", digest("a1"), (), NOW) == 5
    with pytest.raises(InvalidArgument):
        store.report_actions(beta, "a1", digest("another"), (), NOW)
    assert report(store, beta, "a2", ActionRecord(first, Action.BLOCKED, at, digest("item-1")[:16])) == 0
    # The same item id of another member is its own item.
    assert report(store, alpha, "a3", ActionRecord(first, Action.BLOCKED, at, digest("item-1")[:16])) == 1

    period = {"start": MIDNIGHT, "end": MIDNIGHT + 7 * DAY}
    by_entry = store.action_rollup(Rollup(by=(Dimension.ENTRY,), **period))  # type: ignore[arg-type]
    assert by_entry == {
        (first,): ActionTally({Action.BLOCKED: 2, Action.SENT_TO_REVIEW: 1, Action.REMOVED_AFTER_REVIEW: 1}),
        (second,): ActionTally({Action.ALLOWED_AFTER_REVIEW: 2}),
    }
    by_member_day = store.action_rollup(Rollup(by=(Dimension.MEMBER, Dimension.DAY), **period))  # type: ignore[arg-type]
    assert by_member_day == {
        (alpha, TODAY): ActionTally({Action.BLOCKED: 1}),
        (beta, TODAY): ActionTally({Action.BLOCKED: 1, Action.SENT_TO_REVIEW: 1, Action.ALLOWED_AFTER_REVIEW: 2}),
        (beta, TODAY + 1): ActionTally({Action.REMOVED_AFTER_REVIEW: 1}),
    }
    hate = store.action_rollup(Rollup(category="hate_speech", **period))  # type: ignore[arg-type]
    assert hate == {(): ActionTally({Action.ALLOWED_AFTER_REVIEW: 2})}
    assert store.action_rollup(Rollup(start=MIDNIGHT + DAY, end=MIDNIGHT + 2 * DAY)) == {
        (): ActionTally({Action.REMOVED_AFTER_REVIEW: 1})
    }
    # Of all time, for one entry (GetSpread).
    assert store.action_rollup(Rollup(entry_ids=frozenset({first}))) == {
        (): ActionTally({Action.BLOCKED: 2, Action.SENT_TO_REVIEW: 1, Action.REMOVED_AFTER_REVIEW: 1})
    }


def test_submissions_roll_up_per_member_and_category(store: Store) -> None:
    alpha, beta = member(store, "alpha"), member(store, "beta")
    gamma = member(store, "gamma")
    notice = MIDNIGHT - 6 * HOUR

    def removal(
        text: str, removed_at: float, category: str = "hate_speech", notice_at: float | None = None
    ) -> SubmissionDraft:
        base = draft(sha256(text), category=category, removed_at=removed_at)
        return dataclasses.replace(base, notice_received_at=notice_at)

    first = submit(store, alpha, "s1", removal("a", MIDNIGHT, notice_at=notice)).entry_id  # new entry, 6 h
    submit(store, alpha, "s2", removal("a", MIDNIGHT + HOUR), join=first)  # alpha again: no corroboration
    submit(store, beta, "s3", removal("a", MIDNIGHT + 2 * HOUR, notice_at=notice), join=first)  # corroborates, 8 h
    submit(store, gamma, "s4", removal("a", MIDNIGHT + 3 * HOUR), join=first)
    retract(store, gamma, "x4", first)  # retracted: not counted
    second = submit(store, beta, "s5", removal("b", MIDNIGHT + 4 * HOUR, "violent_extremism")).entry_id
    submit(store, alpha, "s6", removal("b", MIDNIGHT - DAY, "violent_extremism"), join=second)  # outside the period

    tallies = store.submission_rollup(MIDNIGHT, MIDNIGHT + DAY, Dimension.MEMBER)
    assert tallies == {
        alpha: SubmissionTally(2, 0, 1, (6.0,)),
        beta: SubmissionTally(2, 1, 1, (8.0,)),
    }
    assert store.submission_rollup(MIDNIGHT, MIDNIGHT + DAY, Dimension.CATEGORY) == {
        "hate_speech": SubmissionTally(3, 1, 1, (6.0, 8.0)),
        "violent_extremism": SubmissionTally(1, 0, 1, ()),
    }
    assert store.submission_rollup(MIDNIGHT - DAY, MIDNIGHT, Dimension.MEMBER) == {alpha: SubmissionTally(1, 1, 0, ())}


@pytest.mark.redis
def test_redis_report_actions_is_one_transaction_in_the_members_slot(redis_url: str) -> None:
    """Redis Cluster readiness: every key a ReportAction watches or writes in
    its transaction hashes to the reporting member's slot."""
    store = open_store(redis_url)
    watcher = redis.Redis.from_url(redis_url)
    try:
        _, beta, first, second = two_entries(store)
        commands: list[list[str]] = []
        with watcher.monitor() as monitor:
            done = threading.Event()

            def listen() -> None:
                for _ in range(1_000):  # bounded: the EXEC comes within a few dozen commands
                    command = monitor.next_command()["command"]
                    commands.append(command.split())
                    if command.startswith("EXEC"):
                        break
                done.set()

            listener = threading.Thread(target=listen, daemon=True)
            listener.start()
            time.sleep(0.1)  # MONITOR is on before the write
            report(
                store,
                beta,
                "slot-1",
                ActionRecord(first, Action.BLOCKED, NOW, digest("i1")[:16]),
                ActionRecord(second, Action.SENT_TO_REVIEW, NOW - 3 * DAY),
            )
            assert done.wait(10)
        watched = next(c for c in commands if c[0] == "WATCH")
        begin = next(i for i, c in enumerate(commands) if c[0] == "MULTI")
        written = [c[1] for c in commands[begin + 1 : -1]]
        keys = [k.strip('"') for k in [*watched[1:], *written]]
        assert any("actions:day" in k for k in keys) and any(":req:" in k for k in keys)
        assert {key_slot(k.encode()) for k in keys} == {key_slot(f"hs:{{m:{beta}}}".encode())}
    finally:
        watcher.close()
        store.close()


def test_a_sqlite_bank_from_before_the_hour_cells_gets_them_from_its_sightings(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = open_store(url)
    alpha, _, first, _ = two_entries(store)
    store.close()
    with sqlite3.connect(tmp_path / "old.db") as db:  # as a bank written by a version of schema 2 before the cells
        db.execute("DROP TABLE sighting_hours")
        db.execute(
            "CREATE TABLE sightings (id INTEGER PRIMARY KEY, entry_id INTEGER NOT NULL, member_id INTEGER NOT NULL,"
            " at REAL NOT NULL, verdict TEXT NOT NULL)"
        )
        db.executemany(
            "INSERT INTO sightings (entry_id, member_id, at, verdict) VALUES (?, ?, ?, 'block')",
            [(first, alpha, MIDNIGHT + n * HOUR) for n in range(3)],
        )
        db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    store = open_store(url)
    try:
        query = Rollup(by=(Dimension.HOUR,), start=MIDNIGHT, end=MIDNIGHT + DAY)
        assert store.sighting_rollup(query) == {(hour_of(MIDNIGHT) + n,): SightingTally(1, 1) for n in range(3)}
    finally:
        store.close()
    reopened = open_store(url)  # the fill happens once
    try:
        assert reopened.sighting_rollup(Rollup(start=MIDNIGHT, end=MIDNIGHT + DAY)) == {(): SightingTally(3, 1)}
    finally:
        reopened.close()
