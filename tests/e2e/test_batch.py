"""SubmitBatch through a real server: per-item results, replays, clustering inside a batch, permissions."""

from __future__ import annotations

import asyncio
import hashlib

import grpc
import pytest

from hashshare.api.server import RunningServer
from hashshare_client import AsyncClient, Client, ItemError, Removal, Signal, SubmitResult, signal_types
from hashshare_client.pb.hashshare.v1 import signal_pb2, submission_pb2, submission_pb2_grpc
from tests.conftest import ServerFactory, new_member

PDQ = signal_types.PDQ


def pdq(seed: str, flip: int = 0) -> Signal:
    value = bytearray(hashlib.sha256(seed.encode()).digest())
    for bit in range(flip):  # a near duplicate: ``flip`` bits differ
        value[bit // 8] ^= 0x80 >> (bit % 8)
    return Signal(PDQ.name, PDQ.version, bytes(value), 90)


@pytest.fixture
def server(server_factory: ServerFactory, store_url: str) -> RunningServer:
    return server_factory(store_url)


def test_a_batch_answers_each_item_in_order_and_a_bad_item_fails_alone(server: RunningServer) -> None:
    token = new_member(server, "platform-a", "trust_safety", "platform")
    with Client(f"127.0.0.1:{server.port}", token) as client:
        results = client.submit_many(
            [
                Removal([pdq("one")], category="hate_speech", request_id="r-1"),
                Removal([pdq("two")], category="spam", request_id="r-2"),  # unknown category
                Removal([Signal(PDQ.name, PDQ.version, bytes(32), 12)], category="hate_speech", request_id="r-3"),
                Removal([pdq("one", flip=4)], category="hate_speech", request_id="r-4"),  # joins r-1's entry
                Removal([pdq("three")], category="harassment", legal_basis="local_law", request_id="r-5"),
            ]
        )
        assert [type(r) for r in results] == [SubmitResult, ItemError, ItemError, SubmitResult, SubmitResult]
        first, bad_category, low_quality, joined, last = results
        assert isinstance(bad_category, ItemError) and bad_category.code == "INVALID_ARGUMENT"
        assert [v.field for v in bad_category.field_violations] == ["category"]
        assert isinstance(low_quality, ItemError)
        assert [v.field for v in low_quality.field_violations] == ["signals[0].quality"]
        assert isinstance(first, SubmitResult) and isinstance(joined, SubmitResult) and isinstance(last, SubmitResult)
        assert joined.entry_id == first.entry_id and joined.joined_existing
        assert last.entry_id != first.entry_id and not last.joined_existing
        # Stored and matchable at once.
        assert client.match([pdq("three")]).verdict == "BLOCK"
        assert client.match([pdq("two")]).verdict == "NONE"

        # The same batch again stores nothing and answers the same.
        replay = client.submit_many(
            [
                Removal([pdq("one")], category="hate_speech", request_id="r-1"),
                Removal([pdq("one", flip=4)], category="hate_speech", request_id="r-4"),
                Removal([pdq("three")], category="harassment", legal_basis="local_law", request_id="r-5"),
            ]
        )
        assert replay == [first, joined, last]
        entry = client.get_entry(first.entry_id)
        assert len(entry.submissions) == 2 and len(entry.signals) == 2
        # An item replayed through Submit is the same request.
        assert client.submit([pdq("three")], category="harassment", legal_basis="local_law", request_id="r-5") == last


def test_a_batch_clusters_against_the_bank_and_earlier_items(server: RunningServer) -> None:
    alpha = new_member(server, "alpha", "trust_safety")
    beta = new_member(server, "beta", "trust_safety")
    target = f"127.0.0.1:{server.port}"
    with Client(target, alpha) as a, Client(target, beta) as b:
        existing = a.submit([pdq("banked")], category="hate_speech")
        results = b.submit_many(
            [
                Removal([pdq("banked", flip=3)], category="hate_speech"),
                Removal([pdq("new")], category="hate_speech"),
                Removal([pdq("new", flip=5)], category="hate_speech"),
                Removal([pdq("new", flip=2)], category="hate_speech"),
            ],
            batch_size=2,  # clustering also spans the SDK's calls
        )
    assert all(isinstance(r, SubmitResult) for r in results)
    corroborated, new, near, nearer = results
    assert isinstance(corroborated, SubmitResult) and corroborated.entry_id == existing.entry_id
    assert corroborated.corroborations == 2
    assert isinstance(new, SubmitResult) and not new.joined_existing
    assert isinstance(near, SubmitResult) and isinstance(nearer, SubmitResult)
    assert near.entry_id == nearer.entry_id == new.entry_id


def test_clustering_inside_one_call(server: RunningServer) -> None:
    token = new_member(server, "alpha", "trust_safety")
    with Client(f"127.0.0.1:{server.port}", token) as client:
        results = client.submit_many(
            [Removal([pdq("x", flip=n)], category="hate_speech") for n in (0, 3, 6)]
            + [Removal([pdq("y")], category="hate_speech")]
        )
    entries = [r.entry_id for r in results if isinstance(r, SubmitResult)]
    assert len(entries) == 4 and entries[0] == entries[1] == entries[2] != entries[3]


def test_batch_size_limits_and_permissions(server: RunningServer) -> None:
    submitter = new_member(server, "submitter", "trust_safety")
    platform = new_member(server, "platform", "platform")
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    stub = submission_pb2_grpc.SubmissionServiceStub(channel)
    item = submission_pb2.SubmitRequest(
        request_id="x",
        signals=[signal_pb2.Signal(type=PDQ.name, version=PDQ.version, raw=pdq("p").value, quality=90)],
        category="hate_speech",
        legal_basis=signal_pb2.LEGAL_BASIS_LOCAL_LAW,
    )
    try:
        for items in ([], [item] * 1001):
            with pytest.raises(grpc.RpcError) as caught:
                stub.SubmitBatch(
                    submission_pb2.SubmitBatchRequest(items=items),
                    metadata=(("authorization", f"Bearer {submitter}"),),
                )
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "items" in (caught.value.details() or "")
        with pytest.raises(grpc.RpcError) as caught:
            stub.SubmitBatch(
                submission_pb2.SubmitBatchRequest(items=[item]), metadata=(("authorization", f"Bearer {platform}"),)
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # 1000 items, one of them repeated: the repeat is a replay of the first.
        items = [item] + [
            submission_pb2.SubmitRequest(
                request_id=f"bulk-{n}",
                signals=[signal_pb2.Signal(type="exact/md5", version=signal_types.MD5.version, raw=bytes(16) + b"")],
                category="hate_speech",
                legal_basis=signal_pb2.LEGAL_BASIS_LOCAL_LAW,
            )
            for n in range(998)
        ]
        items[-1].signals[0].raw = hashlib.md5(b"last").digest()
        response = stub.SubmitBatch(
            submission_pb2.SubmitBatchRequest(items=[*items, item]),
            metadata=(("authorization", f"Bearer {submitter}"),),
        )
        assert len(response.results) == 1000
        assert response.results[0].submitted == response.results[-1].submitted
    finally:
        channel.close()


def test_async_client_submits_batches(server: RunningServer) -> None:
    token = new_member(server, "alpha", "trust_safety", "platform")

    async def run() -> list[SubmitResult | ItemError]:
        async with AsyncClient(f"127.0.0.1:{server.port}", token) as client:
            results = await client.submit_many(
                [Removal([pdq("async")], category="hate_speech"), Removal([pdq("bad")], category="")]
            )
            assert (await client.match([pdq("async")])).verdict == "BLOCK"
            return results

    results = asyncio.run(run())
    assert isinstance(results[0], SubmitResult) and isinstance(results[1], ItemError)
