"""A real Redis Cluster on loopback, for the tests and the cluster benchmark: three primaries and three
replicas started from the ``redis-server`` binary, joined by ``redis-cli
--cluster create``. Nodes can be killed (SIGKILL), paused and restarted."""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.cluster import RedisCluster

NODE_TIMEOUT_MS = 1_000  # failure detection; a failover takes about twice this


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_ports(count: int) -> list[int]:
    """``count`` free ports whose cluster bus ports (+10000) are free too: all below 55535."""
    for _ in range(200):
        base = random.randrange(20_000, 45_000 - count)
        ports = list(range(base, base + count))
        if all(_port_is_free(p) and _port_is_free(p + 10_000) for p in ports):
            return ports
    raise RuntimeError("no free ports for a Redis Cluster")


@dataclass
class Node:
    port: int
    directory: Path
    binary: str
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(self.directory / "nodes.conf"),
                "--cluster-node-timeout",
                str(NODE_TIMEOUT_MS),
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = self.client()
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
            finally:
                client.close()

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def role(self) -> str:
        with self.client() as client:
            return str(client.info("replication")["role"])


@dataclass
class Cluster:
    nodes: list[Node]
    cli: str
    _started: bool = field(default=False)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def create(self) -> None:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        subprocess.run(
            [self.cli, "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        self.wait_healthy()

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until every live node sees the cluster OK, with three primaries each
        followed by an in-sync replica."""
        deadline = time.monotonic() + timeout
        while True:
            if self._healthy():
                return
            if time.monotonic() > deadline:
                raise TimeoutError("the Redis Cluster did not become healthy")
            time.sleep(0.1)

    def _healthy(self) -> bool:
        try:
            primaries = 0
            for node in self.nodes:
                if not node.alive():
                    return False
                with node.client() as client:
                    if client.cluster("info")["cluster_state"] != "ok":
                        return False
                    info = client.info("replication")
                    if info["role"] == "master":
                        primaries += 1
                        if int(info["connected_slaves"]) < 1:
                            return False
                    elif info.get("master_link_status") != "up":
                        return False
            return primaries == 3
        except redis.RedisError:
            return False

    def primary_for(self, key: str) -> Node:
        with RedisCluster(host="127.0.0.1", port=self.nodes[0].port) as client:
            node = client.get_node_from_key(key)
            port = int(node.port)
        return next(n for n in self.nodes if n.port == port)

    def replicas(self) -> list[Node]:
        return [n for n in self.nodes if n.alive() and n.role() == "slave"]

    def flush(self) -> None:
        for node in self.nodes:
            if node.alive() and node.role() == "master":
                with node.client() as client:
                    client.flushall()
        # Replicas apply the flush asynchronously; WAIT makes the next test start clean.
        for node in self.nodes:
            if node.alive() and node.role() == "master":
                with node.client() as client:
                    client.execute_command("WAIT", 1, 1000)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
