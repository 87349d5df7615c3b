"""hashshare on a real Redis Cluster (three primaries, three replicas) with
several hashshare servers in their own processes, all on loopback."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from hashshare.bench.redis_cluster import NODE_TIMEOUT_MS, Cluster
from hashshare.errors import Unavailable
from hashshare.feed import FeedFollower
from hashshare.index import SignalIndex
from hashshare.model import Role, SignalsAdded, SubmissionDraft, SubmitOutcome
from hashshare.store import open_store
from hashshare.store import redis_keys as keys
from hashshare.store.base import FeedGap
from hashshare.store.redis import RedisOptions, RedisStore
from hashshare_client import Client, DiscoveryMethod, LegalBasis, Signal, SubmitResult, signal_types, signals
from tests.conftest import ServerProcess, encode, new_member_in

pytestmark = pytest.mark.cluster

FRESHNESS_SECONDS = 1.0  # the target: submitted on one server, matched on another
SUBMIT_OUTAGE_SECONDS = NODE_TIMEOUT_MS / 1000 + 2  # the target while a primary fails over


@dataclass
class Photo:
    name: str
    submitted: list[Signal]  # the original, as a trust-and-safety team hashes it
    copy: list[Signal]  # a re-encoded copy, as an upload looks it up


@pytest.fixture(scope="module")
def photo_signals(photos: dict[str, Image.Image]) -> list[Photo]:
    return [
        Photo(
            name,
            signals.from_image(encode(photo)),
            signals.from_image(encode(photo.resize((photo.width // 2, photo.height // 2)), "JPEG", quality=60)),
        )
        for name, photo in photos.items()
    ]


@pytest.fixture
def servers(
    redis_cluster_url: str, server_processes: Callable[..., ServerProcess], tmp_path: Path
) -> Callable[..., ServerProcess]:
    """Start a hashshare server on the cluster (logs in tmp_path)."""

    def start(name: str, *args: str, port: int | None = None) -> ServerProcess:
        return server_processes(redis_cluster_url, port=port, log_path=tmp_path / f"{name}.log", args=args).start()

    return start


def exact_signal(n: int) -> Signal:
    digest = hashlib.sha256(f"removed upload {n}".encode()).digest()
    return Signal(signal_types.SHA256.name, signal_types.SHA256.version, digest)


def wait_for_block(client: Client, lookup: list[Signal], entry_id: int, limit: float) -> float:
    """Seconds until ``lookup`` blocks on ``entry_id`` through ``client``; fails past ``limit``."""
    started = time.monotonic()
    for _ in range(100_000):
        result = client.match(lookup)
        waited = time.monotonic() - started
        if result.verdict == "BLOCK" and result.matches[0].entry_id == entry_id:
            return waited
        assert waited < limit, f"not matched within {limit} s"
        time.sleep(0.002)
    raise AssertionError("unreachable")


def test_a_submission_through_one_server_matches_on_another_within_a_second(
    redis_cluster_url: str, servers: Callable[..., ServerProcess], photo_signals: list[Photo]
) -> None:
    token = new_member_in(redis_cluster_url, "platform-a", "trust_safety", "platform")
    first, second = servers("a"), servers("b")
    delays = []
    with Client(first.target, token) as submitter, Client(second.target, token) as matcher:
        for photo in photo_signals:
            assert matcher.match(photo.copy).verdict == "NONE"
            result = submitter.submit(photo.submitted, category="hate_speech")
            delays.append(wait_for_block(matcher, photo.copy, result.entry_id, FRESHNESS_SECONDS))
    assert len(delays) == len(photo_signals) and max(delays) < FRESHNESS_SECONDS


def test_a_server_killed_and_restarted_catches_up_from_its_snapshot(
    redis_cluster_url: str, servers: Callable[..., ServerProcess], photo_signals: list[Photo], tmp_path: Path
) -> None:
    token = new_member_in(redis_cluster_url, "platform-a", "trust_safety", "platform")
    snapshot = ("--snapshot-dir", str(tmp_path / "snapshot"), "--snapshot-seconds", "0.2")
    writer, follower = servers("writer"), servers("follower", *snapshot)
    early, *later = photo_signals
    with Client(writer.target, token) as client:
        retracted = client.submit(early.submitted, category="hate_speech")
        with Client(follower.target, token) as other:
            wait_for_block(other, early.copy, retracted.entry_id, FRESHNESS_SECONDS)
        deadline = time.monotonic() + 10
        while not (tmp_path / "snapshot" / "manifest.json").exists():  # the follower's snapshot holds it
            assert time.monotonic() < deadline, "no snapshot written"
            time.sleep(0.05)

        follower.kill()
        client.retract(retracted.entry_id)
        submitted = {p.name: client.submit(p.submitted, category="hate_speech") for p in later}

    restarted = servers("restarted", *snapshot, port=follower.port)
    with Client(restarted.target, token) as client:
        # SERVING means caught up: no waiting.
        for photo in later:
            result = client.match(photo.copy)
            assert (result.verdict, result.matches[0].entry_id) == ("BLOCK", submitted[photo.name].entry_id)
        assert client.match(early.copy).verdict == "NONE"
    assert "loaded from the snapshot" in (tmp_path / "restarted.log").read_text()


def draft(*values: Signal) -> SubmissionDraft:
    return SubmissionDraft(
        signals=values,
        category="hate_speech",
        legal_basis=LegalBasis.COMMUNITY_GUIDELINES,
        discovery_method=DiscoveryMethod.USER_REPORT,
        notice_reference="",
        notice_received_at=None,
        removed_at=time.time(),
    )


def test_a_follower_cut_off_past_the_trimmed_feed_rebuilds_without_holes(redis_cluster_url: str) -> None:
    writer = RedisStore.from_url(redis_cluster_url, RedisOptions(feed_max_length=10))
    follower_store = open_store(redis_cluster_url)
    index = SignalIndex()
    follower = FeedFollower(follower_store, index, 0.05)
    try:
        member = writer.create_member("alpha", frozenset({Role.TRUST_SAFETY}), time.time()).member_id
        writer.submit(member, "kept", b"k", draft(exact_signal(0)), None, time.time())
        gone = writer.submit(member, "gone", b"g", draft(exact_signal(1)), None, time.time())
        follower.load()
        assert sum(index.sizes().values()) == 2

        # Cut off (no catch_up) while an entry is retracted and the feed moves on past its length.
        writer.retract(member, "retract", b"r", gone.entry_id, "mistake", time.time())
        for n in range(2, 302):
            writer.submit(member, f"s{n}", b"s", draft(exact_signal(n)), None, time.time())
        with pytest.raises(FeedGap, match="trimmed"):
            follower_store.changes_since(follower.position)

        follower.catch_up()

        assert follower.rebuilds == 1
        wanted = {row.row_id for row in writer.active_signals()}
        held = {int(r) for row_ids, _, _ in index.export().values() for r in row_ids}
        assert held == wanted and len(wanted) == 301 and 2 not in held
        # And it follows the feed from there.
        writer.submit(member, "last", b"l", draft(exact_signal(999)), None, time.time())
        assert follower.catch_up() == 1 and sum(index.sizes().values()) == 302
    finally:
        writer.close()
        follower_store.close()


def test_a_write_whose_replicas_do_not_confirm_is_unavailable_and_a_retry_returns_it_once(
    redis_cluster: Cluster, redis_cluster_url: str
) -> None:
    store = RedisStore.from_url(redis_cluster_url, RedisOptions(wait_replicas=1, wait_ms=200))
    try:
        member = store.create_member("alpha", frozenset({Role.TRUST_SAFETY}), time.time()).member_id
        replicas = redis_cluster.replicas()
        assert len(replicas) == 3
        for replica in replicas:
            replica.pause()  # connected, but acknowledging nothing
        try:
            with pytest.raises(Unavailable, match="replica"):
                store.submit(member, "req-1", b"digest", draft(exact_signal(1)), None, time.time())
        finally:
            for replica in replicas:
                replica.resume()

        retried = store.submit(member, "req-1", b"digest", draft(exact_signal(1)), None, time.time())

        assert retried == SubmitOutcome(1, 1, False, 1)  # the first call's ids: stored once
        entry = store.get_entry(1)
        assert entry is not None and [s.submission_id for s in entry.submissions] == [1]
        added = [c for c in store.changes_since("")[0] if isinstance(c, SignalsAdded)]
        assert added and {row.row_id for c in added for row in c.rows} == {1}  # maybe twice: idempotent
        assert store.submit(member, "req-2", b"other", draft(exact_signal(2)), None, time.time()).entry_id == 2
    finally:
        store.close()


def test_match_keeps_answering_and_no_acknowledged_submit_is_lost_when_a_primary_is_killed(
    redis_cluster: Cluster,
    redis_cluster_url: str,
    servers: Callable[..., ServerProcess],
    photo_signals: list[Photo],
) -> None:
    token = new_member_in(redis_cluster_url, "platform-a", "trust_safety", "platform")
    writer, reader = servers("writer"), servers("reader")
    photo = photo_signals[0]
    with Client(writer.target, token) as client:
        entry_id = client.submit(photo.submitted, category="hate_speech").entry_id
    # The primary holding the matched entry: Match must read its summary elsewhere meanwhile.
    victim = redis_cluster.primary_for(keys.entry(entry_id))
    acked: list[tuple[float, Signal, SubmitResult]] = []
    matches: list[tuple[float, str]] = []
    refused: list[tuple[float, str]] = []  # submits that failed
    slowest = [0.0]  # the longest acknowledged submit call (the SDK retries UNAVAILABLE inside it)
    stop = threading.Event()

    def submit_stream() -> None:
        with Client(writer.target, token, timeout=15) as client:
            for n in range(100_000):
                if stop.is_set():
                    return
                signal = exact_signal(n)
                started = time.monotonic()
                try:
                    result = client.submit([signal], category="hate_speech", request_id=f"stream-{n}")
                except Exception as error:  # not acknowledged, so not promised; counts as unavailability
                    refused.append((time.monotonic(), str(error)))
                    continue
                acked.append((time.monotonic(), signal, result))
                slowest[0] = max(slowest[0], time.monotonic() - started)

    def match_stream() -> None:
        with Client(reader.target, token, timeout=2) as client:
            while not stop.is_set():
                try:
                    verdict = str(client.match(photo.copy).verdict)
                except Exception as error:
                    verdict = f"error: {error}"
                matches.append((time.monotonic(), verdict))
                time.sleep(0.01)

    threads = [threading.Thread(target=submit_stream), threading.Thread(target=match_stream)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        killed_at = time.monotonic()
        victim.kill()
        deadline = killed_at + 15
        while time.monotonic() < deadline and not (acked and acked[-1][0] > killed_at + SUBMIT_OUTAGE_SECONDS + 1):
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        victim.start()  # it comes back as a replica of the primary that replaced it
    redis_cluster.wait_healthy()

    assert [(t - killed_at, m) for t, m in matches if m != "BLOCK"] == []
    during = [t for t, _ in matches if killed_at <= t <= killed_at + SUBMIT_OUTAGE_SECONDS]
    assert len(during) >= 10, "Match was not exercised during the failover"
    after = [t for t, _, _ in acked if t > killed_at]
    assert after and acked[0][0] < killed_at
    # Unavailable: from the kill to the last refused submit, or the longest call that waited it out.
    outage = max(max((t for t, _ in refused), default=killed_at) - killed_at, slowest[0])
    assert outage <= SUBMIT_OUTAGE_SECONDS, f"Submit was unavailable for {outage:.2f} s: {refused}"
    print(
        f"failover: submit unavailable {outage:.2f} s ({len(refused)} refused, slowest acknowledged call "
        f"{slowest[0]:.2f} s), {len(acked)} acknowledged, {len(during)} matches answered during the failover"
    )

    with Client(reader.target, token) as client:
        lost = []
        for at, _, result in acked:
            entry = client.get_entry(result.entry_id)
            if result.submission_id not in {s.submission_id for s in entry.submissions}:
                lost.append((round(at - killed_at, 3), result))
        assert lost == [], f"{len(lost)} of {len(acked)} acknowledged submits lost"
        for _, signal, result in acked[:: max(1, len(acked) // 40)]:
            assert client.match([signal]).matches[0].entry_id == result.entry_id
