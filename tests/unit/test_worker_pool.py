"""Which local server runs invocations in worker processes, what those workers are handed, and how it stops."""

from __future__ import annotations

from shared.local.invocations import PROBLEM_JSON
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
