"""Notices, contact points and notice statistics end to end: SDK -> real
gRPC server on loopback -> SQLite and Redis."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from PIL import Image

from hashshare.api.server import RunningServer
from hashshare_client import (
    Client,
    ContactPoint,
    Count,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    NoticeState,
    PermissionDeniedError,
    signals,
)
from hashshare_client.pb.hashshare.v1 import admin_pb2, admin_pb2_grpc, notice_pb2, notice_pb2_grpc
from tests.conftest import ServerFactory, encode, new_member
from tests.e2e.test_bank_flow import reencoded_copy
from tests.fixtures.notices import EXPECTED, seed_notices

DESK = ContactPoint("Trust & Safety desk", "trust_safety", "ts-desk@platform-a.test", "+84 24 3936 0000")
LEGAL = ContactPoint("Nguyễn Văn An", "legal", "legal@platform-a.test")


class Parties:
    """A running server with an admin, the authority, two platforms and a researcher."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.target = f"127.0.0.1:{server.port}"
        self.tokens = {
            "admin": new_member(server, "Operator", "admin"),
            "authority": new_member(server, "Ministry", "authority"),
            "a": new_member(server, "Platform A", "trust_safety", "platform"),
            "b": new_member(server, "Platform B", "trust_safety", "platform"),
            "researcher": new_member(server, "University", "researcher"),
        }
        self.ids = {m.name: f"mem_{m.member_id}" for m in server.bank.store.list_members()}
        self.clients = {name: Client(self.target, token) for name, token in self.tokens.items()}

    def __getitem__(self, name: str) -> Client:
        return self.clients[name]

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


@pytest.fixture
def parties(server_factory: ServerFactory, store_url: str) -> Iterator[Parties]:
    running = Parties(server_factory(store_url))
    yield running
    running.close()


def test_a_notice_is_routed_answered_by_its_platform_only_and_its_removal_then_matches(
    parties: Parties, photos: dict[str, Image.Image]
) -> None:
    platform_a = parties.ids["Platform A"]
    parties["admin"].set_contact_points(platform_a, [DESK, LEGAL])
    image = photos["astronaut"]
    filed = parties["authority"].file_notice(
        platform_a,
        signals.from_image(encode(image)),
        category="hate_speech.ethnicity",
        content_reference="https://platform-a.test/p/991",
        legal_reference="Decree 72/2013, Article 5",
        description="an image inciting hatred against an ethnic group",
    )
    assert filed.state is NoticeState.OPEN and filed.platform_id == platform_a
    assert filed.authority_id == parties.ids["Ministry"]
    assert filed.routed_to == (DESK, LEGAL)  # the contact points at filing time
    # Changing the directory later does not rewrite where the notice went.
    parties["admin"].set_contact_points(platform_a, [LEGAL])
    assert parties["a"].get_notice(filed.notice_id).routed_to == (DESK, LEGAL)

    # Another platform neither sees nor answers it; a researcher cannot list notices.
    with pytest.raises(PermissionDeniedError):
        parties["b"].answer_notice(filed.notice_id, "removed")
    with pytest.raises(PermissionDeniedError):
        parties["b"].get_notice(filed.notice_id)
    assert parties["b"].list_notices().notices == ()
    with pytest.raises(PermissionDeniedError):
        parties["b"].list_notices(platform_id=platform_a)
    with pytest.raises(PermissionDeniedError):
        parties["researcher"].list_notices()
    assert [n.notice_id for n in parties["a"].list_notices().notices] == [filed.notice_id]
    assert [n.notice_id for n in parties["authority"].list_notices(state="open").notices] == [filed.notice_id]

    # Before the decision, a re-upload is unknown to the bank.
    upload = signals.from_image(reencoded_copy(image))
    assert parties["b"].match(upload).verdict == "NONE"
    with pytest.raises(InvalidArgumentError) as refused:
        parties["a"].answer_notice(filed.notice_id, "rejected")
    assert [v.field for v in refused.value.field_violations] == ["reason"]

    removed_at = datetime.now(UTC) - timedelta(minutes=5)
    answered = parties["a"].answer_notice(filed.notice_id, "removed", removed_at=removed_at, request_id="answer-1")
    assert answered.state is NoticeState.REMOVED and answered.decided_by == platform_a
    assert answered.entry_id.startswith("ent_")
    assert answered.decided_at is not None and answered.filed_at is not None
    assert answered.seconds_to_decision == pytest.approx(
        (answered.decided_at - answered.filed_at).total_seconds(), abs=1e-5
    )
    assert answered.seconds_to_decision > 0

    # The removal is a bank entry as the platform's own Submit would be: it blocks re-uploads elsewhere.
    result = parties["b"].match(upload)
    assert result.verdict == "BLOCK" and result.matches[0].entry_id == answered.entry_id
    entry = parties["admin"].get_entry(answered.entry_id)
    (submission,) = entry.submissions
    assert submission.member_id == platform_a and submission.notice_reference == filed.notice_id
    assert submission.discovery_method == "authority_notice"
    assert submission.notice_received_at == filed.filed_at
    assert submission.removed_at == removed_at

    # A replay answers the same; a second decision is refused and changes nothing.
    assert (
        parties["a"].answer_notice(filed.notice_id, "removed", removed_at=removed_at, request_id="answer-1") == answered
    )
    with pytest.raises(FailedPreconditionError):
        parties["a"].answer_notice(filed.notice_id, "rejected", reason="changed our mind")
    assert parties["authority"].get_notice(filed.notice_id) == answered
    assert len(parties["admin"].get_entry(answered.entry_id).submissions) == 1


def test_a_rejected_notice_creates_no_entry_and_notices_page(parties: Parties) -> None:
    platform_b = parties.ids["Platform B"]
    filed = [
        parties["authority"].file_notice(
            platform_b,
            signals.from_text(f"Bọn chúng không xứng đáng sống ở đây, bài số {n}, hãy đuổi chúng đi ngay lập tức"),
            category="hate_speech",
            content_reference=f"post-{n}",
        )
        for n in range(5)
    ]
    rejected = parties["b"].answer_notice(filed[0].notice_id, "rejected", reason="satire, lawful")
    assert rejected.state is NoticeState.REJECTED and rejected.entry_id == "" and rejected.decision_reason
    seen, token, pages = [], "", 0
    while pages < 10:
        page = parties["b"].list_notices(page_size=2, page_token=token)
        seen += [n.notice_id for n in page.notices]
        pages, token = pages + 1, page.next_page_token
        if not token:
            break
    assert seen == [n.notice_id for n in filed] and pages == 3
    open_ones = parties["authority"].list_notices(platform_id=platform_b, state="open").notices
    assert [n.notice_id for n in open_ones] == [n.notice_id for n in filed[1:]]
    with pytest.raises(InvalidArgumentError):
        parties["b"].list_notices(page_token="not-a-token")


def test_bad_notices_are_refused_naming_every_field_and_store_nothing(parties: Parties) -> None:
    good = signals.from_text("Hãy đuổi hết bọn chúng ra khỏi thành phố này, chúng không đáng được sống")
    with pytest.raises(InvalidArgumentError) as refused:
        parties["authority"].file_notice(
            "", good, category="no_such_category", content_reference="", legal_basis="community_guidelines"
        )
    assert {v.field for v in refused.value.field_violations} == {"platform_id", "category", "content_reference"}
    # To a member that is not a platform, or to nobody.
    with pytest.raises(InvalidArgumentError) as refused:
        parties["authority"].file_notice(parties.ids["University"], good, category="hate_speech", content_reference="x")
    assert [v.field for v in refused.value.field_violations] == ["platform_id"]
    with pytest.raises(NotFoundError):
        parties["authority"].file_notice("mem_999", good, category="hate_speech", content_reference="x")
    # Only the authority files.
    with pytest.raises(PermissionDeniedError):
        parties["a"].file_notice(parties.ids["Platform B"], good, category="hate_speech", content_reference="x")
    # Signals are checked as Submit checks them: a raw message with a bad hash.
    with grpc.insecure_channel(parties.target) as channel:
        stub = notice_pb2_grpc.NoticeServiceStub(channel)
        request = notice_pb2.FileNoticeRequest(
            request_id="bad-1",
            platform_id=parties.ids["Platform A"],
            content_reference="x",
            category="hate_speech",
            legal_basis=2,
        )
        request.signals.add(type="image/pdq", version="pdq-1", hex="zz")
        with pytest.raises(grpc.RpcError) as raw:
            stub.FileNotice(request, metadata=[("authorization", f"Bearer {parties.tokens['authority']}")])
        assert raw.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert parties["authority"].list_notices().notices == ()


def test_contact_points_are_validated_listed_for_everyone_and_given_at_creation(parties: Parties) -> None:
    with pytest.raises(InvalidArgumentError) as refused:
        parties["admin"].set_contact_points(
            parties.ids["Platform A"],
            [ContactPoint("Desk", "trust_safety", "not-an-email"), ContactPoint("", "legal", "", "12")],
        )
    fields = {v.field for v in refused.value.field_violations}
    assert fields == {"contact_points[0].email", "contact_points[1].name", "contact_points[1].phone"}
    with pytest.raises(PermissionDeniedError):
        parties["a"].set_contact_points(parties.ids["Platform A"], [DESK])
    with pytest.raises(NotFoundError):
        parties["admin"].set_contact_points("mem_999", [DESK])

    with grpc.insecure_channel(parties.target) as channel:
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        metadata = [("authorization", f"Bearer {parties.tokens['admin']}")]
        created = admin.CreateMember(
            admin_pb2.CreateMemberRequest(
                request_id="create-c",
                name="Platform C",
                roles=["platform", "trust_safety"],
                contact_points=[admin_pb2.ContactPoint(name="Desk C", role="trust_safety", email="desk@c.test")],
            ),
            metadata=metadata,
        )
        assert [p.email for p in created.member.contact_points] == ["desk@c.test"]
        listed = {m.name: m for m in admin.ListMembers(admin_pb2.ListMembersRequest(), metadata=metadata).members}
        assert [p.name for p in listed["Platform C"].contact_points] == ["Desk C"]
        assert list(listed["Platform A"].contact_points) == []

    # Every role reads the directory, the researcher included.
    directory = {m.name: m for m in parties["researcher"].contact_points()}
    assert directory["Platform C"].contact_points == (ContactPoint("Desk C", "trust_safety", "desk@c.test"),)
    assert set(directory["Platform C"].roles) == {"platform", "trust_safety"}
    assert directory["Platform A"].contact_points == ()


def test_notice_stats_share_within_24_hours_equals_the_hand_computed_fixture(server_factory: ServerFactory) -> None:
    server = server_factory(research_min_count=1)
    seeded = seed_notices(server.bank.store)
    token = new_member(server, "University", "researcher")
    with Client(f"127.0.0.1:{server.port}", token) as researcher:
        stats = researcher.notice_stats(start=seeded.quarter_start, end=seeded.quarter_end)
    by_pseudonym = {s.platform: s for s in stats}
    assert len(by_pseudonym) == 2
    for name, expected in EXPECTED.items():
        row = by_pseudonym[server.bank.pseudonym(seeded.platform_ids[name])]
        assert row.share_decided_within_24h == pytest.approx(expected["share_decided_within_24h"])
        assert row.median_hours_to_decision == pytest.approx(expected["median_hours_to_decision"])
        for count in ("received", "decided", "decided_within_24h", "removed", "disabled", "rejected"):
            assert getattr(row, count) == Count(expected[count]), (name, count)
        assert row.platform.startswith("platform-") and name not in row.platform


def test_notice_stats_suppress_small_counts_and_hide_names(server_factory: ServerFactory) -> None:
    server = server_factory(research_min_count=5)
    seeded = seed_notices(server.bank.store)
    token = new_member(server, "University", "researcher")
    with Client(f"127.0.0.1:{server.port}", token) as researcher:
        stats = {s.platform: s for s in researcher.notice_stats(start=seeded.quarter_start, end=seeded.quarter_end)}
        everything = {s.platform: s for s in researcher.notice_stats()}
    a = stats[server.bank.pseudonym(seeded.platform_ids["Platform A"])]
    b = stats[server.bank.pseudonym(seeded.platform_ids["Platform B"])]
    withheld = Count(0, suppressed=True)
    assert (a.received, a.decided, a.decided_within_24h, a.removed, a.rejected) == (
        Count(6),
        Count(5),
        withheld,
        withheld,
        withheld,
    )
    assert a.share_decided_within_24h == pytest.approx(0.5)
    assert (b.received, b.decided, b.decided_within_24h) == (Count(5), withheld, withheld)
    # Without a period the notices outside the quarter count too.
    assert everything[a.platform].received == Count(7) and everything[b.platform].received == Count(6)
    assert all(s.platform.startswith("platform-") for s in stats.values())


def test_notice_service_is_in_reflection_and_health(server_factory: ServerFactory) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    server = server_factory()
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        listed = next(reflection.ServerReflectionInfo(iter([request]))).list_services_response.service
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest(service="hashshare.v1.NoticeService")).status
    assert "hashshare.v1.NoticeService" in {s.name for s in listed}
    assert status == health_pb2.HealthCheckResponse.SERVING


def test_the_async_client_files_lists_and_answers_notices(parties: Parties) -> None:
    import asyncio

    from hashshare_client import AsyncClient

    platform_a = parties.ids["Platform A"]
    text = signals.from_text("Hãy đuổi hết bọn chúng ra khỏi thành phố này, chúng không đáng được sống ở đây")

    async def scenario() -> tuple[str, str, int, int]:
        async with (
            AsyncClient(parties.target, parties.tokens["authority"]) as authority,
            AsyncClient(parties.target, parties.tokens["a"]) as platform,
            AsyncClient(parties.target, parties.tokens["admin"]) as admin,
        ):
            await admin.set_contact_points(platform_a, [DESK])
            filed = await authority.file_notice(platform_a, text, category="hate_speech", content_reference="p/7")
            listed = await platform.list_notices()
            answered = await platform.answer_notice(filed.notice_id, "disabled")
            directory = await platform.contact_points()
            audit = await admin.audit_events(method="/hashshare.v1.NoticeService/AnswerNotice")
            stats = await authority.notice_stats()
            assert [n.notice_id for n in listed.notices] == [filed.notice_id] and filed.routed_to == (DESK,)
            assert (await authority.get_notice(filed.notice_id)) == answered
            assert len(stats) == 1 and stats[0].received.suppressed  # one notice: suppressed
            return answered.state, answered.entry_id, len(directory), len(audit.events)

    state, entry_id, members, answers = asyncio.run(scenario())
    assert state is NoticeState.DISABLED and entry_id.startswith("ent_")
    assert members == 5 and answers == 1
