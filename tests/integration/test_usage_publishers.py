"""Publishers: SQS (moto) in batches of ten, the synchronous fallback, the local in-process queue."""

from __future__ import annotations

import json
from decimal import Decimal

import boto3
import pytest
from moto import mock_aws

from shared.bootstrap import build_container
from shared.events.publishers import QueueUsagePublisher, SqsUsagePublisher
from shared.events.usage import UsageEvent
from shared.services.usage import record_usage
from shared.settings import Settings
from tests.helpers import FakeLambdaContext
from tests.usage_support import make_thread, make_user, sqs_event, thread_totals


def _events(n: int, thread=None, user=None, conv=None) -> list[UsageEvent]:
    return [
        UsageEvent(
            user_id=user, conversation_id=conv, thread_id=thread, model="m", provider="local",
            tokens_input=10, tokens_output=5, cost_usd=Decimal("0.001"),
        )
        for _ in range(n)
    ]  # fmt: skip


@pytest.fixture
def sqs_queue(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_SQS", raising=False)
    with mock_aws():
        client = boto3.client("sqs", region_name="us-east-1")
        url = client.create_queue(QueueName="confab-usage")["QueueUrl"]
        yield client, url


def _drain(client, url) -> list[dict]:
    messages: list[dict] = []
    while True:
        got = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            return messages
        messages.extend(got)


def test_sqs_publisher_sends_every_event_in_batches_of_ten_when_the_queue_is_reachable(sqs_queue):
    client, url = sqs_queue
    recorded: list = []
    calls: list[int] = []
    real_send = client.send_message_batch

    def counting_send(**kwargs):
        calls.append(len(kwargs["Entries"]))
        return real_send(**kwargs)

    client.send_message_batch = counting_send
    events = _events(23)
    SqsUsagePublisher(url, recorded.extend, client=client).publish(events)
    assert calls == [10, 10, 3] and recorded == []
    bodies = [UsageEvent.model_validate_json(m["Body"]) for m in _drain(client, url)]
    assert sorted(e.event_id for e in bodies) == sorted(e.event_id for e in events)


def test_queued_events_are_counted_once_by_the_aggregator_when_received_from_sqs(sqs_queue, app_container, db):
    from functions.usage_aggregator import lambda_handler

    client, url = sqs_queue
    user = make_user(db)
    conv, thread = make_thread(db, user)
    events = _events(12, thread, user, conv)
    SqsUsagePublisher(url, lambda evs: record_usage(app_container.db, evs), client=client).publish(events)
    messages = _drain(client, url)
    bodies = [m["Body"] for m in messages]
    # At-least-once: deliver everything twice.
    for chunk in (bodies[:10], bodies[10:], bodies[:10], bodies[10:]):
        assert lambda_handler(sqs_event(chunk), FakeLambdaContext()) == {"batchItemFailures": []}
    assert thread_totals(db, thread)["requests"] == 12


def test_event_is_recorded_once_synchronously_when_sqs_is_unreachable(app_container, db, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    user = make_user(db)
    conv, thread = make_thread(db, user)
    settings = Settings(USAGE_QUEUE_URL="http://127.0.0.1:9/000000000000/confab-usage")
    built = build_container(settings)
    try:
        assert isinstance(built.usage_publisher, SqsUsagePublisher)
        event = _events(1, thread, user, conv)
        built.usage_publisher.publish(event)
        built.flush()
    finally:
        built.close()
    assert thread_totals(db, thread)["requests"] == 1
    assert db.execute("SELECT count(*) FROM model_usage").fetchone()[0] == 1


def test_a_queue_that_never_answers_costs_a_few_seconds_before_the_event_is_recorded_synchronously(monkeypatch):
    # The publish comes after the provider call (up to PROVIDER_TIMEOUT_SECONDS, 20 s in AWS) inside a 29 s Lambda:
    # two attempts of a 5 s read timeout (10 s and more) let the function time out before the fallback ran, and the
    # call's usage was lost.
    import socket
    import time

    listener = socket.create_server(("127.0.0.1", 0))  # accepts connections, never answers
    port = listener.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    recorded: list[UsageEvent] = []
    publisher = SqsUsagePublisher(f"http://127.0.0.1:{port}/000000000000/q", recorded.extend, region="us-east-1")
    try:
        started = time.monotonic()
        publisher.publish(_events(1))
        elapsed = time.monotonic() - started
    finally:
        listener.close()
    assert len(recorded) == 1
    assert elapsed < 6, elapsed


class _FlakySqs:
    """An SQS client that rejects chosen entry ids (a partial batch failure), always or only the first time."""

    def __init__(self, reject: set[str], times: int):
        self.reject = reject
        self.times = times
        self.sent: list[str] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict]) -> dict:
        failed, ok = [], []
        for entry in Entries:
            if entry["Id"] in self.reject and self.times > 0:
                failed.append({"Id": entry["Id"], "SenderFault": False, "Code": "InternalError"})
            else:
                ok.append({"Id": entry["Id"], "MessageId": "m", "MD5OfMessageBody": "x"})
                self.sent.append(json.loads(entry["MessageBody"])["event_id"])
        self.times -= 1
        return {"Successful": ok, "Failed": failed}


def test_rejected_entries_are_retried_once_when_sqs_reports_a_partial_failure():
    client = _FlakySqs({"3", "7"}, times=1)
    recorded: list = []
    events = _events(10)
    SqsUsagePublisher("url", recorded.extend, client=client).publish(events)
    assert recorded == [] and sorted(client.sent) == sorted(str(e.event_id) for e in events)


def test_rejected_entries_are_recorded_synchronously_when_sqs_keeps_rejecting_them():
    client = _FlakySqs({"3", "7"}, times=5)
    recorded: list = []
    events = _events(12)
    SqsUsagePublisher("url", recorded.extend, client=client).publish(events)
    assert [e.event_id for e in recorded] == [events[3].event_id, events[7].event_id]
    assert len(client.sent) == 10


def test_in_process_queue_records_every_event_in_batches_when_flushed(app_container, db):
    user = make_user(db)
    conv, thread = make_thread(db, user)
    batches: list[int] = []

    def sink(events):
        batches.append(len(events))
        return record_usage(app_container.db, events)

    publisher = QueueUsagePublisher(sink, batch_size=25, linger_s=0.2)
    try:
        events = _events(60, thread, user, conv)
        publisher.publish(events)
        publisher.publish(events[:10])  # a duplicate publish changes nothing
        publisher.flush(timeout=30)
    finally:
        publisher.close()
    assert thread_totals(db, thread)["requests"] == 60
    assert max(batches) <= 25 and len(batches) < 70


def test_in_process_queue_retries_a_batch_when_the_sink_fails_once():
    attempts: list[int] = []

    def sink(events):
        attempts.append(len(events))
        if len(attempts) == 1:
            raise RuntimeError("database restarting")

    publisher = QueueUsagePublisher(sink, batch_size=10, linger_s=0.05)
    try:
        publisher.publish(_events(3))
        publisher.flush(timeout=10)
    finally:
        publisher.close()
    assert attempts == [3, 3]


def test_in_process_queue_logs_the_events_whole_when_it_gives_up_on_a_batch(caplog):
    # The log kept only their ids, from which the events could not be replayed.
    def sink(events):
        raise RuntimeError("database gone")

    publisher = QueueUsagePublisher(sink, batch_size=10, linger_s=0.05, retries=1)
    events = _events(2)
    try:
        publisher.publish(events)
        publisher.flush(timeout=10)
    finally:
        publisher.close()
    (entry,) = [r for r in caplog.records if r.getMessage() == "usage batch not recorded"]
    logged = json.loads(json.dumps(getattr(entry, "events", None)))
    assert [UsageEvent.model_validate(e) for e in logged] == events


def test_container_uses_the_in_process_queue_in_local_mode_without_a_queue_url(app_container):
    assert isinstance(app_container.usage_publisher, QueueUsagePublisher)
