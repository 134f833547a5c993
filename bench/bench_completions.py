"""A completion's own cost: POST /v1/threads/{id}/completions through the handler against the local provider,
beside the local provider called directly with the same context. Target: at most +3 ms at p50.

A completion makes one durable commit (the user's message and the answer together, after the provider call) and
two round trips (the context before the call, the record after it). So that the target can be judged against
this machine's disk, the same run also times, side by side, a lone durable commit (a one-row insert in
autocommit) against a bare round trip (SELECT 1), and counts the handler's round trips and commits from
libpq's protocol trace.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

import psycopg
import psycopg.sql
from psycopg.types.json import Jsonb

from bench.harness import bench_database, p50, side_by_side, trace_counts
from tests.ai_helpers import FakePublisher, add_model, add_thread, add_user, api_event, context_for
from tests.helpers import FakeLambdaContext

ROUNDS = 300
SEEDED = 20_000
WARMUP = 20
WORK_MS = 0.5  # about half the handler's Python, which comes before each of its two statements


def busy(ms: float) -> None:
    """Keep this process's core busy for `ms` milliseconds (client work, as a handler's Python is)."""
    until = time.perf_counter() + ms / 1000
    while time.perf_counter() < until:
        pass


def round_trips_after_work(
    db: psycopg.Connection[Any], *, work_ms: float, rounds: int
) -> tuple[list[float], list[float]]:
    """`SELECT 1` timed alone, alternately right after the previous one and after `work_ms` of busy client work
    (as a handler's statements come after its validation, models and provider call)."""

    def trip(busy_ms: float) -> float:
        busy(busy_ms)
        started = time.perf_counter()
        db.execute("SELECT 1").fetchone()
        return time.perf_counter() - started

    hot: list[float] = []
    after_work: list[float] = []
    for _ in range(rounds):
        hot.append(trip(0))
        after_work.append(trip(work_ms))
    return hot, after_work


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
        from shared.repositories.completions import COMPLETION_CONTEXT, RECORD_COMPLETION

        bootstrap._usage_publisher = lambda built: FakePublisher()  # type: ignore[assignment]
        with psycopg.connect(url, autocommit=True) as db:
            add_model(db)
            user = add_user(db)
            # One fresh thread per call, so every call does the same work (a one-message context, a cache miss).
            threads = [add_thread(db, user, model_id="local-echo")[1] for _ in range(2 * ROUNDS + WARMUP + 5)]
            # The same for the statements run directly.
            made = [add_thread(db, user, model_id="local-echo") for _ in range(2 * ROUNDS + WARMUP + 5)]
            conversations = {thread: conversation for conversation, thread in made}
            sql_threads = iter(conversations)
            # A database in use rather than an empty one: earlier turns in other threads (100 messages in each of
            # 200), and fresh statistics, so that the plans the server makes (and keeps, inside the functions)
            # are the ones it makes in use.
            for _ in range(SEEDED // 100):
                earlier_conversation, earlier_thread = add_thread(db, user, model_id="local-echo")
                db.execute(
                    "INSERT INTO messages (conversation_id, thread_id, sender_id, sender_kind, content) "
                    "SELECT %s, %s, CASE WHEN g %% 2 = 1 THEN %s::uuid END, "
                    "CASE WHEN g %% 2 = 1 THEN 'user' ELSE 'ai' END, 'earlier message ' || g "
                    "FROM generate_series(1, 100) g",
                    (earlier_conversation, earlier_thread, user),
                )
            db.execute("VACUUM ANALYZE")
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

        def direct_sql(conn: psycopg.Connection[Any], work_ms: float = 0.0) -> None:
            """The handler's statements for one completion, sent as the handler sends them: the context (one
            statement, no transaction), the provider call, then the record (one statement, committed on its own).
            With `work_ms`, that much busy client work comes before each statement, as the handler's Python does."""
            thread = next(sql_threads)
            busy(work_ms)
            conn.execute(
                COMPLETION_CONTEXT,
                {
                    "thread_id": thread,
                    "user_id": user,
                    "model_id": None,
                    "default_model_id": None,
                    "history_limit": 200,
                    "idempotency_key": None,
                },
            ).fetchone()
            provider.complete(request)
            busy(work_ms)
            recorded = conn.execute(
                RECORD_COMPLETION,
                {
                    "thread_id": thread,
                    "conversation_id": conversations[thread],
                    "user_id": user,
                    "content": "question",
                    "idempotency_key": None,
                    "answer": "answer",
                    "model_id": "local-echo",
                    "usage": Jsonb({}),
                },
            )
            assert recorded.fetchone() is not None

        # Two runs: durable commits as deployed, then with synchronous_commit off so the disk's fsync
        # (0.5 to 4 ms a commit on a shared laptop disk) does not hide the code's cost.
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
                w, d2 = side_by_side(
                    lambda: direct_sql(conn, WORK_MS), lambda: direct_sql(conn), rounds=ROUNDS // 4, warmup=WARMUP // 4
                )
            sql_ms = (p50(d) - p50(b)) * 1000
            print(
                f"  breakdown ({label}): the handler's SQL run directly (+ provider) p50 {p50(d) * 1000:.3f} ms "
                f"= +{sql_ms:.2f} ms of database work | the handler p50 {p50(h) * 1000:.3f} ms: "
                f"+{(p50(h) - p50(d)) * 1000:.2f} ms of Python on top"
            )
            print(
                f"  breakdown ({label}): the same SQL with {WORK_MS} ms of busy client work before each statement "
                f"p50 {p50(w) * 1000:.3f} ms, less the work {(p50(w) - 2 * WORK_MS / 1000) * 1000:.3f} ms, against "
                f"{p50(d2) * 1000:.3f} ms back to back: what an idle database process costs to wake"
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
                f"{p50(trip) * 1000:.3f} ms | overhead less its commit +{extra_ms - p50(commit) * 1000:.2f} ms"
            )
        with bootstrap.container().db.provider.connection() as live, psycopg.connect(url, autocommit=True) as observer:
            trips, commits = trace_counts(live, handler, observer)
        print(f"completion through the handler: {trips} round trip(s), {commits} commit(s) that wrote")
        with psycopg.connect(url, autocommit=True, prepare_threshold=None) as db:
            hot, after_work = round_trips_after_work(db, work_ms=1.0, rounds=ROUNDS)
        print(
            f"  a round trip right after another p50 {p50(hot) * 1000:.3f} ms | after 1 ms of client work p50 "
            f"{p50(after_work) * 1000:.3f} ms (a handler's round trips come after its own work; on a virtual "
            "machine the idle database process wakes up slower)"
        )
        bootstrap.container().db.close()


if __name__ == "__main__":
    main()
