"""``serve --workers N``: N processes serving one port, and the parent that watches them.

gRPC objects do not survive a fork, so the parent forks every worker before
any exists and never creates one itself; each worker opens its own store and
builds its own index, which the store's change feed keeps current. The kernel
(SO_REUSEPORT) hands each new connection to one of the workers.

What the parent does, and why:

- It reports SERVING (prints its line) only once every worker has loaded its
  index and serves.
- A worker that dies before it ever served (bad store URL, unreachable
  store, unreadable taxonomy) makes the parent stop the others and exit 1:
  forking again would fail the same way, and the supervisor (systemd,
  Kubernetes, compose) should see the failure instead of a crash loop hidden
  inside one container.
- A worker that dies after it served (a crash, the OOM killer, a stray
  SIGKILL) is logged and replaced under the same worker number, so the
  process keeps its capacity; the replacement binds the port only once its
  index is loaded (its siblings answer meanwhile), and must serve in turn, or
  the parent exits 1 as above.
- SIGTERM or SIGINT to the parent is forwarded as SIGTERM to every worker,
  each of which drains its calls (``--grace-seconds``); the parent exits 0
  when every worker stopped cleanly, 1 otherwise.
- Each worker asks the kernel for SIGTERM if the parent dies, so that a
  SIGKILLed parent does not leave orphans holding the port.

Every answer of a worker carries its number in the trailing metadata
``hashshare-worker`` (see ``WorkerHeader``), which tells an operator or a
test which process answered.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from ..settings import Settings

log = logging.getLogger(__name__)

WORKER_METADATA_KEY = "hashshare-worker"
_PR_SET_PDEATHSIG = 1
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class WorkerHeader(grpc.ServerInterceptor):  # type: ignore[misc]
    """Adds ``hashshare-worker: N`` to the trailing metadata of every call a worker answers.

    Trailing metadata travels with the call's status, so it costs no extra
    write; an error raised with ``abort_with_status`` replaces it (the status
    details are trailing metadata too), so only successful calls carry it."""

    def __init__(self, worker: int) -> None:
        self._trailer = ((WORKER_METADATA_KEY, str(worker)),)

    def intercept_service(self, continuation: Callable[[Any], Any], handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            behaviour = getattr(handler, kind)
            if behaviour is not None:
                return handler._replace(**{kind: self._wrap(behaviour)})
        return handler

    def _wrap(self, behaviour: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[..., Any]:
        trailer = self._trailer

        def with_trailer(request: Any, context: grpc.ServicerContext) -> Any:
            context.set_trailing_metadata(trailer)
            return behaviour(request, context)

        return with_trailer


class WorkerFailed(Exception):
    """A worker could not start serving, or a worker did not stop cleanly."""


@dataclass
class _Worker:
    number: int
    pid: int
    ready_fd: int  # the parent's end of a pipe the worker writes one byte to once it serves


class WorkerPool:
    """Forks the workers, waits until they serve, replaces those that die, and stops them."""

    def __init__(
        self, settings: Settings, serve_one: Callable[[Settings, int, Callable[[], None], bool], None]
    ) -> None:
        """``serve_one(settings, number, ready, replacing)`` runs one worker until SIGTERM,
        calling ``ready()`` once it serves; ``replacing`` when it replaces one that died
        while the others serve."""
        self._settings = settings
        self._serve_one = serve_one
        self._workers: dict[int, _Worker] = {}  # by pid
        self._stopping = threading.Event()
        self._failed = False

    def run(self, on_serving: Callable[[], None]) -> None:
        """Serve until SIGTERM or SIGINT; raises WorkerFailed when a worker could not serve
        or did not stop cleanly."""
        for sig in _STOP_SIGNALS:
            signal.signal(sig, self._request_stop)
        started = [self._fork(number, replacing=False) for number in range(self._settings.workers)]
        if all(self._wait_ready(worker) for worker in started) and not self._stopping.is_set():
            on_serving()
        while self._workers:
            pid, status = os.wait()
            worker = self._workers.pop(pid, None)
            if worker is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            if self._stopping.is_set():
                if code != 0:
                    log.error("worker %d (pid %d) stopped with status %d", worker.number, pid, code)
                    self._failed = True
                continue
            log.error("worker %d (pid %d) died with status %d; starting a new one", worker.number, pid, code)
            replacement = self._fork(worker.number, replacing=True)
            if self._wait_ready(replacement):
                log.info("worker %d serves again (pid %d)", worker.number, replacement.pid)
        if self._failed:
            raise WorkerFailed("a worker could not serve or did not stop cleanly; see the log above")

    def _request_stop(self, signum: int, frame: object) -> None:
        self._stopping.set()
        for pid in list(self._workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _fork(self, number: int, replacing: bool) -> _Worker:
        read_fd, write_fd = os.pipe()
        parent = os.getpid()
        # Blocked across the fork, so that a SIGTERM arriving now is not handled
        # by the child with the parent's handler (which signals the siblings).
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            self._run_child(number, write_fd, parent, replacing)
        os.close(write_fd)
        worker = _Worker(number, pid, read_fd)
        self._workers[pid] = worker
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        if self._stopping.is_set():  # the stop request came while this one was being forked
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        return worker

    def _run_child(self, number: int, ready_fd: int, parent: int, replacing: bool) -> None:
        code = 0
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # until serve_one installs its own
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent forwards Ctrl-C as SIGTERM
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
            _terminate_with_parent(parent)

            def ready() -> None:
                os.write(ready_fd, b"1")
                os.close(ready_fd)

            self._serve_one(self._settings, number, ready, replacing)
        except BaseException:
            log.exception("worker %d failed", number)
            code = 1
        finally:
            os._exit(code)

    def _wait_ready(self, worker: _Worker) -> bool:
        """Block until the worker serves (True) or exits first (False, and the pool stops)."""
        try:
            select.select([worker.ready_fd], [], [])
            served = os.read(worker.ready_fd, 1) == b"1"
        finally:
            os.close(worker.ready_fd)
        if not served and not self._stopping.is_set():
            log.error("worker %d (pid %d) exited before it served; stopping", worker.number, worker.pid)
            self._failed = True
            self._request_stop(signal.SIGTERM, None)
        return served


def _terminate_with_parent(parent: int) -> None:
    """Ask Linux for SIGTERM when the parent dies; elsewhere a no-op."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
