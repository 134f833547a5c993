"""A completion's own cost: POST /v1/threads/{id}/completions through the handler against the local provider,
beside the local provider called directly with the same context. Target: at most +3 ms at p50.

A completion must make two durable commits (the user's message before the provider call, so a provider failure
loses nothing the user sent; the answer after it). So that the target can be judged against this machine's
disk, the same run also times, side by side, a lone durable commit (a one-row insert in autocommit) against a
bare round trip (SELECT 1), and counts the handler's round trips and commits from libpq's protocol trace.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import psycopg
import psycopg.sql
from psycopg.types.json import Jsonb

from bench.harness import bench_database, p50, side_by_side, trace_counts
from tests.ai_helpers import FakePublisher, add_model, add_thread, add_user, api_event, context_for
from tests.helpers import FakeLambdaContext

ROUNDS = 300
WARMUP = 20


def main() -> None:
    with bench_database() as url:
        os.environ["DATABASE_URL"] = url
        os.environ.setdefault("CONFAB_STAGE", "test")
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
        os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
        os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
        from functions.completions import lambda_handler
        from shared import bootstrap
        from shared.providers.base import ChatMessage, ProviderRequest
        from shared.providers.local import LocalProvider
        from shared.repositories.completions import (
            COMPLETION_CONTEXT,
            INSERT_ANSWER,
            INSERT_THREAD_MESSAGE,
            LATEST_THREAD_MESSAGES,
        )

        bootstrap._usage_publisher = lambda built: FakePublisher()  # type: ignore[assignment]
        with psycopg.connect(url, autocommit=True) as db:
            add_model(db)
            user = add_user(db)
            # One fresh thread per call, so every call does the same work (a one-message context, a cache miss).
            threads = [add_thread(db, user, model_id="local-echo")[1] for _ in range(2 * ROUNDS + WARMUP + 5)]
            # The same for the statements run directly.
            sql_threads = iter([add_thread(db, user, model_id="local-echo")[1] for _ in range(2 * ROUNDS + WARMUP + 5)])
        principal = context_for(user)
        counter = itertools.count()
        provider = LocalProvider()
        request = ProviderRequest(
            model="local-echo",
            messages=(ChatMessage("system", "You are Confab's test model."), ChatMessage("user", "question 0")),
            temperature=0.7,
            max_tokens=256,
        )
        context = FakeLambdaContext()

        # The events are made before timing starts, as API Gateway hands them over: only the handler is timed.
        events = iter(
            [
                api_event(
                    "POST",
                    "/v1/threads/{id}/completions",
                    f"/v1/threads/{thread}/completions",
                    principal=principal,
                    path_parameters={"id": str(thread)},
                    body={"content": f"question {next(counter)}", "temperature": 0.7},
                )
                for thread in threads
            ]
        )

        def handler() -> None:
            assert lambda_handler(next(events), context)["statusCode"] == 200

        def direct() -> None:
            provider.complete(request)

        def direct_sql(conn: psycopg.Connection[Any]) -> None:
            """The handler's statements for one completion, sent as the handler sends them (two pipelined
            transactions: context, user message and history; then the answer), and the provider call."""
            thread = next(sql_threads)
            with conn.pipeline() as pipeline:
                conn.execute("BEGIN")
                ctx = conn.execute(
                    COMPLETION_CONTEXT,
                    {"thread_id": thread, "user_id": user, "model_id": None, "default_model_id": None},
                )
                sent = conn.execute(
                    INSERT_THREAD_MESSAGE,
                    {"thread_id": thread, "sender_id": user, "content": "question", "idempotency_key": None},
                )
                history = conn.execute(LATEST_THREAD_MESSAGES, {"thread_id": thread, "limit": 200})
                ctx.fetchone()
                row = sent.fetchone()
                history.fetchall()
                conn.execute("COMMIT")
                pipeline.sync()
            assert row is not None
            provider.complete(request)
            with conn.pipeline():
                conn.execute("BEGIN")
                answer = conn.execute(
                    INSERT_ANSWER,
                    {
                        "user_message_id": row[0],
                        "conversation_id": row[1],
                        "thread_id": thread,
                        "content": "answer",
                        "model_id": "local-echo",
                        "usage": Jsonb({}),
                    },
                )
                conn.execute("COMMIT")
            assert answer.fetchone() is not None

        # Two runs: durable commits as deployed, then with synchronous_commit off so the disk's fsync
        # (about 4 ms a commit on a shared laptop disk, two commits a completion) does not hide the code's cost.
        for label in ("durable commits", "synchronous_commit=off"):
            if label != "durable commits":
                with psycopg.connect(url, autocommit=True) as db:
                    db.execute(
                        psycopg.sql.SQL("ALTER DATABASE {} SET synchronous_commit = off").format(
                            psycopg.sql.Identifier(str(psycopg.conninfo.conninfo_to_dict(url)["dbname"]))
                        )
                    )
                bootstrap.container().db.provider.discard()
            a, b = side_by_side(handler, direct, rounds=ROUNDS // 2, warmup=WARMUP // 2)
            extra_ms = (p50(a) - p50(b)) * 1000
            print(
                f"completions ({label}): handler p50 {p50(a) * 1000:.3f} ms | local provider p50 "
                f"{p50(b) * 1000:.3f} ms | overhead +{extra_ms:.2f} ms at p50 (target <= +3 ms)"
            )
            with psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
                h, d = side_by_side(handler, lambda: direct_sql(conn), rounds=ROUNDS // 4, warmup=WARMUP // 4)
            sql_ms = (p50(d) - p50(b)) * 1000
            print(
                f"  breakdown ({label}): the handler's SQL run directly (+ provider) p50 {p50(d) * 1000:.3f} ms "
                f"= +{sql_ms:.2f} ms of database work | the handler p50 {p50(h) * 1000:.3f} ms: "
                f"+{(p50(h) - p50(d)) * 1000:.2f} ms of Python on top"
            )
            with psycopg.connect(url, autocommit=True, prepare_threshold=None) as db:
                db.execute("CREATE TABLE IF NOT EXISTS bench_commits (id bigserial PRIMARY KEY)")
                commit, trip = side_by_side(
                    lambda: db.execute("INSERT INTO bench_commits DEFAULT VALUES"),
                    lambda: db.execute("SELECT 1").fetchone(),
                    rounds=ROUNDS // 2,
                    warmup=WARMUP // 2,
                )
            print(
                f"  breakdown ({label}): a lone commit p50 {p50(commit) * 1000:.3f} ms | a round trip p50 "
                f"{p50(trip) * 1000:.3f} ms | overhead less 2 commits +{extra_ms - 2 * p50(commit) * 1000:.2f} ms"
            )
        with bootstrap.container().db.provider.connection() as live:
            trips, commits = trace_counts(live, handler)
        print(f"completion through the handler: {trips} round trip(s), {commits} commit(s)")
        bootstrap.container().db.close()


if __name__ == "__main__":
    main()
