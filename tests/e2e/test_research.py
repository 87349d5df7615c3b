"""Platform actions and spread analytics through a real server: what a
researcher may read, what it may never see, and what is withheld."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import text_format
from PIL import Image

from hashshare.api.server import RunningServer
from hashshare_client import (
    Action,
    ActionReport,
    AsyncClient,
    Client,
    Count,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    signals,
)
from hashshare_client.pb.hashshare.v1 import match_pb2, match_pb2_grpc, research_pb2, research_pb2_grpc
from tests.conftest import ServerFactory, encode, new_member

NAMES = ("Alpha Social", "Beta Video", "Gamma Chat", "University Lab")


def reencoded(image: Image.Image) -> bytes:
    width, height = image.size
    return encode(image.resize((width * 2 // 3, height * 2 // 3)), "JPEG", quality=35)


class Scene:
    """A bank with one removal that two platforms keep seeing."""

    def __init__(self, server: RunningServer, photo: Image.Image) -> None:
        self.server = server
        self.target = f"127.0.0.1:{server.port}"
        tokens = [
            new_member(server, NAMES[0], "trust_safety", "platform"),
            new_member(server, NAMES[1], "platform"),
            new_member(server, NAMES[2], "platform"),
            new_member(server, NAMES[3], "researcher"),
        ]
        self.ts, self.beta, self.gamma, self.researcher = (Client(self.target, t) for t in tokens)
        self.beta_token, self.researcher_token = tokens[1], tokens[3]
        self.now = datetime.now(UTC)
        self.removed_at = self.now - timedelta(hours=2)
        self.entry_id = self.ts.submit(
            signals.from_image(encode(photo)),
            category="hate_speech",
            notice_received_at=self.now - timedelta(hours=5),
            removed_at=self.removed_at,
        ).entry_id
        self.copy = signals.from_image(reencoded(photo))

    def sight(self, client: Client, times: int) -> None:
        for _ in range(times):
            assert client.match(self.copy).verdict == "BLOCK"

    def wait_for_sightings(self, count: int) -> None:
        """Sightings are written in batches: poll (bounded) until they are in."""
        admin = Client(self.target, new_member(self.server, f"admin-{time.monotonic()}", "admin"))
        deadline = time.monotonic() + 10
        with admin:
            while admin.spread(self.entry_id).sightings < count and time.monotonic() < deadline:
                time.sleep(0.05)

    def period(self) -> tuple[datetime, datetime]:
        return self.now - timedelta(days=1), self.now + timedelta(days=1)

    def close(self) -> None:
        for client in (self.ts, self.beta, self.gamma, self.researcher):
            client.close()


@pytest.fixture
def scene(server_factory: ServerFactory, store_url: str, photos: dict[str, Image.Image]) -> Iterator[Scene]:
    made = Scene(server_factory(store_url, research_min_count=2), photos["chelsea"])
    yield made
    made.close()


def test_a_researcher_reads_spread_figures_of_reuploads_and_actions(scene: Scene) -> None:
    scene.sight(scene.beta, 3)
    scene.sight(scene.gamma, 2)
    acted = scene.now - timedelta(minutes=1)
    assert (
        scene.beta.report_actions(
            [
                ActionReport(scene.entry_id, Action.BLOCKED, acted, "upload-1"),
                ActionReport(scene.entry_id, Action.BLOCKED, acted, "upload-2"),
                ActionReport(scene.entry_id, Action.SENT_TO_REVIEW, acted, "upload-3"),
            ]
        )
        == 3
    )
    assert scene.gamma.report_actions([ActionReport(scene.entry_id, "removed_after_review", acted, "x")] * 2) == 1
    scene.gamma.report_actions([ActionReport(scene.entry_id, Action.REMOVED_AFTER_REVIEW, acted)])
    scene.wait_for_sightings(5)

    spread = scene.researcher.spread(scene.entry_id)
    assert (spread.sightings, spread.distinct_platforms, spread.category) == (5, 2, "hate_speech")
    assert spread.first_removed_at == scene.removed_at.replace(microsecond=scene.removed_at.microsecond)
    assert spread.actions is not None and spread.delay is not None
    assert spread.actions.blocked == Count(2) and spread.actions.removed_after_review == Count(2)
    assert spread.actions.sent_to_review == Count(0, suppressed=True)  # 1 is below the minimum of 2
    assert spread.actions.share_blocked == pytest.approx(4 / 5)
    # Seen about two hours after the removal (to the middle of the hour).
    assert 1.5 <= spread.delay.median_hours <= 2.5 and 1.5 <= spread.delay.p90_hours <= 2.5
    assert spread.delay.histogram == (Count(0), Count(5), Count(0), Count(0), Count(0))

    start, end = scene.period()
    series = scene.researcher.spread_series(start, end)
    assert [p.start for p in series] == [(start + timedelta(days=n)).date() for n in range(3)]
    today = next(p for p in series if p.start == scene.now.date())
    assert (today.reupload_attempts, today.distinct_platforms) == (Count(5), Count(2))
    assert today.actions.blocked == Count(2)
    assert sum(p.reupload_attempts.value for p in series) == 5
    weekly = scene.researcher.spread_series(start, end, granularity="week", category="hate_speech")
    assert sum(p.reupload_attempts.value for p in weekly) == 5
    # Weeks start on Mondays; the first starts where the period does.
    assert weekly[0].start == start.date() and all(p.start.weekday() == 0 for p in weekly[1:])
    assert scene.researcher.spread_series(start, end, category="violent_extremism")[1].reupload_attempts == Count(0)
    one = scene.researcher.spread_series(start, end, entry_id=scene.entry_id)
    assert sum(p.reupload_attempts.value for p in one) == 5

    (top,) = scene.researcher.top_clusters(start, end)
    assert (top.entry_id, top.category, top.reupload_attempts, top.distinct_platforms) == (
        scene.entry_id,
        "hate_speech",
        Count(5),
        Count(2),
    )
    assert top.delay.histogram[1] == Count(5)
    assert scene.researcher.top_clusters(start, end, category="violent_extremism") == []

    platforms = scene.researcher.platform_stats(start, end)
    assert sorted(p.reupload_attempts.value for p in platforms) == [0, 2, 3]
    assert sorted(p.actions.blocked.value for p in platforms) == [0, 0, 2]
    submitter = next(p for p in platforms if p.reupload_attempts == Count(0))
    assert submitter.submissions == Count(0, suppressed=True)  # one submission only
    assert submitter.median_hours_to_removal == 0.0  # withheld with it

    categories = {c.category: c for c in scene.researcher.category_stats(start, end)}
    assert categories["hate_speech"].reupload_attempts == Count(5)
    assert categories["hate_speech"].distinct_platforms == Count(2)
    assert categories["hate_speech"].entries == Count(0, suppressed=True)
    assert categories["violent_extremism"].reupload_attempts == Count(0)


def test_research_answers_carry_no_member_name_id_or_raw_hash(scene: Scene) -> None:
    scene.sight(scene.beta, 2)
    scene.sight(scene.gamma, 2)
    scene.beta.report_actions([ActionReport(scene.entry_id, Action.BLOCKED, item_id=f"i{n}") for n in range(2)])
    scene.wait_for_sightings(4)
    stored = scene.ts.get_entry(scene.entry_id).signals
    assert stored
    start, end = scene.period()
    period = research_pb2.Period()
    period.start.FromDatetime(start)
    period.end.FromDatetime(end)
    metadata = (("authorization", f"Bearer {scene.researcher_token}"),)
    with grpc.insecure_channel(scene.target) as channel:
        stub = research_pb2_grpc.ResearchServiceStub(channel)
        answers = [
            stub.GetSpread(research_pb2.GetSpreadRequest(entry_id=scene.entry_id), metadata=metadata),
            stub.GetSpreadSeries(research_pb2.GetSpreadSeriesRequest(period=period), metadata=metadata),
            stub.ListTopClusters(research_pb2.ListTopClustersRequest(period=period), metadata=metadata),
            stub.GetPlatformStats(research_pb2.GetPlatformStatsRequest(period=period), metadata=metadata),
            stub.GetCategoryStats(research_pb2.GetCategoryStatsRequest(period=period), metadata=metadata),
        ]
    wire = b"".join(a.SerializeToString() for a in answers)
    text = "".join(text_format.MessageToString(a) for a in answers)
    platforms = {p.platform for p in answers[3].platforms}
    assert len(platforms) == 3 and all(p.startswith("platform-") for p in platforms)
    assert {p.platform for p in answers[0].platforms} <= platforms  # one pseudonym per member everywhere
    for name in NAMES:
        assert name.encode() not in wire and name not in text
    assert b"mem_" not in wire and "mem_" not in text
    for signal in stored:
        assert signal.value not in wire
        assert signal.hex not in text and signal.hex.upper() not in text


def test_counts_below_the_minimum_are_withheld_everywhere(
    server_factory: ServerFactory, photos: dict[str, Image.Image]
) -> None:
    scene = Scene(server_factory(research_min_count=5), photos["coffee"])
    try:
        scene.sight(scene.beta, 3)
        scene.beta.report_actions([ActionReport(scene.entry_id, Action.BLOCKED, item_id="a")])
        scene.wait_for_sightings(3)
        withheld = Count(0, suppressed=True)
        spread = scene.researcher.spread(scene.entry_id)
        assert (spread.sightings, spread.distinct_platforms, spread.platforms) == (0, 0, ())
        assert (spread.daily, spread.first_seen, spread.last_seen) == ((), None, None)
        assert spread.actions is not None and spread.actions.blocked == withheld
        assert spread.actions.share_blocked == 0.0
        assert spread.delay is not None and spread.delay.histogram[1] == withheld
        assert spread.delay.median_hours == 0.0
        start, end = scene.period()
        today = next(p for p in scene.researcher.spread_series(start, end) if p.start == scene.now.date())
        assert (today.reupload_attempts, today.distinct_platforms, today.actions.blocked) == (withheld,) * 3
        (top,) = scene.researcher.top_clusters(start, end)
        assert (top.reupload_attempts, top.distinct_platforms) == (withheld, withheld)
        assert {p.reupload_attempts for p in scene.researcher.platform_stats(start, end)} == {Count(0), withheld}
        hate = next(c for c in scene.researcher.category_stats(start, end) if c.category == "hate_speech")
        assert (hate.reupload_attempts, hate.distinct_platforms, hate.submissions) == (withheld,) * 3
    finally:
        scene.close()


def test_report_action_refuses_bad_reports_whole_and_is_idempotent(
    server_factory: ServerFactory, photos: dict[str, Image.Image]
) -> None:
    scene = Scene(server_factory(research_min_count=1), photos["rocket"])
    try:
        future = scene.now + timedelta(hours=1)
        with pytest.raises(InvalidArgumentError) as refused:
            scene.beta.report_actions(
                [
                    ActionReport(scene.entry_id, Action.BLOCKED, item_id="fine"),
                    ActionReport("ent_999", Action.BLOCKED),
                    ActionReport("entry-1", Action.BLOCKED),
                    ActionReport(scene.entry_id, Action.BLOCKED, acted_at=future),
                    ActionReport(scene.entry_id, Action.BLOCKED, item_id="x" * 201),
                ]
            )
        assert {v.field for v in refused.value.field_violations} == {
            "actions[1].entry_id",
            "actions[2].entry_id",
            "actions[3].acted_at",
            "actions[4].item_id",
        }
        assert scene.beta.report_actions([]) == 0  # nothing to send
        with grpc.insecure_channel(scene.target) as channel:
            stub = match_pb2_grpc.MatchServiceStub(channel)
            metadata = (("authorization", f"Bearer {scene.beta_token}"),)
            one = match_pb2.ActionReport(entry_id=scene.entry_id, action=match_pb2.ACTION_BLOCKED)
            for actions in ([], [one] * 1001):
                request = match_pb2.ReportActionRequest(request_id="r", actions=actions)
                with pytest.raises(grpc.RpcError) as refused_count:
                    stub.ReportAction(request, metadata=metadata)
                assert refused_count.value.code() is grpc.StatusCode.INVALID_ARGUMENT
                assert "actions: 1 to 1000 reports per call" in (refused_count.value.details() or "")
        with pytest.raises(PermissionDeniedError):
            scene.researcher.report_actions([ActionReport(scene.entry_id, Action.BLOCKED)])
        start, end = scene.period()
        assert all(p.actions.blocked == Count(0) for p in scene.researcher.platform_stats(start, end))

        reports = [ActionReport(scene.entry_id, Action.BLOCKED, item_id=f"u{n}") for n in range(3)]
        assert scene.beta.report_actions(reports, request_id="batch-7") == 3
        assert scene.beta.report_actions(reports, request_id="batch-7") == 3  # the first answer, stored once
        assert scene.beta.report_actions(reports) == 0  # the same items again: not counted twice
        with pytest.raises(InvalidArgumentError) as reused:
            scene.beta.report_actions(reports[:1], request_id="batch-7")
        assert [v.field for v in reused.value.field_violations] == ["request_id"]
        assert scene.researcher.spread(scene.entry_id).actions.blocked == Count(3)  # type: ignore[union-attr]
    finally:
        scene.close()


def test_research_questions_are_validated(server_factory: ServerFactory, photos: dict[str, Image.Image]) -> None:
    scene = Scene(server_factory(), photos["camera"])
    try:
        start, end = scene.period()
        with pytest.raises(InvalidArgumentError) as backwards:
            scene.researcher.platform_stats(end, start)
        assert [v.field for v in backwards.value.field_violations] == ["period.end"]
        with pytest.raises(InvalidArgumentError) as long:
            scene.researcher.category_stats(start - timedelta(days=2000), end)
        assert [v.field for v in long.value.field_violations] == ["period"]
        with pytest.raises(InvalidArgumentError) as unknown:
            scene.researcher.spread_series(start, end, category="kittens")
        assert [v.field for v in unknown.value.field_violations] == ["category"]
        with pytest.raises(InvalidArgumentError) as limit:
            scene.researcher.top_clusters(start, end, limit=101)
        assert [v.field for v in limit.value.field_violations] == ["limit"]
        with pytest.raises(NotFoundError):
            scene.researcher.spread_series(start, end, entry_id="ent_404")
        with grpc.insecure_channel(scene.target) as channel:
            stub = research_pb2_grpc.ResearchServiceStub(channel)
            metadata = (("authorization", f"Bearer {scene.researcher_token}"),)
            with pytest.raises(grpc.RpcError) as missing:
                stub.GetPlatformStats(research_pb2.GetPlatformStatsRequest(), metadata=metadata)
            assert missing.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert "period" in (missing.value.details() or "")
        with pytest.raises(PermissionDeniedError):
            scene.beta.platform_stats(start, end)
        with Client(scene.target, new_member(scene.server, "Authority", "authority")) as authority:
            assert len(authority.platform_stats(start, end)) == 1  # the submitter
    finally:
        scene.close()


def test_the_async_client_reports_and_reads_the_same_figures(
    server_factory: ServerFactory, photos: dict[str, Image.Image]
) -> None:
    scene = Scene(server_factory(research_min_count=1), photos["astronaut"])
    start, end = scene.period()

    async def scenario() -> None:
        async with (
            AsyncClient(scene.target, scene.beta_token) as beta,
            AsyncClient(scene.target, scene.researcher_token) as researcher,
        ):
            reports = [ActionReport(scene.entry_id, Action.SENT_TO_REVIEW, item_id=f"a{n}") for n in range(2)]
            assert await beta.report_actions(reports, request_id="async-1") == 2
            assert await beta.report_actions(reports, request_id="async-1") == 2
            stats = await researcher.platform_stats(start, end)
            assert stats == scene.researcher.platform_stats(start, end)
            assert sorted(p.actions.sent_to_review.value for p in stats) == [0, 2]
            assert await researcher.category_stats(start, end) == scene.researcher.category_stats(start, end)
            assert await researcher.spread_series(start, end) == scene.researcher.spread_series(start, end)
            assert await researcher.top_clusters(start, end) == scene.researcher.top_clusters(start, end)

    try:
        asyncio.run(scenario())
    finally:
        scene.close()
