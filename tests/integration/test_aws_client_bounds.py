"""AWS clients that do not answer: each call gives up within the function's time, after the attempts it means to
make and no more (botocore's `max_attempts` counts retries, one more attempt than it says)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import boto3
import pytest
from botocore.config import Config

from shared.aws_calls import REQUEST_CALL_OPTIONS
from shared.errors import UnavailableError, problem_for
from shared.events.publishers import SqsUsagePublisher
from shared.storage import S3Storage

FUNCTION_TIMEOUT_S = 29  # infra/functions.py API_TIMEOUT


@dataclass
class SilentEndpoint:
    url: str
    connections: list[socket.socket] = field(default_factory=list)


@pytest.fixture
def silent_endpoint(monkeypatch) -> Iterator[SilentEndpoint]:
    """A TCP server on loopback that accepts connections, counts them, and never answers."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    endpoint = SilentEndpoint(f"http://127.0.0.1:{server.getsockname()[1]}")

    def accept() -> None:
        while True:
            try:
                endpoint.connections.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield endpoint
    server.close()
    for conn in endpoint.connections:
        conn.close()


def test_s3_attempts_and_backoff_together_fit_well_inside_the_functions_timeout():
    attempts = REQUEST_CALL_OPTIONS["retries"]["total_max_attempts"]
    per_attempt = REQUEST_CALL_OPTIONS["connect_timeout"] + REQUEST_CALL_OPTIONS["read_timeout"]
    backoff = sum(2**i for i in range(attempts - 1))  # the standard mode's longest sleeps: 1 s, 2 s, ...
    assert attempts * per_attempt + backoff <= FUNCTION_TIMEOUT_S - 5


def test_a_head_on_an_s3_that_never_answers_is_a_503_after_three_attempts(silent_endpoint, monkeypatch):
    # The deployed options, with a read timeout short enough for a test.
    options = {**REQUEST_CALL_OPTIONS, "read_timeout": 0.2}
    client = boto3.client("s3", region_name="us-east-1", endpoint_url=silent_endpoint.url, config=Config(**options))
    monkeypatch.setattr(S3Storage, "client", property(lambda self: client))

    started = time.monotonic()
    with pytest.raises(UnavailableError) as caught:
        S3Storage("confab-files-test", "us-east-1").stored_size("users/a/b")
    assert time.monotonic() - started < 6
    assert len(silent_endpoint.connections) == 3
    problem = problem_for(caught.value)
    assert problem.status == 503 and "Retry-After" in problem.headers


def test_the_usage_publishers_sqs_client_makes_one_attempt_when_the_queue_never_answers(silent_endpoint, monkeypatch):
    # The publish comes after the provider call inside a 29 s function: one attempt of at most 3 s, then the
    # synchronous fallback records the event.
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", silent_endpoint.url)
    client = SqsUsagePublisher(
        "https://sqs.us-east-1.amazonaws.com/1/q", lambda events: None, region="us-east-1"
    )._sqs()

    started = time.monotonic()
    with pytest.raises(Exception, match="timeout"):
        client.send_message_batch(
            QueueUrl="https://sqs.us-east-1.amazonaws.com/1/q", Entries=[{"Id": "1", "MessageBody": "{}"}]
        )
    assert time.monotonic() - started < 4
    assert len(silent_endpoint.connections) == 1


def test_secrets_manager_reads_give_up_after_three_attempts_well_inside_the_functions_timeout(
    silent_endpoint, monkeypatch
):
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    from shared import secrets

    options = REQUEST_CALL_OPTIONS
    attempts = options["retries"]["total_max_attempts"]
    backoff = sum(2**i for i in range(attempts - 1))
    assert attempts * (options["connect_timeout"] + options["read_timeout"]) + backoff <= FUNCTION_TIMEOUT_S - 5

    # The deployed options, with a read timeout short enough for a test, against a Secrets Manager that never answers.
    client = boto3.client(
        "secretsmanager",
        region_name="us-east-1",
        endpoint_url=silent_endpoint.url,
        config=Config(**{**options, "retries": dict(options["retries"]), "read_timeout": 0.2}),
    )
    monkeypatch.setattr(secrets, "_provider", lambda: SecretsProvider(boto3_client=client))
    started = time.monotonic()
    with pytest.raises(Exception, match="timeout"):
        secrets.secret_text("arn:aws:secretsmanager:us-east-1:123456789012:secret:confab/jwt")
    assert time.monotonic() - started < 6
    assert len(silent_endpoint.connections) == 3
