"""Builds, starts and stops the gRPC server around a Bank."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from hashshare_client.pb.hashshare.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    match_pb2,
    match_pb2_grpc,
    notice_pb2,
    notice_pb2_grpc,
    research_pb2,
    research_pb2_grpc,
    submission_pb2,
    submission_pb2_grpc,
)

from .. import members
from ..auth import hash_token
from ..bank import Bank
from ..model import Role, TrustLevel
from ..settings import Settings
from ..store import open_store
from ..taxonomy import Taxonomy
from .notices import NoticeService
from .services import AdminService, MatchService, ResearchService, SubmissionService
from .workers import WorkerFailed, WorkerHeader, WorkerPool

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    match_pb2.DESCRIPTOR.services_by_name["MatchService"].full_name,
    submission_pb2.DESCRIPTOR.services_by_name["SubmissionService"].full_name,
    research_pb2.DESCRIPTOR.services_by_name["ResearchService"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
    notice_pb2.DESCRIPTOR.services_by_name["NoticeService"].full_name,
)
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
DEV_ADMIN_NAME = "dev-admin"


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    bank: Bank
    health: health.HealthServicer

    def stop(self, grace: float | None = None) -> None:
        """Stop taking calls (health NOT_SERVING first), finish those in flight, flush."""
        self.health.enter_graceful_shutdown()
        self.server.stop(self.bank.settings.grace_seconds if grace is None else grace).wait()
        self.bank.stop()
        self.bank.store.close()


def start(settings: Settings, worker: int | None = None, listen_after_load: bool = False) -> RunningServer:
    """Start serving; returns once the index is loaded and health is SERVING.

    ``worker`` numbers one of several processes sharing the port. The port is
    bound before the index loads, so that health answers NOT_SERVING meanwhile;
    with ``listen_after_load`` (a worker replacing one that died, while its
    siblings serve) only once it can answer, since the kernel would otherwise
    hand it new connections whose calls fail until then."""
    store = open_store(settings.store, settings)
    taxonomy = Taxonomy.from_file(settings.taxonomy) if settings.taxonomy else Taxonomy()
    bank = Bank(store, settings, taxonomy)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.threads, thread_name_prefix="hashshare-rpc"),
        interceptors=() if worker is None else (WorkerHeader(worker),),
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            # gRPC sets SO_REUSEPORT by default, which lets a second server
            # silently share the port; only the workers of one serve share it.
            ("grpc.so_reuseport", 0 if worker is None else 1),
        ],
    )
    match_pb2_grpc.add_MatchServiceServicer_to_server(MatchService(bank), server)
    submission_pb2_grpc.add_SubmissionServiceServicer_to_server(SubmissionService(bank), server)
    research_pb2_grpc.add_ResearchServiceServicer_to_server(ResearchService(bank), server)
    admin_pb2_grpc.add_AdminServiceServicer_to_server(AdminService(bank), server)
    notice_pb2_grpc.add_NoticeServiceServicer_to_server(NoticeService(bank), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    for name in ("", *SERVICE_NAMES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    if listen_after_load:
        bank.start(writes_snapshots=not worker)
    port = server.add_insecure_port(settings.listen)
    if port == 0:
        raise OSError(f"cannot listen on {settings.listen}")
    server.start()
    if not listen_after_load:
        bank.start(writes_snapshots=not worker)
    for name in ("", *SERVICE_NAMES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("serving on port %d, store %s, index %s", port, settings.store, bank.index.sizes())
    return RunningServer(server, port, bank, health_servicer)


def ensure_dev_admin(settings: Settings) -> Path | None:
    """Development only: make sure an admin token exists in ``dev_admin_token_file``."""
    if not settings.dev_admin_token_file:
        return None
    path = Path(settings.dev_admin_token_file)
    store = open_store(settings.store)
    try:
        if path.exists() and store.find_token(hash_token(path.read_text().strip())) is not None:
            return path
        existing = [m for m in store.list_members() if m.name == DEV_ADMIN_NAME]
        if existing:
            _, secret = members.issue_token(store, existing[0].member_id, (), time.time())
        else:
            _, _, secret = members.create_member(
                store, DEV_ADMIN_NAME, [Role.ADMIN.value], time.time(), TrustLevel.TRUSTED
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(secret + "\n")
        return path
    finally:
        store.close()


def _wait_for_signal(stopping: threading.Event) -> None:
    """Wait until a signal handler sets ``stopping``.

    Python runs signal handlers in the main thread only, and a signal the kernel
    hands to one of gRPC's threads does not interrupt a main thread blocked on a
    lock without a timeout: waking up now and then lets the handler run."""
    while not stopping.wait(0.2):
        pass


def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    token_file = ensure_dev_admin(settings)
    if settings.workers > 1:
        _serve_workers(settings, token_file)
        return
    running = start(settings)
    print(
        f"hashshare serving on {settings.listen.rsplit(':', 1)[0]}:{running.port} (store {settings.store})", flush=True
    )
    if token_file is not None:
        print(f"development admin token written to {token_file.resolve()}", flush=True)
    stopping = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    _wait_for_signal(stopping)
    log.info("shutting down")
    running.stop()


def _serve_workers(settings: Settings, token_file: Path | None) -> None:
    """Run ``settings.workers`` processes on one port until SIGTERM (see api/workers.py)."""
    if settings.listen.rsplit(":", 1)[-1] == "0":
        raise ValueError("--workers needs a fixed port: the workers must share it")

    def serving() -> None:
        print(
            f"hashshare serving on {settings.listen} with {settings.workers} workers (store {settings.store})",
            flush=True,
        )
        if token_file is not None:
            print(f"development admin token written to {token_file.resolve()}", flush=True)

    try:
        WorkerPool(settings, _serve_worker).run(on_serving=serving)
    except WorkerFailed as error:
        log.error("%s", error)
        raise SystemExit(1) from error


def _serve_worker(settings: Settings, worker: int, ready: Callable[[], None], replacing: bool) -> None:
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
    running = start(settings, worker=worker, listen_after_load=replacing)
    ready()
    _wait_for_signal(stopping)
    running.stop()
