"""The request path's fixed cost: GET /v1/health through the handler vs the same query run directly."""

from __future__ import annotations

import os

import psycopg

from bench.harness import bench_database, report, side_by_side
from tests.helpers import FakeLambdaContext, load_event


def main() -> None:
    with bench_database() as url:
        os.environ["DATABASE_URL"] = url
        os.environ.setdefault("CONFAB_STAGE", "test")
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
        os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
        from functions.health import lambda_handler
        from shared.bootstrap import container

        event = load_event("health_get")
        context = FakeLambdaContext()
        with psycopg.connect(url, prepare_threshold=None) as conn:

            def direct() -> None:
                conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
                conn.rollback()

            def handler() -> None:
                assert lambda_handler(event, context)["statusCode"] == 200

            a, b = side_by_side(handler, direct)
            report("health", "handler", a, "direct SQL", b, target="informational")
        container().db.close()


if __name__ == "__main__":
    main()
