"""The local server over real HTTP: `confab serve` as a subprocess, on a loopback port."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import LOCAL_ENV

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _request(url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def _sigint_as_in_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_server(env: dict[str, str], port: int, log: Path, own_process_group: bool = False) -> subprocess.Popen[bytes]:
    """`confab serve` on `port`, once it accepts connections; in a process group of its own if asked (so that a
    test can signal the group as a terminal or a supervisor does, without signalling pytest)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "serve", "--port", str(port)],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        process_group=0 if own_process_group else None,
        # A job a non-interactive shell starts in the background (`make test &`, some CI runners) ignores SIGINT,
        # and so would the server, which leaves an ignored signal alone: a test that signals the group as a
        # terminal does starts it as a terminal's foreground job is started.
        preexec_fn=_sigint_as_in_a_terminal if own_process_group else None,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server did not start: {log.read_text()[-2000:]}")


@contextmanager
def served(database_url: str, tmp_path: Path) -> Iterator[str]:
    """`confab serve` on `database_url` and a free loopback port; its base URL while the block runs."""
    port = _free_port()
    env = {**os.environ, **LOCAL_ENV, "DATABASE_URL": database_url, "CONFAB_FILES_DIR": str(tmp_path / "files")}
    proc = start_server(env, port, tmp_path / "server.log")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[str]:
    with served(database_url, tmp_path) as url:
        yield url


def test_health_answers_200_json_with_database_ok_when_served_locally(server):
    status, headers, body = _request(f"{server}/v1/health")
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert json.loads(body)["database"] == "ok"


def test_unknown_path_is_404_problem_and_wrong_method_is_405_when_served_locally(server):
    status, headers, body = _request(f"{server}/v1/nothing")
    assert status == 404 and headers["Content-Type"] == "application/problem+json"
    for method in ("DELETE", "TRACE", "QUERY"):
        status, headers, _ = _request(f"{server}/v1/health", method=method)
        assert status == 405 and headers["Content-Type"] == "application/problem+json", method
        assert headers["Allow"] == "GET, OPTIONS", method  # a 405 says what the path takes (RFC 9110, 15.5.6)
    _, headers, _ = _request(f"{server}/v1/messages/1", method="PUT")
    assert headers["Allow"] == "DELETE, OPTIONS, PATCH"


def test_openapi_document_and_swagger_ui_are_served_when_asked(server):
    status, _, body = _request(f"{server}/openapi.json")
    assert status == 200
    assert "/v1/health" in json.loads(body)["paths"]
    status, headers, body = _request(f"{server}/docs")
    assert status == 200 and b"swagger-ui" in body


def test_serve_starts_embedded_postgres_when_database_url_is_unset(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TEST_DATABASE_URL")}
    env.update(LOCAL_ENV)
    env["CONFAB_DATA_DIR"] = str(tmp_path / "pgdata")
    proc = start_server(env, port, tmp_path / "server.log")
    try:
        status, _, body = _request(f"http://127.0.0.1:{port}/v1/health")
        assert status == 200 and json.loads(body)["database"] == "ok"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert (tmp_path / "pgdata" / "PG_VERSION").exists()


def test_local_server_runs_maintenance_on_its_timer_when_serving(database_url, tmp_path):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO ai_cache (model, prompt_hash, prompt_summary, response_text, tokens_used, cost_estimate, ttl)"
            " VALUES ('m', 'h', 's', 'r', 1, 0, now() - interval '1 minute')"
        )
    port = _free_port()
    env = {**os.environ, **LOCAL_ENV, "DATABASE_URL": database_url, "MAINTENANCE_INTERVAL_SECONDS": "1"}
    proc = start_server(env, port, tmp_path / "server.log")
    try:
        deadline = time.monotonic() + 30
        with psycopg.connect(database_url, autocommit=True) as conn:
            # The run deletes the row, then records itself complete: wait for both, not just the first.
            def done() -> bool:
                purged = conn.execute("SELECT count(*) FROM ai_cache").fetchone()[0] == 0
                return purged and conn.execute("SELECT count(*) FROM maintenance_runs WHERE complete").fetchone()[0] > 0

            while not done() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert conn.execute("SELECT count(*) FROM ai_cache").fetchone()[0] == 0
            assert conn.execute("SELECT count(*) FROM maintenance_runs WHERE complete").fetchone()[0] >= 1
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_serve_says_the_port_is_taken_in_one_line_when_another_process_listens_on_it(database_url, tmp_path):
    env = {**os.environ, **LOCAL_ENV, "DATABASE_URL": database_url, "MAINTENANCE_INTERVAL_SECONDS": "0"}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "shared.cli", "serve", "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    assert f"confab: cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr
    assert "Traceback" not in done.stderr


def _embedded_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TEST_DATABASE_URL")}
    return {**env, **LOCAL_ENV, "CONFAB_DATA_DIR": str(data_dir), "MAINTENANCE_INTERVAL_SECONDS": "0"}


def _postgres_stopped(data_dir: Path, within_s: float = 20) -> bool:
    # PostgreSQL removes postmaster.pid when it shuts down.
    deadline = time.monotonic() + within_s
    while (data_dir / "postmaster.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    return not (data_dir / "postmaster.pid").exists()


@contextmanager
def _no_orphan_left(data_dir: Path) -> Iterator[None]:
    try:
        yield
    finally:
        # Whatever the test found, stop the server it started.
        pid_file = data_dir / "postmaster.pid"
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
            _postgres_stopped(data_dir)


def test_embedded_postgres_stops_when_serve_is_hung_up(tmp_path):
    data_dir = tmp_path / "pgdata"
    with _no_orphan_left(data_dir):
        proc = start_server(_embedded_env(data_dir), _free_port(), tmp_path / "server.log")
        proc.send_signal(signal.SIGHUP)  # the terminal window closed
        proc.wait(timeout=20)
        assert _postgres_stopped(data_dir)


def test_embedded_postgres_stops_with_the_last_serve_when_an_earlier_one_was_killed(tmp_path):
    data_dir = tmp_path / "pgdata"
    with _no_orphan_left(data_dir):
        killed = start_server(_embedded_env(data_dir), _free_port(), tmp_path / "killed.log")
        killed.kill()  # no exit handlers: the server stays up, for the next serve to reuse
        killed.wait(timeout=20)
        assert (data_dir / "postmaster.pid").exists()
        last = start_server(_embedded_env(data_dir), _free_port(), tmp_path / "last.log")
        last.terminate()
        last.wait(timeout=20)
        assert _postgres_stopped(data_dir)


def test_a_fresh_local_server_answers_an_anonymous_chat_with_the_seeded_model(server):
    # `make dev` turns anonymous AI on with the seeded local model (ANONYMOUS_AI_MODEL_ID unset): a chat widget
    # works without an account or any setting.
    status, _, body = _request(f"{server}/v1/anonymous/conversations", method="POST", body={})
    assert status == 201, body
    created = json.loads(body)
    auth = {"Authorization": f"Bearer {created['token']}"}
    conversation = created["conversation"]["id"]
    status, _, body = _request(
        f"{server}/v1/conversations/{conversation}/threads", method="POST", body={"title": "t"}, headers=auth
    )
    assert status == 201, body
    thread = json.loads(body)["id"]
    status, _, body = _request(
        f"{server}/v1/threads/{thread}/completions", method="POST", body={"content": "hello"}, headers=auth
    )
    assert status == 200, body
    answer = json.loads(body)["message"]
    assert answer["sender_kind"] == "ai" and answer["model_id"] == "local-echo" and "hello" in answer["content"]
