"""Trust and safety through a running server: disputes, corroboration of
provisional members, reviews, the allow-list, trust levels and throttling."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from PIL import Image

from hashshare.api.server import RunningServer
from hashshare.bank import Bank
from hashshare.model import TrustLevel
from hashshare.settings import Settings
from hashshare.store import open_store
from hashshare.store.sqlite import SqliteStore
from hashshare.taxonomy import Taxonomy
from hashshare_client import (
    Client,
    Count,
    InvalidArgumentError,
    ItemError,
    NotFoundError,
    PermissionDeniedError,
    Removal,
    ResourceExhaustedError,
    Signal,
    SubmitResult,
    signals,
)
from hashshare_client.pb.hashshare.v1 import admin_pb2, admin_pb2_grpc, submission_pb2, submission_pb2_grpc
from tests.conftest import ServerFactory, encode, new_member


def reencoded(image: Image.Image) -> list[Signal]:
    """An upload's signals: the photo downscaled and recompressed."""
    width, height = image.size
    return signals.from_image(encode(image.resize((width * 3 // 4, height * 3 // 4)), "JPEG", quality=40))


def original(image: Image.Image) -> list[Signal]:
    return signals.from_image(encode(image))


class Members:
    """A running server with trusted and provisional trust-and-safety teams,
    a platform, the authority and an admin, each with its own client."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.target = f"127.0.0.1:{server.port}"
        self._clients: list[Client] = []
        self.alpha = self.client("alpha", "trust_safety", "platform")
        self.beta = self.client("beta", "trust_safety", "platform")
        self.gamma = self.client("gamma", "trust_safety", "platform")
        self.newcomer = self.client("newcomer", "trust_safety", trust_level=TrustLevel.PROVISIONAL)
        self.platform = self.client("platform", "platform")
        self.authority = self.client("authority", "authority")
        self.admin_token = new_member(server, "operator", "admin")
        self.admin = self._open(self.admin_token)

    def client(self, name: str, *roles: str, trust_level: TrustLevel = TrustLevel.TRUSTED) -> Client:
        return self._open(new_member(self.server, name, *roles, trust_level=trust_level))

    def _open(self, token: str) -> Client:
        client = Client(self.target, token)
        self._clients.append(client)
        return client

    def member_id(self, name: str) -> str:
        return next(f"mem_{m.member_id}" for m in self.server.bank.store.list_members() if m.name == name)

    def close(self) -> None:
        for client in self._clients:
            client.close()


@pytest.fixture
def bank(server_factory: ServerFactory, store_url: str) -> Iterator[Members]:
    members = Members(server_factory(store_url))
    yield members
    members.close()


def test_a_disputed_entry_drops_to_review_until_a_reviewer_confirms_it(
    bank: Members, photos: dict[str, Image.Image]
) -> None:
    entry = bank.alpha.submit(original(photos["chelsea"]), category="hate_speech").entry_id
    upload = reencoded(photos["chelsea"])
    assert bank.platform.match(upload).verdict == "BLOCK"

    one = bank.beta.give_feedback(entry, "disagree", reason="lawful", comment="a cat, not hate")
    assert (one.disputes, one.verdict, one.held_reasons) == (1, "BLOCK", ())
    assert bank.platform.match(upload).verdict == "BLOCK"  # one dispute is not enough (--disputes-to-review 2)

    two = bank.gamma.give_feedback(entry, "disagree", reason="not_hateful")
    assert (two.disputes, two.verdict, two.held_reasons) == (2, "REVIEW", ("disputed",))
    held = bank.platform.match(upload)
    assert held.verdict == "REVIEW"
    assert [(m.entry_id, m.verdict, m.held_reasons) for m in held.matches] == [(entry, "REVIEW", ("disputed",))]
    shown = bank.platform.get_entry(entry)
    assert (shown.disputes, shown.verdict, shown.held_reasons, shown.status) == (2, "REVIEW", ("disputed",), "active")
    assert shown.feedback == ()  # a platform sees no one's opinion but its own

    # A second opinion replaces the first: gamma changes its mind.
    changed = bank.gamma.give_feedback(entry, "agree")
    assert (changed.agreements, changed.disputes, changed.verdict) == (1, 1, "BLOCK")
    bank.gamma.give_feedback(entry, "disagree", reason="wrong_category")
    assert bank.platform.match(upload).verdict == "REVIEW"

    confirmed = bank.authority.review_entry(entry, "confirm")
    assert (confirmed.confirmed, confirmed.verdict, confirmed.held_reasons) == (True, "BLOCK", ())
    assert [f.opinion for f in confirmed.feedback] == ["disagree", "disagree"]  # the reviewer sees everyone's
    assert bank.platform.match(upload).verdict == "BLOCK"


def test_a_provisional_members_submission_blocks_only_after_a_second_member_submits_it(
    bank: Members, photos: dict[str, Image.Image]
) -> None:
    submitted = bank.newcomer.submit(original(photos["coffee"]), category="hate_speech")
    upload = reencoded(photos["coffee"])

    held = bank.platform.match(upload)
    assert held.verdict == "REVIEW"
    assert held.matches[0].held_reasons == ("awaiting_corroboration",)
    assert bank.newcomer.get_entry(submitted.entry_id).verdict == "REVIEW"

    # Another member removed the same photo (re-encoded): it joins the entry and corroborates it.
    corroborated = bank.beta.submit(upload, category="hate_speech")
    assert corroborated.entry_id == submitted.entry_id and corroborated.joined_existing
    assert corroborated.corroborations == 2
    found = bank.platform.match(upload)
    assert (found.verdict, found.matches[0].held_reasons) == ("BLOCK", ())


def test_a_provisional_members_submission_blocks_after_agreement_or_a_reviewers_confirmation(
    bank: Members, photos: dict[str, Image.Image]
) -> None:
    agreed = bank.newcomer.submit(original(photos["rocket"]), category="hate_speech").entry_id
    confirmed = bank.newcomer.submit(original(photos["motorcycle"]), category="hate_speech").entry_id
    assert bank.platform.match(reencoded(photos["rocket"])).verdict == "REVIEW"
    assert bank.platform.match(reencoded(photos["motorcycle"])).verdict == "REVIEW"

    # The submitter agreeing with itself corroborates nothing; a second member's "seen too" does.
    assert bank.newcomer.give_feedback(agreed, "agree").verdict == "REVIEW"
    assert bank.gamma.give_feedback(agreed, "seen_too").verdict == "BLOCK"
    assert bank.platform.match(reencoded(photos["rocket"])).verdict == "BLOCK"

    with pytest.raises(PermissionDeniedError):
        bank.alpha.review_entry(confirmed, "confirm")  # trust-and-safety teams do not review
    reviewed = bank.authority.review_entry(confirmed, "confirm", reason="checked against notice CV-17")
    assert (reviewed.confirmed, reviewed.last_review, reviewed.verdict) == (True, "confirm", "BLOCK")
    assert bank.platform.match(reencoded(photos["motorcycle"])).verdict == "BLOCK"


def test_trusting_a_member_releases_its_entries_at_once(bank: Members, photos: dict[str, Image.Image]) -> None:
    bank.newcomer.submit(original(photos["astronaut"]), category="hate_speech")
    upload = reencoded(photos["astronaut"])
    assert bank.platform.match(upload).verdict == "REVIEW"
    newcomer = bank.member_id("newcomer")

    promoted = bank.admin.set_trust_level(newcomer, "trusted", reason="vetted by the programme")
    assert promoted.trust_level == "trusted"
    assert bank.platform.match(upload).verdict == "BLOCK"
    assert bank.admin.set_trust_level(newcomer, "provisional").trust_level == "provisional"
    assert bank.platform.match(upload).verdict == "REVIEW"


def test_an_allow_listed_photo_never_blocks_even_when_submitted_as_hateful(
    bank: Members, photos: dict[str, Image.Image]
) -> None:
    allowed = bank.authority.add_to_allow_list(original(photos["astronaut"]), label="news photo: NASA portrait")
    assert allowed.allow_id.startswith("alw_") and allowed.label == "news photo: NASA portrait"
    assert all(s.variant in ("", "trimmed", "top85", "bottom85", "center80", "center60") for s in allowed.signals)

    # Accepted (the removal is on record) but held: a trusted member cannot get it blocked.
    submitted = bank.alpha.submit(original(photos["astronaut"]), category="hate_speech")
    upload = reencoded(photos["astronaut"])
    held = bank.platform.match(upload)
    assert held.verdict == "REVIEW"
    assert [(m.entry_id, m.held_reasons) for m in held.matches] == [(submitted.entry_id, ("allow_listed",))]
    assert bank.alpha.get_entry(submitted.entry_id).held_reasons == ("allow_listed",)
    # Other content still blocks.
    other = bank.alpha.submit(original(photos["coffee"]), category="hate_speech")
    assert bank.platform.match(reencoded(photos["coffee"])).matches[0].entry_id == other.entry_id
    assert bank.platform.match(reencoded(photos["coffee"])).verdict == "BLOCK"

    assert [i.allow_id for i in bank.alpha.list_allow_list()] == [allowed.allow_id]
    bank.authority.remove_from_allow_list(allowed.allow_id, reason="was a mistake")
    assert bank.platform.match(upload).verdict == "BLOCK"
    assert bank.authority.list_allow_list() == []


def test_the_allow_list_reaches_every_process_through_the_feed(
    server_factory: ServerFactory, photos: dict[str, Image.Image]
) -> None:
    first = server_factory()
    second = server_factory(first.bank.settings.store)  # another process's bank on the same store
    ts = new_member(first, "alpha", "trust_safety")
    authority = new_member(first, "authority", "authority")
    platform = new_member(first, "platform", "platform")
    upload = reencoded(photos["camera"])
    with (
        Client(f"127.0.0.1:{first.port}", ts) as alpha,
        Client(f"127.0.0.1:{first.port}", authority) as reviewer,
        Client(f"127.0.0.1:{second.port}", platform) as elsewhere,
    ):
        alpha.submit(original(photos["camera"]), category="hate_speech")
        reviewer.add_to_allow_list(original(photos["camera"]), label="press photo")
        verdicts = []
        for _ in range(100):  # the other process polls the feed every 20 ms
            verdicts.append(elsewhere.match(upload).verdict)
            if verdicts[-1] == "REVIEW":
                break
        assert verdicts[-1] == "REVIEW", verdicts


def test_the_allow_list_survives_a_restart_from_the_index_snapshot(
    server_factory: ServerFactory, photos: dict[str, Image.Image], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = f"sqlite:///{tmp_path / 'restart.db'}"
    first = server_factory(store)
    authority = new_member(first, "authority", "authority")
    ts, platform = new_member(first, "alpha", "trust_safety"), new_member(first, "platform", "platform")
    with Client(f"127.0.0.1:{first.port}", authority) as reviewer, Client(f"127.0.0.1:{first.port}", ts) as alpha:
        reviewer.add_to_allow_list(original(photos["retina"]), label="medical textbook figure")
        alpha.submit(original(photos["retina"]), category="hate_speech")
    first.stop(grace=0)  # writes the index snapshot, allow-list rows included
    assert (tmp_path / "restart.db.snapshot").exists()

    def refuse(self: SqliteStore) -> None:
        raise AssertionError("the index was read from the store, not the snapshot")

    monkeypatch.setattr(SqliteStore, "active_signals", refuse)
    monkeypatch.setattr(SqliteStore, "allowed_signals", refuse)
    second = server_factory(store)
    with Client(f"127.0.0.1:{second.port}", platform) as client:
        assert client.match(reencoded(photos["retina"])).verdict == "REVIEW"


def test_a_disabled_entry_stops_matching_and_re_enabling_restores_it(
    bank: Members, photos: dict[str, Image.Image]
) -> None:
    entry = bank.alpha.submit(original(photos["hubble_deep_field"]), category="hate_speech").entry_id
    upload = reencoded(photos["hubble_deep_field"])
    assert bank.platform.match(upload).verdict == "BLOCK"

    with pytest.raises(InvalidArgumentError) as missing:
        bank.authority.review_entry(entry, "disable")
    assert [v.field for v in missing.value.field_violations] == ["reason"]
    disabled = bank.authority.review_entry(entry, "disable", reason="lawful astronomy image")
    assert (disabled.status, disabled.verdict, disabled.last_review_reason) == (
        "disabled",
        "NONE",
        "lawful astronomy image",
    )
    assert bank.platform.match(upload).verdict == "NONE"
    # A copy submitted again joins the disabled entry instead of blocking anew.
    again = bank.beta.submit(upload, category="hate_speech")
    assert again.entry_id == entry and again.joined_existing
    assert bank.platform.match(upload).verdict == "NONE"

    enabled = bank.authority.review_entry(entry, "enable", reason="appeal rejected")
    assert (enabled.status, enabled.verdict) == ("active", "BLOCK")
    assert bank.platform.match(upload).verdict == "BLOCK"


def test_feedback_is_validated_field_by_field_and_a_refused_call_stores_nothing(
    bank: Members, photos: dict[str, Image.Image]
) -> None:
    entry = bank.alpha.submit(original(photos["retina"]), category="hate_speech").entry_id

    with pytest.raises(InvalidArgumentError) as no_reason:
        bank.beta.give_feedback(entry, "disagree")
    assert [v.field for v in no_reason.value.field_violations] == ["reason"]
    with pytest.raises(InvalidArgumentError) as stray_reason:
        bank.beta.give_feedback(entry, "agree", reason="lawful")
    assert [v.field for v in stray_reason.value.field_violations] == ["reason"]
    with pytest.raises(InvalidArgumentError) as long_comment:
        bank.beta.give_feedback(entry, "seen_too", comment="x" * 1001)
    assert [v.field for v in long_comment.value.field_violations] == ["comment"]
    with pytest.raises(NotFoundError):
        bank.beta.give_feedback("ent_999", "agree")
    # Every bad field at once, through the raw API.
    with grpc.insecure_channel(bank.target) as channel:
        stub = submission_pb2_grpc.SubmissionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as raw:
            stub.GiveFeedback(
                submission_pb2.GiveFeedbackRequest(request_id="", entry_id="entry-1"),
                metadata=(("authorization", f"Bearer {new_member(bank.server, 'raw', 'platform')}"),),
            )
        assert raw.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        details = raw.value.details() or ""
        assert all(field in details for field in ("request_id", "entry_id", "opinion"))

    shown = bank.alpha.get_entry(entry)
    assert (shown.agreements, shown.disputes, shown.seen_too, shown.feedback) == (0, 0, 0, ())
    # A replayed request answers the first result and stores nothing new.
    first = bank.beta.give_feedback(entry, "disagree", reason="bad_hash", request_id="fb-1")
    bank.beta.give_feedback(entry, "agree")
    assert bank.beta.give_feedback(entry, "disagree", reason="bad_hash", request_id="fb-1") == first
    assert bank.alpha.get_entry(entry).agreements == 1


def test_a_member_submitting_too_fast_is_refused_and_flagged_until_an_admin_clears_it(
    server_factory: ServerFactory, photos: dict[str, Image.Image]
) -> None:
    server = server_factory(submit_rate_limit=3)
    target = f"127.0.0.1:{server.port}"
    admin_token = new_member(server, "operator", "admin")
    with (
        Client(target, new_member(server, "burst", "trust_safety", "platform")) as burst,
        Client(target, admin_token) as admin,
        grpc.insecure_channel(target) as channel,
    ):
        names = ["astronaut", "coffee", "chelsea", "rocket", "motorcycle"]
        for name in names[:3]:
            assert isinstance(burst.submit(original(photos[name]), category="hate_speech"), SubmitResult)
        with pytest.raises(ResourceExhaustedError) as refused:
            burst.submit(original(photos["rocket"]), category="hate_speech")
        assert refused.value.reason == "RATE_LIMITED"
        assert burst.match(reencoded(photos["rocket"])).verdict == "NONE"  # refused, not stored
        batch = burst.submit_many([Removal(original(photos["motorcycle"]), category="hate_speech")])
        assert isinstance(batch[0], ItemError) and batch[0].code == "RESOURCE_EXHAUSTED"

        stub = admin_pb2_grpc.AdminServiceStub(channel)
        metadata = (("authorization", f"Bearer {admin_token}"),)
        listed = {m.name: m for m in stub.ListMembers(admin_pb2.ListMembersRequest(), metadata=metadata).members}
        flagged = listed["burst"]
        assert flagged.flagged and "faster than 3 per minute" in flagged.flag_reason
        assert flagged.HasField("flagged_at") and flagged.trust_level == admin_pb2.TRUST_LEVEL_TRUSTED
        assert not listed["operator"].flagged

        cleared = admin.clear_flag(flagged.member_id, reason="a backfill, agreed by phone")
        assert not cleared.flagged and cleared.flagged_at is None
        # The window still holds: cleared is not unthrottled.
        with pytest.raises(ResourceExhaustedError):
            burst.submit(original(photos["rocket"]), category="hate_speech")


def test_new_members_are_provisional_unless_the_admin_says_otherwise(server_factory: ServerFactory) -> None:
    server = server_factory()
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = admin_pb2_grpc.AdminServiceStub(channel)
        metadata = (("authorization", f"Bearer {new_member(server, 'operator', 'admin')}"),)
        default = stub.CreateMember(
            admin_pb2.CreateMemberRequest(request_id="c-1", name="new platform", roles=["trust_safety"]),
            metadata=metadata,
        )
        trusted = stub.CreateMember(
            admin_pb2.CreateMemberRequest(
                request_id="c-2", name="vetted", roles=["trust_safety"], trust_level=admin_pb2.TRUST_LEVEL_TRUSTED
            ),
            metadata=metadata,
        )
        assert default.member.trust_level == admin_pb2.TRUST_LEVEL_PROVISIONAL
        assert trusted.member.trust_level == admin_pb2.TRUST_LEVEL_TRUSTED
        with pytest.raises(grpc.RpcError) as bad:
            stub.SetTrustLevel(admin_pb2.SetTrustLevelRequest(request_id="s-1", member_id="mem_x"), metadata=metadata)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert all(field in (bad.value.details() or "") for field in ("member_id", "trust_level"))


def test_researchers_read_feedback_per_platform_pseudonym_with_small_counts_suppressed(
    server_factory: ServerFactory, photos: dict[str, Image.Image]
) -> None:
    server = server_factory(research_min_count=2)
    target = f"127.0.0.1:{server.port}"
    tokens = {name: new_member(server, name, "trust_safety", "platform") for name in ("alpha", "beta", "gamma")}
    clients = {name: Client(target, token) for name, token in tokens.items()}
    researcher = Client(target, new_member(server, "university", "researcher"))
    try:
        first = clients["alpha"].submit(original(photos["chelsea"]), category="hate_speech").entry_id
        second = clients["alpha"].submit(original(photos["coffee"]), category="hate_speech").entry_id
        for entry in (first, second):
            clients["beta"].give_feedback(entry, "disagree", reason="lawful")
        clients["gamma"].give_feedback(first, "seen_too")

        stats = researcher.feedback_stats()
        by_platform = {s.platform: s for s in stats}
        pseudonyms = {m.name: server.bank.pseudonym(m.member_id) for m in server.bank.store.list_members()}
        assert set(by_platform) == {pseudonyms["alpha"], pseudonyms["beta"], pseudonyms["gamma"]}
        assert not any(name in repr(stats) for name in ("alpha", "beta", "gamma", "mem_"))
        assert by_platform[pseudonyms["alpha"]].disputes_received == Count(2)
        assert by_platform[pseudonyms["beta"]].disputes_given == Count(2)
        assert by_platform[pseudonyms["gamma"]].seen_too_given.suppressed  # 1 < 2
        later = datetime.now(UTC) + timedelta(days=1)
        assert researcher.feedback_stats(start=later, end=later + timedelta(days=1)) == []
        with pytest.raises(PermissionDeniedError):
            clients["alpha"].feedback_stats()
        with pytest.raises(InvalidArgumentError):
            researcher.feedback_stats(start=later, end=later - timedelta(days=1))
    finally:
        for client in (*clients.values(), researcher):
            client.close()


def test_the_default_trust_of_new_members_is_a_setting_and_bad_values_stop_the_server(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = server_factory(new_member_trust="trusted")
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        created = admin_pb2_grpc.AdminServiceStub(channel).CreateMember(
            admin_pb2.CreateMemberRequest(request_id="c-1", name="open programme", roles=["trust_safety"]),
            metadata=(("authorization", f"Bearer {new_member(server, 'operator', 'admin')}"),),
        )
    assert created.member.trust_level == admin_pb2.TRUST_LEVEL_TRUSTED

    store = open_store(f"sqlite:///{tmp_path / 'refused.db'}")
    try:
        with pytest.raises(ValueError, match="--new-member-trust must be one of provisional, trusted"):
            Bank(store, Settings(new_member_trust="royal"), Taxonomy())
        with pytest.raises(ValueError, match="--disputes-to-review must be at least 1"):
            Bank(store, Settings(disputes_to_review=0), Taxonomy())
    finally:
        store.close()
