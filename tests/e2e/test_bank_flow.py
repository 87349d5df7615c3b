"""The product end to end: SDK -> real gRPC server on loopback -> real store."""

from __future__ import annotations

import asyncio
import time

import pytest
from PIL import Image

from hashshare.api.server import RunningServer
from hashshare_client import AsyncClient, Client, NotFoundError, Threshold, signals
from tests.conftest import ServerFactory, encode, new_member

HATEFUL_TEXT = (
    "Bọn người dân tộc đó là lũ ăn bám, không xứng đáng sống trên đất nước này. "
    "Hãy đuổi hết chúng về rừng, đừng để chúng lấy việc làm của chúng ta."
)
EDITED_TEXT = (
    "Bọn người dân tộc đó là lũ ăn bám, không đáng sống trên đất nước này!! "
    "Hãy đuổi hết chúng về rừng, đừng để chúng cướp việc làm của chúng ta."
)
UNRELATED_TEXT = "Chiều nay đội bóng của trường sẽ thi đấu giao hữu với đội bạn ở sân vận động thành phố."


class Bank:
    """A running server with a trust-and-safety member and two platforms."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.target = f"127.0.0.1:{server.port}"
        self.ts_token = new_member(server, "platform-a-trust-safety", "trust_safety", "platform")
        self.platform_token = new_member(server, "platform-b", "platform")
        self.other_platform_token = new_member(server, "platform-c", "platform")
        self.ts = Client(self.target, self.ts_token)
        self.platform = Client(self.target, self.platform_token)

    def client(self, token: str) -> Client:
        return Client(self.target, token)

    def close(self) -> None:
        self.ts.close()
        self.platform.close()


@pytest.fixture
def bank(server_factory: ServerFactory, store_url: str) -> Bank:
    # These flows read exact spread counts of a few sightings; withholding small
    # counts is tested in test_research.py.
    running = Bank(server_factory(store_url, research_min_count=1))
    yield running  # type: ignore[misc]
    running.close()


def reencoded_copy(image: Image.Image) -> bytes:
    width, height = image.size
    return encode(image.resize((width * 2 // 3, height * 2 // 3)), "JPEG", quality=35)


def test_submitted_image_blocks_a_reencoded_resized_copy_for_another_member(
    bank: Bank, photos: dict[str, Image.Image]
) -> None:
    submitted = bank.ts.submit(signals.from_image(encode(photos["astronaut"])), category="hate_speech")
    result = bank.platform.match(signals.from_image(reencoded_copy(photos["astronaut"])))
    assert result.verdict == "BLOCK"
    assert [m.entry_id for m in result.matches] == [submitted.entry_id]
    match = result.matches[0]
    assert match.verdict == "BLOCK" and match.category == "hate_speech" and match.corroborations == 1
    assert {e.signal_type for e in match.evidence} >= {"image/pdq", "image/phash"}


def test_vietnamese_text_with_a_small_edit_is_found(bank: Bank) -> None:
    submitted = bank.ts.submit(signals.from_text(HATEFUL_TEXT), category="hate_speech.ethnicity")
    result = bank.platform.match(signals.from_text(EDITED_TEXT))
    assert result.verdict == "BLOCK"
    assert result.matches[0].entry_id == submitted.entry_id
    assert result.matches[0].signal_type == "text/minhash"
    assert result.matches[0].similarity >= 0.5


def test_unrelated_image_and_text_do_not_match(bank: Bank, photos: dict[str, Image.Image]) -> None:
    bank.ts.submit(signals.from_image(encode(photos["astronaut"])), category="hate_speech")
    bank.ts.submit(signals.from_text(HATEFUL_TEXT), category="hate_speech")
    for name in ("coffee", "chelsea", "rocket", "camera"):
        result = bank.platform.match(signals.from_image(reencoded_copy(photos[name])))
        assert result.verdict == "NONE" and result.matches == (), name
    assert bank.platform.match(signals.from_text(UNRELATED_TEXT)).verdict == "NONE"


def test_retracted_entry_stops_matching_at_once(bank: Bank, photos: dict[str, Image.Image]) -> None:
    image_signals = signals.from_image(encode(photos["chelsea"]))
    submitted = bank.ts.submit(image_signals, category="harassment")
    assert bank.platform.match(image_signals).verdict == "BLOCK"
    retracted = bank.ts.retract(submitted.entry_id, reason="mistaken removal")
    assert retracted.retracted_submissions == 1 and not retracted.entry_active
    assert bank.platform.match(image_signals).verdict == "NONE"
    entry = bank.ts.get_entry(submitted.entry_id)
    assert not entry.active and entry.submissions[0].retract_reason == "mistaken removal"
    with pytest.raises(NotFoundError):
        bank.ts.retract(submitted.entry_id)


def test_replayed_submit_returns_the_first_result_and_stores_once(bank: Bank, photos: dict[str, Image.Image]) -> None:
    image_signals = signals.from_image(encode(photos["coffee"]))
    first = bank.ts.submit(image_signals, category="hate_speech", request_id="req-coffee-1")
    again = bank.ts.submit(image_signals, category="hate_speech", request_id="req-coffee-1")
    assert again == first
    entry = bank.ts.get_entry(first.entry_id)
    assert len(entry.submissions) == 1
    assert bank.server.bank.feed.catch_up() == 0  # the replay appended nothing to the feed


def test_matching_submission_from_another_member_corroborates_the_entry(
    bank: Bank, photos: dict[str, Image.Image]
) -> None:
    first = bank.ts.submit(signals.from_image(encode(photos["rocket"])), category="violent_extremism")
    second_ts = bank.client(new_member(bank.server, "platform-d-trust-safety", "trust_safety"))
    second = second_ts.submit(signals.from_image(reencoded_copy(photos["rocket"])), category="violent_extremism")
    assert second.entry_id == first.entry_id and second.joined_existing and second.corroborations == 2
    assert bank.platform.match(signals.from_image(encode(photos["rocket"]))).matches[0].corroborations == 2
    # When one member withdraws, the other still stands behind the entry.
    assert bank.ts.retract(first.entry_id).entry_active
    assert bank.platform.match(signals.from_image(encode(photos["rocket"]))).matches[0].corroborations == 1


def test_platform_never_learns_who_submitted(bank: Bank, photos: dict[str, Image.Image]) -> None:
    submitted = bank.ts.submit(signals.from_image(encode(photos["camera"])), category="hate_speech")
    seen_by_platform = bank.platform.get_entry(submitted.entry_id)
    assert seen_by_platform.submissions == () and seen_by_platform.signals == ()
    assert seen_by_platform.active and seen_by_platform.corroborations == 1
    seen_by_submitter = bank.ts.get_entry(submitted.entry_id)
    assert len(seen_by_submitter.submissions) == 1 and seen_by_submitter.signals


def test_stricter_request_threshold_turns_a_block_into_review(bank: Bank, photos: dict[str, Image.Image]) -> None:
    bank.ts.submit(signals.from_image(encode(photos["astronaut"])), category="hate_speech")
    copy = [s for s in signals.from_image(reencoded_copy(photos["astronaut"])) if s.type == "image/pdq"]
    default = bank.platform.match(copy)
    distance = default.matches[0].distance
    assert default.verdict == "BLOCK" and distance > 0
    strict = bank.platform.match(copy, thresholds={"image/pdq": Threshold(block=distance - 1, review=distance)})
    assert strict.verdict == "REVIEW"
    stricter = bank.platform.match(copy, thresholds={"image/pdq": Threshold(block=0, review=distance - 1)})
    assert stricter.verdict == "NONE"


def test_match_stream_answers_every_item_in_order(bank: Bank, photos: dict[str, Image.Image]) -> None:
    submitted = bank.ts.submit(signals.from_image(encode(photos["retina"])), category="hate_speech")
    items = [
        (f"item-{i}", signals.from_image(reencoded_copy(photos[name])))
        for i, name in enumerate(["coffee", "retina", "camera", "retina"])
    ]
    results = list(bank.platform.match_stream(items))
    assert [r.item_id for r in results] == ["item-0", "item-1", "item-2", "item-3"]
    assert [r.verdict for r in results] == ["NONE", "BLOCK", "NONE", "BLOCK"]
    assert results[1].matches[0].entry_id == submitted.entry_id


def test_async_client_is_a_working_twin(bank: Bank, photos: dict[str, Image.Image]) -> None:
    async def scenario() -> tuple[str, str]:
        async with AsyncClient(bank.target, bank.ts_token) as ts, AsyncClient(bank.target, bank.platform_token) as p:
            submitted = await ts.submit(signals.from_text(HATEFUL_TEXT), category="hate_speech")
            result = await p.match(signals.from_text(EDITED_TEXT))
            streamed = [r async for r in p.match_stream([("x", signals.from_text(EDITED_TEXT))])]
            assert streamed[0].verdict == "BLOCK"
            items = [(str(n), signals.from_text(text)) for n, text in enumerate([EDITED_TEXT, "lunch", EDITED_TEXT])]
            batched = [r async for r in p.match_stream(items, per_message=2)]  # MatchBatchStream
            assert [(r.item_id, r.verdict) for r in batched] == [("0", "BLOCK"), ("1", "NONE"), ("2", "BLOCK")]
            return submitted.entry_id, result.matches[0].entry_id

    submitted_id, matched_id = asyncio.run(scenario())
    assert submitted_id == matched_id


def test_spread_counts_sightings_per_platform_under_pseudonyms(bank: Bank, photos: dict[str, Image.Image]) -> None:
    submitted = bank.ts.submit(signals.from_image(encode(photos["motorcycle"])), category="hate_speech")
    copy = signals.from_image(reencoded_copy(photos["motorcycle"]))
    other = bank.client(bank.other_platform_token)
    for _ in range(3):
        bank.platform.match(copy)
    other.match(copy)
    researcher = bank.client(new_member(bank.server, "university-lab", "researcher"))
    deadline = time.monotonic() + 5
    spread = researcher.spread(submitted.entry_id)
    while spread.sightings < 4 and time.monotonic() < deadline:  # sightings are written in batches
        time.sleep(0.05)
        spread = researcher.spread(submitted.entry_id)
    assert spread.sightings == 4 and spread.distinct_platforms == 2
    assert sorted(p.sightings for p in spread.platforms) == [1, 3]
    assert sum(d.sightings for d in spread.daily) == 4
    names = {"platform-b", "platform-c", "mem_2", "mem_3"}
    assert not names & {p.platform for p in spread.platforms}
    # Pseudonyms are stable from one answer to the next.
    assert {p.platform for p in researcher.spread(submitted.entry_id).platforms} == {
        p.platform for p in spread.platforms
    }
