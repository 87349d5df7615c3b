"""Fixtures shared by the whole suite: real images, real stores (SQLite and a
redis-server started for the session), and real gRPC servers on loopback."""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import redis
from PIL import Image
from skimage import data as skdata

from hashshare import members
from hashshare.api.server import RunningServer, start
from hashshare.bench.redis_cluster import Cluster, Node, cluster_ports
from hashshare.model import TrustLevel
from hashshare.settings import Settings
from hashshare.store import open_store

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Real photographs shipped inside scikit-image's wheel: no download at run time.
SKIMAGE_DATA = Path(skdata.__file__).parent
SAMPLE_IMAGES = {
    "astronaut": "astronaut.png",
    "coffee": "coffee.png",
    "chelsea": "chelsea.png",
    "rocket": "rocket.jpg",
    "motorcycle": "motorcycle_left.png",
    "hubble_deep_field": "hubble_deep_field.jpg",
    "retina": "retina.jpg",
    "camera": "camera.png",
}


def need(condition: bool, reason: str) -> None:
    """Skip when a tool is missing, except in CI, where nothing may skip."""
    if not condition:
        if IN_CI:
            pytest.fail(f"CI must not skip: {reason}")
        pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sample_image(name: str) -> Image.Image:
    with Image.open(SKIMAGE_DATA / SAMPLE_IMAGES[name]) as image:
        return image.convert("RGB")


def encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def photos() -> dict[str, Image.Image]:
    return {name: sample_image(name) for name in SAMPLE_IMAGES}


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    need(binary is not None, "redis-server is not installed")
    assert binary is not None
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.05)
    yield RedisServer(port, process)
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """A flushed database of the session's redis-server, flushed again after."""
    client = redis.Redis(port=redis_server.port, db=1)
    client.flushdb()
    yield redis_server.url(1)
    client.flushdb()


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bank.db'}"
    return str(request.getfixturevalue("redis_url"))


@pytest.fixture(params=["sqlite", "redis", "cluster"])
def every_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Storage contracts hold on every store, a Redis Cluster (three primaries, three replicas) too."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bank.db'}"
    return str(request.getfixturevalue("redis_url" if request.param == "redis" else "redis_cluster_url"))


ServerFactory = Callable[..., RunningServer]


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start real servers on 127.0.0.1:<free port>; all are stopped afterwards."""
    started: list[RunningServer] = []

    def factory(store: str | None = None, **overrides: object) -> RunningServer:
        settings = Settings(
            listen="127.0.0.1:0",
            store=store or f"sqlite:///{tmp_path / 'bank.db'}",
            feed_poll_seconds=0.02,
            sighting_flush_seconds=0.05,
            grace_seconds=1.0,
            **overrides,  # type: ignore[arg-type]
        )
        running = start(settings)
        started.append(running)
        return running

    yield factory
    for running in started:
        running.stop(grace=0)


def new_member(server: RunningServer, name: str, *roles: str, trust_level: TrustLevel = TrustLevel.TRUSTED) -> str:
    """Create a member directly in the server's store (trusted unless asked otherwise); return its token."""
    _, _, token = members.create_member(server.bank.store, name, roles, time.time(), trust_level)
    return token


def wait_serving(target: str, timeout: float = 30.0) -> None:
    """Block until the gRPC health service at ``target`` answers SERVING."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{target} did not become SERVING within {timeout}s")
            time.sleep(0.05)


class ServerProcess:
    """``hashshare-server serve`` in its own process, so that it can be killed."""

    def __init__(
        self, store: str, port: int | None = None, log_path: Path | None = None, args: Sequence[str] = ()
    ) -> None:
        self.store = store
        self.args = tuple(args)  # more `serve` flags
        self.port = port or free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServerProcess:
        command = [
            sys.executable, "-m", "hashshare.cli", "serve", "--listen", self.target, "--store", self.store, *self.args
        ]  # fmt: skip
        if self.log_path is None:
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
                self.process = subprocess.Popen(command, stdout=log, stderr=log)
        wait_serving(self.target)
        return self

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def server_processes() -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def factory(store: str, **options: object) -> ServerProcess:
        server = ServerProcess(store, **options)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


def new_member_in(store_url: str, name: str, *roles: str, trust_level: TrustLevel = TrustLevel.TRUSTED) -> str:
    """Create a member (trusted unless asked otherwise) in a store no server of this process holds open."""
    store = open_store(store_url)
    try:
        return members.create_member(store, name, roles, time.time(), trust_level)[2]
    finally:
        store.close()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A Redis Cluster of three primaries and three replicas, once per session."""
    binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    need(binary is not None and cli is not None, "redis-server and redis-cli are not installed")
    assert binary is not None and cli is not None
    workdir = tmp_path_factory.mktemp("redis-cluster")
    cluster = Cluster([Node(port, workdir / str(port), binary) for port in cluster_ports(6)], cli)
    try:
        cluster.create()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def redis_cluster_url(redis_cluster: Cluster) -> Iterator[str]:
    """The session's cluster, healthy and flushed, flushed again after."""
    redis_cluster.wait_healthy()
    redis_cluster.flush()
    yield redis_cluster.url
    redis_cluster.wait_healthy()
    redis_cluster.flush()
