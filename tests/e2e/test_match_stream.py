"""MatchStream looks up the items that have arrived together: the answers are those of
Match, item by item, in order, whatever the client's pace."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from hashshare.api import services
from hashshare.api.server import RunningServer
from hashshare.index import SignalIndex
from hashshare.index.signal_index import PARALLEL_PART
from hashshare.matching import DEFAULT_THRESHOLDS, Thresholds, find_candidates, find_candidates_many
from hashshare.model import IndexedSignal
from hashshare_client import Client, Signal, signal_types
from hashshare_client.pb.hashshare.v1 import match_pb2, match_pb2_grpc
from hashshare_client.protocol import match_request
from tests.conftest import ServerFactory, new_member

IMAGE_TYPES = (signal_types.PDQ, signal_types.PHASH, signal_types.DHASH)


def _flipped(rng: np.random.Generator, value: bytes, flips: int) -> bytes:
    bits = np.unpackbits(np.frombuffer(value, dtype=np.uint8))
    bits[rng.choice(len(bits), size=flips, replace=False)] ^= 1
    return np.packbits(bits).tobytes()


def _bank_and_lookups(seed: int, entries: int, lookups: int) -> tuple[list[list[Signal]], list[list[Signal]]]:
    """Entries of three image hashes, some close to each other, and lookups near some of them."""
    rng = np.random.default_rng(seed)
    stored: list[list[Signal]] = []
    for n in range(entries):
        if n % 3 == 2:  # a near duplicate of the previous entry: one lookup finds several entries
            stored.append([Signal(s.type, s.version, _flipped(rng, s.value, 3), 90) for s in stored[-1]])
        else:
            stored.append([Signal(t.name, t.version, rng.bytes(t.size_bytes), 90) for t in IMAGE_TYPES])
    queries = []
    for n in range(lookups):
        if n % 4 == 3:
            queries.append([Signal(t.name, t.version, rng.bytes(t.size_bytes), 90) for t in IMAGE_TYPES])
        else:
            base = stored[int(rng.integers(entries))]
            queries.append([Signal(s.type, s.version, _flipped(rng, s.value, n % 9), 90) for s in base])
    return stored, queries


def auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def test_batched_candidates_equal_those_of_each_lookup() -> None:
    stored, queries = _bank_and_lookups(seed=3, entries=600, lookups=80)
    index = SignalIndex()
    row = 0
    for entry_id, signals in enumerate(stored, 1):
        for signal in signals:
            row += 1
            index.add(IndexedSignal(row, entry_id, signal.type, signal.version, signal.value))
    stricter = dict(DEFAULT_THRESHOLDS) | {signal_types.PHASH.name: Thresholds(block=4, review=6)}
    lookups = [(signals, stricter if n % 5 == 0 else DEFAULT_THRESHOLDS) for n, signals in enumerate(queries)]
    batched = find_candidates_many(index, lookups)
    assert len(batched) == len(lookups)
    found = 0
    for (signals, thresholds), together in zip(lookups, batched, strict=True):
        alone = find_candidates(index, signals, thresholds)
        assert together == alone
        found += len(alone.entries())
    assert found > len(queries)  # near lookups find several entries, so the comparison means something


def test_searches_on_threads_equal_those_in_the_caller() -> None:
    stored, queries = _bank_and_lookups(seed=5, entries=600, lookups=60)
    alone, threaded = SignalIndex(), SignalIndex(search_threads=2)
    row = 0
    for entry_id, signals in enumerate(stored, 1):
        for signal in signals:
            row += 1
            for index in (alone, threaded):
                index.add(IndexedSignal(row, entry_id, signal.type, signal.version, signal.value))
    for signals in queries:
        # One lookup's searches stay in the caller.
        assert find_candidates(threaded, signals) == find_candidates(alone, signals)
    # Enough lookups that each sub-index's values are split between the threads and the caller.
    many = [queries[n % len(queries)] for n in range(3 * PARALLEL_PART)]
    together = find_candidates_many(threaded, [(signals, DEFAULT_THRESHOLDS) for signals in many])
    assert together == find_candidates_many(alone, [(signals, DEFAULT_THRESHOLDS) for signals in many])
    assert together[: len(queries)] == [find_candidates(alone, signals) for signals in queries]
    assert sum(len(c.entries()) for c in together) > len(many)


@pytest.fixture
def server(server_factory: ServerFactory) -> RunningServer:
    return server_factory()


def _submit_bank(server: RunningServer, stored: list[list[Signal]]) -> str:
    token = new_member(server, "ts", "trust_safety", "platform")
    with Client(f"127.0.0.1:{server.port}", token) as client:
        for signals in stored:
            client.submit(signals, category="hate_speech")
    return token


def test_stream_answers_equal_match_answers_in_order(server: RunningServer) -> None:
    stored, queries = _bank_and_lookups(seed=5, entries=60, lookups=300)
    token = _submit_bank(server, stored)
    with Client(f"127.0.0.1:{server.port}", token) as client:
        alone = [client.match(signals) for signals in queries]
        streamed = list(client.match_stream((str(n), signals) for n, signals in enumerate(queries)))
    assert [r.item_id for r in streamed] == [str(n) for n in range(len(queries))]
    assert [(r.verdict, r.matches) for r in streamed] == [(r.verdict, r.matches) for r in alone]
    assert sum(1 for r in alone if r.matches) > len(queries) // 2


def test_a_client_that_waits_for_each_answer_is_answered(server: RunningServer) -> None:
    stored, queries = _bank_and_lookups(seed=9, entries=30, lookups=20)
    token = _submit_bank(server, stored)
    outbox: queue.Queue[match_pb2.MatchRequest | None] = queue.Queue()

    def requests() -> Iterator[match_pb2.MatchRequest]:
        while (request := outbox.get(timeout=10)) is not None:
            yield request

    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = match_pb2_grpc.MatchServiceStub(channel)
        answers = stub.MatchStream(requests(), metadata=(("authorization", f"Bearer {token}"),), timeout=30)
        started = time.monotonic()
        for n, signals in enumerate(queries):
            outbox.put(match_request(signals, item_id=str(n)))
            assert next(answers).item_id == str(n)  # answered before the next item is sent
        outbox.put(None)
        assert list(answers) == []
    assert time.monotonic() - started < 20


def test_a_cancelled_stream_frees_its_reader(server: RunningServer) -> None:
    stored, queries = _bank_and_lookups(seed=11, entries=10, lookups=5)
    token = _submit_bank(server, stored)
    gate = threading.Event()

    def requests() -> Iterator[match_pb2.MatchRequest]:
        yield match_request(queries[0], item_id="0")
        gate.wait(timeout=10)  # the stream stays open until the client cancels it

    before = {t.ident for t in threading.enumerate() if t.name == "hashshare-stream-reader"}
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = match_pb2_grpc.MatchServiceStub(channel)
        answers = stub.MatchStream(requests(), metadata=(("authorization", f"Bearer {token}"),), timeout=30)
        assert next(answers).item_id == "0"
        assert {t.ident for t in threading.enumerate() if t.name == "hashshare-stream-reader"} - before
        answers.cancel()
        gate.set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        readers = {t.ident for t in threading.enumerate() if t.name == "hashshare-stream-reader"} - before
        if not readers:
            break
        time.sleep(0.05)
    assert not readers


def test_batch_stream_answers_equal_match_stream_answers_in_order(server: RunningServer) -> None:
    stored, queries = _bank_and_lookups(seed=13, entries=60, lookups=150)
    token = _submit_bank(server, stored)
    items = [(str(n), signals) for n, signals in enumerate(queries)]
    # A malformed item (no signals) among them: answered with its error, the others go on.
    items[40] = ("bad", [])
    with Client(f"127.0.0.1:{server.port}", token) as client:
        streamed = list(client.match_stream(items))
        # 150 items in messages of 7: the last message holds 3.
        batched = list(client.match_stream(items, per_message=7))
        with pytest.raises(ValueError, match="per_message"):
            list(client.match_stream(items, per_message=1001))
    assert [r.item_id for r in batched] == [item_id for item_id, _ in items]
    assert [(r.verdict, r.matches, r.error) for r in batched] == [(r.verdict, r.matches, r.error) for r in streamed]
    assert batched[40].error is not None and batched[40].error.code == "INVALID_ARGUMENT"
    assert sum(1 for r in batched if r.matches) > len(queries) // 2


def test_batch_stream_refuses_an_empty_or_oversized_message_after_answering_those_before(
    server: RunningServer,
) -> None:
    stored, queries = _bank_and_lookups(seed=15, entries=12, lookups=4)
    token = _submit_bank(server, stored)
    first = match_pb2.MatchBatchRequest(items=[match_request(q, item_id=str(n)) for n, q in enumerate(queries)])
    too_many = match_pb2.MatchBatchRequest(items=[match_request(queries[0], item_id="x")] * 1001)
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = match_pb2_grpc.MatchServiceStub(channel)
        for refused, count in ((match_pb2.MatchBatchRequest(), 0), (too_many, 1001)):
            answers = stub.MatchBatchStream(iter([first, refused, first]), metadata=auth(token), timeout=30)
            received = []
            with pytest.raises(grpc.RpcError) as raised:
                for message in answers:
                    received.extend(message.items)
            assert [r.item_id for r in received] == ["0", "1", "2", "3"]
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert f"items: 1 to 1000 items per message, got {count}" in str(raised.value.details())


def test_batch_stream_splits_large_answers_between_messages(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored, queries = _bank_and_lookups(seed=17, entries=60, lookups=40)
    token = _submit_bank(server, stored)
    near = [q for n, q in enumerate(queries) if n % 4 != 3]  # each matches an entry or more
    request = match_pb2.MatchBatchRequest(items=[match_request(q, item_id=str(n)) for n, q in enumerate(near)])
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = match_pb2_grpc.MatchServiceStub(channel)
        whole = list(stub.MatchBatchStream(iter([request]), metadata=auth(token), timeout=30))
        monkeypatch.setattr(services, "BATCH_RESPONSE_BYTES", 600)
        split = list(stub.MatchBatchStream(iter([request]), metadata=auth(token), timeout=30))
    assert len(whole) == 1 and len(split) > 3
    assert all(m.ByteSize() <= 600 or len(m.items) == 1 for m in split)
    assert [r for m in split for r in m.items] == list(whole[0].items)
    assert [r.item_id for r in whole[0].items] == [str(n) for n in range(len(near))]
