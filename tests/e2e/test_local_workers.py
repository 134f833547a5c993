"""`confab serve` with LOCAL_WORKERS: invocations run at once, each in a worker process of its own.

A slow model (an OpenAI-compatible server on loopback that answers only when told to) holds one invocation
while the test makes others.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import pytest

from tests.ai_helpers import add_model
from tests.conftest import LOCAL_ENV
from tests.e2e.test_local_server import _free_port, _request, start_server
from tests.helpers import upload_form

pytestmark = pytest.mark.e2e

ANSWER = {
    "id": "cmpl-1",
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "slow"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 7, "completion_tokens": 2},
}


@dataclass
class HeldUpstream:
    """An OpenAI-compatible chat-completions server that answers each request only once `release` is set."""

    release: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                upstream.arrived.set()
                upstream.release.wait(60)
                body = json.dumps(ANSWER).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream(db) -> Iterator[HeldUpstream]:
    held = HeldUpstream()
    add_model(db, "slow-model", provider="openai-compatible", base_url=held.url)
    yield held
    held.close()


@dataclass
class Served:
    url: str
    process: psutil.Process
    log: Path

    def workers(self) -> list[psutil.Process]:
        """The worker processes the server has started (not multiprocessing's resource tracker)."""
        return [p for p in self.process.children() if any("spawn_main" in part for part in p.cmdline())]


@contextmanager
def serving(database_url: str, tmp_path: Path, workers: int, own_process_group: bool = False) -> Iterator[Served]:
    port = _free_port()
    env = {
        **os.environ,
        **LOCAL_ENV,
        "DATABASE_URL": database_url,
        "CONFAB_FILES_DIR": str(tmp_path / "files"),
        "ALLOW_PRIVATE_MODEL_ENDPOINTS": "true",
        "MAINTENANCE_INTERVAL_SECONDS": "0",
        "LOCAL_WORKERS": str(workers),
    }
    log = tmp_path / "server.log"
    proc = start_server(env, port, log, own_process_group)
    try:
        yield Served(f"http://127.0.0.1:{port}", psutil.Process(proc.pid), log)
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=30)


def _signup(base_url: str, name: str = "worker") -> str:
    body = {"username": name, "email": f"{name}@example.com", "password": "a strong password"}
    status, _, raw = _request(f"{base_url}/v1/auth/signup", method="POST", body=body)
    assert status == 201, raw
    return str(json.loads(raw)["access_token"])


class InFlight(threading.Thread):
    """A completion from the slow model, made in the background; its answer once it is done."""

    def __init__(self, base_url: str, token: str):
        super().__init__(daemon=True)
        self.base_url, self.token = base_url, token
        self.answer: tuple[int, dict[str, str], bytes] | None = None

    def run(self) -> None:
        body = {"model": "slow-model", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
        headers = {"Authorization": f"Bearer {self.token}"}
        self.answer = _request(f"{self.base_url}/v1/chat/completions", method="POST", body=body, headers=headers)


def _start_slow_completion(base_url: str, token: str, upstream: HeldUpstream) -> InFlight:
    call = InFlight(base_url, token)
    call.start()
    # A worker's cold start comes first (on a busy machine, seconds).
    assert upstream.arrived.wait(30), "the completion never reached the model"
    return call


def test_health_and_a_login_answer_while_a_slow_completion_is_in_flight_when_served_with_two_workers(
    database_url, db, tmp_path, upstream
):
    with serving(database_url, tmp_path, workers=2) as server:
        token = _signup(server.url)
        call = _start_slow_completion(server.url, token, upstream)
        try:
            # One worker waits on the model; the other answers (one invocation at a time would hold these until
            # the model answers, past _request's 10 s timeout).
            status, _, body = _request(f"{server.url}/v1/health")
            assert status == 200 and json.loads(body)["database"] == "ok"
            login = {"login": "worker", "password": "a strong password"}
            assert _request(f"{server.url}/v1/auth/login", method="POST", body=login)[0] == 200
            assert call.is_alive()
        finally:
            upstream.release.set()
        call.join(20)
        assert call.answer is not None and call.answer[0] == 200, call.answer
        assert json.loads(call.answer[2])["choices"][0]["message"]["content"] == "slow"


def test_usage_of_a_completion_made_in_a_worker_is_recorded_when_the_server_stops_right_after_it(
    database_url, db, tmp_path, upstream
):
    upstream.release.set()
    with serving(database_url, tmp_path, workers=2) as server:
        token = _signup(server.url)
        body = {"model": "slow-model", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
        headers = {"Authorization": f"Bearer {token}"}
        status, _, raw = _request(f"{server.url}/v1/chat/completions", method="POST", body=body, headers=headers)
        assert status == 200, raw
        assert server.workers(), "the completion ran in the server's own process"
    # serving() has stopped the server (SIGTERM) and waited for it to exit.
    rows = db.execute("SELECT model_name, prompt_tokens, completion_tokens FROM model_usage").fetchall()
    assert rows == [("slow-model", 7, 2)]


def test_a_request_whose_worker_dies_is_a_500_problem_and_the_next_is_served_when_served_with_workers(
    database_url, db, tmp_path, upstream
):
    with serving(database_url, tmp_path, workers=2) as server:
        token = _signup(server.url)
        call = _start_slow_completion(server.url, token, upstream)
        (busy,) = server.workers()  # started for the signup, reused for the completion
        busy.kill()
        call.join(20)
        assert call.answer is not None
        status, headers, body = call.answer
        assert status == 500 and headers["Content-Type"] == "application/problem+json"
        assert json.loads(body)["type"].endswith("internal-error")

        assert _request(f"{server.url}/v1/health")[0] == 200
        assert _request(f"{server.url}/v1/users/me", headers={"Authorization": f"Bearer {token}"})[0] == 200
        assert server.process.is_running()


def test_workers_exit_by_themselves_when_the_server_is_killed(database_url, tmp_path):
    with serving(database_url, tmp_path, workers=2) as server:
        assert _request(f"{server.url}/v1/health")[0] == 200
        assert server.workers()
        started = server.process.children()  # the workers and multiprocessing's resource tracker
        server.process.kill()  # no exit handlers, no orderly stop of the workers
        server.process.wait(10)
        _, alive = psutil.wait_procs(started, timeout=15)
        assert alive == []


def test_a_file_uploaded_to_a_url_a_worker_signed_is_taken_by_the_server_when_served_with_workers(
    database_url, tmp_path
):
    # The worker signs the upload and download URLs; the server process itself serves /local-files/.
    with serving(database_url, tmp_path, workers=2) as server:
        headers = {"Authorization": f"Bearer {_signup(server.url)}"}
        data = b"bytes from a worker's URL"
        body = {"name": "a.txt", "content_type": "text/plain", "size": len(data)}
        body["sha256"] = hashlib.sha256(data).hexdigest()
        status, _, raw = _request(f"{server.url}/v1/files", method="POST", body=body, headers=headers)
        assert status == 201, raw
        created = json.loads(raw)
        upload = urlsplit(created["upload"]["url"])
        assert _post_form(f"{server.url}{upload.path}", created["upload"]["fields"], data) == 204
        status, _, raw = _request(f"{server.url}/v1/files/{created['file']['id']}", headers=headers)
        download = urlsplit(json.loads(raw)["download"]["url"])
        status, _, raw = _request(f"{server.url}{download.path}?{download.query}")
        assert status == 200 and raw == data


def _post_form(url: str, fields: dict[str, str], data: bytes) -> int:
    import urllib.request

    content_type, form = upload_form(fields, data, "text/plain")
    request = urllib.request.Request(url, data=form, method="POST", headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


def _stopped_listening(base_url: str, timeout_s: float = 10) -> bool:
    port = urlsplit(base_url).port
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except OSError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_completion_in_flight_is_answered_and_its_usage_recorded_when_the_servers_process_group_is_signalled(
    database_url, db, tmp_path, upstream, signum, workers
):
    # Ctrl-C in a terminal signals the whole foreground process group, and a supervisor (systemd's default
    # KillMode, `kill -- -PGID`) may send SIGTERM to every process: the worker must outlive the signal to finish
    # its invocation, and the server must still send the answer once it has stopped listening. With one worker the
    # invocation runs in the server's process, whose usage queue must be drained only after it.
    with serving(database_url, tmp_path, workers=workers, own_process_group=True) as server:
        token = _signup(server.url)
        call = _start_slow_completion(server.url, token, upstream)
        os.killpg(server.process.pid, signum)
        try:
            # The server has begun to stop (its listening socket is closed) before the model answers.
            assert _stopped_listening(server.url)
        finally:
            upstream.release.set()
        call.join(30)
        assert call.answer is not None and call.answer[0] == 200, call.answer
        assert json.loads(call.answer[2])["choices"][0]["message"]["content"] == "slow"
        server.process.wait(30)
    rows = db.execute("SELECT model_name, prompt_tokens, completion_tokens FROM model_usage").fetchall()
    assert rows == [("slow-model", 7, 2)]


@pytest.mark.parametrize("workers", [1, 2])
def test_the_local_server_does_not_warn_that_a_request_published_no_metrics_when_served(
    database_url, tmp_path, workers
):
    # Powertools warns when a handler records no metric (most routes record none): once in the server with one
    # worker, once per worker process with more. It still warns in AWS.
    with serving(database_url, tmp_path, workers=workers) as server:
        assert _request(f"{server.url}/v1/health")[0] == 200
        assert _signup(server.url)
        assert bool(server.workers()) == (workers > 1)
    assert "No application metrics to publish" not in server.log.read_text()
