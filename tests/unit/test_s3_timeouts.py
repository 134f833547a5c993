"""S3 that does not answer: a 503 problem within the function's time, never a hang until API Gateway's 504."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config

from shared.errors import UnavailableError, problem_for
from shared.storage import S3_CLIENT_OPTIONS, S3Storage

FUNCTION_TIMEOUT_S = 29  # infra/functions.py API_TIMEOUT


def test_every_attempt_and_backoff_together_fit_well_inside_the_functions_timeout():
    attempts = S3_CLIENT_OPTIONS["retries"]["max_attempts"]
    per_attempt = S3_CLIENT_OPTIONS["connect_timeout"] + S3_CLIENT_OPTIONS["read_timeout"]
    backoff = sum(2**i for i in range(attempts - 1))  # the standard mode's longest sleeps: 1 s, 2 s, ...
    assert attempts * per_attempt + backoff <= FUNCTION_TIMEOUT_S - 5


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A TCP server on loopback that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()
    for conn in held:
        conn.close()


def test_head_on_an_s3_that_never_answers_is_a_503_after_the_bounded_attempts(silent_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    # The deployed options, with timeouts short enough for a test.
    options = {**S3_CLIENT_OPTIONS, "connect_timeout": 0.2, "read_timeout": 0.2}
    client = boto3.client("s3", region_name="us-east-1", endpoint_url=silent_endpoint, config=Config(**options))
    monkeypatch.setattr(S3Storage, "client", property(lambda self: client))

    started = time.monotonic()
    with pytest.raises(UnavailableError) as caught:
        S3Storage("confab-files-test", "us-east-1").stored_size("users/a/b")
    assert time.monotonic() - started < 6
    problem = problem_for(caught.value)
    assert problem.status == 503 and "Retry-After" in problem.headers
