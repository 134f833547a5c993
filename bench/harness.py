"""What every benchmark shares: a migrated database of its own, side-by-side timing, ratio printing.

Benchmarks never assert on wall-clock time in the test suite; they print ratios measured side by
side in one run (A and B interleaved, so machine noise hits both alike).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from shared.migrations import migrate
from shared.settings import PROJECT_ROOT


@contextmanager
def bench_database() -> Iterator[str]:
    """A freshly migrated database URL on DATABASE_URL's server or an embedded one; dropped afterwards."""
    server_url = os.environ.get("DATABASE_URL")
    handle = None
    tmp = None
    if not server_url:
        from shared.local.embedded import start_embedded

        tmp = tempfile.mkdtemp(prefix="confab-bench-")
        handle = start_embedded(Path(tmp) / "data", cleanup="delete")
        server_url = str(handle.get_uri())
    name = f"confab_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(server_url, dbname=name)
    migrate(url, PROJECT_ROOT / "migrations")
    try:
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if handle is not None:
            handle.cleanup()


def side_by_side(
    a: Callable[[], object], b: Callable[[], object], *, rounds: int = 300, warmup: int = 20
) -> tuple[list[float], list[float]]:
    """Time `a` and `b` alternately; returns their per-call durations in seconds."""
    for _ in range(warmup):
        a()
        b()
    times_a: list[float] = []
    times_b: list[float] = []
    for i in range(rounds):
        pair = ((a, times_a), (b, times_b)) if i % 2 == 0 else ((b, times_b), (a, times_a))
        for fn, sink in pair:
            started = time.perf_counter()
            fn()
            sink.append(time.perf_counter() - started)
    return times_a, times_b


def p50(samples: list[float]) -> float:
    return statistics.median(samples)


def report(name: str, label_a: str, a: list[float], label_b: str, b: list[float], *, target: str) -> float:
    """Print p50s and the ratio a/b with its target; returns the ratio."""
    ratio = p50(a) / p50(b)
    print(
        f"{name}: {label_a} p50 {p50(a) * 1000:.3f} ms | {label_b} p50 {p50(b) * 1000:.3f} ms | "
        f"ratio {ratio:.2f}x (target {target})"
    )
    return ratio


def trace_counts(conn: psycopg.Connection[Any], action: Any, observer: psycopg.Connection[Any]) -> tuple[int, int]:
    """(round trips, commits that wrote) of `action` on `conn`.

    Round trips come from libpq's protocol trace: a batch of frontend messages that the client then waits on
    (each switch from sending to receiving). Commits that wrote are counted on the server, from `observer` (an
    idle autocommit connection to the same database): each transaction that writes is assigned one transaction
    id, so the ids handed out while `action` runs are its writing transactions, each a durable commit. A
    read-only statement also ends a transaction, but it writes nothing to the WAL and waits on no disk. Any
    other transaction writing in that database meanwhile (an autovacuum ANALYZE) is counted too: an upper bound.
    """

    def next_xid() -> int:
        row = observer.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint").fetchone()
        assert row is not None
        return int(row[0])

    before = next_xid()
    with tempfile.TemporaryFile("w+") as sink:
        conn.pgconn.trace(sink.fileno())
        try:
            action()
        finally:
            conn.pgconn.untrace()
        sink.seek(0)
        messages = [line.split("\t") for line in sink.read().splitlines()]
    writes = next_xid() - before
    directions = [parts[1] for parts in messages if len(parts) > 3]
    trips = sum(1 for before, after in zip(directions, directions[1:], strict=False) if (before, after) == ("F", "B"))
    return trips, writes
