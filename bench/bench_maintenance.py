"""Maintenance: purging expired rows in bounded keyset batches vs one single DELETE on identical data.
Targets: at least 0.5x the rows per second of the single DELETE, and no transaction longer than 200 ms.

BENCH_MAINT_ROWS (default 300000) and BENCH_MAINT_BATCH (rows per transaction, default: the
MAINTENANCE_BATCH_SIZE setting) size the run.
"""

from __future__ import annotations

import os
import time

import psycopg

FILL = """
INSERT INTO ai_cache (model, prompt_hash, prompt_summary, response_text, tokens_used, cost_estimate, ttl)
SELECT 'm', md5(g::text), 'summary', repeat('r', 200), 10, 0.001,
       now() - interval '1 day' + make_interval(secs => g %% 80000)
FROM generate_series(1, %(rows)s) g
"""
# Unexpired rows stay behind in both runs, as they would in production.
FRESH = """
INSERT INTO ai_cache (model, prompt_hash, prompt_summary, response_text, tokens_used, cost_estimate, ttl)
SELECT 'm', 'fresh' || g, 's', 'r', 1, 0, now() + interval '1 day' FROM generate_series(1, 1000) g
"""


def _fill(conn: psycopg.Connection, rows: int) -> None:
    conn.execute("TRUNCATE ai_cache, maintenance_cursors, maintenance_leases")
    conn.execute(FILL, {"rows": rows})
    conn.execute(FRESH)
    conn.execute("VACUUM ANALYZE ai_cache")


def main() -> None:
    from bench.harness import bench_database

    rows = int(os.environ.get("BENCH_MAINT_ROWS", "300000"))
    batch = os.environ.get("BENCH_MAINT_BATCH")
    with bench_database() as url:
        os.environ["DATABASE_URL"] = url
        if batch:
            os.environ["MAINTENANCE_BATCH_SIZE"] = batch
        os.environ.setdefault("CONFAB_STAGE", "test")
        from shared.bootstrap import build_container
        from shared.observability import logger
        from shared.services.maintenance import PURGE_JOBS, run_maintenance
        from shared.settings import Settings

        logger.setLevel("WARNING")
        deps = build_container(Settings())
        batch = str(deps.settings.maintenance_batch_size)
        cache_only = [job for job in PURGE_JOBS if job.name == "ai_cache"]
        with psycopg.connect(url, autocommit=True) as conn:

            def batched() -> tuple[float, float]:
                _fill(conn, rows)
                started = time.perf_counter()
                result = run_maintenance(deps.db, deps.settings, budget_s=600, jobs=cache_only)
                elapsed = time.perf_counter() - started
                assert result.status == "complete" and result.deleted["ai_cache"] == rows, result
                return elapsed, result.longest_transaction_ms

            def single() -> tuple[float, float]:
                _fill(conn, rows)
                started = time.perf_counter()
                with conn.transaction():
                    deleted = conn.execute("DELETE FROM ai_cache WHERE ttl < now()").rowcount
                elapsed = time.perf_counter() - started
                assert deleted == rows
                return elapsed, elapsed * 1000

            # Alternating rounds (A B, then B A) so machine noise hits both alike; best of each.
            a1, b1, b2, a2 = batched(), single(), single(), batched()
            best_a, best_b = min(a1, a2), min(b1, b2)
            longest = max(a1[1], a2[1])
            rate_a, rate_b = rows / best_a[0], rows / best_b[0]
            print(
                f"maintenance ({rows:,} expired rows): batches of {batch} {rate_a:,.0f} rows/s, longest transaction "
                f"{longest:.0f} ms (target < 200 ms) | single DELETE {rate_b:,.0f} rows/s, one transaction of "
                f"{best_b[1]:.0f} ms | ratio {rate_a / rate_b:.2f}x (target >= 0.5x)"
            )
        deps.close()


if __name__ == "__main__":
    main()
