"""A completion's own cost: POST /v1/threads/{id}/completions through the handler against the local provider,
beside the local provider called directly with the same context. Target: at most +3 ms at p50."""

from __future__ import annotations

import itertools
import os

import psycopg
import psycopg.sql

from bench.harness import bench_database, p50, side_by_side
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

        bootstrap._usage_publisher = lambda built: FakePublisher()  # type: ignore[assignment]
        with psycopg.connect(url, autocommit=True) as db:
            add_model(db)
            user = add_user(db)
            # One fresh thread per call, so every call does the same work (a one-message context, a cache miss).
            threads = iter([add_thread(db, user, model_id="local-echo")[1] for _ in range(ROUNDS + WARMUP + 5)])
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

        def handler() -> None:
            thread = next(threads)
            event = api_event(
                "POST",
                "/v1/threads/{id}/completions",
                f"/v1/threads/{thread}/completions",
                principal=principal,
                path_parameters={"id": str(thread)},
                body={"content": f"question {next(counter)}", "temperature": 0.7},
            )
            assert lambda_handler(event, context)["statusCode"] == 200

        def direct() -> None:
            provider.complete(request)

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
        bootstrap.container().db.close()


if __name__ == "__main__":
    main()
