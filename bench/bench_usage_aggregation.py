"""Usage aggregation: the same events through the aggregator (SQS batches, one transaction each) vs one
transaction per event. Target: at least 25x the events per second.

BENCH_USAGE_EVENTS (default 5000) and BENCH_USAGE_BATCH (records per SQS batch, default 500: an event
source mapping with a batching window delivers up to 10,000) size the run.
"""

from __future__ import annotations

import os
import random
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg


def _events(conn: psycopg.Connection, n: int) -> list:
    from shared.events.usage import UsageEvent

    users = [
        conn.execute(
            "INSERT INTO users (username, email) VALUES (%s, %s) RETURNING id", (f"b{i}", f"b{i}@example.com")
        ).fetchone()[0]
        for i in range(20)
    ]
    threads = []
    for i in range(50):
        conv = conn.execute(
            "INSERT INTO conversations (kind, user_id) VALUES ('assistant', %s) RETURNING id", (users[i % 20],)
        ).fetchone()[0]
        thread = conn.execute(
            "INSERT INTO conversation_threads (conversation_id, user_id) VALUES (%s, %s) RETURNING id",
            (conv, users[i % 20]),
        ).fetchone()[0]
        threads.append((users[i % 20], conv, thread))
    rng = random.Random(6)
    base = datetime(2026, 11, 1, tzinfo=UTC)
    out = []
    for _ in range(n):
        user, conv, thread = rng.choice(threads)
        out.append(
            UsageEvent(
                user_id=user, conversation_id=conv, thread_id=thread, model=rng.choice(["a", "b", "c"]),
                provider="bedrock", tokens_input=rng.randint(1, 4000), tokens_output=rng.randint(1, 1000),
                cost_usd=Decimal(rng.randint(1, 10**6)) / Decimal(10**8),
                occurred_at=base + timedelta(minutes=rng.randint(0, 60 * 24 * 20)),
            )
        )  # fmt: skip
    return out


RESET = """
TRUNCATE model_usage, usage_daily;
UPDATE conversation_threads SET tokens_input_total = 0, tokens_output_total = 0, tokens_cached_total = 0,
    tokens_total = 0, requests_count = 0, cost_total_usd = 0, last_usage_at = NULL;
"""


def main() -> None:
    from bench.harness import bench_database

    n = int(os.environ.get("BENCH_USAGE_EVENTS", "5000"))
    batch = int(os.environ.get("BENCH_USAGE_BATCH", "500"))
    with bench_database() as url:
        os.environ["DATABASE_URL"] = url
        os.environ.setdefault("CONFAB_STAGE", "test")
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
        os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
        from functions.usage_aggregator import lambda_handler
        from shared.bootstrap import container
        from shared.observability import logger

        logger.setLevel("WARNING")
        from shared.services.usage import record_usage
        from tests.helpers import FakeLambdaContext
        from tests.usage_support import sqs_event

        with psycopg.connect(url, autocommit=True) as conn:
            events = _events(conn, n)
            bodies = [e.model_dump_json() for e in events]
            sqs_batches = [sqs_event(bodies[i : i + batch]) for i in range(0, n, batch)]
            db = container().db

            def through_aggregator() -> float:
                conn.execute(RESET)
                started = time.perf_counter()
                for sqs in sqs_batches:
                    assert lambda_handler(sqs, FakeLambdaContext()) == {"batchItemFailures": []}
                return time.perf_counter() - started

            def per_event() -> float:
                conn.execute(RESET)
                started = time.perf_counter()
                for event in events:
                    record_usage(db, [event])
                return time.perf_counter() - started

            through_aggregator()  # warm-up: imports, connection, plans
            # Alternating rounds (A B, then B A) so machine noise hits both alike; best of each.
            times_a: list[float] = []
            times_b: list[float] = []
            pairs = ((through_aggregator, times_a), (per_event, times_b))
            for i in range(2):
                for fn, sink in pairs if i % 2 == 0 else pairs[::-1]:
                    sink.append(fn())
            rate_a, rate_b = n / min(times_a), n / min(times_b)
            totals = conn.execute("SELECT sum(requests_count) FROM conversation_threads").fetchone()[0]
            assert totals == n
            print(
                f"usage aggregation ({n} events, SQS batches of {batch}): aggregator {rate_a:,.0f} events/s | "
                f"one transaction per event {rate_b:,.0f} events/s | ratio {rate_a / rate_b:.1f}x (target >= 25x)"
            )
        container().db.close()


if __name__ == "__main__":
    main()
