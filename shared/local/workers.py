"""Execution environments for the local server: each concurrent invocation runs in a worker process of its own,
as Lambda runs each concurrent invocation in an execution environment of its own.

A worker is a warm container: started on demand (a cold start: handlers are imported on first use), then reused
for one invocation at a time, with its own settings, connection and usage queue. Powertools keeps the current
event on the resolver class and per-invocation log keys on a shared Logger, so two invocations must never share
a process.

Each worker has a pipe of its own to the server. A worker that dies fails only the invocation it was running,
and is replaced by the next request that needs one; a worker whose server died (kill -9) reads the end of its
pipe and exits.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from shared.local.invocations import (
    Invocation,
    LocalResponse,
    internal_error,
    invoke,
    problem,
    silence_empty_metrics_warning,
)
from shared.observability import logger
from shared.settings import Settings
from shared.storage import local_files_secret

# Sent to the server's whole process group, workers included: by a terminal (Ctrl-C, the window closed) or a
# supervisor (systemd's default KillMode, `kill -- -PGID`). The server decides when its workers stop (after their
# invocations, with their answers sent and their usage recorded), so workers ignore them; a server killed
# outright still ends them, by closing their pipes.
GROUP_SIGNALS = frozenset(getattr(signal, name) for name in ("SIGINT", "SIGHUP", "SIGTERM") if hasattr(signal, name))
# How long a stopping server waits for invocations in flight before it kills their workers.
STOP_GRACE_S = 30.0
USAGE_FLUSH_TIMEOUT_S = 30.0


class _Worker:
    def __init__(self, process: BaseProcess, connection: Connection):
        self.process = process
        self.connection = connection


class WorkerPool:
    """Up to `size` worker processes (spawned, so nothing of the server's threads or connections is copied)."""

    def __init__(self, size: int, env: Mapping[str, str] | None = None):
        if size < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.size = size
        # On top of the server's environment, which a spawned process starts with.
        self.env = dict(env or {})
        self._context = multiprocessing.get_context("spawn")
        self._changed = threading.Condition()
        self._idle: list[_Worker] = []
        self._workers: set[_Worker] = set()
        self._starting = 0
        self._closed = False

    def invoke(self, invocation: Invocation) -> LocalResponse:
        """Run `invocation` in an idle worker, a new one, or the first to become idle; a 500 if its worker dies."""
        worker = self._acquire()
        if worker is None:
            return problem(503, "unavailable", "Service unavailable", "The local server is stopping.")
        try:
            worker.connection.send(invocation)
            response: LocalResponse = worker.connection.recv()
        except (EOFError, OSError):
            self._lose(worker)
            logger.error(
                "local worker died during an invocation",
                extra={"pid": worker.process.pid, "exitcode": worker.process.exitcode, "function": invocation.module},
            )
            return internal_error()
        self._release(worker)
        return response

    def _acquire(self) -> _Worker | None:
        with self._changed:
            while not self._closed:
                if self._idle:
                    # The most recently used: the warmest (connection open, modules imported).
                    return self._idle.pop()
                if len(self._workers) + self._starting < self.size:
                    self._starting += 1
                    break
                self._changed.wait()
            else:
                return None
        worker = None
        try:
            worker = self._start()
        finally:
            # In one step, so that no other request sees room for one worker too many meanwhile.
            with self._changed:
                self._starting -= 1
                if worker is not None:
                    self._workers.add(worker)
                self._changed.notify_all()
        return worker

    def _start(self) -> _Worker:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=serve_invocations, args=(theirs, self.env), name="confab-worker", daemon=True
        )
        with _group_signals_blocked():
            process.start()
        # Only the worker holds its end now, so it reads end-of-file when this process goes away.
        theirs.close()
        return _Worker(process, ours)

    def _release(self, worker: _Worker) -> None:
        with self._changed:
            if not self._closed:
                self._idle.append(worker)
                self._changed.notify()
                return
        worker.connection.close()  # the pool stopped meanwhile: the worker ends at end-of-file

    def _lose(self, worker: _Worker) -> None:
        with self._changed:
            self._workers.discard(worker)
            self._changed.notify()
        worker.connection.close()
        worker.process.join(1)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(1)

    def close(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop every worker: idle ones at once, busy ones after their invocation (killed past `grace_s`)."""
        deadline = time.monotonic() + grace_s
        with self._changed:
            self._closed = True
            idle, self._idle = self._idle, []
            self._changed.notify_all()
            # A worker being started (outside the lock) is for a request that came before the stop: it is in
            # flight like a busy one's, so it is waited for here rather than left to run once the stop returned.
            self._changed.wait_for(lambda: not self._starting, max(0.0, deadline - time.monotonic()))
            workers = list(self._workers)
        for worker in idle:
            worker.connection.close()
        try:
            for worker in workers:
                worker.process.join(max(0.0, deadline - time.monotonic()))
        finally:
            # Past the grace, or a second Ctrl-C: whatever still runs is stopped now.
            for worker in workers:
                if worker.process.is_alive():
                    worker.process.kill()
                    worker.process.join(1)


def worker_pool(settings: Settings) -> WorkerPool | None:
    """The local server's workers (LOCAL_WORKERS); None for one, which runs invocations in the server's process."""
    if settings.local_workers == 1:
        return None
    env = {}
    if not settings.files_bucket:
        # The server answers /local-files/ itself: it must verify the URLs its workers sign.
        env["CONFAB_FILES_SECRET"] = local_files_secret(settings)
    return WorkerPool(settings.local_workers, env)


@contextlib.contextmanager
def _group_signals_blocked() -> Iterator[None]:
    # A worker inherits the signal mask: a Ctrl-C or SIGTERM during its start (before it ignores the signal) stays
    # pending, to be discarded, instead of a KeyboardInterrupt trace or the end of a half-started worker.
    if not GROUP_SIGNALS or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, GROUP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def serve_invocations(connection: Connection, env: Mapping[str, str]) -> None:
    """A worker's life: invocations from `connection`, one at a time, until the server closes it or goes away."""
    for signum in GROUP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    if GROUP_SIGNALS and hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, GROUP_SIGNALS)
    # Before anything reads settings: what the server's process has and its environment does not (a local files
    # signing key of its own, say).
    os.environ.update(env)
    silence_empty_metrics_warning()
    from shared.bootstrap import container

    try:
        while True:
            try:
                invocation: Invocation = connection.recv()
            except EOFError:
                return
            response = _invoke(invocation)
            try:
                connection.send(response)
            except OSError:
                return  # the server is gone
            # Recorded now rather than at exit: a worker may be killed, with the server or on its own.
            _flush_usage(lambda: container().flush())
    finally:
        _flush_usage(lambda: container().close())


def _invoke(invocation: Invocation) -> LocalResponse:
    try:
        return invoke(invocation, importlib.import_module)
    except Exception:
        logger.exception("local server failed")
        return internal_error()


def _flush_usage(flush: Callable[[], object]) -> None:
    try:
        flush()
    except Exception:
        logger.exception("usage events not recorded by a local worker")
