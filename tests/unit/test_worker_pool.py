"""Which local server runs invocations in worker processes, what those workers are handed, and how it stops."""

from __future__ import annotations

import threading
from multiprocessing.process import BaseProcess
from typing import Any

import pytest

from shared.local.invocations import PROBLEM_JSON, Invocation, LocalResponse
from shared.local.server import LocalApi
from shared.local.workers import WorkerPool, worker_pool
from shared.settings import Settings
from shared.storage import local_files_secret


def test_one_local_worker_means_invocations_in_the_servers_own_process():
    assert worker_pool(Settings(LOCAL_WORKERS=1)) is None


def test_workers_are_handed_the_servers_files_key_when_none_is_set_so_its_urls_verify_in_the_server():
    settings = Settings(LOCAL_WORKERS=3)
    pool = worker_pool(settings)
    assert isinstance(pool, WorkerPool) and pool.size == 3
    assert pool.env == {"CONFAB_FILES_SECRET": local_files_secret(settings)}


def test_workers_read_the_files_key_from_the_environment_like_the_server_when_it_is_set():
    pool = worker_pool(Settings(LOCAL_WORKERS=2, CONFAB_FILES_SECRET="k" * 40))
    assert pool is not None and pool.env == {"CONFAB_FILES_SECRET": "k" * 40}


def test_a_request_is_a_503_problem_not_run_when_the_server_running_invocations_itself_is_stopping():
    api = LocalApi()
    api.close()

    answer = api.handle("GET", "/v1/health", [], b"", "127.0.0.1")

    assert answer.status == 503 and ("Content-Type", PROBLEM_JSON) in answer.headers
    assert api.modules == {}  # no handler was imported, let alone run


def _stub_invocation() -> Invocation:
    event = {"requestContext": {"requestId": "r-1"}}
    return Invocation(module="tests.local_stub_handler", function_name="confab-stub", event=event, authorize=False)


def test_a_stop_waits_for_the_worker_being_started_and_its_invocation_when_stopped_during_the_start():
    # The worker is started outside the pool's lock; a stop that came meanwhile saw no worker, returned at once
    # and left the new one to run its invocation after the stop (with the embedded PostgreSQL stopping) or past it.
    pool = WorkerPool(1, {"DATABASE_URL": "postgresql://unused"})
    starting, go_on = threading.Event(), threading.Event()
    started: list[BaseProcess] = []
    real_start = pool._start

    def held_start() -> Any:
        starting.set()
        go_on.wait(10)
        worker = real_start()
        started.append(worker.process)
        return worker

    answers: list[LocalResponse] = []
    pool._start = held_start  # type: ignore[method-assign]
    request = threading.Thread(target=lambda: answers.append(pool.invoke(_stub_invocation())))
    request.start()
    assert starting.wait(10)
    stop = threading.Thread(target=pool.close, kwargs={"grace_s": 30})
    stop.start()
    stop.join(0.3)
    go_on.set()
    stop.join(60)
    try:
        assert not stop.is_alive()
        # The request came before the stop: answered by its worker, and that worker gone when the stop returns.
        assert [answer.status for answer in answers] == [200]
        assert started and not started[0].is_alive()
    finally:
        request.join(30)
        for process in started:
            process.kill()


def test_a_request_is_a_503_problem_and_starts_no_worker_when_the_pool_has_stopped():
    pool = WorkerPool(1)
    pool.close()
    pool._start = lambda: pytest.fail("a worker was started")  # type: ignore[method-assign]

    answer = pool.invoke(_stub_invocation())

    assert answer.status == 503 and ("Content-Type", PROBLEM_JSON) in answer.headers
