"""max_matches: an upload that matches a whole cluster of near duplicates gets the
strongest entries described and the total counted; the verdict and the sightings
still cover every matched entry."""

from __future__ import annotations

import time

import grpc
import numpy as np
import pytest
from PIL import Image

from hashshare import bankfile
from hashshare_client import Client, InvalidArgumentError, Signal, signals
from hashshare_client.pb.hashshare.v1 import match_pb2, match_pb2_grpc
from hashshare_client.protocol import match_request
from tests.conftest import ServerFactory, encode, new_member

COPIES = 12


def _flipped(value: bytes, flips: int, rng: np.random.Generator) -> bytes:
    bits = np.unpackbits(np.frombuffer(value, dtype=np.uint8))
    bits[rng.choice(len(bits), size=flips, replace=False)] ^= 1
    return np.packbits(bits).tobytes()


def test_a_cluster_of_near_duplicates_is_cut_to_the_strongest(
    server_factory: ServerFactory, photos: dict[str, Image.Image]
) -> None:
    server = server_factory(research_min_count=1)  # the researcher sees small counts as they are
    target = f"127.0.0.1:{server.port}"
    new_member(server, "importer", "trust_safety")
    platform = Client(target, new_member(server, "platform-b", "platform"))
    researcher = Client(target, new_member(server, "lab", "researcher"))
    upload = signals.from_image(encode(photos["motorcycle"]))
    whole = [s for s in upload if s.variant == ""]
    # Imported entries are not clustered: COPIES entries, each further from the photo.
    rng = np.random.default_rng(5)
    copies = [[Signal(s.type, s.version, _flipped(s.value, n, rng), s.quality) for s in whole] for n in range(COPIES)]
    report = bankfile.import_signals(server.bank.store, member_name="importer", items=copies, category="hate_speech")
    assert report.imported == COPIES
    # Every sub-index holds the import before the lookups: the feed adds a batch's rows one
    # sub-index after another, and a lookup between two would see some signals only.
    server.bank.feed.catch_up()

    deadline = time.monotonic() + 5
    every = platform.match(upload, max_matches=1000)
    while every.total_matches < COPIES and time.monotonic() < deadline:  # the feed brings the import
        time.sleep(0.05)
        every = platform.match(upload, max_matches=1000)
    assert every.total_matches == len(every.matches) == COPIES
    assert every.verdict == "BLOCK"
    weakest = every.matches[-1].entry_id
    before = _sightings_once_written(researcher, weakest, at_least=1)

    cut = platform.match(upload, max_matches=5)
    assert cut.total_matches == COPIES and cut.verdict == "BLOCK"
    assert cut.matches == every.matches[:5], "the strongest five, in the order of the whole list"
    assert [m.similarity for m in every.matches] == sorted((m.similarity for m in every.matches), reverse=True)
    assert platform.match(upload).total_matches == COPIES  # the default (100) shows all twelve
    assert len(platform.match(upload).matches) == COPIES

    streamed = list(platform.match_stream([("a", upload), ("b", upload)], max_matches=3))
    assert [r.matches for r in streamed] == [every.matches[:3]] * 2
    assert all(r.total_matches == COPIES for r in streamed)

    # The weakest entry was described by two of these five lookups, but all five saw it.
    assert _sightings_once_written(researcher, weakest, at_least=before + 5) == before + 5


def _sightings_once_written(researcher: Client, entry_id: str, at_least: int) -> int:
    """The entry's sightings once at least ``at_least`` are written (they are written in batches)."""
    deadline = time.monotonic() + 5
    sightings = researcher.spread(entry_id).sightings
    while sightings < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
        sightings = researcher.spread(entry_id).sightings
    time.sleep(0.2)  # longer than a flush: anything more would have been written by now
    return researcher.spread(entry_id).sightings


def test_more_than_a_thousand_matches_is_refused(server_factory: ServerFactory) -> None:
    server = server_factory()
    target = f"127.0.0.1:{server.port}"
    token = new_member(server, "platform-b", "platform")
    value = Signal("exact/sha256", "1", bytes(range(32)))
    with Client(target, token) as client, pytest.raises(InvalidArgumentError) as refused:
        client.match([value], max_matches=1001)
    assert any(v.field == "max_matches" for v in refused.value.field_violations)
    # On a stream, only the bad item is refused.
    with grpc.insecure_channel(target) as channel:
        stub = match_pb2_grpc.MatchServiceStub(channel)
        requests = [match_request([value], item_id="bad", max_matches=1001), match_request([value], item_id="good")]
        answers = list(stub.MatchStream(iter(requests), metadata=(("authorization", f"Bearer {token}"),)))
    assert [a.item_id for a in answers] == ["bad", "good"]
    assert answers[0].HasField("error") and not answers[1].HasField("error")
    assert isinstance(answers[1], match_pb2.MatchResponse) and answers[1].total_matches == 0
