"""The storage contract for the member directory, notices and the audit
trail (issue 6), on the SQLite store and a real Redis server."""

from __future__ import annotations

import hashlib
import itertools
import json
import sqlite3
import threading

import pytest
import redis

from hashshare import audit
from hashshare.errors import FailedPrecondition, InvalidArgument, NotFound
from hashshare.model import (
    AuditDraft,
    AuditFilter,
    ContactPoint,
    NoticeDecision,
    NoticeDraft,
    NoticeFilter,
    NoticeState,
    Role,
)
from hashshare.store import Store, open_store
from hashshare.store.sqlite import sqlite_path_from_url
from hashshare_client import LegalBasis, Signal, signal_types

NOW = 1_720_000_000.25
HOUR = 3600.0


def digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def notice_draft(platform_id: int, reference: str = "https://example.test/p/1") -> NoticeDraft:
    value = hashlib.sha256(reference.encode()).digest()
    return NoticeDraft(
        platform_id=platform_id,
        content_reference=reference,
        signals=(Signal(signal_types.PDQ.name, signal_types.PDQ.version, value, 90),),
        category="hate_speech",
        legal_basis=LegalBasis.LOCAL_LAW,
        legal_reference="Decree 72/2013, Article 5",
        description="a post inciting hatred",
    )


def audit_draft(n: int, member: str = "mem_1", method: str = "/hashshare.v1.SubmissionService/Submit") -> AuditDraft:
    return AuditDraft(NOW + n, member, ("trust_safety",), method, f"req-{n}", f"ent_{n}", "OK", "category=hate_speech")


DESK = ContactPoint("T&S desk", "trust_safety", "desk@platform.test", "+84 24 1234 5678")
LEGAL = ContactPoint("Legal", "legal", "legal@platform.test", "")


def test_contact_points_are_replaced_whole_and_kept_per_member(store: Store) -> None:
    a = store.create_member("A", frozenset({Role.PLATFORM}), NOW).member_id
    b = store.create_member("B", frozenset({Role.PLATFORM}), NOW).member_id
    assert store.contact_points([a, b]) == {}
    store.set_contact_points(a, [DESK, LEGAL], NOW)
    store.set_contact_points(b, [LEGAL], NOW)
    assert store.contact_points([a, b]) == {a: (DESK, LEGAL), b: (LEGAL,)}
    store.set_contact_points(a, [LEGAL], NOW + 1)
    store.set_contact_points(b, [], NOW + 1)
    assert store.contact_points([b, a, 999]) == {a: (LEGAL,)}
    with pytest.raises(NotFound):
        store.set_contact_points(999, [DESK], NOW)


def test_a_notice_is_filed_once_per_request_id_and_answered_once(store: Store) -> None:
    authority = store.create_member("Authority", frozenset({Role.AUTHORITY}), NOW).member_id
    platform = store.create_member("P", frozenset({Role.TRUST_SAFETY}), NOW).member_id
    draft = notice_draft(platform)
    filed = store.file_notice(authority, "r1", digest("r1"), draft, [DESK], NOW)
    assert (filed.state, filed.filed_at, filed.routed_to, filed.draft) == (NoticeState.OPEN, NOW, (DESK,), draft)
    assert store.file_notice(authority, "r1", digest("r1"), draft, [DESK], NOW + 5) == filed
    with pytest.raises(InvalidArgument):
        store.file_notice(authority, "r1", digest("other"), draft, [DESK], NOW)
    assert store.get_notice(filed.notice_id) == filed
    assert store.list_notices(0, 10, NoticeFilter()) == [filed]

    decision = NoticeDecision(NoticeState.REMOVED, "", platform, NOW + 2 * HOUR, 17)
    answered = store.answer_notice(filed.notice_id, "a1", digest("a1"), decision)
    assert (answered.state, answered.decided_at, answered.decided_by, answered.entry_id) == (
        NoticeState.REMOVED,
        NOW + 2 * HOUR,
        platform,
        17,
    )
    assert answered.seconds_to_decision == 2 * HOUR
    assert store.get_notice(filed.notice_id) == answered
    assert store.answer_notice(filed.notice_id, "a1", digest("a1"), decision) == answered  # a replay
    rejection = NoticeDecision(NoticeState.REJECTED, "lawful", platform, NOW + 3 * HOUR, None)
    with pytest.raises(FailedPrecondition):
        store.answer_notice(filed.notice_id, "a2", digest("a2"), rejection)
    assert store.get_notice(filed.notice_id) == answered
    with pytest.raises(NotFound):
        store.answer_notice(filed.notice_id + 100, "a3", digest("a3"), rejection)
    assert store.get_notice(filed.notice_id + 100) is None


def test_notices_are_listed_by_id_with_filters_and_paging(store: Store) -> None:
    authority = store.create_member("Authority", frozenset({Role.AUTHORITY}), NOW).member_id
    p1 = store.create_member("P1", frozenset({Role.TRUST_SAFETY}), NOW).member_id
    p2 = store.create_member("P2", frozenset({Role.TRUST_SAFETY}), NOW).member_id
    filed = [
        store.file_notice(authority, f"r{n}", digest(f"r{n}"), notice_draft((p1, p2)[n % 2], f"u{n}"), [], NOW + n)
        for n in range(7)
    ]
    store.answer_notice(filed[2].notice_id, "x", digest("x"), NoticeDecision(NoticeState.REJECTED, "no", p1, NOW, None))
    ids = [n.notice_id for n in filed]
    page1 = store.list_notices(0, 3, NoticeFilter())
    page2 = store.list_notices(page1[-1].notice_id, 3, NoticeFilter())
    page3 = store.list_notices(page2[-1].notice_id, 3, NoticeFilter())
    assert [n.notice_id for n in page1 + page2 + page3] == ids
    assert [n.notice_id for n in store.list_notices(0, 10, NoticeFilter(platform_id=p1))] == ids[0::2]
    open_p1 = store.list_notices(0, 10, NoticeFilter(platform_id=p1, state=NoticeState.OPEN))
    assert [n.notice_id for n in open_p1] == [ids[0], ids[4], ids[6]]
    window = store.list_notices(0, 10, NoticeFilter(filed_since=NOW + 2, filed_until=NOW + 5))
    assert [n.notice_id for n in window] == ids[2:5]


def test_audit_events_form_a_chain_and_are_listed_with_filters(store: Store) -> None:
    first = store.append_audit([audit_draft(1)])
    rest = store.append_audit([audit_draft(2, "mem_2"), audit_draft(3, method="/x/Retract"), audit_draft(4, "offline")])
    events = first + rest
    assert [e.sequence for e in events] == [1, 2, 3, 4]
    assert events[0].previous_hash == audit.GENESIS
    assert all(b.previous_hash == a.hash for a, b in itertools.pairwise(events))
    assert store.list_audit(0, 100) == events
    assert store.list_audit(2, 100) == events[2:]
    assert store.list_audit(0, 2) == events[:2]
    assert store.list_audit(0, 100, AuditFilter(member="mem_1")) == [events[0], events[2]]
    assert store.list_audit(0, 100, AuditFilter(method="/x/Retract")) == [events[2]]
    assert store.list_audit(0, 100, AuditFilter(since=NOW + 2, until=NOW + 4)) == events[1:3]
    checked = audit.verify(audit.all_events(store, page=3))
    assert checked.ok and checked.checked == 4 and checked.head_hash == events[-1].hash


def test_concurrent_appenders_on_two_connections_keep_the_chain_linear(store_url: str) -> None:
    stores = [open_store(store_url), open_store(store_url)]  # as two processes would
    try:

        def append(n: int) -> None:
            for i in range(40):
                stores[n % 2].append_audit([audit_draft(1000 * n + i), audit_draft(1000 * n + i + 500)])

        threads = [threading.Thread(target=append, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        events = list(audit.all_events(stores[0], page=50))
        assert [e.sequence for e in events] == list(range(1, 321))
        assert audit.verify(events).ok
    finally:
        for opened in stores:
            opened.close()


def _tamper(store_url: str, sequence: int, edit: dict[str, object] | None) -> None:
    """Edit (or, with None, delete) a stored audit event behind the store's back."""
    if store_url.startswith("sqlite"):
        with sqlite3.connect(sqlite_path_from_url(store_url)) as db:
            if edit is None:
                db.execute("DELETE FROM audit_events WHERE seq = ?", (sequence,))
            else:
                sets = ", ".join(f"{column} = ?" for column in edit)
                db.execute(f"UPDATE audit_events SET {sets} WHERE seq = ?", (*edit.values(), sequence))
        return
    client: redis.Redis | redis.RedisCluster
    if store_url.startswith("redis+cluster://"):
        host, _, port = store_url.removeprefix("redis+cluster://").split(",")[0].rpartition(":")
        client = redis.RedisCluster(host=host, port=int(port))
    else:
        client = redis.Redis.from_url(store_url)
    try:
        if edit is None:
            client.hdel("hs:{audit}:events", str(sequence))
        else:
            record = json.loads(client.hget("hs:{audit}:events", str(sequence)))  # type: ignore[arg-type]
            client.hset("hs:{audit}:events", str(sequence), json.dumps({**record, **edit}))
    finally:
        client.close()


@pytest.mark.parametrize(
    ("edit", "broken_at"),
    [
        ({"result": "OK", "target": "ent_999"}, 3),  # an edited field
        ({"detail": "category=harassment"}, 3),
        (None, 3),  # a removed event: the gap shows at its place
    ],
)
def test_a_tampered_audit_event_breaks_the_chain_where_it_was_changed(
    store_url: str, edit: dict[str, object] | None, broken_at: int
) -> None:
    store = open_store(store_url)
    try:
        store.append_audit([audit_draft(n) for n in range(1, 6)])
        assert audit.verify(audit.all_events(store)).ok
        _tamper(store_url, 3, edit)
        result = audit.verify(audit.all_events(store))
        assert not result.ok and result.broken_at == broken_at and result.checked == 2
    finally:
        store.close()
