"""Usage publishers: SQS in AWS, an in-process queue locally, and the synchronous fallback both share.

Every publisher ends in the same sink, `record_usage` (the aggregator), either on the far side of SQS
or directly; the sink is idempotent on event_id, so a publisher may hand an event over twice but must
never drop one.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from shared.events.usage import UsageEvent
from shared.observability import logger

UsageSink = Callable[[Sequence[UsageEvent]], object]

SQS_BATCH_LIMIT = 10  # send_message_batch takes at most ten entries


class DirectUsagePublisher:
    """Records events synchronously in the caller's thread (AWS stages without a queue, and tests)."""

    def __init__(self, sink: UsageSink):
        self._sink = sink

    def publish(self, events: Sequence[UsageEvent]) -> None:
        if events:
            self._sink(events)

    def flush(self, timeout: float | None = None) -> None:
        """Nothing is ever pending."""

    def close(self) -> None:
        """Nothing to stop."""


class SqsUsagePublisher:
    """Sends events to SQS in batches of ten; whatever SQS does not take is recorded synchronously.

    The client is built by boto3 without an explicit endpoint, so AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_SQS
    point it at a local SQS-compatible server. Short timeouts: an unreachable queue costs the request
    about three seconds before the synchronous fallback records the event.
    """

    def __init__(self, queue_url: str, fallback: UsageSink, *, region: str | None = None, client: Any = None):
        self.queue_url = queue_url
        self._fallback = fallback
        self._region = region
        self._client = client
        self._lock = threading.Lock()

    def _sqs(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                # One attempt of at most 3 s: the publish follows the provider call (PROVIDER_TIMEOUT_SECONDS, 20 s
                # in AWS) inside a 29 s function, and recording synchronously is the retry. Two attempts of a 5 s
                # read could outlast the function, losing the event before the fallback ran.
                config = Config(
                    connect_timeout=1, read_timeout=2, retries={"total_max_attempts": 1, "mode": "standard"}
                )
                self._client = boto3.client("sqs", region_name=self._region, config=config)
            return self._client

    def publish(self, events: Sequence[UsageEvent]) -> None:
        unsent: list[UsageEvent] = []
        for start in range(0, len(events), SQS_BATCH_LIMIT):
            chunk = list(events[start : start + SQS_BATCH_LIMIT])
            try:
                unsent.extend(self._send(chunk))
            except Exception as exc:
                # Any failure to reach SQS (connection, credentials, throttling): record in-line instead.
                logger.warning("usage queue unreachable; recording synchronously", extra={"error": type(exc).__name__})
                unsent.extend(chunk)
        if unsent:
            self._fallback(unsent)

    def _send(self, chunk: list[UsageEvent]) -> list[UsageEvent]:
        """Send one batch, retrying entries SQS reported as failed once; returns those still unsent."""
        pending = {str(i): event for i, event in enumerate(chunk)}
        for attempt in range(2):
            entries = [{"Id": key, "MessageBody": event.model_dump_json()} for key, event in pending.items()]
            response = self._sqs().send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            failed = {entry["Id"] for entry in response.get("Failed", [])}
            pending = {key: event for key, event in pending.items() if key in failed}
            if not pending:
                return []
            logger.warning("usage queue rejected entries", extra={"count": len(pending), "attempt": attempt + 1})
        return list(pending.values())

    def flush(self, timeout: float | None = None) -> None:
        """Every publish() returns only once SQS or the database has each event."""

    def close(self) -> None:
        """boto3 clients need no closing."""


class QueueUsagePublisher:
    """Local mode: publish() only enqueues; a background thread drains the queue into the sink in batches."""

    def __init__(
        self,
        sink: UsageSink,
        *,
        batch_size: int = 100,
        linger_s: float = 0.05,
        retries: int = 5,
        on_thread_exit: Callable[[], object] | None = None,
    ):
        self._sink = sink
        self._batch_size = batch_size
        self._linger_s = linger_s
        self._retries = retries
        self._on_thread_exit = on_thread_exit
        self._queue: queue.Queue[UsageEvent | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def publish(self, events: Sequence[UsageEvent]) -> None:
        self._ensure_thread()
        for event in events:
            self._queue.put(event)

    def _ensure_thread(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._drain, name="confab-usage", daemon=True)
                self._thread.start()

    def _next_batch(self) -> tuple[list[UsageEvent], bool]:
        """Block for the first event, then take what arrives within the linger time, up to the batch size."""
        first = self._queue.get()
        if first is None:
            return [], True
        batch = [first]
        deadline = time.monotonic() + self._linger_s
        while len(batch) < self._batch_size:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                self._queue.task_done()
                return batch, True
            batch.append(item)
        return batch, False

    def _drain(self) -> None:
        try:
            stop = False
            while not stop:
                batch, stop = self._next_batch()
                if batch:
                    self._deliver(batch)
                for _ in range(len(batch) + (1 if stop and not batch else 0)):
                    self._queue.task_done()
        finally:
            if self._on_thread_exit is not None:
                self._on_thread_exit()

    def _deliver(self, batch: list[UsageEvent]) -> None:
        for attempt in range(1, self._retries + 1):
            try:
                self._sink(batch)
                return
            except Exception:
                if attempt == self._retries:
                    # Local mode only; the events are logged whole so they can be replayed by hand.
                    logger.exception(
                        "usage batch not recorded", extra={"events": [e.model_dump(mode="json") for e in batch]}
                    )
                    return
                time.sleep(min(2.0, 0.1 * 2**attempt))

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every event published so far has been recorded (or given up on)."""
        if self._thread is None:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("usage queue did not drain in time")
            time.sleep(0.005)

    def close(self) -> None:
        """Drain what is queued and stop the thread."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._queue.put(None)
            thread.join(timeout=30)
